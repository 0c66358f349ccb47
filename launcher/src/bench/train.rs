//! `gan-launch bench train`: training throughput of real recipes on this machine's CPU, one rank
//! at a fixed thread count and batch, with the step time split into D, G and regularisation
//! phases. Each recipe runs through the normal launcher and trainer on generated images at the
//! recipe's resolution and class count (pixels do not change the arithmetic), for a warm-up tick
//! and a measured tick of the same length; the figures are the measured tick's.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::Args;

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
    /// Steps per tick: one warm-up tick, then one measured tick.
    #[arg(long, default_value_t = 8)]
    steps: u32,
}

pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let configs = if args.configs.is_empty() {
        vec![PathBuf::from("configs/biggan-cifar.yaml"), PathBuf::from("configs/stylegan2-cifar.yaml")]
    } else {
        args.configs.clone()
    };
    println!(
        "training throughput on CPU: 1 rank, {} threads, batch {}, {} measured steps after {} warm-up steps",
        args.threads, args.batch, args.steps, args.steps
    );
    println!("{:<28} {:>8} {:>10} {:>8} {:>8} {:>8}", "recipe", "imgs/s", "step (s)", "D %", "G %", "reg %");
    for config in &configs {
        let scratch = super::tempfile_dir()?.join(config.file_stem().unwrap_or_default());
        let line = measure(config, &scratch, args)?;
        let _ = std::fs::remove_dir_all(&scratch);
        let stat = |key: &str| line["stats"][key].as_f64().unwrap_or(0.0);
        let step = stat("Timing/step_secs");
        let share = |key: &str| 100.0 * stat(key) / step.max(1e-12);
        println!(
            "{:<28} {:>8.2} {:>10.3} {:>8.1} {:>8.1} {:>8.1}",
            config.display(),
            line["imgs_per_sec"].as_f64().unwrap_or(0.0),
            step,
            share("Timing/phase_D_secs"),
            share("Timing/phase_G_secs"),
            share("Timing/phase_reg_secs"),
        );
    }
    println!("(D: D's main phase per step; G: G's main phase; reg: lazy R1 and path length; the rest is data and bookkeeping)");
    Ok(())
}

/// Trains `config` for two ticks and returns the last line of its stats.jsonl.
fn measure(config: &Path, scratch: &Path, args: &TrainArgs) -> anyhow::Result<serde_json::Value> {
    let tick_kimg = f64::from(args.steps * args.batch) / 1000.0;
    let sets = [
        format!("run.dir={}", scratch.display()),
        "run.name=bench".into(),
        "data.source=generated".into(),
        "data.num_images=4096".into(),
        "train.device=cpu".into(),
        format!("train.threads={}", args.threads),
        format!("train.batch_size={}", args.batch),
        format!("train.batch_per_rank={}", args.batch),
        format!("train.kimg_per_tick={tick_kimg}"),
        format!("train.total_kimg={}", 2.0 * tick_kimg),
        "train.sample_ticks=0".into(),
        "checkpoint.every_ticks=0".into(),
        "metrics.enabled=false".into(),
        "log.progress=false".into(),
    ];
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg(config).args(["--gpus", "1", "--master-port", "0"]);
    for set in &sets {
        cmd.args(["--set", set]);
    }
    let out = cmd.output().with_context(|| format!("running {}", config.display()))?;
    if !out.status.success() {
        bail!("{} failed: {}", config.display(), String::from_utf8_lossy(&out.stderr));
    }
    let stats = scratch.join("bench/stats.jsonl");
    let text = std::fs::read_to_string(&stats).with_context(|| format!("reading {}", stats.display()))?;
    let last = text.lines().last().context("no tick was recorded")?;
    Ok(serde_json::from_str(last)?)
}
