//! Which images a rank trains on, in what order. The data stream is one global sequence: epoch e
//! is a permutation of the dataset drawn from (seed, e), and the epochs follow each other without
//! gaps. A step takes the next `global batch` positions of that sequence; rank r of W takes the
//! r-th contiguous block of them. So:
//! - within an epoch's worth of positions every image is used exactly once, by exactly one rank;
//! - the dataset size need not divide the batch: a step that crosses an epoch boundary takes the
//!   end of one permutation and the start of the next (nothing is dropped or repeated);
//! - the cursor is one number, the global position (= images consumed so far), the same on every
//!   rank; a resumed run continues exactly, and a run resumed with another world size simply
//!   splits the next global batches differently, neither repeating nor skipping an image.
use crate::config::rank_share;
use crate::rng::SplitMix64;

/// Exact position in the data stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub epoch: u64,
    /// Position within the epoch's permutation.
    pub position: u64,
}

#[derive(Clone, Debug)]
pub struct Sampler {
    seed: u64,
    len: u64,
    /// Global position: images consumed by all ranks together since the start.
    consumed: u64,
    /// The permutation of `epoch`, drawn when first needed.
    permutation: Option<(u64, Vec<u64>)>,
}

impl Sampler {
    /// A sampler at the start of the stream over `len` images.
    pub fn new(seed: u64, len: u64) -> Self {
        Self::resume(seed, len, 0)
    }

    /// A sampler that continues after `consumed` images.
    pub fn resume(seed: u64, len: u64, consumed: u64) -> Self {
        assert!(len > 0, "an empty dataset has no stream");
        Sampler { seed, len, consumed, permutation: None }
    }

    /// Images consumed so far by all ranks together.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    pub fn cursor(&self) -> Cursor {
        Cursor { epoch: self.consumed / self.len, position: self.consumed % self.len }
    }

    /// This rank's images of the next step of `global_batch` images (its [`rank_share`]), and
    /// moves the stream on by the whole global batch.
    pub fn take_step(&mut self, global_batch: u64, rank: u32, world: u32) -> Vec<u64> {
        let share = rank_share(global_batch, rank, world);
        let indices = share.map(|i| self.at(self.consumed + i)).collect();
        self.consumed += global_batch;
        indices
    }

    /// The image at global position `g`.
    fn at(&mut self, g: u64) -> u64 {
        let epoch = g / self.len;
        if self.permutation.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut rng = SplitMix64::for_item(self.seed, epoch);
            let mut permutation: Vec<u64> = (0..self.len).collect();
            rng.shuffle(&mut permutation);
            self.permutation = Some((epoch, permutation));
        }
        self.permutation.as_ref().expect("drawn above").1[(g % self.len) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `steps` steps of `world` ranks and returns everything they read, in stream order.
    fn run(sampler: &mut Sampler, steps: usize, global: u64, world: u32) -> Vec<u64> {
        let mut out = Vec::new();
        for _ in 0..steps {
            let mut ranks: Vec<Sampler> = (0..world).map(|_| sampler.clone()).collect();
            for (rank, s) in ranks.iter_mut().enumerate() {
                out.extend(s.take_step(global, rank as u32, world));
            }
            sampler.consumed = ranks[0].consumed;
            assert!(ranks.iter().all(|s| s.consumed == sampler.consumed), "all ranks share the cursor");
        }
        out
    }

    #[test]
    fn ranks_together_see_every_image_once_per_epoch() {
        for world in [1u32, 2, 3, 4] {
            for len in [24u64, 25, 7] {
                let global = 12 / u64::from(world) * u64::from(world);
                let mut s = Sampler::new(9, len);
                let steps = len.div_ceil(global) as usize;
                let seen = run(&mut s, steps, global, world);
                let mut first_epoch: Vec<u64> = seen[..len as usize].to_vec();
                first_epoch.sort();
                assert_eq!(first_epoch, (0..len).collect::<Vec<_>>(), "world {world} len {len}");
            }
        }
    }

    #[test]
    fn a_batch_that_does_not_split_evenly_is_shared_without_gaps_or_repeats() {
        // 32 images over 3 ranks: 11, 11 and 10, in stream order, as one rank would read them.
        let mut one = Sampler::new(4, 100);
        let expected = run(&mut one, 5, 32, 1);
        let mut three = Sampler::new(4, 100);
        assert_eq!(three.clone().take_step(32, 2, 3).len(), 10);
        assert_eq!(run(&mut three, 5, 32, 3), expected);
        // And on to 5 ranks mid-epoch (7, 7, 6, 6, 6).
        let mut five = Sampler::resume(4, 100, three.consumed());
        let mut whole = Sampler::resume(4, 100, three.consumed());
        assert_eq!(run(&mut five, 3, 32, 5), run(&mut whole, 3, 32, 1));
    }

    #[test]
    fn epochs_are_different_permutations() {
        let mut s = Sampler::new(1, 10);
        let a = run(&mut s, 1, 10, 1);
        let b = run(&mut s, 1, 10, 1);
        assert_ne!(a, b);
        assert_eq!(s.cursor(), Cursor { epoch: 2, position: 0 });
    }

    #[test]
    fn a_restored_cursor_gives_exactly_the_remaining_stream() {
        let mut whole = Sampler::new(5, 50);
        let expected = run(&mut whole, 9, 8, 2);
        let mut first = Sampler::new(5, 50);
        let mut seen = run(&mut first, 4, 8, 2);
        let mut resumed = Sampler::resume(5, 50, first.consumed());
        seen.extend(run(&mut resumed, 5, 8, 2));
        assert_eq!(seen, expected);
    }

    #[test]
    fn going_from_four_ranks_to_two_mid_epoch_neither_repeats_nor_skips() {
        let len = 64;
        let mut reference = Sampler::new(3, len);
        let expected = run(&mut reference, 4, 16, 1);
        let mut four = Sampler::new(3, len);
        let mut seen = run(&mut four, 2, 16, 4);
        let mut two = Sampler::resume(3, len, four.consumed());
        seen.extend(run(&mut two, 2, 16, 2));
        assert_eq!(seen, expected, "the same images in the same global order");
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(sorted, (0..len).collect::<Vec<_>>());
    }
}
