//! The memory one rank of a run needs, for `gan-launch plan --memory`: what `gan-train memory`
//! counts and measures (sizes of weights, gradients and optimizer moments; each phase's working
//! memory at small batches), its extrapolation to the rank's batch, and the largest batch per
//! rank that fits a GPU, gradient accumulation keeping the global batch.
use serde::{Deserialize, Serialize};

use super::plan::world_size;
use super::schema::RunConfig;

/// Share of a GPU's memory a plan may fill. The rest is left for what a CPU measurement cannot
/// see: the CUDA context, cuDNN/cuBLAS workspaces and the caching allocator's fragmentation.
pub const GPU_FILL: f64 = 0.8;

/// What `gan-train memory` reports (JSON on its stdout).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryMeasurement {
    /// G, G_ema and D: trainable parameters and bytes of every variable (buffers included).
    pub nets: Vec<NetSize>,
    /// The gradients of G's and D's parameters (kept between steps).
    pub gradient_bytes: u64,
    /// Adam's two moments for G and D.
    pub optimizer_bytes: u64,
    /// The largest flat bucket the gradient all-reduce copies into (only with 2 or more ranks).
    pub largest_bucket_bytes: u64,
    /// Weights the evaluator holds: Inception's, and a G_ema snapshot when it runs in the
    /// background. 0 when evaluation is off.
    pub eval_weight_bytes: u64,
    /// Working memory of each phase (and of evaluation, when on) at the measured batches.
    pub phases: Vec<PhasePeak>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetSize {
    pub name: String,
    pub params: u64,
    pub bytes: u64,
}

/// A phase's peak memory above the steady state, measured at a few batch sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhasePeak {
    pub name: String,
    /// (batch, bytes) pairs.
    pub points: Vec<(u32, u64)>,
    /// It runs beside training (background evaluation), so its memory adds to a phase's.
    pub concurrent: bool,
}

impl PhasePeak {
    /// Bytes at `batch`: the least-squares line through the measured points (activations grow
    /// linearly with the batch); a falling line (measurement noise) counts as flat.
    pub fn at(&self, batch: u32) -> u64 {
        let n = self.points.len() as f64;
        if self.points.is_empty() {
            return 0;
        }
        let mean_x = self.points.iter().map(|p| f64::from(p.0)).sum::<f64>() / n;
        let mean_y = self.points.iter().map(|p| p.1 as f64).sum::<f64>() / n;
        let var: f64 = self.points.iter().map(|p| (f64::from(p.0) - mean_x).powi(2)).sum();
        let cov: f64 = self.points.iter().map(|p| (f64::from(p.0) - mean_x) * (p.1 as f64 - mean_y)).sum();
        let slope = if var > 0.0 { (cov / var).max(0.0) } else { 0.0 };
        let line = mean_y + slope * (f64::from(batch) - mean_x);
        let largest_measured = self.points.iter().filter(|p| p.0 <= batch).map(|p| p.1).max().unwrap_or(0);
        (line.max(0.0) as u64).max(largest_measured)
    }
}

/// The memory of one rank at a batch, part by part.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryEstimate {
    /// What stays allocated all along: (what, bytes).
    pub resident: Vec<(String, u64)>,
    /// The phase with the most working memory (with background evaluation beside it).
    pub peak_phase: String,
    pub working_bytes: u64,
    /// The evaluator's share of `working_bytes` (0 when it is not part of the peak).
    pub eval_bytes: u64,
    pub total_bytes: u64,
}

/// One rank's memory with `batch_per_rank` images per round.
pub fn estimate(m: &MemoryMeasurement, cfg: &RunConfig, batch_per_rank: u32) -> MemoryEstimate {
    let mut resident: Vec<(String, u64)> = m
        .nets
        .iter()
        .map(|n| {
            let what = if n.name == "G_ema" {
                "G_ema weights".to_string()
            } else {
                format!("{} weights ({:.2} M params)", n.name, n.params as f64 / 1e6)
            };
            (what, n.bytes)
        })
        .collect();
    resident.push(("gradients (G, D)".into(), m.gradient_bytes));
    resident.push(("Adam moments (G, D)".into(), m.optimizer_bytes));
    if m.eval_weight_bytes > 0 {
        resident.push(("evaluation weights".into(), m.eval_weight_bytes));
    }
    let (mut peak_phase, mut working_bytes) = m
        .phases
        .iter()
        .filter(|p| !is_evaluation(&p.name))
        .map(|p| (p.name.clone(), p.at(batch_per_rank)))
        .max_by_key(|p| p.1)
        .unwrap_or_default();
    if world_size(cfg) > 1 && m.largest_bucket_bytes > working_bytes {
        (peak_phase, working_bytes) = ("gradient all-reduce".into(), m.largest_bucket_bytes);
    }
    let mut eval_share = 0;
    if let Some((eval_bytes, concurrent)) = evaluation(m, cfg) {
        if concurrent {
            peak_phase = format!("{peak_phase} + background evaluation");
            working_bytes += eval_bytes;
            eval_share = eval_bytes;
        } else if eval_bytes > working_bytes {
            (peak_phase, working_bytes, eval_share) = ("evaluation".into(), eval_bytes, eval_bytes);
        }
    }
    let total_bytes = resident.iter().map(|r| r.1).sum::<u64>() + working_bytes;
    MemoryEstimate { resident, peak_phase, working_bytes, eval_bytes: eval_share, total_bytes }
}

/// The names of the evaluation's entries in [`MemoryMeasurement::phases`]: G_ema generating
/// (`eval.gen_batch` images at a time) and the feature network (`eval.batch` at a time).
pub const EVAL_GENERATE: &str = "evaluation: G_ema";
pub const EVAL_FEATURES: &str = "evaluation: Inception";

fn is_evaluation(name: &str) -> bool {
    name == EVAL_GENERATE || name == EVAL_FEATURES
}

/// The evaluator's working memory and whether it runs beside training. It generates, then
/// extracts features, one after the other, so it needs the larger of the two.
fn evaluation(m: &MemoryMeasurement, cfg: &RunConfig) -> Option<(u64, bool)> {
    let parts: Vec<(u64, bool)> = m
        .phases
        .iter()
        .filter_map(|p| match p.name.as_str() {
            EVAL_GENERATE => Some((p.at(cfg.eval.gen_batch()), p.concurrent)),
            EVAL_FEATURES => Some((p.at(cfg.eval.batch), p.concurrent)),
            _ => None,
        })
        .collect();
    let bytes = parts.iter().map(|p| p.0).max()?;
    Some((bytes, parts.iter().any(|p| p.1)))
}

/// The largest batch per round that keeps a rank within [`GPU_FILL`] of `gpu_bytes`: a divisor
/// of the rank's share of `train.batch_size` (the rest becomes accumulation rounds) that the
/// config accepts. None when not even one image per round fits, or when the batch does not split
/// evenly over the ranks (and so cannot be accumulated in rounds).
pub fn largest_fitting_batch(m: &MemoryMeasurement, cfg: &RunConfig, gpu_bytes: u64) -> Option<u32> {
    if !cfg.train.batch_size.is_multiple_of(world_size(cfg)) {
        return None; // rounds of one size on every rank need even shares
    }
    let share = cfg.train.batch_size / world_size(cfg);
    let limit = gpu_bytes as f64 * GPU_FILL;
    (1..=share).rev().filter(|b| share.is_multiple_of(*b)).find(|&b| {
        let mut c = cfg.clone();
        c.train.batch_per_rank = Some(b);
        super::validate(&c).is_ok() && estimate(m, &c, b).total_bytes as f64 <= limit
    })
}

/// Bytes as MiB below 1 GiB, else GiB.
pub fn format_bytes(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let mib = bytes as f64 / MIB;
    if mib < 1024.0 {
        format!("{mib:.1} MiB")
    } else {
        format!("{:.2} GiB", mib / 1024.0)
    }
}

/// The estimate as the lines `gan-launch plan --memory` prints.
pub fn format_estimate(e: &MemoryEstimate, batch_per_rank: u32) -> String {
    let mut rows = e.resident.clone();
    rows.push((
        format!("working memory at batch {batch_per_rank}, peak in {}", e.peak_phase),
        e.working_bytes,
    ));
    if e.eval_bytes > 0 {
        rows.push(("  of which evaluation (eval.gen_batch, eval.batch)".into(), e.eval_bytes));
    }
    rows.push(("total".into(), e.total_bytes));
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    rows.iter().map(|(what, bytes)| format!("  {what:<width$}  {:>10}\n", format_bytes(*bytes))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn phase(name: &str, points: &[(u32, u64)], concurrent: bool) -> PhasePeak {
        PhasePeak { name: name.into(), points: points.to_vec(), concurrent }
    }

    /// G and D of 1 MiB each, D main growing by 10 MiB an image, R1 by 30 MiB.
    fn measured() -> MemoryMeasurement {
        let net = |name: &str| NetSize { name: name.into(), params: MIB / 4, bytes: MIB };
        MemoryMeasurement {
            nets: vec![net("G"), net("G_ema"), net("D")],
            gradient_bytes: 2 * MIB,
            optimizer_bytes: 4 * MIB,
            largest_bucket_bytes: 25 * MIB,
            eval_weight_bytes: 0,
            phases: vec![
                phase("D main", &[(1, 12 * MIB), (2, 22 * MIB)], false),
                phase("D reg", &[(1, 32 * MIB), (2, 62 * MIB)], false),
            ],
        }
    }

    /// A StyleGAN2 run of `batch_size` images a step, with minibatch-stddev groups of `group`.
    fn config_with(batch_size: u32, group: u32, extra: &str) -> RunConfig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        let text = format!(
            "data: {{ source: generated, resolution: 16 }}\n\
             model: {{ arch: stylegan2, mbstd_group_size: {group} }}\n\
             train: {{ batch_size: {batch_size}, total_kimg: 1, loss: ns_logistic, \
             g_opt: {{ lr: 0.002 }}, d_opt: {{ lr: 0.002 }} }}\n{extra}"
        );
        std::fs::write(&path, text).unwrap();
        super::super::load_with_env(&path, &[], Vec::new()).unwrap()
    }

    fn config(extra: &str) -> RunConfig {
        config_with(32, 4, extra)
    }

    #[test]
    fn a_phase_grows_along_the_line_through_its_points() {
        let p = phase("D main", &[(1, 12 * MIB), (2, 22 * MIB)], false);
        assert_eq!(p.at(8), 82 * MIB);
        assert_eq!(p.at(2), 22 * MIB);
        let noisy = phase("G main", &[(1, 12 * MIB), (2, 12 * MIB), (4, 11 * MIB)], false);
        assert_eq!(noisy.at(64), 12 * MIB, "a falling line is flat at the largest measured");
        let three = phase("G reg", &[(1, 10 * MIB), (2, 21 * MIB), (4, 40 * MIB)], false);
        let at_8 = three.at(8) as f64 / MIB as f64;
        assert!((at_8 - 79.93).abs() < 0.01, "least squares: {at_8}");
    }

    #[test]
    fn the_estimate_adds_what_stays_to_the_largest_phase() {
        let m = measured();
        let e = estimate(&m, &config(""), 8);
        assert_eq!(e.resident.len(), 5);
        assert_eq!(e.resident[0].0, "G weights (0.26 M params)");
        assert_eq!((e.peak_phase.as_str(), e.working_bytes), ("D reg", 242 * MIB));
        assert_eq!(e.total_bytes, (3 + 2 + 4 + 242) * MIB);
        // Several ranks: the all-reduce's flat bucket, when it is the larger.
        let e = estimate(&m, &config("dist: { gpus: 2 }"), 1);
        assert_eq!((e.peak_phase.as_str(), e.working_bytes), ("D reg", 32 * MIB), "R1's 32 MiB > 25");
        let mut small = m.clone();
        small.largest_bucket_bytes = 40 * MIB;
        let e = estimate(&small, &config("dist: { gpus: 2 }"), 1);
        assert_eq!((e.peak_phase.as_str(), e.working_bytes), ("gradient all-reduce", 40 * MIB));
        let text = format_estimate(&estimate(&m, &config(""), 8), 8);
        assert!(
            text.contains("working memory at batch 8, peak in D reg") && text.contains("242.0 MiB"),
            "{text}"
        );
        assert!(text.lines().last().unwrap().trim_start().starts_with("total"), "{text}");
    }

    #[test]
    fn background_evaluation_adds_to_training_and_inline_evaluation_does_not() {
        let mut m = measured();
        m.eval_weight_bytes = 3 * MIB;
        // G_ema grows by 20 MiB an image, Inception by 4 MiB.
        m.phases.push(phase(EVAL_GENERATE, &[(1, 20 * MIB), (2, 40 * MIB)], true));
        m.phases.push(phase(EVAL_FEATURES, &[(1, 5 * MIB), (2, 9 * MIB)], true));
        let cfg = config("eval: { every_kimg: 10, batch: 16, gen_batch: 2 }");
        let e = estimate(&m, &cfg, 8);
        assert_eq!(e.peak_phase, "D reg + background evaluation");
        assert_eq!(e.working_bytes, (242 + 65) * MIB, "Inception's 65 MiB at 16 beats G_ema's 40 at 2");
        assert_eq!(e.eval_bytes, 65 * MIB);
        let text = format_estimate(&e, 8);
        let row =
            text.lines().find(|l| l.starts_with("    of which evaluation (eval.gen_batch, eval.batch) "));
        assert!(row.is_some_and(|r| r.ends_with(" 65.0 MiB")), "{text}");
        assert_eq!(e.resident.last().unwrap(), &("evaluation weights".to_string(), 3 * MIB));
        let whole = config("eval: { every_kimg: 10, batch: 16 }");
        assert_eq!(estimate(&m, &whole, 8).eval_bytes, 320 * MIB, "16 images at once: G_ema's 320 MiB");
        for p in m.phases.iter_mut() {
            p.concurrent = false;
        }
        let e = estimate(&m, &cfg, 8);
        assert_eq!((e.working_bytes, e.eval_bytes), (242 * MIB, 0), "inline: one or the other");
        assert_eq!(estimate(&m, &cfg, 1).peak_phase, "evaluation", "65 MiB beats R1's 32");
    }

    #[test]
    fn the_largest_batch_that_fits_keeps_the_global_batch_through_accumulation() {
        let m = measured();
        let cfg = config("");
        // 9 MiB stay; R1 needs 2 + 30 MiB an image. 32 images: 971 MiB.
        let gpu = |mib: u64| (mib as f64 * MIB as f64 / GPU_FILL) as u64;
        assert_eq!(largest_fitting_batch(&m, &cfg, gpu(971)), Some(32));
        assert_eq!(largest_fitting_batch(&m, &cfg, gpu(970)), Some(16), "divisors of 32 only");
        assert_eq!(largest_fitting_batch(&m, &cfg, gpu(100)), Some(2));
        assert_eq!(largest_fitting_batch(&m, &cfg, gpu(40)), None);
        // 24 images a step in minibatch-stddev groups of 8: 12 per round is no valid plan (groups
        // of 8 do not tile 12), so 8 it is.
        let cfg = config_with(24, 8, "");
        assert_eq!(largest_fitting_batch(&m, &cfg, gpu(400)), Some(8), "12 would need 393 MiB");
        assert_eq!(format_bytes(1536 * MIB), "1.50 GiB");
    }
}
