//! BigGAN (Brock et al. 2018) as in BigGAN-PyTorch (`BigGAN.py`, `layers.py`): residual G with
//! class-conditional BN fed by a shared class embedding and a hierarchical latent, projection D
//! with global sum pooling, spectral norm in both, SAGAN self-attention at the configured
//! resolutions. Channel tables per resolution follow the reference `G_arch`/`D_arch`
//! (SPECS.md 3.1); parameter names follow its state dict, and on the same weights the outputs
//! and the spectral-norm and BN updates equal the reference's (tests, against its own outputs).
mod discriminator;
mod generator;
mod layers;

#[cfg(test)]
mod tests;

pub use discriminator::Discriminator;
pub use generator::Generator;
pub use layers::{largest_sv0, WeightInit};

use gan_core::config::{ModelInit, RunConfig};

/// BatchNorm epsilon of the reference scripts (`--BN_eps 1e-5`).
const BN_EPS: f64 = 1e-5;

/// Everything that shapes a BigGAN pair.
#[derive(Clone, Debug, PartialEq)]
pub struct BigGanSpec {
    pub resolution: i64,
    pub img_channels: i64,
    /// Width multiplier `ch` (96 for ImageNet-128, 64 for CIFAR).
    pub ch: i64,
    pub z_dim: i64,
    pub classes: i64,
    /// Split z into one chunk per G block plus one for the input (`--hier`).
    pub hier: bool,
    /// Shared class embedding size (`--G_shared --shared_dim`); 0: per-layer class embeddings.
    pub shared_dim: i64,
    /// Resolutions with self-attention, in G and in D.
    pub attention_res: Vec<i64>,
    pub init: WeightInit,
    pub sn_eps: f64,
}

impl Default for BigGanSpec {
    /// The CIFAR-10 model of BigGAN-PyTorch's `launch_cifar_ema.sh` (SPECS.md 3.3).
    fn default() -> Self {
        BigGanSpec {
            resolution: 32,
            img_channels: 3,
            ch: 64,
            z_dim: 128,
            classes: 10,
            hier: false,
            shared_dim: 0,
            attention_res: Vec::new(),
            init: WeightInit::Normal002,
            sn_eps: 1e-8,
        }
    }
}

impl BigGanSpec {
    pub fn from_config(cfg: &RunConfig) -> Self {
        let m = &cfg.model;
        BigGanSpec {
            resolution: cfg.data.resolution.into(),
            img_channels: cfg.data.channels.into(),
            ch: m.ch.into(),
            z_dim: m.z_dim.into(),
            classes: cfg.data.num_classes.into(),
            hier: m.hier,
            shared_dim: m.shared_dim.into(),
            attention_res: m.attention_res.iter().map(|&r| r.into()).collect(),
            init: match m.init {
                ModelInit::Orthogonal => WeightInit::Orthogonal,
                ModelInit::Normal002 => WeightInit::Normal002,
            },
            sn_eps: m.sn_eps,
        }
    }
}

/// G's (in, out) channel multipliers per block; every block doubles the resolution from 4x4.
fn g_arch(resolution: i64) -> (&'static [i64], &'static [i64]) {
    match resolution {
        32 => (&[4, 4, 4], &[4, 4, 4]),
        64 => (&[16, 16, 8, 4], &[16, 8, 4, 2]),
        128 => (&[16, 16, 8, 4, 2], &[16, 8, 4, 2, 1]),
        256 => (&[16, 16, 8, 8, 4, 2], &[16, 8, 8, 4, 2, 1]),
        other => panic!("BigGAN has no architecture for resolution {other} (validated in the config)"),
    }
}

/// D's blocks: (in multiplier (0 = image channels), out multiplier, downsample).
fn d_arch(resolution: i64) -> &'static [(i64, i64, bool)] {
    match resolution {
        32 => &[(0, 4, true), (4, 4, true), (4, 4, false), (4, 4, false)],
        64 => &[(0, 1, true), (1, 2, true), (2, 4, true), (4, 8, true), (8, 16, false)],
        128 => &[(0, 1, true), (1, 2, true), (2, 4, true), (4, 8, true), (8, 16, true), (16, 16, false)],
        256 => &[
            (0, 1, true),
            (1, 2, true),
            (2, 4, true),
            (4, 8, true),
            (8, 8, true),
            (8, 16, true),
            (16, 16, false),
        ],
        other => panic!("BigGAN has no architecture for resolution {other} (validated in the config)"),
    }
}
