//! Training statistics, cheap in the hot path: `report` adds a detached scalar tensor to a
//! running sum on the device (no host sync); once per tick the sums and counts of every rank are
//! all-reduced in float64 and turned into means. Names are hierarchical (`Loss/D`, `D/real`).
use std::collections::BTreeMap;

use tch::{Kind, Tensor};

use gan_core::comm::{ProcessGroup, ReduceOp};
use gan_core::error::Result;

pub struct TickStats {
    /// Weighted sums and weights of the device observations.
    sums: BTreeMap<String, (Tensor, f64)>,
    /// Host-side observations (timings), kept apart so they never touch the device.
    host_sums: BTreeMap<String, (f64, u64)>,
    /// This rank's weight in the means over ranks: its share of the step's images relative to an
    /// even share (1 when the batch splits evenly), so a loss averaged over a rank's images
    /// counts as many times as it has images.
    weight: f64,
}

impl Default for TickStats {
    fn default() -> Self {
        TickStats::weighted(1.0)
    }
}

impl TickStats {
    /// Statistics of a rank whose device observations weigh `weight` in the means over ranks.
    pub fn weighted(weight: f64) -> Self {
        TickStats { sums: BTreeMap::new(), host_sums: BTreeMap::new(), weight }
    }

    /// Adds one observation (a scalar tensor) of `name`, a mean over this rank's images.
    pub fn report(&mut self, name: &str, value: &Tensor) {
        let value = value.detach().to_kind(Kind::Double);
        let value = if self.weight == 1.0 { value } else { value * self.weight };
        match self.sums.get_mut(name) {
            Some((sum, count)) => {
                *sum += value;
                *count += self.weight;
            }
            None => {
                self.sums.insert(name.to_string(), (value, self.weight));
            }
        }
    }

    /// Adds one host-side observation of `name` (e.g. a duration in seconds).
    pub fn report_host(&mut self, name: &str, value: f64) {
        // Called every step: allocate the key only the first time a name appears in a tick.
        match self.host_sums.get_mut(name) {
            Some(entry) => *entry = (entry.0 + value, entry.1 + 1),
            None => {
                self.host_sums.insert(name.to_string(), (value, 1));
            }
        }
    }

    /// Means over every rank's observations since the last call, then starts a new tick. Every
    /// rank must report the same names (they run the same phases), so the reduced vectors line up.
    pub fn reduce(&mut self, pg: &mut dyn ProcessGroup) -> Result<BTreeMap<String, f64>> {
        let mut names: Vec<String> = Vec::with_capacity(self.sums.len() + self.host_sums.len());
        let mut buffer: Vec<f64> = Vec::with_capacity(names.capacity() * 2);
        for (name, (sum, count)) in &self.sums {
            names.push(name.clone());
            buffer.extend([sum.double_value(&[]), *count]);
        }
        for (name, (sum, count)) in &self.host_sums {
            names.push(name.clone());
            buffer.extend([*sum, *count as f64]);
        }
        pg.all_reduce_f64(&mut buffer, ReduceOp::Sum)?;
        self.sums.clear();
        self.host_sums.clear();
        Ok(names
            .into_iter()
            .zip(buffer.chunks_exact(2))
            .map(|(name, sc)| (name, sc[0] / sc[1].max(1.0)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gan_core::comm::SingleRank;

    #[test]
    fn means_per_tick() {
        let mut stats = TickStats::default();
        stats.report("Loss/D", &Tensor::from(1.0f32));
        stats.report("Loss/D", &Tensor::from(2.0f32));
        stats.report("Loss/G", &Tensor::from(-4.0f32));
        let means = stats.reduce(&mut SingleRank).unwrap();
        assert_eq!(means["Loss/D"], 1.5);
        assert_eq!(means["Loss/G"], -4.0);
        assert!(stats.reduce(&mut SingleRank).unwrap().is_empty(), "a new tick starts empty");
    }

    /// A rank of 11 images and one of 10 (weights 33/32 and 30/32 of a batch of 32 on 3 ranks, as
    /// one rank of each): the mean weighs each rank's mean by its images.
    #[test]
    fn ranks_with_more_images_weigh_more() {
        let (mut big, mut small) = (TickStats::weighted(33.0 / 32.0), TickStats::weighted(30.0 / 32.0));
        big.report("Loss/D", &Tensor::from(1.0f64));
        small.report("Loss/D", &Tensor::from(2.0f64));
        // Sum the two ranks' buffers by hand, as the all-reduce does (SingleRank reduces one rank).
        let ((b_sum, b_count), (s_sum, s_count)) = (&big.sums["Loss/D"], &small.sums["Loss/D"]);
        let mean = (b_sum.double_value(&[]) + s_sum.double_value(&[])) / (b_count + s_count);
        assert!((mean - (11.0 * 1.0 + 10.0 * 2.0) / 21.0).abs() < 1e-12, "{mean}");
    }
}
