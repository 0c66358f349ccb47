//! `gan-launch ckpt ls|verify|export`: inspecting and using a run's checkpoints without libtorch.
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use gan_core::checkpoint::{self, read_tensors, step_dir_name, verify, Checkpoints, SetAside};
use gan_core::host_malloc::Arenas;
use gan_core::Error;

#[derive(Subcommand, Debug)]
pub enum Ckpt {
    /// List a run's checkpoints: step, kimg, size, ranks, time, and whether each verifies.
    Ls(LsArgs),
    /// Check a checkpoint's manifest and every file's size and BLAKE3 (exit 2 when corrupt).
    Verify(PathArg),
    /// Write G_ema alone as one safetensors file for inference (metadata: step, kimg, model config).
    Export(ExportArgs),
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// A run directory (runs/NAME), its checkpoints directory, or the job's config file.
    #[arg(value_name = "RUN_DIR|CONFIG")]
    pub run: PathBuf,
}

#[derive(Args, Debug)]
pub struct PathArg {
    /// A checkpoint directory (step-NNNNNNNN), a G_ema file, or a run directory (or the job's
    /// config file) for its newest valid checkpoint.
    pub path: PathBuf,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A checkpoint directory, or a run directory (or the job's config file) for its newest valid
    /// checkpoint.
    pub path: PathBuf,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
}

/// `gan-launch sample`: a grid from a checkpoint's G_ema, drawn by the trainer binary (the only
/// one with libtorch) after the checkpoint is resolved and verified here.
#[derive(Args, Debug)]
pub struct SampleArgs {
    /// A checkpoint directory, a run directory (or the job's config file) for its newest valid
    /// checkpoint, or a G_ema file (`ckpt export`, a run's g_ema-final.safetensors).
    pub path: PathBuf,
    #[command(flatten)]
    pub options: gan_core::sample_options::SampleOptions,
    /// Trainer binary (default: gan-train next to gan-launch, or $GAN_LAUNCH_TRAINER).
    #[arg(long, env = "GAN_LAUNCH_TRAINER", hide = true)]
    pub trainer: Option<PathBuf>,
}

pub fn sample(args: &SampleArgs) -> anyhow::Result<std::process::ExitCode> {
    on_checkpoint(&args.path, args.trainer.as_deref(), &["sample"], args.options.to_args())
}

/// Resolves and verifies the checkpoint at `path` (a G_ema file goes to the trainer as it is),
/// then runs `trainer <command...> PATH <options>` and passes its exit code on.
fn on_checkpoint(
    path: &Path,
    trainer: Option<&Path>,
    command: &[&str],
    options: Vec<String>,
) -> anyhow::Result<std::process::ExitCode> {
    let path = &crate::run_path::resolve(path)?;
    // A G_ema file is read, and its digest checked, once: by the trainer, which loads it.
    let target = if path.is_file() {
        path.to_path_buf()
    } else {
        let dir = checkpoint::resolve_user_path(path)?;
        verify(&dir).map_err(|message| Error::Checkpoint { path: dir.clone(), message })?;
        dir
    };
    let trainer = crate::supervise::trainer_path(trainer)?;
    let status = crate::supervise::trainer_command(&trainer, Arenas::PerThread)
        .args(command)
        .arg(&target)
        .args(options)
        .status()?;
    Ok(std::process::ExitCode::from(status.code().unwrap_or(1) as u8))
}

/// `gan-launch eval`: a metric of a checkpoint's G_ema, computed by the trainer binary after the
/// checkpoint is resolved and verified here.
#[derive(Args, Debug)]
pub struct EvalArgs {
    #[arg(value_enum)]
    pub metric: gan_core::eval_options::EvalMetric,
    /// A checkpoint directory, a run directory (or the job's config file) for its newest valid
    /// checkpoint, or a G_ema file (`ckpt export`, a run's g_ema-final.safetensors); or a folder
    /// of images (`sample --num`'s): its IS, or with --against, a metric between two folders.
    pub path: PathBuf,
    /// A folder of reference images to compare with instead of the run's dataset (a held-out
    /// set, another model's samples); between two folders, pytorch-fid's command line.
    #[arg(long)]
    pub against: Option<PathBuf>,
    #[command(flatten)]
    pub options: gan_core::eval_options::EvalOptions,
    /// Trainer binary (default: gan-train next to gan-launch, or $GAN_LAUNCH_TRAINER).
    #[arg(long, env = "GAN_LAUNCH_TRAINER", hide = true)]
    pub trainer: Option<PathBuf>,
}

pub fn eval(args: &EvalArgs) -> anyhow::Result<std::process::ExitCode> {
    let command = ["eval", args.metric.as_str()];
    let mut options = args.options.to_args();
    options.extend(args.against.iter().map(|other| format!("--against={}", other.display())));
    if !gan_core::images::is_image_folder(&args.path) {
        return on_checkpoint(&args.path, args.trainer.as_deref(), &command, options);
    }
    // A folder of images: nothing to resolve or verify here.
    let trainer = crate::supervise::trainer_path(args.trainer.as_deref())?;
    let status = crate::supervise::trainer_command(&trainer, Arenas::PerThread)
        .args(command)
        .arg(&args.path)
        .args(options)
        .status()?;
    Ok(std::process::ExitCode::from(status.code().unwrap_or(1) as u8))
}

pub fn run(cmd: &Ckpt) -> anyhow::Result<()> {
    match cmd {
        Ckpt::Ls(args) => ls(&crate::run_path::resolve(&args.run)?),
        Ckpt::Verify(args) => verify_cmd(&crate::run_path::resolve(&args.path)?),
        Ckpt::Export(args) => export(&crate::run_path::resolve(&args.path)?, &args.out),
    }
}

fn ls(run: &Path) -> anyhow::Result<()> {
    if run.is_file() {
        let message = "is a file; expected a run directory or its checkpoints directory".into();
        return Err(Error::Checkpoint { path: run.to_path_buf(), message }.into());
    }
    let ckpts = Checkpoints::of_user_path(run);
    let list = ckpts.list()?;
    if list.is_empty() {
        return Err(Error::Checkpoint { path: ckpts.root, message: "no checkpoints there".into() }.into());
    }
    let latest = ckpts.latest_name();
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>5} {:>10} {:>7} {:>9}  {:<24} status",
        "checkpoint", "step", "kimg", "MB", "ranks", "FID", "recall", "diversity", "created"
    );
    for (step, dir) in list {
        let name = step_dir_name(step);
        let marker = if latest.as_deref() == Some(name.as_str()) { " (latest)" } else { "" };
        match verify(&dir) {
            Ok(v) => println!(
                "{name:<16} {step:>10} {:>10.3} {:>10.1} {:>5} {:>10} {:>7} {:>9}  {:<24} ok{marker}",
                v.manifest.kimg(),
                v.manifest.total_bytes() as f64 / 1e6,
                v.manifest.world_size,
                evaluated(&dir, "fid", 3),
                evaluated(&dir, "recall", 3),
                checkpoint::sample_diversity_of(&dir).map_or("-".into(), |d| format!("{d:.2}")),
                v.manifest.created
            ),
            Err(why) => println!(
                "{name:<16} {step:>10} {:>10} {:>10} {:>5} {:>10} {:>7} {:>9}  {:<24} CORRUPT: {why}{marker}",
                "-", "-", "-", "-", "-", "-", "-"
            ),
        }
    }
    // Checkpoints that left the run's line (a start from another one, a rollback) are kept
    // beside it: say where, so they are found.
    let run_dir = ckpts.root.parent().unwrap_or(Path::new("."));
    for (dir, steps) in SetAside::list(run_dir)?.into_iter().filter(|(_, steps)| !steps.is_empty()) {
        let steps: Vec<String> = steps.iter().map(u64::to_string).collect();
        println!(
            "set aside: {} (step {}; `gan-launch ckpt ls` it for details)",
            dir.display(),
            steps.join(", ")
        );
    }
    Ok(())
}

/// A checkpoint's evaluation result (its manifest or `eval.json`), or "-" when none ran at its
/// step.
fn evaluated(dir: &Path, metric: &str, decimals: usize) -> String {
    checkpoint::metric_of(dir, metric).map_or("-".into(), |v| format!("{v:.decimals$}"))
}

fn verify_cmd(path: &Path) -> anyhow::Result<()> {
    if path.is_file() {
        let info = checkpoint::GEmaInfo::read(path)?;
        println!(
            "{}: ok (G_ema file of a {} model, step {}, {:.3} kimg{})",
            path.display(),
            info.arch,
            info.step,
            info.cur_nimg as f64 / 1000.0,
            info.source.map_or(String::new(), |s| format!(", exported from {}", s.display()))
        );
        if let Some(dataset) = &info.dataset {
            println!("  trained on {}", dataset.describe());
        }
        if let Some(init) = &info.init_from {
            println!("  started from the networks of {}", init.describe());
        }
        return Ok(());
    }
    let dir = if path.join(checkpoint::MANIFEST_FILE).exists() {
        path.to_path_buf()
    } else {
        checkpoint::resolve_user_path(path)?
    };
    let v = verify(&dir).map_err(|message| Error::Checkpoint { path: dir.clone(), message })?;
    println!(
        "{}: ok (step {}, {:.3} kimg, {} files, {:.1} MB, written by {} rank(s), gan-launch {} {}, libtorch {})",
        dir.display(),
        v.manifest.step,
        v.manifest.kimg(),
        v.manifest.files.len(),
        v.manifest.total_bytes() as f64 / 1e6,
        v.manifest.world_size,
        v.manifest.crate_version,
        v.manifest.git_commit,
        v.manifest.libtorch_version
    );
    if let Some(dataset) = &v.state.dataset {
        println!("  trained on {}", dataset.describe());
    }
    if let Some(init) = &v.state.init_from {
        println!("  started from the networks of {}", init.describe());
    }
    Ok(())
}

fn export(path: &Path, out: &Path) -> anyhow::Result<()> {
    let dir = checkpoint::resolve_user_path(path)?;
    let v = verify(&dir).map_err(|message| Error::Checkpoint { path: dir.clone(), message })?;
    let tensors = read_tensors(&dir.join("g_ema.safetensors"))?;
    let config = std::fs::read_to_string(dir.join("config.yaml"))
        .map_err(Error::io("read", dir.join("config.yaml")))?;
    let info = checkpoint::GEmaInfo {
        arch: v.manifest.arch.clone(),
        step: v.manifest.step,
        cur_nimg: v.manifest.cur_nimg,
        config_yaml: config,
        dataset: v.state.dataset.clone(),
        source: Some(dir.clone()),
        init_from: v.state.init_from.clone(),
    };
    let entry = info.write(out, &tensors)?;
    println!(
        "wrote {} ({} tensors, {:.1} MB) from {} (step {})",
        out.display(),
        tensors.len(),
        entry.bytes as f64 / 1e6,
        dir.display(),
        v.manifest.step
    );
    Ok(())
}
