//! The `model` section: which network family and its shapes. Keys of one family say so in
//! their docs; the others ignore them.
use serde::{Deserialize, Serialize};

use super::config_enum;

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
    /// StyleGAN2: size of the intermediate latent w (512 in every reference config).
    #[serde(default = "default_w_dim")]
    pub w_dim: u32,
    /// StyleGAN2: fully connected layers of the mapping network (8 for paper256, 2 for cifar).
    #[serde(default = "default_mapping_layers")]
    pub mapping_layers: u32,
    /// StyleGAN2: learning-rate multiplier of the mapping network (0.01).
    #[serde(default = "default_mapping_lr_mult")]
    pub mapping_lr_mult: f64,
    /// StyleGAN2: D's block type (resnet for paper256, orig for cifar).
    #[serde(default = "default_d_architecture")]
    pub d_architecture: DArchitecture,
    /// StyleGAN2: images per minibatch-stddev group (paper256 8, cifar 32; capped at the
    /// per-rank batch, which it must divide).
    #[serde(default = "default_mbstd_group_size")]
    pub mbstd_group_size: u32,
    /// StyleGAN2: clamp of every conv's output (256 in the reference's mixed-precision setup;
    /// none = no clamp).
    #[serde(default)]
    pub conv_clamp: Option<f64>,
}

fn default_w_dim() -> u32 {
    512
}
fn default_mapping_layers() -> u32 {
    8
}
fn default_mapping_lr_mult() -> f64 {
    0.01
}
fn default_d_architecture() -> DArchitecture {
    DArchitecture::Resnet
}
fn default_mbstd_group_size() -> u32 {
    4
}

config_enum! {
    pub enum DArchitecture {
        /// Residual blocks: a 1x1 downsampling skip added to the main path, both scaled by sqrt(0.5).
        Resnet => "resnet",
        /// Plain conv blocks, one FromRGB at the input (StyleGAN2-ADA's cifar config).
        Orig => "orig",
    }
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
        /// StyleGAN2 (Karras et al. 2020, as StyleGAN2-ADA): mapping network, modulated convolutions,
        /// skip G, resnet or orig D with minibatch stddev; optionally conditional.
        Stylegan2 => "stylegan2",
    }
}
