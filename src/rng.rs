//! A tiny deterministic generator (SplitMix64) for the torch-free parts: data order, generated
//! images. Same seed, same stream, on every platform; no global state.

#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// The state's increment per output (the golden ratio in 64 bits).
    pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
    /// The output function's two multipliers (after the shifts by 30 and by 27; a last shift by
    /// 31 ends it).
    pub const MIX: [u64; 2] = [0xBF58_476D_1CE4_E5B9, 0x94D0_49BB_1331_11EB];

    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// A generator for item `index` of a stream keyed by `seed`: independent of other items, so
    /// any item can be produced alone, in any order, on any rank.
    pub fn for_item(seed: u64, index: u64) -> Self {
        SplitMix64::new(Self::item_key(seed, index))
    }

    /// The starting state of `for_item(seed, index)`: its k-th output (from 0) mixes
    /// `key + (k + 1) * GAMMA`, so a stream can also be computed out of order.
    pub fn item_key(seed: u64, index: u64) -> u64 {
        let mut mix = SplitMix64::new(seed ^ 0x6A09_E667_F3BC_C909);
        mix.next_u64() ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(Self::GAMMA);
        Self::mix(self.state)
    }

    /// The output function: a bijection of u64 that spreads every input bit over the output.
    pub fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(Self::MIX[0]);
        z = (z ^ (z >> 27)).wrapping_mul(Self::MIX[1]);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Uniform integer in [0, n); n > 0. Lemire's multiply-shift, bias below 2^-64 * n.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// The seed torch's generators get before step `step` of a rank whose stream seed is
/// `rank_seed`. Reseeding every step makes a rank's random state a function of (seed, step), so a
/// checkpoint between two steps captures it exactly, on CPU and CUDA alike. Non-negative, since
/// libtorch takes seeds as i64 in places.
pub fn step_seed(rank_seed: u64, step: u64) -> u64 {
    SplitMix64::for_item(rank_seed ^ 0x5354_4550, step).next_u64() >> 1 // "STEP"
}

/// A rank's stream seed after `rollbacks` rollbacks: `rank_seed` itself before the first, then a
/// fresh, reproducible stream per rollback, so training replayed from a checkpoint takes other
/// latents, noise and augmentations instead of retracing the steps that diverged.
pub fn rollback_seed(rank_seed: u64, rollbacks: u32) -> u64 {
    if rollbacks == 0 {
        return rank_seed;
    }
    // Stream "ROLL"; non-negative, as libtorch takes seeds as i64 in places.
    SplitMix64::for_item(rank_seed ^ 0x524F_4C4C, u64::from(rollbacks)).next_u64() >> 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|i| SplitMix64::for_item(7, i).next_u64()).collect();
        let b: Vec<u64> = (0..4).map(|i| SplitMix64::for_item(7, i).next_u64()).collect();
        let c: Vec<u64> = (0..4).map(|i| SplitMix64::for_item(8, i).next_u64()).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut unique = a.clone();
        unique.dedup();
        assert_eq!(unique.len(), 4);
    }

    #[test]
    fn below_and_shuffle_stay_in_range() {
        let mut rng = SplitMix64::new(1);
        let mut counts = [0u32; 5];
        for _ in 0..5000 {
            counts[rng.below(5) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
        let mut items: Vec<u32> = (0..100).collect();
        rng.shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(items, sorted);
    }
}
