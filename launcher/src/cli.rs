//! The command line. Flags override the config file and `GAN_*` environment variables; `--set`
//! overrides single keys.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use gan_core::cluster::Placement;
use gan_core::config::SetOverride;

/// Distributed GAN training on libtorch: one rank per GPU, across nodes.
#[derive(Parser, Debug)]
#[command(name = "gan-launch", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub job: JobArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate CONFIG and print the resolved config and the per-rank plan, without training
    /// (--memory: and one rank's memory, and whether it fits the GPU).
    Plan(PlanArgs),
    /// Measure the distributed runtime on this machine (prints figures).
    #[command(subcommand)]
    Bench(crate::bench::Bench),
    /// Prepare datasets.
    #[command(subcommand)]
    Data(crate::data::Data),
    /// Write an image grid from a checkpoint's G_ema (--truncation psi, --class k), or with --num N
    /// that many images, one PNG each (the ones `eval` scores)
    Sample(crate::ckpt::SampleArgs),
    /// FID, KID, IS, precision/recall or density/coverage of a checkpoint's G_ema against the run's
    /// dataset (pytorch-fid's Inception).
    Eval(crate::ckpt::EvalArgs),
    /// Where each rank of a running job is, and which rank holds the others up.
    Status(crate::status::StatusArgs),
    /// Write the Kubernetes manifests of a job (ConfigMap, Indexed Job or JobSet, Service,
    /// PodMonitor, PVC) from CONFIG, validated as `plan` does.
    K8s(crate::k8s::K8sArgs),
    /// Check a job on this (login) node, then submit it to SLURM with the built-in sbatch script.
    Sbatch(crate::sbatch::SbatchArgs),
    /// Inspect, verify and export checkpoints.
    #[command(subcommand)]
    Ckpt(crate::ckpt::Ckpt),
}

#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// Also estimate one rank's memory: weights, gradients and Adam moments counted, each phase's
    /// working memory measured on the CPU at small batches (a minute for a large model) and
    /// extrapolated; says whether it fits the GPU, else the batch per round that does.
    #[arg(long)]
    pub memory: bool,
    /// Check the fit against a GPU of this many GiB (e.g. 80 for an 80 GB card) instead of this
    /// node's GPU 0: for planning on a login node.
    #[arg(long, value_name = "GIB", value_parser = positive_gib, requires = "memory")]
    pub gpu_memory_gib: Option<f64>,
}

fn positive_gib(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(gib) if gib.is_finite() && gib > 0.0 => Ok(gib),
        _ => Err(format!("a positive number of GiB, not {text:?}")),
    }
}

#[derive(Args, Debug, Clone)]
pub struct JobArgs {
    /// Config file (YAML), e.g. configs/demo.yaml.
    pub config: Option<PathBuf>,
    /// Number of nodes (overrides dist.nodes).
    #[arg(long)]
    pub nodes: Option<u32>,
    /// Ranks per node: one per GPU, or CPU ranks without GPUs (overrides dist.gpus).
    #[arg(long)]
    pub gpus: Option<u32>,
    /// This node's index, 0..nodes (default: SLURM_NODEID, JOB_COMPLETION_INDEX, else 0).
    #[arg(long)]
    pub node_rank: Option<u32>,
    /// Host of node 0, where the rendezvous store runs (default: the first host of
    /// SLURM_JOB_NODELIST, or MASTER_ADDR; 127.0.0.1 for one node).
    #[arg(long)]
    pub master_addr: Option<String>,
    /// Port of the rendezvous store on the master node (overrides dist.master_port).
    #[arg(long)]
    pub master_port: Option<u16>,
    /// Restart every rank up to this many times after a failure (TORCHELASTIC_RESTART_COUNT counts them).
    #[arg(long, default_value_t = 0)]
    pub max_restarts: u32,
    /// Where to start from: latest (the run's newest valid checkpoint; the default), none (a
    /// fresh start; existing checkpoints are moved aside), or a checkpoint or run directory
    /// (overrides checkpoint.resume).
    #[arg(long, value_name = "latest|none|PATH")]
    pub resume: Option<String>,
    /// Start a new run from another run's G, D and G_ema (a checkpoint or run directory), to
    /// fine-tune them; the rest starts fresh (overrides checkpoint.init_from).
    #[arg(long, value_name = "PATH")]
    pub init_from: Option<String>,
    /// Override a config key: --set train.batch_size=64 (repeatable; the value is read as YAML).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<SetOverride>,
    /// Trainer binary to start for each rank (default: gan-train next to gan-launch,
    /// or $GAN_LAUNCH_TRAINER).
    #[arg(long, env = "GAN_LAUNCH_TRAINER", hide = true)]
    pub trainer: Option<PathBuf>,
}

impl JobArgs {
    /// The scheduler's node count, then `--set` overrides, then the dedicated flags, which
    /// therefore win.
    pub fn overrides(&self, placement: Option<&Placement>) -> Vec<SetOverride> {
        let scheduler = placement.and_then(|p| p.nodes).map(|n| SetOverride::new("dist.nodes", n));
        let sets: Vec<SetOverride> = scheduler.into_iter().chain(self.sets.iter().cloned()).collect();
        with_flags(
            sets,
            [
                ("dist.nodes", self.nodes.map(|v| v.to_string())),
                ("dist.gpus", self.gpus.map(|v| v.to_string())),
                ("dist.master_port", self.master_port.map(|v| v.to_string())),
                ("checkpoint.resume", self.resume.clone()),
                ("checkpoint.init_from", self.init_from.clone()),
            ],
        )
    }
}

/// `sets`, then an override for each flag that was given: a command's dedicated flags win over
/// its `--set`s.
pub fn with_flags<'a>(
    mut sets: Vec<SetOverride>,
    flags: impl IntoIterator<Item = (&'a str, Option<String>)>,
) -> Vec<SetOverride> {
    sets.extend(flags.into_iter().filter_map(|(key, value)| Some(SetOverride::new(key, value?))));
    sets
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};

    /// Values that start with `-` reach `sample`'s options through the launcher's whole command
    /// line (a positional path and job flags beside them), and are refused by the trainer with
    /// what is allowed, not by the parser as unknown flags.
    #[test]
    fn sample_takes_hyphen_values_through_the_launcher() {
        let cli = Cli::try_parse_from([
            "gan-launch",
            "sample",
            "runs/demo",
            "--truncation",
            "-1",
            "--class",
            "-2",
            "--out=-grid.png",
        ])
        .unwrap();
        let Some(Command::Sample(args)) = cli.command else { panic!("not sample: {:?}", cli.command) };
        let options = &args.options;
        assert_eq!((options.truncation, options.class.as_deref()), (Some(-1.0), Some("-2")));
        assert_eq!(options.out, std::path::Path::new("-grid.png"));
        assert_eq!(args.path, std::path::Path::new("runs/demo"));
    }
}
