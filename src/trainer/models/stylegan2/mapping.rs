//! The mapping network z (+ class) -> w (`MappingNetwork`): both inputs normalised to unit second
//! moment, the class through a linear embedding, then `num_layers` fully connected lrelu layers at
//! a learning-rate multiplier of 0.01. G's tracks the running mean `w_avg` (for truncation) and
//! broadcasts w to every synthesis layer; D's (conditioning only) maps the class to a projection.
use tch::{nn, Kind, Tensor};

use super::layers::{normalize_2nd_moment, Act, FullyConnected};

/// Decay of G's running mean of w, per training forward.
pub const W_AVG_BETA: f64 = 0.995;

/// What a mapping network is.
#[derive(Clone, Copy, Debug)]
pub struct MappingSpec {
    /// 0 for D's label-only mapping.
    pub z_dim: i64,
    /// Classes; 0 when unconditional.
    pub c_dim: i64,
    pub w_dim: i64,
    pub num_layers: i64,
    pub lr_mult: f64,
    /// Copies of w handed to the synthesis network; 0: return w itself ([N, w_dim]).
    pub num_ws: i64,
    /// Keep `w_avg` (G's mapping, for truncation).
    pub track_w_avg: bool,
}

pub struct Mapping {
    embed: Option<FullyConnected>,
    fcs: Vec<FullyConnected>,
    /// Running mean of w (buffer `w_avg`), when tracked.
    pub w_avg: Option<Tensor>,
    spec: MappingSpec,
}

impl Mapping {
    pub fn new(p: nn::Path, spec: MappingSpec) -> Self {
        // The embedding is linear at the full learning rate; its output size is w_dim.
        let embed = (spec.c_dim > 0)
            .then(|| FullyConnected::new(&p / "embed", spec.c_dim, spec.w_dim, Act::Linear, 1.0, 0.0));
        let in_features = spec.z_dim + if spec.c_dim > 0 { spec.w_dim } else { 0 };
        let fcs = (0..spec.num_layers)
            .map(|i| {
                let c_in = if i == 0 { in_features } else { spec.w_dim };
                FullyConnected::new(&p / format!("fc{i}"), c_in, spec.w_dim, Act::Lrelu, spec.lr_mult, 0.0)
            })
            .collect();
        let w_avg = spec.track_w_avg.then(|| p.zeros_no_train("w_avg", &[spec.w_dim]));
        Mapping { embed, fcs, w_avg, spec }
    }

    /// w for latents `z` [N, z_dim] (ignored when z_dim is 0) and labels `c` [N] (int64; ignored
    /// when unconditional). `update_w_avg`: a training forward moves `w_avg` toward this batch's
    /// mean. `psi` < 1 truncates: w_avg + psi (w - w_avg).
    pub fn forward(&self, z: Option<&Tensor>, c: &Tensor, update_w_avg: bool, psi: f64) -> Tensor {
        let mut parts = Vec::new();
        if let (Some(z), true) = (z, self.spec.z_dim > 0) {
            parts.push(normalize_2nd_moment(&z.to_kind(Kind::Float)));
        }
        if let Some(embed) = &self.embed {
            let one_hot = c.onehot(self.spec.c_dim).to_kind(Kind::Float);
            parts.push(normalize_2nd_moment(&embed.forward(&one_hot)));
        }
        let mut x = Tensor::cat(&parts, 1);
        for fc in &self.fcs {
            x = fc.forward(&x);
        }
        if let (Some(w_avg), true) = (&self.w_avg, update_w_avg) {
            tch::no_grad(|| {
                let batch_mean = x.detach().mean_dim(0, false, None);
                w_avg.shallow_clone().copy_(&batch_mean.lerp(w_avg, W_AVG_BETA));
            });
        }
        if let (Some(w_avg), true) = (&self.w_avg, psi != 1.0) {
            x = w_avg.lerp(&x, psi);
        }
        match self.spec.num_ws {
            0 => x,
            n => x.unsqueeze(1).repeat([1, n, 1]),
        }
    }
}
