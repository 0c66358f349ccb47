//! Which images a rank trains on, in what order. Each epoch draws a global permutation from
//! (seed, epoch); rank r takes positions r, r + world, r + 2 world, ... of it. Ranks never overlap
//! within an epoch. When the dataset size is not a multiple of the world size, the last
//! `len % world` positions of each permutation are skipped for that epoch (they are different
//! images every epoch), so every rank takes the same number of steps per epoch.
use crate::rng::SplitMix64;

/// Exact position in the data stream: enough to resume where a run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub epoch: u64,
    /// Index into this rank's slice of the epoch's permutation.
    pub position: u64,
}

#[derive(Clone, Debug)]
pub struct Sampler {
    seed: u64,
    len: u64,
    rank: u64,
    world: u64,
    cursor: Cursor,
    permutation: Vec<u64>,
}

impl Sampler {
    /// A sampler for `rank` of `world` over `len` images, starting at epoch 0.
    pub fn new(seed: u64, len: u64, rank: u32, world: u32) -> Self {
        assert!(len >= u64::from(world), "every rank needs at least one image per epoch");
        let mut sampler = Sampler {
            seed,
            len,
            rank: rank.into(),
            world: world.into(),
            cursor: Cursor { epoch: 0, position: 0 },
            permutation: Vec::new(),
        };
        sampler.draw_permutation();
        sampler
    }

    /// Images per epoch for each rank.
    pub fn per_rank(&self) -> u64 {
        self.len / self.world
    }

    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// Next `n` image indices for this rank (crossing epochs as needed).
    pub fn take(&mut self, n: usize) -> Vec<u64> {
        (0..n).map(|_| self.next_index()).collect()
    }

    fn next_index(&mut self) -> u64 {
        if self.cursor.position == self.per_rank() {
            self.cursor = Cursor { epoch: self.cursor.epoch + 1, position: 0 };
            self.draw_permutation();
        }
        let index = self.permutation[(self.cursor.position * self.world + self.rank) as usize];
        self.cursor.position += 1;
        index
    }

    fn draw_permutation(&mut self) {
        let mut rng = SplitMix64::for_item(self.seed, self.cursor.epoch);
        self.permutation = (0..self.len).collect();
        rng.shuffle(&mut self.permutation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_partition_each_epoch() {
        for world in [1u32, 2, 3, 4] {
            let len = 30u64;
            let mut seen = Vec::new();
            for rank in 0..world {
                let mut s = Sampler::new(9, len, rank, world);
                seen.extend(s.take(s.per_rank() as usize));
            }
            let mut sorted = seen.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), seen.len(), "world {world}: an image was seen twice");
            assert_eq!(seen.len() as u64, len - len % u64::from(world));
        }
    }

    #[test]
    fn epochs_differ_and_cursor_advances() {
        let mut s = Sampler::new(1, 10, 0, 1);
        let first = s.take(10);
        let second = s.take(10);
        assert_ne!(first, second);
        assert_eq!(s.cursor(), Cursor { epoch: 1, position: 10 });
        let mut again = Sampler::new(1, 10, 0, 1);
        assert_eq!(again.take(10), first);
    }
}
