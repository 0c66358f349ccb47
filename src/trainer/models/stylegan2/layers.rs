//! StyleGAN2's plain layers with the equalized learning rate: weights are stored ~N(0, 1)
//! (N(0, 1) / lr_mult for fully connected layers) and scaled at run time by 1/sqrt(fan_in)
//! (x lr_mult), so every layer learns at the same pace under Adam. Activations are
//! lrelu(0.2) x sqrt(2), which keeps the signal's magnitude, with an optional clamp.
use tch::{nn, Tensor};

use super::resample;

/// Leaky ReLU with slope 0.2, written as max(x, 0.2 x) so it is differentiable twice (R1 and
/// path length take gradients of gradients).
fn lrelu(x: &Tensor) -> Tensor {
    x.maximum(&(x * 0.2))
}

/// Which nonlinearity a layer applies after its bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Linear,
    /// lrelu(0.2) x sqrt(2).
    Lrelu,
}

/// x + bias, then the activation times its gain times `gain`, clamped to +-`clamp` (`bias_act`).
pub fn bias_act(x: &Tensor, bias: Option<&Tensor>, act: Act, gain: f64, clamp: Option<f64>) -> Tensor {
    let mut y = match bias {
        Some(b) => {
            let mut shape = vec![1, -1];
            shape.resize(x.dim(), 1);
            x + b.to_kind(x.kind()).view(shape.as_slice())
        }
        None => x.shallow_clone(),
    };
    y = match act {
        Act::Linear => y,
        Act::Lrelu => lrelu(&y) * std::f64::consts::SQRT_2,
    };
    if gain != 1.0 {
        y *= gain;
    }
    match clamp {
        Some(c) => y.clamp(-c, c),
        None => y,
    }
}

/// A fully connected layer (`FullyConnectedLayer`): `weight` [out, in], `bias` [out].
pub struct FullyConnected {
    pub weight: Tensor,
    pub bias: Tensor,
    weight_gain: f64,
    bias_gain: f64,
    act: Act,
}

impl FullyConnected {
    pub fn new(p: nn::Path, c_in: i64, c_out: i64, act: Act, lr_mult: f64, bias_init: f64) -> Self {
        let weight = p.var("weight", &[c_out, c_in], nn::Init::Randn { mean: 0.0, stdev: 1.0 / lr_mult });
        let bias = p.var("bias", &[c_out], nn::Init::Const(bias_init));
        FullyConnected { weight, bias, weight_gain: lr_mult / (c_in as f64).sqrt(), bias_gain: lr_mult, act }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let w = (&self.weight * self.weight_gain).to_kind(x.kind());
        let b = &self.bias * self.bias_gain;
        bias_act(&x.matmul(&w.tr()), Some(&b), self.act, 1.0, None)
    }
}

/// How a convolution changes the resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    Same,
    Down,
}

/// D's convolution layer (`Conv2dLayer`): `weight` [out, in, k, k], optional `bias` [out].
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    weight_gain: f64,
    act: Act,
    resample: Resample,
    conv_clamp: Option<f64>,
    filter: Tensor,
}

/// What a [`Conv2d`] is.
#[derive(Clone, Copy, Debug)]
pub struct ConvSpec {
    pub c_in: i64,
    pub c_out: i64,
    pub kernel: i64,
    pub bias: bool,
    pub act: Act,
    pub resample: Resample,
    pub conv_clamp: Option<f64>,
}

impl Conv2d {
    pub fn new(p: nn::Path, s: ConvSpec) -> Self {
        let init = nn::Init::Randn { mean: 0.0, stdev: 1.0 };
        let weight = p.var("weight", &[s.c_out, s.c_in, s.kernel, s.kernel], init);
        let bias = s.bias.then(|| p.zeros("bias", &[s.c_out]));
        Conv2d {
            weight,
            bias,
            weight_gain: 1.0 / ((s.c_in * s.kernel * s.kernel) as f64).sqrt(),
            act: s.act,
            resample: s.resample,
            conv_clamp: s.conv_clamp,
            filter: resample::fir_filter(p.device()),
        }
    }

    /// The layer with its output scaled by `gain` (resnet D scales both paths by sqrt(0.5)).
    /// Takes the layer out of training (FreezeD): its parameters get no gradients, so no
    /// optimizer includes them, as the reference registers an untrainable layer's as buffers.
    pub fn freeze(&self) {
        let _ = self.weight.set_requires_grad(false);
        if let Some(bias) = &self.bias {
            let _ = bias.set_requires_grad(false);
        }
    }

    pub fn forward_gain(&self, x: &Tensor, gain: f64) -> Tensor {
        let w = &self.weight * self.weight_gain;
        let y = match self.resample {
            Resample::Same => resample::conv_same(x, &w),
            Resample::Down => resample::conv_down(x, &w, &self.filter),
        };
        bias_act(&y, self.bias.as_ref(), self.act, gain, self.conv_clamp.map(|c| c * gain))
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_gain(x, 1.0)
    }
}

/// x / sqrt(mean(x^2) + 1e-8) over the feature axis (`normalize_2nd_moment`).
pub fn normalize_2nd_moment(x: &Tensor) -> Tensor {
    x * (x.square().mean_dim(1, true, None) + 1e-8).rsqrt()
}
