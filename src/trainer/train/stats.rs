//! Training statistics, cheap in the hot path: `report` adds a detached scalar tensor to a
//! running sum on the device (no host sync); once per tick the sums and counts of every rank are
//! all-reduced in float64 and turned into means. Names are hierarchical (`Loss/D`, `D/real`).
use std::collections::BTreeMap;

use tch::{Kind, Tensor};

use gan_core::comm::{ProcessGroup, ReduceOp};
use gan_core::error::Result;

#[derive(Default)]
pub struct TickStats {
    sums: BTreeMap<String, (Tensor, u64)>,
    /// Host-side observations (timings), kept apart so they never touch the device.
    host_sums: BTreeMap<String, (f64, u64)>,
}

impl TickStats {
    /// Adds one observation (a scalar tensor) of `name`.
    pub fn report(&mut self, name: &str, value: &Tensor) {
        let value = value.detach().to_kind(Kind::Double);
        match self.sums.get_mut(name) {
            Some((sum, count)) => {
                *sum += value;
                *count += 1;
            }
            None => {
                self.sums.insert(name.to_string(), (value, 1));
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
            buffer.extend([sum.double_value(&[]), *count as f64]);
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
}
