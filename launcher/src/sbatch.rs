//! `gan-launch sbatch`: checks a job on the login node, then submits the sbatch script for it.
//!
//! A multi-node job can wait in the queue for hours; a config that does not fit its world size,
//! a dataset that is not where the config says, or a checkpoint to resume that the config's
//! networks or dataset do not fit, should fail at submission, not when the nodes are finally
//! allocated. This loads and validates the config for the requested nodes and
//! GPUs exactly as the job will (and checks the dataset, which a login node sees on the shared
//! file system, unless told it cannot), and only then runs `sbatch` with the script built into this binary (the same
//! file as `launcher/slurm/gan-launch.sbatch`), pointing the job at this gan-launch.
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::Context;
use clap::Args;
use gan_core::config::{self, Device, SetOverride};

/// The batch script, built in so an installed gan-launch needs no checkout to submit.
const SCRIPT: &str = include_str!("../slurm/gan-launch.sbatch");

#[derive(Args, Debug)]
pub struct SbatchArgs {
    /// Config file (YAML), e.g. configs/biggan.yaml.
    pub config: PathBuf,
    /// Number of nodes to allocate (sbatch --nodes; overrides dist.nodes).
    #[arg(long)]
    pub nodes: u32,
    /// GPUs per node, one rank each (sbatch --gpus-per-node unless train.device is cpu).
    #[arg(long)]
    pub gpus: u32,
    /// Do not look for the dataset (and `eval.weights`) here: for data this machine cannot see
    /// (node-local storage the job stages). The nodes still check it before any rank starts.
    #[arg(long)]
    pub skip_data_check: bool,
    /// Override a config key: --set train.batch_size=64 (repeatable; passed on to the job).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<SetOverride>,
    /// Further sbatch options, after `--`: e.g. -- --time=48:00:00 --partition=gpu --account=me
    #[arg(last = true, value_name = "SBATCH_OPTIONS")]
    pub sbatch: Vec<String>,
}

pub fn run(args: &SbatchArgs) -> anyhow::Result<ExitCode> {
    let placement =
        [("dist.nodes", Some(args.nodes.to_string())), ("dist.gpus", Some(args.gpus.to_string()))];
    let cfg = config::load(&args.config, &crate::cli::with_flags(args.sets.clone(), placement))?;
    if !args.skip_data_check {
        gan_core::data::check(&cfg.data).and_then(|()| cfg.eval.check_weights()).context(
            "the job would refuse to start (if the nodes see data this machine does not, pass --skip-data-check)",
        )?;
    }
    crate::check_start_paths(&cfg, false)?;
    // A resume the ranks would refuse (another model, another dataset) is refused here, before the
    // job waits for its nodes.
    let start = gan_core::checkpoint::plan_start(&cfg.checkpoint.resume_from(), &cfg.run_dir(), false)?;
    let fit = crate::start_fit::check(&cfg, &start, None, !args.skip_data_check);
    for warning in fit.context("the job would refuse to start")? {
        eprintln!("gan-launch sbatch: warning: {warning}");
    }
    let config_path = std::fs::canonicalize(&args.config)
        .with_context(|| format!("resolving {}", args.config.display()))?;
    let launcher = std::env::current_exe().context("locating this gan-launch")?;
    // sbatch keeps its own copy of the script at submission, so a file of this process's will do.
    let script = std::env::temp_dir().join(format!("gan-launch-{}.sbatch", std::process::id()));
    std::fs::write(&script, SCRIPT).map_err(gan_core::Error::io("write", &script))?;

    let mut sbatch = Command::new("sbatch");
    sbatch.arg("--parsable").arg(format!("--nodes={}", args.nodes));
    if cfg.train.device != Device::Cpu {
        sbatch.arg(format!("--gpus-per-node={}", args.gpus));
    }
    sbatch.arg(format!("--export=ALL,GAN_LAUNCH={},GAN_GPUS={}", launcher.display(), args.gpus));
    sbatch.args(&args.sbatch).arg(&script).arg(&config_path);
    for set in &args.sets {
        sbatch.arg("--set").arg(format!("{}={}", set.key, set.value));
    }
    let out = sbatch.output();
    let _ = std::fs::remove_file(&script);
    let out = out.context("running sbatch (is SLURM installed here?)")?;
    if !out.status.success() {
        anyhow::bail!("sbatch failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    let job_id = String::from_utf8_lossy(&out.stdout).trim().split(';').next().unwrap_or("").to_string();
    println!("{job_id}");
    eprintln!(
        "gan-launch sbatch: submitted job {job_id}: {} on {} node(s) x {} rank(s) = world size {}, config checked \
         (squeue -j {job_id}; logs in gan-launch-{job_id}.out unless --output says otherwise)",
        cfg.name(),
        args.nodes,
        args.gpus,
        args.nodes * args.gpus
    );
    Ok(ExitCode::SUCCESS)
}
