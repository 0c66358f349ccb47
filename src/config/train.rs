//! The `train` section: device, batch, length, losses, optimizers, regularisers, EMA and
//! augmentation.
use serde::{Deserialize, Serialize};

use super::config_enum;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Where each rank computes.
    #[serde(default = "default_device")]
    pub device: Device,
    /// Arithmetic of the forward passes: fp32, or bf16 under CUDA autocast (matmuls and convs in
    /// bfloat16, reductions and losses in fp32; weights, gradients and optimizer state stay
    /// fp32). On CPU bf16 warns and runs fp32.
    #[serde(default = "default_precision")]
    pub precision: Precision,
    /// Whether CUDA convolutions and matmuls may use TF32 (10-bit mantissa) in fp32 runs. Off, as
    /// StyleGAN2-ADA sets it, so fp32 means fp32 and GPU figures compare with the references';
    /// on Ampere and later GPUs, true trades accuracy for up to several times faster convolutions.
    #[serde(default)]
    pub allow_tf32: bool,
    /// cuDNN autotuning (`torch.backends.cudnn.benchmark`): each convolution's fastest algorithm
    /// is timed on first use and kept, since a GAN's shapes never change. On, as both
    /// references set it; off picks algorithms by heuristics.
    #[serde(default = "default_cudnn_benchmark")]
    pub cudnn_benchmark: bool,
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
    /// StyleGAN2 path-length regularisation weight (paper256: 2; 0 = off), run lazily every
    /// `pl_interval` steps on batch / `pl_batch_shrink` fakes; `pl_decay` is the rate of the
    /// running mean length.
    #[serde(default)]
    pub pl_weight: f64,
    #[serde(default = "default_pl_interval")]
    pub pl_interval: u32,
    #[serde(default = "default_pl_decay")]
    pub pl_decay: f64,
    #[serde(default = "default_pl_batch_shrink")]
    pub pl_batch_shrink: u32,
    /// FreezeD (Mo et al. 2020), StyleGAN2-ADA's `--freezed`: D's first this many layers, counted
    /// from its input (FromRGB, then each block's conv0, conv1 and skip, from the highest
    /// resolution down), are not trained; for fine-tuning (`checkpoint.init_from`) on little
    /// data. StyleGAN2 only; 0 = train all of D.
    #[serde(default)]
    pub freeze_d: u32,
    /// StyleGAN2: probability that a fake mixes the ws of two latents at a random layer (0.9).
    #[serde(default)]
    pub style_mixing_prob: f64,
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
    /// BigGAN-PyTorch's `--split_D`: reals and fakes go through D in two forward calls. By default
    /// D's main phase runs them as one concatenated batch whenever D's logits are per image
    /// (BigGAN, DCGAN), as the reference does: one spectral-norm power iteration per D step and
    /// one larger forward. StyleGAN2's D (minibatch stddev) always sees them apart.
    #[serde(default)]
    pub split_d: bool,
    /// On a non-finite loss, every rank goes back to the latest checkpoint (or the start) and
    /// trains on with fresh random streams, at most this many times in a run; 0 stops the run at
    /// the first, with the error.
    #[serde(default = "default_max_rollbacks")]
    pub max_rollbacks: u32,
    /// After each rollback (non-finite loss or mode dropping), G's and D's learning rates are
    /// multiplied by this: after r rollbacks they are lr x mult^r (1 = unchanged; a lower rate is
    /// the usual remedy for a run that diverged or collapsed). It follows from the rollback count,
    /// which checkpoints keep, so a resume or restart keeps the lowered rates.
    #[serde(default = "default_rollback_lr_mult")]
    pub rollback_lr_mult: f64,
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

impl TrainSection {
    /// `total_kimg` in images: training ends at the first step boundary at or past it.
    pub fn total_nimg(&self) -> u64 {
        (self.total_kimg * 1000.0).round() as u64
    }
}

fn default_precision() -> Precision {
    Precision::Fp32
}

fn default_cudnn_benchmark() -> bool {
    true
}

config_enum! {
    pub enum Precision {
        Fp32 => "fp32",
        /// bfloat16 autocast on CUDA (same exponent range as fp32, so no loss scaling).
        Bf16 => "bf16",
    }
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
fn default_pl_interval() -> u32 {
    4
}
fn default_pl_decay() -> f64 {
    0.01
}
fn default_pl_batch_shrink() -> u32 {
    2
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

fn default_rollback_lr_mult() -> f64 {
    1.0
}

fn default_max_rollbacks() -> u32 {
    2
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
