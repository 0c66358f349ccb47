//! StyleGAN2 (Karras et al. 2020) as in NVlabs/stylegan2-ada-pytorch `training/networks.py`
//! (SPECS.md 4): mapping network with `w_avg` and truncation, skip generator of modulated and
//! demodulated convolutions with noise, resnet or orig discriminator with minibatch stddev,
//! [1, 3, 3, 1] FIR resampling and the equalized learning rate throughout. Parameter names follow
//! the reference's state dict (`mapping.fc0.weight`, `synthesis.b8.conv0.affine.bias`,
//! `b32.skip.weight`, ...). The fp16 layers and the fused grouped convolution of the reference
//! are speed devices with the same mathematics; this port runs the unfused form in fp32.
mod discriminator;
mod generator;
mod layers;
mod mapping;
pub mod noise;
mod resample;
mod synthesis;

#[cfg(test)]
mod tests;

#[cfg(test)]
use discriminator::minibatch_std;
pub use discriminator::Discriminator;
pub use generator::Generator;
#[cfg(test)]
use synthesis::modulated_conv2d;

use gan_core::config::{DArchitecture, RunConfig};
use synthesis::SynthesisSpec;

/// Everything that shapes a StyleGAN2 pair.
#[derive(Clone, Debug, PartialEq)]
pub struct StyleGan2Spec {
    pub resolution: i64,
    pub img_channels: i64,
    pub z_dim: i64,
    pub w_dim: i64,
    /// Classes; 0 when unconditional.
    pub c_dim: i64,
    pub channel_base: i64,
    pub channel_max: i64,
    pub mapping_layers: i64,
    pub mapping_lr_mult: f64,
    pub d_architecture: DArchitecture,
    pub mbstd_group_size: i64,
    pub conv_clamp: Option<f64>,
    /// Probability of mixing two latents' ws in a training forward.
    pub style_mixing_prob: f64,
    /// FreezeD: D's first this many layers, from its highest resolution, are not trained.
    pub freeze_d: i64,
}

impl StyleGan2Spec {
    #[cfg(test)]
    /// StyleGAN2-ADA's `cifar` config (SPECS.md 4.1): 32x32, 512 channels everywhere, 2 mapping
    /// layers, orig D, minibatch-stddev groups of 32, no style mixing.
    pub fn cifar(c_dim: i64) -> Self {
        StyleGan2Spec {
            resolution: 32,
            img_channels: 3,
            z_dim: 512,
            w_dim: 512,
            c_dim,
            channel_base: 32768,
            channel_max: 512,
            mapping_layers: 2,
            mapping_lr_mult: 0.01,
            d_architecture: DArchitecture::Orig,
            mbstd_group_size: 32,
            conv_clamp: Some(256.0),
            style_mixing_prob: 0.0,
            freeze_d: 0,
        }
    }

    #[cfg(test)]
    /// The `paper256` config: 256x256, channel_base 16384, 8 mapping layers, resnet D, groups of
    /// 8, style mixing 0.9.
    pub fn paper256(c_dim: i64) -> Self {
        StyleGan2Spec {
            resolution: 256,
            channel_base: 16384,
            mapping_layers: 8,
            d_architecture: DArchitecture::Resnet,
            mbstd_group_size: 8,
            style_mixing_prob: 0.9,
            ..Self::cifar(c_dim)
        }
    }

    pub fn from_config(cfg: &RunConfig) -> Self {
        let m = &cfg.model;
        StyleGan2Spec {
            resolution: cfg.data.resolution.into(),
            img_channels: cfg.data.channels.into(),
            z_dim: m.z_dim.into(),
            w_dim: m.w_dim.into(),
            c_dim: if m.conditional { cfg.data.num_classes.into() } else { 0 },
            channel_base: m.channel_base.into(),
            channel_max: m.channel_max.into(),
            mapping_layers: m.mapping_layers.into(),
            mapping_lr_mult: m.mapping_lr_mult,
            d_architecture: m.d_architecture,
            mbstd_group_size: m.mbstd_group_size.into(),
            conv_clamp: m.conv_clamp,
            style_mixing_prob: cfg.train.style_mixing_prob,
            freeze_d: cfg.train.freeze_d.into(),
        }
    }

    fn synthesis(&self) -> SynthesisSpec {
        SynthesisSpec {
            w_dim: self.w_dim,
            resolution: self.resolution,
            img_channels: self.img_channels,
            channel_base: self.channel_base,
            channel_max: self.channel_max,
            conv_clamp: self.conv_clamp,
        }
    }
}
