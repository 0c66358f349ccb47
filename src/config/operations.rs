//! The operational sections of the config: checkpoints, metrics and logging (how a run is kept,
//! watched and reported, as opposed to what it trains, in `schema.rs`).
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::config_enum;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSection {
    /// Checkpoint every this many ticks (0 = only at the end of training and on a stop signal).
    pub every_ticks: u32,
    /// Committed checkpoints kept (the newest ones); older ones are deleted after each commit.
    pub keep_last: u32,
    /// Also keep this many with the lowest FID (from evaluations that ran at their step; see
    /// `eval.every_kimg`); 0 = none.
    pub keep_best: u32,
    /// Where a start takes its state from: `latest` (the newest checkpoint of this run that
    /// verifies, or a fresh start when there is none), `none` (fresh; existing checkpoints are
    /// moved aside, never deleted), or the path of a checkpoint or run directory.
    /// `gan-launch --resume` sets it.
    pub resume: String,
    /// Signals that mean preemption: every rank checkpoints at the same step and exits with the
    /// requeue code 75. Other stop signals (e.g. Ctrl-C) checkpoint too and exit 128 + signal.
    pub preempt_signals: Vec<StopSignal>,
    /// Write checkpoint files in a background thread while training continues (rank 0 pauses
    /// only to copy the state); false writes them before the next step.
    pub background: bool,
    /// Resume from a checkpoint trained on another dataset (fine-tuning on purpose). Without it
    /// such a resume is refused, naming both datasets: usually `data.path` points somewhere
    /// unintended, and the run would look as if it collapsed.
    pub allow_dataset_change: bool,
    /// Start a new run from another run's networks (G, D and G_ema), to fine-tune them, e.g. on
    /// another dataset, as StyleGAN2-ADA's `--resume` does: a checkpoint, checkpoints or run
    /// directory. Optimizer moments, the image count, ADA's p, the random streams and the
    /// evaluation history start fresh. Taken only by a start that resumes nothing (the run has no
    /// checkpoint of its own yet, or `resume: none`), so a restart, requeue or recreated pod goes
    /// on from the run's own checkpoints. null = random initial weights.
    pub init_from: Option<PathBuf>,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        CheckpointSection {
            every_ticks: 4,
            keep_last: 3,
            keep_best: 0,
            resume: "latest".into(),
            preempt_signals: vec![StopSignal::Term, StopSignal::Usr1],
            background: true,
            allow_dataset_change: false,
            init_from: None,
        }
    }
}

/// Where a start takes its state from (`checkpoint.resume`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResumeFrom {
    Latest,
    Fresh,
    Path(PathBuf),
}

impl CheckpointSection {
    pub fn resume_from(&self) -> ResumeFrom {
        match self.resume.as_str() {
            "latest" => ResumeFrom::Latest,
            "none" => ResumeFrom::Fresh,
            path => ResumeFrom::Path(PathBuf::from(path)),
        }
    }
}

config_enum! {
    pub enum StopSignal {
        Term => "SIGTERM",
        Usr1 => "SIGUSR1",
        Usr2 => "SIGUSR2",
        Int => "SIGINT",
    }
}

impl StopSignal {
    /// The signal's number on Linux.
    pub fn number(self) -> i32 {
        match self {
            StopSignal::Int => 2,
            StopSignal::Usr1 => 10,
            StopSignal::Usr2 => 12,
            StopSignal::Term => 15,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Serve Prometheus metrics from every rank and launcher.
    pub enabled: bool,
    /// Address the endpoints listen on.
    pub bind: String,
    /// Rank r of a node serves `/metrics` on port + LOCAL_RANK. 0 = any free port; every
    /// endpoint's address is written to `<run dir>/metrics/` either way.
    pub port: u16,
    /// The launcher's own endpoint (ranks alive, restarts, heartbeats, job state); 0 = any free port.
    pub launcher_port: u16,
    /// Pushgateway URL (`http://host:9091`) that rank 0 pushes the run's final results to; none = no push.
    pub pushgateway: Option<String>,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            enabled: true,
            bind: "0.0.0.0".into(),
            port: 9410,
            launcher_port: 9409,
            pushgateway: None,
        }
    }
}

impl MetricsSection {
    /// The port local rank `local_rank` serves on (0 stays 0: any free port).
    pub fn rank_port(&self, local_rank: u32) -> u16 {
        if self.port == 0 {
            0
        } else {
            self.port.saturating_add(local_rank as u16)
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `text` for people, `json` for log shippers (one object per line).
    pub format: LogFormat,
    /// Minimum level: error, warn, info, debug or trace.
    pub level: String,
    /// Live progress bar on rank 0 when stderr is a terminal.
    pub progress: bool,
    /// Which ranks the launcher's console shows; every rank's log is always written to
    /// `<run dir>/logs/rank-<r>.log`.
    pub console: ConsoleRanks,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: LogFormat::Text,
            level: "info".into(),
            progress: true,
            console: ConsoleRanks::Rank0,
        }
    }
}

config_enum! {
    pub enum ConsoleRanks {
        /// Only rank 0 (and the launcher).
        Rank0 => "rank0",
        /// Every rank, each line prefixed with its rank.
        All => "all",
    }
}

config_enum! {
    pub enum LogFormat {
        Text => "text",
        Json => "json",
    }
}

/// Evaluation during training: G_ema's FID (and KID, IS, precision/recall, density/coverage)
/// with pytorch-fid's Inception, every `every_kimg`, each rank generating its share.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// Evaluate every this many kimg (at the first tick past each multiple, and at the end);
    /// 0 = never during training.
    pub every_kimg: f64,
    /// Metrics to compute from the same features.
    pub metrics: Vec<EvalMetricName>,
    /// Generated images per evaluation (all ranks together; any count of at least 2 per rank).
    pub num: u64,
    /// Quick evaluations between the full ones, every this many kimg (0 = none): the same metrics
    /// of `quick_num` images, for an early, frequent curve. They are logged, exported (their
    /// gauges carry `num_images`) and appended to `eval.jsonl` with `"quick": true`, but they
    /// never rank checkpoints, count toward the FID-worse alert or trigger a rollback: metrics
    /// of fewer images are biased and only comparable among themselves.
    pub quick_every_kimg: f64,
    /// Generated images per quick evaluation (fewer than `num`).
    pub quick_num: u64,
    /// Real images for the statistics (default: the whole dataset); cached per dataset content.
    pub num_real: Option<u64>,
    /// Images per forward pass of the feature network.
    pub batch: u32,
    /// Images G_ema generates per forward pass, at most `batch` (default: `batch`). At high
    /// resolution G's activations, not Inception's, bound the evaluator's memory; StyleGAN2-ADA's
    /// metrics generate 4 at a time. Image i is the same at any value (its latent, label and
    /// noise come from i), so the metrics do not change with it.
    pub gen_batch: Option<u32>,
    /// Other Inception weights; results are then labelled with the file's hash, never as
    /// standard FID. Default: the standard file from $GAN_FID_WEIGHTS or the cache directory
    /// ($GAN_LAUNCH_CACHE, else ~/.cache/gan-launch/).
    pub weights: Option<std::path::PathBuf>,
    /// Score in a background thread on a snapshot of G_ema while training goes on (each rank
    /// its share, reduced over a second ring), so training pauses only to copy G_ema; the
    /// result is reported a few ticks later. false: training waits for each evaluation. The
    /// evaluation at the end of a run is always waited for.
    pub background: bool,
    /// When recall or coverage falls under half its best (once that best is above 0.2), go back
    /// to the checkpoint with the best FID from before that evaluation's step and train on with
    /// fresh random streams (counted in `train.max_rollbacks`; newer checkpoints are moved to
    /// `collapsed-<time>/`). Needs `fid` and `pr` or `dc` in `metrics`, and
    /// `checkpoint.keep_best` >= 1.
    pub rollback_on_mode_dropping: bool,
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection {
            every_kimg: 0.0,
            metrics: vec![EvalMetricName::Fid],
            num: 10_000,
            quick_every_kimg: 0.0,
            quick_num: 5_000,
            num_real: None,
            batch: 50,
            gen_batch: None,
            weights: None,
            background: true,
            rollback_on_mode_dropping: false,
        }
    }
}

impl EvalSection {
    /// Images per forward pass of G_ema: `gen_batch`, else `batch`.
    pub fn gen_batch(&self) -> u32 {
        self.gen_batch.unwrap_or(self.batch)
    }

    /// Weights named for evaluation during training are there. Checked before any rank starts
    /// (and by `plan` and `sbatch`): the ranks would stop on a missing file only after start-up,
    /// or after a job's wait in the queue.
    pub fn check_weights(&self) -> crate::error::Result<()> {
        match &self.weights {
            Some(path) if self.every_kimg > 0.0 => check_weights_file(path, "eval.weights"),
            _ => Ok(()),
        }
    }
}

/// Inception weights named by a user (`key`: the setting or flag that named them) are a file.
pub fn check_weights_file(path: &std::path::Path, key: &str) -> crate::error::Result<()> {
    match path.is_file() {
        true => Ok(()),
        false => Err(crate::error::Error::config(
            key,
            path.display(),
            "an existing weights file (pytorch-fid's Inception architecture, .pth or .safetensors)",
        )),
    }
}

config_enum! {
    pub enum EvalMetricName {
        Fid => "fid",
        Kid => "kid",
        Is => "is",
        /// Improved precision and recall (k = 3).
        Pr => "pr",
        /// Density and coverage (k = 5).
        Dc => "dc",
    }
}

/// Neighbourhood size of precision and recall (StyleGAN2-ADA's `pr50k3`).
pub const PR_K: i64 = 3;
/// Neighbourhood size of density and coverage (Naeem et al. 2020's recommendation).
pub const DC_K: i64 = 5;

impl EvalMetricName {
    /// The k of a nearest-neighbour metric: each set needs more than k images.
    pub fn neighbours(self) -> Option<i64> {
        match self {
            EvalMetricName::Pr => Some(PR_K),
            EvalMetricName::Dc => Some(DC_K),
            _ => None,
        }
    }
}
