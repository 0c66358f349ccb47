//! `gan-launch bench train`: training throughput of real recipes on this machine's CPU (or one
//! GPU with `--device cuda`), one rank at a fixed thread count and batch, with the step time split
//! into D, G and regularisation, and on a GPU the peak memory the rank held (nvidia-smi, sampled).
//! Each recipe runs through the normal launcher and trainer on generated images at the recipe's
//! resolution and class count (at most 8, the generated shapes'; pixels do not change the
//! arithmetic), one step per tick. A lazy regulariser's step time divided by its interval is its
//! amortised cost: from its steps after step 0 when the run has any, else from step 0, which runs
//! every regulariser once but also warms up. The steps after step 0 give the D and G phase times
//! (regulariser steps among them left out).
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Recipes to measure (default: configs/biggan-cifar.yaml and configs/stylegan2-cifar.yaml).
    configs: Vec<PathBuf>,
    /// Global batch (one rank, no accumulation).
    #[arg(long, default_value_t = 32)]
    batch: u32,
    /// CPU threads of the rank.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Measured steps after step 0 (rounded up to a multiple of the recipe's d_steps, so G's
    /// share is that of whole D/G cycles).
    #[arg(long, default_value_t = 4)]
    steps: u32,
    /// Device of the rank: cpu or cuda (the first GPU).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    device: String,
    /// Forward arithmetic: fp32 or bf16 (autocast; CUDA only, a CPU run warns and uses fp32).
    #[arg(long, default_value = "fp32", value_parser = ["fp32", "bf16"])]
    precision: String,
    /// Also print `plan --memory`'s estimate of the rank's memory (measured on the CPU), next to
    /// the peak a GPU run held: the check of the estimate.
    #[arg(long)]
    estimate_memory: bool,
    /// ADA's augmentation probability for recipes that use ADA. Runs start at p = 0, where the
    /// pipe is skipped; this measures what it costs at p (1: every transform on every image).
    #[arg(long, default_value_t = 0.0)]
    ada_p: f64,
}

pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let configs = if args.configs.is_empty() {
        vec![PathBuf::from("configs/biggan-cifar.yaml"), PathBuf::from("configs/stylegan2-cifar.yaml")]
    } else {
        args.configs.clone()
    };
    let on = if args.device == "cpu" { format!("CPU, {} threads", args.threads) } else { "GPU 0".into() };
    println!(
        "training throughput on {on}: 1 rank, {}, batch {}, mean of {} steps (whole D/G cycles) after step 0",
        args.precision, args.batch, args.steps
    );
    println!(
        "{:<28} {:>8} {:>9} {:>10} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9} {:>9} {:>6}",
        "recipe",
        "imgs/s",
        "sec/kimg",
        "step (s)",
        "D %",
        "G %",
        "reg %",
        "data %",
        "other %",
        "peak MiB",
        "est. MiB",
        "ADA p"
    );
    let scratch_root = super::scratch_dir()?;
    for config in &configs {
        let scratch = scratch_root.path().join(config.file_stem().unwrap_or_default());
        let cfg = gan_core::config::load(config, &[])?;
        let sets = bench_sets(&cfg, &scratch, args);
        let estimate_mib = if args.estimate_memory { Some(estimate_mib(config, &sets)?) } else { None };
        let (ticks, peak_mib) = measure(config, &cfg, (&scratch, &sets), args)?;
        let _ = std::fs::remove_dir_all(&scratch);
        let split = Split::from_ticks(&ticks, &cfg.train);
        let step = split.step_secs();
        let pct = |secs: f64| 100.0 * secs / step;
        let imgs_per_sec = f64::from(args.batch) / step;
        // The p the measured steps ran at, from their statistics (recipes without ADA have none).
        let ada_p = ticks.last().and_then(|t| t["stats"]["Augment/p"].as_f64());
        println!(
            "{:<28} {:>8.2} {:>9.2} {:>10.3} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>9} {:>9} {:>6}",
            config.display(),
            imgs_per_sec,
            1000.0 / imgs_per_sec,
            step,
            pct(split.d),
            pct(split.g),
            pct(split.reg),
            pct(split.data),
            pct(split.other),
            peak_mib.map_or("-".into(), |m| m.to_string()),
            estimate_mib.map_or("-".into(), |m| m.to_string()),
            ada_p.map_or("-".into(), |p| format!("{p:.3}"))
        );
    }
    println!(
        "D: D's main phase; G: G's main phase (after every d_steps-th D step); reg: lazy R1 and path length \
         amortised over their intervals; data: waiting for the loader's batch; other: host-to-device copies, \
         bookkeeping; peak: what nvidia-smi saw the rank hold (CUDA context included); est.: plan --memory's \
         estimate (--estimate-memory), before the CUDA context and allocator slack; ADA p: the augmentation \
         probability the steps ran at (--ada-p; recipes with train.augment: ada)"
    );
    Ok(())
}

/// `plan --memory`'s estimate of the benchmark rank's memory, in MiB.
fn estimate_mib(config: &Path, sets: &[String]) -> anyhow::Result<u64> {
    let sets: Vec<gan_core::config::SetOverride> =
        sets.iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    let cfg = gan_core::config::load(config, &sets)?;
    let trainer = crate::supervise::trainer_path(None)?;
    let measured = crate::memory::measure(&trainer, &cfg)?;
    let batch = gan_core::config::batch_per_rank(&cfg);
    Ok(gan_core::config::memory::estimate(&measured, &cfg, batch).total_bytes >> 20)
}

/// Mean seconds per step by part.
struct Split {
    d: f64,
    g: f64,
    reg: f64,
    /// Waiting for the loader (0 when it keeps ahead).
    data: f64,
    other: f64,
}

impl Split {
    fn from_ticks(ticks: &[Value], t: &gan_core::config::TrainSection) -> Self {
        let stat = |tick: &Value, key: &str| tick["stats"][key].as_f64().unwrap_or(0.0);
        // A regulariser costs one of its steps over its interval, per step. Step 0 ran each once,
        // but also warmed up (cuDNN's autotuning, lazily built kernels): its later steps, when
        // the run reaches one, are the steady cost.
        let reg_step = |key: &str| {
            let later: Vec<f64> =
                ticks[1..].iter().map(|tick| stat(tick, key)).filter(|&s| s > 0.0).collect();
            match later.len() {
                0 => stat(&ticks[0], key),
                n => later.iter().sum::<f64>() / n as f64,
            }
        };
        let reg = reg_step("Timing/phase_Dreg_secs") / f64::from(t.r1_interval)
            + reg_step("Timing/phase_Greg_secs") / f64::from(t.pl_interval);
        let measured: Vec<&Value> = ticks[1..]
            .iter()
            .filter(|tick| stat(tick, "Timing/phase_Dreg_secs") + stat(tick, "Timing/phase_Greg_secs") == 0.0)
            .collect();
        let mean = |key: &str| {
            measured.iter().map(|tick| stat(tick, key)).sum::<f64>() / measured.len().max(1) as f64
        };
        let (d, g) = (mean("Timing/phase_D_secs"), mean("Timing/phase_G_secs"));
        let data = mean("Timing/data_secs");
        let other = (mean("Timing/step_secs") - d - g - data).max(0.0);
        Split { d, g, reg, data, other }
    }

    fn step_secs(&self) -> f64 {
        (self.d + self.g + self.reg + self.data + self.other).max(1e-12)
    }
}

/// Steps after step 0, rounded up to whole D/G cycles.
fn measured_steps(cfg: &gan_core::config::RunConfig, args: &TrainArgs) -> u32 {
    args.steps.max(1).div_ceil(cfg.train.d_steps) * cfg.train.d_steps
}

/// The recipe as the benchmark runs it: one rank on generated images, `args.batch` a step, one
/// step per tick, nothing written or evaluated.
fn bench_sets(cfg: &gan_core::config::RunConfig, scratch: &Path, args: &TrainArgs) -> Vec<String> {
    let tick_kimg = f64::from(args.batch) / 1000.0;
    let steps = measured_steps(cfg, args);
    let classes = cfg.data.num_classes.min(gan_core::data::generated::MAX_CLASSES);
    vec![
        format!("run.dir={}", scratch.display()),
        "run.name=bench".into(),
        "data.source=generated".into(),
        "data.num_images=4096".into(),
        format!("data.num_classes={classes}"),
        format!("train.device={}", args.device),
        format!("train.precision={}", args.precision),
        format!("train.threads={}", args.threads),
        format!("train.batch_size={}", args.batch),
        format!("train.batch_per_rank={}", args.batch),
        format!("train.kimg_per_tick={tick_kimg}"),
        format!("train.total_kimg={}", f64::from(1 + steps) * tick_kimg),
        "train.sample_ticks=0".into(),
        "checkpoint.every_ticks=0".into(),
        "eval.every_kimg=0".into(),
        "metrics.enabled=false".into(),
        "log.progress=false".into(),
        // A full-size model on a CPU can take minutes per step; that is not a hang here.
        "dist.heartbeat_timeout_secs=3600".into(),
        // p moves by batch x interval / (ada_kimg x 1000) every interval steps: a huge ada_kimg
        // holds it where --ada-p puts it. (Ignored by recipes without ADA.)
        format!("train.ada_p_init={}", args.ada_p),
        "train.ada_kimg=1e12".into(),
    ]
}

/// Trains `config` for 1 + steps one-step ticks and returns every tick's stats line, and on a
/// GPU the peak memory nvidia-smi saw in use by the job's processes.
fn measure(
    config: &Path,
    cfg: &gan_core::config::RunConfig,
    (scratch, sets): (&Path, &[String]),
    args: &TrainArgs,
) -> anyhow::Result<(Vec<Value>, Option<u64>)> {
    let steps = measured_steps(cfg, args);
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg(config).args(["--gpus", "1", "--master-port", "0"]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    let sampler = (args.device == "cuda").then(super::gpu_memory::PeakSampler::start);
    let out = cmd.output().with_context(|| format!("running {}", config.display()))?;
    let peak_mib = sampler.and_then(super::gpu_memory::PeakSampler::finish);
    if !out.status.success() {
        bail!("{} failed: {}", config.display(), String::from_utf8_lossy(&out.stderr));
    }
    let stats = scratch.join("bench/stats.jsonl");
    let text = std::fs::read_to_string(&stats).with_context(|| format!("reading {}", stats.display()))?;
    let ticks: Vec<Value> = text.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    if ticks.len() < 2 {
        bail!("{}: {} ticks recorded, expected {}", stats.display(), ticks.len(), 1 + steps);
    }
    Ok((ticks, peak_mib))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(d: f64, g: f64, d_reg: f64, step: f64) -> Value {
        serde_json::json!({"stats": {
            "Timing/phase_D_secs": d, "Timing/phase_G_secs": g, "Timing/phase_Dreg_secs": d_reg,
            "Timing/data_secs": 0.0, "Timing/step_secs": step,
        }})
    }

    /// The regulariser's steady cost comes from its steps after the warm-up step 0 when there
    /// are any, and D and G from the steps without a regulariser.
    #[test]
    fn regularisers_cost_their_steady_step_over_their_interval() {
        let t: gan_core::config::TrainSection = serde_norway::from_str(
            "batch_size: 8\ntotal_kimg: 1\nloss: ns_logistic\ng_opt: {lr: 0.002}\nd_opt: {lr: 0.002}\nr1_interval: 4\n",
        )
        .unwrap();
        let warm_up = tick(9.0, 9.0, 5.0, 23.0);
        let steady = [tick(1.0, 2.0, 0.0, 3.5), tick(1.0, 2.0, 0.8, 4.3), tick(1.0, 2.0, 0.0, 3.5)];
        let split = Split::from_ticks(&[&[warm_up.clone()][..], &steady].concat(), &t);
        assert_eq!((split.d, split.g, split.reg), (1.0, 2.0, 0.8 / 4.0));
        assert!((split.other - 0.5).abs() < 1e-12);
        // A run too short to reach a second regulariser step falls back on step 0's.
        let split = Split::from_ticks(&[warm_up, tick(1.0, 2.0, 0.0, 3.5)], &t);
        assert_eq!(split.reg, 5.0 / 4.0);
    }
}
