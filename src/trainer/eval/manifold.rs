//! Metrics that compare the two sets of pool3 features sample by sample instead of through their
//! moments, so they tell fidelity from diversity: a collapsed G keeps a fair FID for a while but
//! its recall and coverage fall.
//!
//! Every sample of a set spans a ball whose radius is the distance to its k-th nearest neighbour
//! in its own set (the (k+1)-th smallest distance, since its own is 0), as in StyleGAN2-ADA's
//! `precision_recall.py` (SPECS.md 2.3) and Naeem et al. 2020's `prdc`:
//! - precision: the share of fakes inside at least one real ball; recall: the share of reals
//!   inside at least one fake ball (k = 3, as `pr50k3`);
//! - density: the real balls around each fake, counted, averaged and divided by k; coverage: the
//!   share of real balls that hold at least one fake (k = 5, the paper's choice).
//!
//! A point on a ball's surface counts as inside (`<=`, as StyleGAN2-ADA; `prdc` uses `<`, which
//! differs only on exact ties). Distances are computed in blocks of rows on the features' device.
use tch::{Device, Kind, Tensor};

pub use gan_core::config::{DC_K, PR_K};
use gan_core::error::{Error, Result};

/// Distance entries held at once (256 MiB in float32): bounds the memory of a block of rows
/// against a whole set (10,000 x 50,000 would take 2 GB).
const BLOCK_ENTRIES: i64 = 1 << 26;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrecisionRecall {
    pub precision: f64,
    pub recall: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DensityCoverage {
    pub density: f64,
    pub coverage: f64,
}

/// Improved precision and recall of `fake` against `real` (features [N, d], on any device; the
/// computation runs there in the features' kind).
pub fn precision_recall(real: &Tensor, fake: &Tensor, k: i64) -> Result<PrecisionRecall> {
    check_sizes(real, fake, k)?;
    Ok(precision_recall_in_blocks(real, fake, k, BLOCK_ENTRIES))
}

/// Density and coverage of `fake` against `real`.
pub fn density_coverage(real: &Tensor, fake: &Tensor, k: i64) -> Result<DensityCoverage> {
    check_sizes(real, fake, k)?;
    Ok(density_coverage_in_blocks(real, fake, k, BLOCK_ENTRIES))
}

/// The wanted nearest-neighbour metrics between `real` and `fake`, computed on `device`, by
/// name: `precision` and `recall` (`pr`), `density` and `coverage` (`dc`).
pub fn scores(
    real: &Tensor,
    fake: &Tensor,
    device: Device,
    (pr, dc): (bool, bool),
) -> Result<Vec<(&'static str, f64)>> {
    let (real, fake) = (real.to_device(device), fake.to_device(device));
    let mut out = Vec::new();
    if pr {
        let pr = precision_recall(&real, &fake, PR_K)?;
        out.extend([("precision", pr.precision), ("recall", pr.recall)]);
    }
    if dc {
        let dc = density_coverage(&real, &fake, DC_K)?;
        out.extend([("density", dc.density), ("coverage", dc.coverage)]);
    }
    Ok(out)
}

fn precision_recall_in_blocks(real: &Tensor, fake: &Tensor, k: i64, entries: i64) -> PrecisionRecall {
    let real_radii = radii(real, k, entries);
    let fake_radii = radii(fake, k, entries);
    let in_real = balls_around(real, &real_radii, fake, entries);
    let in_fake = balls_around(fake, &fake_radii, real, entries);
    PrecisionRecall { precision: share(&in_real.per_probe.gt(0)), recall: share(&in_fake.per_probe.gt(0)) }
}

fn density_coverage_in_blocks(real: &Tensor, fake: &Tensor, k: i64, entries: i64) -> DensityCoverage {
    let real_radii = radii(real, k, entries);
    let in_real = balls_around(real, &real_radii, fake, entries);
    let density = in_real.per_probe.to_kind(Kind::Double).mean(Kind::Double).double_value(&[]) / k as f64;
    DensityCoverage { density, coverage: share(&in_real.per_ball) }
}

/// Each set needs more than k samples for a k-th neighbour besides the sample itself.
fn check_sizes(real: &Tensor, fake: &Tensor, k: i64) -> Result<()> {
    for (name, set) in [("real", real), ("generated", fake)] {
        let n = set.size()[0];
        if n <= k {
            let why = format!("more than k = {k} (each needs a k-th nearest neighbour besides itself)");
            return Err(Error::config(format!("number of {name} images"), n, why));
        }
    }
    Ok(())
}

/// Rows per block when each row meets `cols` others.
fn block_rows(cols: i64, entries: i64) -> i64 {
    (entries / cols.max(1)).max(1)
}

/// Distance from each sample of `set` to its k-th nearest other sample.
fn radii(set: &Tensor, k: i64, entries: i64) -> Tensor {
    let n = set.size()[0];
    let parts: Vec<Tensor> = set
        .split(block_rows(n, entries), 0)
        .iter()
        .map(|rows| Tensor::cdist(rows, set, 2.0, None::<i64>).kthvalue(k + 1, 1, false).0)
        .collect();
    Tensor::cat(&parts, 0)
}

/// How `probes` fall into the balls of `manifold` (centres and radii).
struct Membership {
    /// For each probe, how many balls contain it.
    per_probe: Tensor,
    /// For each ball, whether it contains any probe.
    per_ball: Tensor,
}

fn balls_around(manifold: &Tensor, radii: &Tensor, probes: &Tensor, entries: i64) -> Membership {
    let m = manifold.size()[0];
    let mut counts = Vec::new();
    let mut per_ball = Tensor::zeros([m], (Kind::Bool, manifold.device()));
    for rows in probes.split(block_rows(m, entries), 0) {
        let inside = Tensor::cdist(&rows, manifold, 2.0, None::<i64>).le_tensor(&radii.unsqueeze(0));
        counts.push(inside.sum_dim_intlist([1].as_slice(), false, Kind::Int64));
        per_ball = per_ball.logical_or(&inside.any_dim(0, false));
    }
    Membership { per_probe: Tensor::cat(&counts, 0), per_ball }
}

/// The share of true entries of a boolean vector.
fn share(flags: &Tensor) -> f64 {
    flags.to_device(Device::Cpu).to_kind(Kind::Double).mean(Kind::Double).double_value(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> (Kind, Device) {
        (Kind::Double, Device::Cpu)
    }

    /// Precision and recall by their definitions, with every distance computed on its own.
    fn brute_force(real: &Tensor, fake: &Tensor, k: usize) -> (f64, f64) {
        let rows = |t: &Tensor| Vec::<Vec<f64>>::try_from(t).unwrap();
        let (real, fake) = (rows(real), rows(fake));
        let dist = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
        let radii = |set: &[Vec<f64>]| -> Vec<f64> {
            set.iter()
                .map(|x| {
                    let mut d: Vec<f64> = set.iter().map(|y| dist(x, y)).collect();
                    d.sort_by(f64::total_cmp);
                    d[k]
                })
                .collect()
        };
        let covered = |probes: &[Vec<f64>], set: &[Vec<f64>], r: &[f64]| {
            probes.iter().filter(|p| set.iter().zip(r).any(|(c, r)| dist(p, c) <= *r)).count() as f64
                / probes.len() as f64
        };
        let (r_real, r_fake) = (radii(&real), radii(&fake));
        (covered(&fake, &real, &r_real), covered(&real, &fake, &r_fake))
    }

    #[test]
    fn precision_recall_follow_their_definition_in_any_block_size() {
        let _torch = crate::train::tests_lock();
        tch::manual_seed(11);
        let real = Tensor::randn([120, 6], opts());
        let fake = Tensor::randn([90, 6], opts()) * 1.3 + 0.8;
        let (precision, recall) = brute_force(&real, &fake, 3);
        let whole = precision_recall(&real, &fake, 3).unwrap();
        assert_eq!((whole.precision, whole.recall), (precision, recall));
        // Blocks of a few rows (and of one) give the same answer.
        for entries in [1, 500] {
            assert_eq!(precision_recall_in_blocks(&real, &fake, 3, entries), whole);
            assert_eq!(
                density_coverage_in_blocks(&real, &fake, 5, entries),
                density_coverage(&real, &fake, 5).unwrap()
            );
        }
        assert!(precision > 0.2 && precision < 1.0 && recall > 0.2 && recall < 1.0, "{whole:?}");
    }

    /// A G that produces a few points near some of the reals: what it makes looks real (high
    /// precision and density), but it covers little of the real set (low recall and coverage).
    #[test]
    fn a_collapsed_set_keeps_precision_and_loses_recall_and_coverage() {
        let _torch = crate::train::tests_lock();
        tch::manual_seed(12);
        let real = Tensor::randn([400, 8], opts());
        let diverse = precision_recall(&real, &Tensor::randn([400, 8], opts()), PR_K).unwrap();
        let modes = real.narrow(0, 0, 4).repeat([100, 1]) + Tensor::randn([400, 8], opts()) * 0.01;
        let collapsed = precision_recall(&real, &modes, PR_K).unwrap();
        let dc = density_coverage(&real, &modes, DC_K).unwrap();
        assert!(diverse.recall > 0.6 && diverse.precision > 0.6, "{diverse:?}");
        assert!(collapsed.precision > 0.95, "{collapsed:?}");
        assert!(collapsed.recall < 0.05, "{collapsed:?}");
        let diverse_dc = density_coverage(&real, &Tensor::randn([400, 8], opts()), DC_K).unwrap();
        assert!(dc.coverage < 0.15 && diverse_dc.coverage > 0.6, "{dc:?} vs {diverse_dc:?}");
        assert!(dc.density > 0.2, "each fake lies at least in its real's ball: {dc:?}");
        // A set scored against itself: every sample is inside its own ball.
        let itself = precision_recall(&real, &real, PR_K).unwrap();
        assert_eq!((itself.precision, itself.recall), (1.0, 1.0));
        assert_eq!(density_coverage(&real, &real, DC_K).unwrap().coverage, 1.0);
        // Too few samples for a k-th neighbour: an error that says so.
        let err = precision_recall(&real, &real.narrow(0, 0, 3), PR_K).unwrap_err().to_string();
        assert!(err.contains("number of generated images") && err.contains("more than k = 3"), "{err}");
    }
}
