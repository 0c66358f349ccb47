//! The typed config tree. Every struct rejects unknown keys so a typo is an error, never a silently
//! ignored setting. Field docs are the reference for the YAML keys (README links here).
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::config_enum;
use super::operations::{CheckpointSection, LogSection, MetricsSection};

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
    /// How long a rank waits to reach the store and its ring peers at start.
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
}

impl Default for DistSection {
    fn default() -> Self {
        DistSection {
            nodes: 1,
            gpus: 1,
            backend: Backend::Auto,
            master_port: 29500,
            connect_timeout_secs: 120,
            collective_timeout_secs: 300,
            param_check_ticks: 1,
            bucket_mb: 25.0,
            heartbeat_timeout_secs: 60,
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

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Network family.
    pub arch: Arch,
    /// Latent size.
    #[serde(default = "default_z_dim")]
    pub z_dim: u32,
    /// Condition G and D on the class label (needs `data.num_classes` >= 2).
    #[serde(default)]
    pub conditional: bool,
    /// Channels at resolution r are min(channel_base / r, channel_max), as in StyleGAN.
    #[serde(default = "default_channel_base")]
    pub channel_base: u32,
    #[serde(default = "default_channel_max")]
    pub channel_max: u32,
    /// BigGAN: width multiplier `ch`; block channels are ch x the reference's per-resolution
    /// multipliers (96 for ImageNet-128, 64 for CIFAR).
    #[serde(default = "default_ch")]
    pub ch: u32,
    /// BigGAN: hierarchical latent, z split into one chunk per G block plus one (`--hier`).
    #[serde(default)]
    pub hier: bool,
    /// BigGAN: size of the shared class embedding feeding every conditional BN (`--shared_dim`);
    /// 0 = per-layer class embeddings (the CIFAR model).
    #[serde(default)]
    pub shared_dim: u32,
    /// BigGAN: resolutions with self-attention in G and D (e.g. [64] at 128x128).
    #[serde(default)]
    pub attention_res: Vec<u32>,
    /// BigGAN: weight initialisation.
    #[serde(default = "default_init")]
    pub init: ModelInit,
    /// BigGAN: spectral-norm epsilon (`--SN_eps`).
    #[serde(default = "default_sn_eps")]
    pub sn_eps: f64,
}

fn default_ch() -> u32 {
    64
}
fn default_init() -> ModelInit {
    ModelInit::Normal002
}
fn default_sn_eps() -> f64 {
    1e-8
}

config_enum! {
    pub enum ModelInit {
        /// Orthogonal weights (BigGAN ImageNet).
        Orthogonal => "ortho",
        /// N(0, 0.02) weights (BigGAN CIFAR).
        Normal002 => "n02",
    }
}

fn default_z_dim() -> u32 {
    128
}
fn default_channel_base() -> u32 {
    4096
}
fn default_channel_max() -> u32 {
    256
}

impl ModelSection {
    /// Channel count at a given resolution.
    pub fn channels_at(&self, res: u32) -> u32 {
        (self.channel_base / res).clamp(1, self.channel_max)
    }
}

config_enum! {
    pub enum Arch {
        /// Conditional DCGAN with a projection discriminator: the small CPU-friendly network of the demo.
        Dcgan => "dcgan",
        /// BigGAN (Brock et al. 2018): class-conditional residual G and projection D with spectral norm.
        Biggan => "biggan",
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Where each rank computes.
    #[serde(default = "default_device")]
    pub device: Device,
    /// CPU threads per rank; default: the machine's cores split evenly between local ranks.
    #[serde(default)]
    pub threads: Option<u32>,
    /// Global batch: images per optimizer step over all ranks.
    pub batch_size: u32,
    /// Images per forward pass on one rank; default batch_size / world size. Smaller values give
    /// gradient accumulation of batch_size / (world x batch_per_rank) rounds.
    #[serde(default)]
    pub batch_per_rank: Option<u32>,
    /// Length of training in thousands of real images shown to D.
    pub total_kimg: f64,
    /// Maintenance (stats, samples, later checkpoints and FID) every this many kimg.
    #[serde(default = "default_kimg_per_tick")]
    pub kimg_per_tick: f64,
    /// Adversarial loss.
    pub loss: Loss,
    pub g_opt: AdamConfig,
    pub d_opt: AdamConfig,
    /// R1 penalty weight on real images (0 = off); applied lazily every `r1_interval` steps.
    #[serde(default)]
    pub r1_gamma: f64,
    #[serde(default = "default_r1_interval")]
    pub r1_interval: u32,
    /// G_ema half-life in kimg; 0 turns EMA off (G_ema = G).
    #[serde(default = "default_ema_kimg")]
    pub ema_kimg: f64,
    /// EMA ramp-up: half-life is at most cur_nimg x rampup (StyleGAN2-ADA); none = no ramp-up.
    #[serde(default)]
    pub ema_rampup: Option<f64>,
    /// A fixed G_ema decay per G step (BigGAN: 0.9999) instead of the half-life `ema_kimg`.
    #[serde(default)]
    pub ema_beta: Option<f64>,
    /// G_ema copies G until this many kimg (BigGAN's `--ema_start`, in images instead of iterations).
    #[serde(default)]
    pub ema_start_kimg: f64,
    /// D steps per G step (BigGAN CIFAR: 4). Every step trains D on a fresh batch of reals; G
    /// trains after every `d_steps`-th.
    #[serde(default = "default_d_steps")]
    pub d_steps: u32,
    /// Orthogonal regularisation strength for G and D (BigGAN's `--G_ortho`/`--D_ortho`; the
    /// paper's 1e-4; 0 = off). G's shared class embedding is exempt, as in the reference.
    #[serde(default)]
    pub g_ortho: f64,
    #[serde(default)]
    pub d_ortho: f64,
    /// Augmentation of every image D sees (reals and fakes, all phases).
    #[serde(default = "default_augment")]
    pub augment: Augment,
    /// ADA: the target of r_t = E[sign(D(real))] (0.6), steps between adjustments (4), kimg for
    /// p to move from 0 to 1 (500), and the starting p.
    #[serde(default = "default_ada_target")]
    pub ada_target: f64,
    #[serde(default = "default_ada_interval")]
    pub ada_interval: u32,
    #[serde(default = "default_ada_kimg")]
    pub ada_kimg: f64,
    #[serde(default)]
    pub ada_p_init: f64,
    /// DiffAugment's transforms, applied in this order.
    #[serde(default = "default_diffaugment_policy")]
    pub diffaugment_policy: Vec<DiffAugmentOp>,
    /// Gradient-penalty weight of the `wgan_gp` loss (Gulrajani et al.: 10).
    #[serde(default = "default_gp_lambda")]
    pub gp_lambda: f64,
    /// Write a sample grid every this many ticks (0 = only at the end).
    #[serde(default = "default_sample_ticks")]
    pub sample_ticks: u32,
}

fn default_device() -> Device {
    Device::Auto
}

fn default_kimg_per_tick() -> f64 {
    4.0
}
fn default_r1_interval() -> u32 {
    16
}
fn default_ema_kimg() -> f64 {
    10.0
}
fn default_sample_ticks() -> u32 {
    1
}
fn default_ada_target() -> f64 {
    0.6
}
fn default_ada_interval() -> u32 {
    4
}
fn default_ada_kimg() -> f64 {
    500.0
}
fn default_augment() -> Augment {
    Augment::None
}
fn default_diffaugment_policy() -> Vec<DiffAugmentOp> {
    vec![DiffAugmentOp::Color, DiffAugmentOp::Translation, DiffAugmentOp::Cutout]
}

config_enum! {
    pub enum Augment {
        None => "none",
        /// DiffAugment (Zhao et al. 2020): the transforms of `diffaugment_policy` on every image D sees.
        DiffAugment => "diffaugment",
        /// ADA (Karras et al. 2020): flips, rotations, translation, scale and colour, each with an adaptive p.
        Ada => "ada",
    }
}

config_enum! {
    pub enum DiffAugmentOp {
        /// Brightness, saturation and contrast.
        Color => "color",
        /// Integer shift up to 1/8 of the size, zero-filled.
        Translation => "translation",
        /// A zeroed square of half the size.
        Cutout => "cutout",
    }
}

fn default_d_steps() -> u32 {
    1
}
fn default_gp_lambda() -> f64 {
    10.0
}

config_enum! {
    pub enum Device {
        /// CUDA device LOCAL_RANK when available, otherwise CPU.
        Auto => "auto",
        Cpu => "cpu",
        Cuda => "cuda",
    }
}

config_enum! {
    pub enum Loss {
        /// BigGAN's hinge loss.
        Hinge => "hinge",
        /// StyleGAN's non-saturating logistic loss.
        NsLogistic => "ns_logistic",
        /// WGAN-GP (Gulrajani et al. 2017): D(fake) - D(real) + gp_lambda (|grad D(interpolate)| - 1)^2.
        WganGp => "wgan_gp",
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdamConfig {
    pub lr: f64,
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    #[serde(default = "default_eps")]
    pub eps: f64,
}

fn default_betas() -> [f64; 2] {
    [0.0, 0.99]
}
fn default_eps() -> f64 {
    1e-8
}
