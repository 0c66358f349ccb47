//! `gan-launch plan --memory`: one rank's memory, before any GPU is allocated. The trainer
//! counts and measures (`gan-train memory`, on the CPU); the estimate at the plan's batch, and
//! whether it fits the GPU (this node's, or `--gpu-memory-gib` for the cluster's when planning on
//! a login node), are worked out here. When it does not fit, the largest batch per round that
//! does is named, with the accumulation rounds that keep the global batch.
use std::path::Path;

use gan_core::config::memory::{self, MemoryMeasurement};
use gan_core::config::{self, RankPlan, RunConfig};
use gan_core::Error;

/// Where the fit is checked against.
pub struct Target {
    pub gpu_bytes: u64,
    /// e.g. "the 80.00 GiB of GPU 0 (nvidia-smi)".
    pub described: String,
}

impl Target {
    /// `--gpu-memory-gib`, else GPU 0 of this node when the plan puts ranks on GPUs.
    pub fn resolve(gib: Option<f64>, plan: &RankPlan) -> Option<Target> {
        if let Some(gib) = gib {
            let gpu_bytes = (gib * (1u64 << 30) as f64) as u64;
            return Some(Target { gpu_bytes, described: format!("a {gib} GiB GPU (--gpu-memory-gib)") });
        }
        if !plan.device.starts_with("cuda") {
            return None;
        }
        crate::bench::gpu_memory::gpu0_mib("memory.total").map(|mib| Target {
            gpu_bytes: mib << 20,
            described: format!("the {} of GPU 0 (nvidia-smi)", memory::format_bytes(mib << 20)),
        })
    }
}

/// Runs `gan-train memory` on the resolved config and reads its report.
pub fn measure(trainer: &Path, cfg: &RunConfig) -> anyhow::Result<MemoryMeasurement> {
    crate::supervise::trainer_report(trainer, "memory", cfg)
}

/// Prints the estimate for `plan`'s rank and the verdict against `target`; a config error on
/// `train.batch_per_rank` (exit 2) when it does not fit.
pub fn report(
    m: &MemoryMeasurement,
    cfg: &RunConfig,
    plan: &RankPlan,
    target: Option<&Target>,
) -> anyhow::Result<()> {
    let batch = plan.batch_per_rank;
    let estimate = memory::estimate(m, cfg, batch);
    let measured: Vec<String> =
        m.phases.first().map(|p| p.points.iter().map(|(b, _)| b.to_string()).collect()).unwrap_or_default();
    println!(
        "# memory per rank ({} images a round, {} round(s) a step; working memory measured in fp32 on the CPU at batches {})",
        batch,
        plan.accumulation,
        measured.join(", ")
    );
    print!("{}", memory::format_estimate(&estimate, batch));
    let Some(target) = target else {
        println!("# no GPU here to check the fit on: pass --gpu-memory-gib with the target GPU's memory");
        return Ok(());
    };
    let share = estimate.total_bytes as f64 / target.gpu_bytes as f64;
    let fill = memory::GPU_FILL * 100.0;
    if share <= memory::GPU_FILL {
        println!(
            "# fits {}: {:.0}% of it (plans keep within {fill:.0}%: the rest is for the CUDA context, library workspaces and allocator fragmentation)",
            target.described,
            share * 100.0
        );
        return Ok(());
    }
    let world = config::world_size(cfg);
    let advice = match memory::largest_fitting_batch(m, cfg, target.gpu_bytes) {
        Some(b) => format!(
            "set train.batch_per_rank={b}: {} rounds of {b} keep train.batch_size {}",
            cfg.train.batch_size / (world * b),
            cfg.train.batch_size
        ),
        None if !cfg.train.batch_size.is_multiple_of(world) => format!(
            "accumulating smaller rounds needs a train.batch_size that splits evenly over the {world} ranks \
             (a multiple of {world}), or use a larger GPU"
        ),
        None => "not even one image per round fits: use a larger GPU or a smaller model".into(),
    };
    let evaluation = match estimate.eval_bytes {
        0 => String::new(),
        bytes => format!(
            " ({} of it evaluation's, which eval.gen_batch and eval.batch lower)",
            memory::format_bytes(bytes)
        ),
    };
    let message = format!(
        "one rank needs about {}{evaluation} with {batch} images a round, but {fill:.0}% of {} is {}; {advice}",
        memory::format_bytes(estimate.total_bytes),
        target.described,
        memory::format_bytes((target.gpu_bytes as f64 * memory::GPU_FILL) as u64)
    );
    Err(Error::Config { key: "train.batch_per_rank".into(), message, origin: String::new() }.into())
}
