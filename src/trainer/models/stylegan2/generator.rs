//! G = synthesis(mapping(z, c)) with style mixing in training and truncation toward `w_avg` in
//! sampling, as StyleGAN2-ADA's `Generator` and the `run_G` of its loss.
use tch::{nn, Kind, Tensor};

use super::mapping::{Mapping, MappingSpec};
use super::noise::NoiseMode;
use super::synthesis::Synthesis;
use super::StyleGan2Spec;
use crate::models::Truncation;

pub struct Generator {
    pub mapping: Mapping,
    pub synthesis: Synthesis,
    z_dim: i64,
    num_ws: i64,
    style_mixing_prob: f64,
}

impl Generator {
    pub fn new(spec: &StyleGan2Spec, p: nn::Path) -> Self {
        let synthesis_spec = spec.synthesis();
        let num_ws = synthesis_spec.num_ws();
        let mapping = Mapping::new(
            &p / "mapping",
            MappingSpec {
                z_dim: spec.z_dim,
                c_dim: spec.c_dim,
                w_dim: spec.w_dim,
                num_layers: spec.mapping_layers,
                lr_mult: spec.mapping_lr_mult,
                num_ws,
                track_w_avg: true,
            },
        );
        Generator {
            mapping,
            synthesis: Synthesis::new(&p / "synthesis", synthesis_spec),
            z_dim: spec.z_dim,
            num_ws,
            style_mixing_prob: spec.style_mixing_prob,
        }
    }

    #[cfg(test)]
    pub fn num_ws(&self) -> i64 {
        self.num_ws
    }

    /// Training ws: w_avg moves toward the batch; with probability `style_mixing_prob` the ws
    /// from a random layer cutoff in [1, num_ws) on come from a second latent. One cutoff per
    /// batch, as the reference; chosen with device tensors, so no host round trip.
    pub fn training_ws(&self, z: &Tensor, c: &Tensor) -> Tensor {
        let ws = self.mapping.forward(Some(z), c, true, 1.0);
        if self.style_mixing_prob <= 0.0 {
            return ws;
        }
        let device = z.device();
        let cutoff = Tensor::randint_low(1, self.num_ws, [1], (Kind::Int64, device));
        let mixing = Tensor::rand([1], (Kind::Float, device)).lt(self.style_mixing_prob);
        let cutoff = cutoff.where_self(&mixing, &Tensor::full([1], self.num_ws, (Kind::Int64, device)));
        let layer = Tensor::arange(self.num_ws, (Kind::Int64, device));
        let from_second = layer.ge_tensor(&cutoff).view([1, self.num_ws, 1]);
        let ws2 = self.mapping.forward(Some(&z.randn_like()), c, false, 1.0);
        ws2.where_self(&from_second, &ws)
    }

    /// Training forward returning the images and the ws they came from (path-length
    /// regularisation differentiates the images with respect to the ws).
    pub fn forward_with_ws(&self, z: &Tensor, c: &Tensor) -> (Tensor, Tensor) {
        let ws = self.training_ws(z, c);
        (self.synthesis.forward(&ws, NoiseMode::Random), ws)
    }

    /// Sampling: w_avg fixed, ws truncated by `psi`, the layers' stored noise.
    pub fn sample(&self, z: &Tensor, c: &Tensor, psi: f64) -> Tensor {
        let ws = self.mapping.forward(Some(z), c, false, psi);
        self.synthesis.forward(&ws, NoiseMode::Const)
    }

    /// Sampling with fresh noise per image from (seed, image index), as the metrics do, with w
    /// truncated toward w_avg at `psi` (1: none).
    pub fn sample_seeded(&self, z: &Tensor, c: &Tensor, seed: u64, first: u64, psi: f64) -> Tensor {
        let ws = self.mapping.forward(Some(z), c, false, psi);
        self.synthesis.forward(&ws, NoiseMode::Seeded { seed, first })
    }
}

impl crate::models::Generator for Generator {
    fn forward(&self, z: &Tensor, c: &Tensor) -> Tensor {
        self.forward_with_ws(z, c).0
    }

    fn forward_eval(&self, z: &Tensor, c: &Tensor) -> Tensor {
        self.sample(z, c, 1.0)
    }

    fn forward_truncated(&self, z: &Tensor, c: &Tensor, psi: f64) -> Tensor {
        self.sample(z, c, psi)
    }

    fn forward_metric(&self, z: &Tensor, c: &Tensor, seed: u64, first: u64) -> Tensor {
        self.sample_seeded(z, c, seed, first, 1.0)
    }

    fn forward_metric_truncated(&self, z: &Tensor, c: &Tensor, seed: u64, first: u64, psi: f64) -> Tensor {
        self.sample_seeded(z, c, seed, first, psi)
    }

    fn truncation(&self) -> Truncation {
        Truncation::TowardWAvg
    }

    fn z_dim(&self) -> i64 {
        self.z_dim
    }

    fn running_means(&self) -> Vec<Tensor> {
        self.mapping.w_avg.iter().map(Tensor::shallow_clone).collect()
    }

    fn with_ws(&self) -> Option<&Generator> {
        Some(self)
    }
}
