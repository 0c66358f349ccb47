//! Networks. Each family builds a generator G(z, c) -> images in [-1, 1] (NCHW) and a
//! discriminator D(x, c) -> one logit per image, with parameters named by their `nn::Path`, so
//! checkpoints and G_ema (built from the same path tree) line up by name. Model code holds
//! architecture only: no losses, no optimizers.
pub mod biggan;
pub mod dcgan;
pub mod layers;
#[cfg(test)]
pub mod reference_fixtures;
pub mod stylegan2;

use tch::{nn, Tensor};

use gan_core::config::{Arch, RunConfig};

/// G: latent `z` [N, z_dim] and class labels `c` [N] (int64; ignored when unconditional).
pub trait Generator: Send {
    /// Training mode: batch statistics, and spectral-norm state advances.
    fn forward(&self, z: &Tensor, c: &Tensor) -> Tensor;
    /// Sampling mode (G_ema's grids and evaluation): running statistics, nothing updated.
    fn forward_eval(&self, z: &Tensor, c: &Tensor) -> Tensor {
        self.forward(z, c)
    }
    /// Sampling with the truncation trick at `psi`. Where it happens depends on the family
    /// ([`Generator::truncation`]): for latent truncation the caller draws truncated z and this
    /// is `forward_eval`.
    fn forward_truncated(&self, z: &Tensor, c: &Tensor, _psi: f64) -> Tensor {
        self.forward_eval(z, c)
    }
    /// Sampling for metrics: images `first..` of an evaluation drawn from `seed`. Families
    /// with stochastic inputs besides z (StyleGAN2's noise) draw them per image from the seed,
    /// as the reference's metrics draw fresh ones; the others are `forward_eval`.
    fn forward_metric(&self, z: &Tensor, c: &Tensor, _seed: u64, _first: u64) -> Tensor {
        self.forward_eval(z, c)
    }
    /// `forward_metric` with the truncation trick at `psi`, for families that apply it in G
    /// ([`Truncation::TowardWAvg`]); for latent truncation the caller draws truncated z and this
    /// is `forward_metric`.
    fn forward_metric_truncated(&self, z: &Tensor, c: &Tensor, seed: u64, first: u64, _psi: f64) -> Tensor {
        self.forward_metric(z, c, seed, first)
    }
    fn truncation(&self) -> Truncation {
        Truncation::Latent
    }
    fn z_dim(&self) -> i64;
    /// Running statistics that every rank updates from its own batch and that ranks average
    /// after each step, so they stay identical (StyleGAN2's `w_avg`).
    fn running_means(&self) -> Vec<Tensor> {
        Vec::new()
    }
    /// StyleGAN2's generator, for the phases that need its ws (path-length regularisation).
    fn with_ws(&self) -> Option<&stylegan2::Generator> {
        None
    }
}

/// Where a family applies the truncation trick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truncation {
    /// BigGAN: latents redrawn beyond |z| = 2, then scaled by psi.
    Latent,
    /// StyleGAN: w pulled toward the running mean, w_avg + psi (w - w_avg).
    TowardWAvg,
}

/// D: images [N, C, H, W] in [-1, 1] and labels [N] -> logits [N].
pub trait Discriminator: Send {
    fn forward(&self, x: &Tensor, c: &Tensor) -> Tensor;
    /// Whether each logit depends on its own image alone (no statistics across the batch), so
    /// reals and fakes may share one forward pass. StyleGAN2's minibatch stddev mixes the images
    /// of a group, so it must see them apart.
    fn per_image(&self) -> bool {
        false
    }
}

/// Network shapes a run needs, taken from its config.
#[derive(Clone, Debug, PartialEq)]
pub struct NetSpec {
    pub z_dim: i64,
    pub resolution: i64,
    pub channels: i64,
    /// 0 when unconditional.
    pub c_dim: i64,
    pub channel_base: i64,
    pub channel_max: i64,
    /// BigGAN's own settings (width, hierarchy, shared embedding, attention, init).
    pub biggan: biggan::BigGanSpec,
    /// StyleGAN2's own settings (mapping, D architecture, minibatch stddev, clamp, mixing).
    pub stylegan2: stylegan2::StyleGan2Spec,
}

impl NetSpec {
    pub fn from_config(cfg: &RunConfig) -> Self {
        let m = &cfg.model;
        NetSpec {
            z_dim: m.z_dim.into(),
            resolution: cfg.data.resolution.into(),
            channels: cfg.data.channels.into(),
            c_dim: if m.conditional { cfg.data.num_classes.into() } else { 0 },
            channel_base: m.channel_base.into(),
            channel_max: m.channel_max.into(),
            biggan: biggan::BigGanSpec::from_config(cfg),
            stylegan2: stylegan2::StyleGan2Spec::from_config(cfg),
        }
    }

    /// Channels at resolution `res`: min(channel_base / res, channel_max), as in StyleGAN.
    pub fn channels_at(&self, res: i64) -> i64 {
        (self.channel_base / res).clamp(1, self.channel_max)
    }

    /// Block resolutions from 8 up to the output resolution.
    pub fn block_resolutions(&self) -> impl Iterator<Item = i64> {
        let top = self.resolution;
        (3..).map(|log2| 1i64 << log2).take_while(move |&r| r <= top)
    }
}

/// Builds G for the configured architecture under `path`.
pub fn generator(arch: Arch, spec: &NetSpec, path: nn::Path) -> Box<dyn Generator> {
    match arch {
        Arch::Dcgan => Box::new(dcgan::Generator::new(spec, path)),
        Arch::Biggan => Box::new(biggan::Generator::new(&spec.biggan, path)),
        Arch::Stylegan2 => Box::new(stylegan2::Generator::new(&spec.stylegan2, path)),
    }
}

/// Builds D for the configured architecture under `path`.
pub fn discriminator(arch: Arch, spec: &NetSpec, path: nn::Path) -> Box<dyn Discriminator> {
    match arch {
        Arch::Dcgan => Box::new(dcgan::Discriminator::new(spec, path)),
        Arch::Biggan => Box::new(biggan::Discriminator::new(&spec.biggan, path)),
        Arch::Stylegan2 => Box::new(stylegan2::Discriminator::new(&spec.stylegan2, path)),
    }
}
