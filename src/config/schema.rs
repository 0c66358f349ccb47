//! The typed config tree. Every struct rejects unknown keys so a typo is an error, never a silently
//! ignored setting. Field docs are the reference for the YAML keys (README links here).
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::config_enum;
use super::model::ModelSection;
use super::operations::{CheckpointSection, EvalSection, LogSection, MetricsSection};
use super::train::TrainSection;

/// A whole run: what to train, on what, how, and where to write.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    #[serde(default)]
    pub run: RunSection,
    #[serde(default)]
    pub dist: DistSection,
    pub data: DataSection,
    pub model: ModelSection,
    pub train: TrainSection,
    #[serde(default)]
    pub checkpoint: CheckpointSection,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(default)]
    pub eval: EvalSection,
    #[serde(default)]
    pub log: LogSection,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// Run name; the run directory is `<dir>/<name>`. Defaults to the config file's stem.
    pub name: Option<String>,
    /// Parent directory of run directories.
    pub dir: PathBuf,
    /// Seed for weights, latents and data order. Same seed, same config, same device -> same run.
    pub seed: u64,
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection { name: None, dir: PathBuf::from("runs"), seed: 0 }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DistSection {
    /// Number of nodes (one launcher each). `--nodes` overrides.
    pub nodes: u32,
    /// Ranks per node: one per GPU, or CPU ranks on a machine without GPUs. `--gpus` overrides.
    pub gpus: u32,
    /// Collective backend for gradients.
    pub backend: Backend,
    /// Port of the rendezvous store on the master node (torchrun's default); 0 picks a free
    /// port (single-node jobs only, e.g. tests running side by side).
    pub master_port: u16,
    /// How long a node's launcher waits at start for the store on node 0 and for every other
    /// node to join. Nodes can start minutes apart (a pod pulling its image on a fresh node, SLURM
    /// steps launched in turn); torchrun's rendezvous waits 600 s too.
    pub join_timeout_secs: u64,
    /// How long a rank waits to reach the store and its ring peers at start (its launcher has
    /// joined by then), and launchers wait for each other between restarts.
    pub connect_timeout_secs: u64,
    /// Longest a collective may wait for a peer before the rank fails (naming the peer).
    pub collective_timeout_secs: u64,
    /// Check every this many ticks that all ranks hold identical parameters (0 = never).
    pub param_check_ticks: u32,
    /// Gradient bucket size in MiB: gradients are all-reduced one bucket at a time.
    pub bucket_mb: f64,
    /// A rank that makes no progress for this long (stopped, hung in a collective) is named and
    /// the job stopped. Start-up gets `connect_timeout_secs` on top.
    pub heartbeat_timeout_secs: u64,
    /// How often each rank rewrites its flight record (what it is doing, its collectives) beside
    /// its heartbeat, for naming the rank that holds a stuck job up; 0 turns the records off. A
    /// slower rate eases a shared file system under thousands of ranks.
    pub flight_record_secs: f64,
}

impl Default for DistSection {
    fn default() -> Self {
        DistSection {
            nodes: 1,
            gpus: 1,
            backend: Backend::Auto,
            master_port: 29500,
            join_timeout_secs: 600,
            connect_timeout_secs: 120,
            collective_timeout_secs: 300,
            param_check_ticks: 1,
            bucket_mb: 25.0,
            heartbeat_timeout_secs: 60,
            flight_record_secs: 1.0,
        }
    }
}

config_enum! {
    pub enum Backend {
        /// NCCL when ranks are on GPUs, the CPU ring otherwise.
        Auto => "auto",
        Cpu => "cpu",
        Nccl => "nccl",
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Where images come from.
    pub source: DataSource,
    /// Directory of a prepared dataset (source: prepared).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Check every shard's checksum when the dataset is opened, once per node (sizes are always
    /// checked, by the launcher before any rank starts and by every rank).
    #[serde(default = "default_true")]
    pub verify_checksums: bool,
    /// Image side in pixels (square images, a power of two).
    pub resolution: u32,
    /// 3 for RGB, 1 for grayscale.
    #[serde(default = "default_channels")]
    pub channels: u32,
    /// Number of classes; 0 means unlabelled.
    #[serde(default)]
    pub num_classes: u32,
    /// Dataset size for the generated source (images are drawn from their index, so any size is free).
    #[serde(default = "default_num_images")]
    pub num_images: u64,
    /// Random horizontal flips.
    #[serde(default)]
    pub xflip: bool,
    /// Batches a background thread reads ahead of training.
    #[serde(default = "default_prefetch")]
    pub prefetch: u32,
}

fn default_prefetch() -> u32 {
    4
}

fn default_true() -> bool {
    true
}

fn default_channels() -> u32 {
    3
}

fn default_num_images() -> u64 {
    8192
}

config_enum! {
    pub enum DataSource {
        /// Procedurally drawn shapes, one class per shape: no files, no downloads.
        Generated => "generated",
        /// A dataset written by `gan-launch data prepare`, at `data.path`.
        Prepared => "prepared",
    }
}
