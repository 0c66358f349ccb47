//! The synthesis network (`SynthesisNetwork`, skip architecture): a learned 4x4 constant, then one
//! block per resolution of modulated 3x3 convolutions (the first upsampling), per-pixel noise, and
//! a ToRGB whose output is added to the upsampled image of the block before. Each layer takes its
//! own w, so styles can be mixed between layers.
use tch::{nn, Kind, Tensor};

use super::layers::{bias_act, Act, FullyConnected};
use super::noise::{layer_key, seeded_noise, NoiseMode};
use super::resample;

/// Modulated convolution (`modulated_conv2d`, training form): the input channels are scaled by
/// `styles` [N, C_in], convolved with the shared weight, and, with `demodulate`, every output
/// channel is scaled by 1/sqrt(sum_{i,k} (s_i w_{o,i,k})^2 + 1e-8). That is the same as
/// convolving with per-sample demodulated weights; the coefficients come from
/// styles^2 x (sum_k w^2)^T, without building the [N, O, I, k, k] weights.
pub fn modulated_conv2d(
    x: &Tensor,
    weight: &Tensor,
    styles: &Tensor,
    demodulate: bool,
    up: Option<&Tensor>,
) -> Tensor {
    let n = x.size()[0];
    let modulated = x * styles.view([n, -1, 1, 1]);
    let y = match up {
        Some(filter) => resample::conv3x3_up(&modulated, weight, filter),
        None => resample::conv_same(&modulated, weight),
    };
    if !demodulate {
        return y;
    }
    let w_sq = weight.square().sum_dim_intlist([2, 3].as_slice(), false, None); // [O, I]
    let dcoefs = (styles.square().matmul(&w_sq.tr()) + 1e-8).rsqrt(); // [N, O]
    y * dcoefs.view([n, -1, 1, 1])
}

/// A modulated 3x3 convolution with noise, bias and lrelu (`SynthesisLayer`).
struct SynthesisLayer {
    affine: FullyConnected,
    weight: Tensor,
    bias: Tensor,
    noise_const: Tensor,
    noise_strength: Tensor,
    up: Option<Tensor>,
    resolution: i64,
    /// Distinguishes the layers' seeded noise: 2 x resolution, + 1 for a block's conv0.
    noise_key: u64,
    conv_clamp: Option<f64>,
}

impl SynthesisLayer {
    fn new(
        p: nn::Path,
        c_in: i64,
        c_out: i64,
        w_dim: i64,
        resolution: i64,
        up: bool,
        conv_clamp: Option<f64>,
    ) -> Self {
        let affine = FullyConnected::new(&p / "affine", w_dim, c_in, Act::Linear, 1.0, 1.0);
        let weight = p.var("weight", &[c_out, c_in, 3, 3], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
        let noise_const = p.zeros_no_train("noise_const", &[resolution, resolution]);
        tch::no_grad(|| {
            noise_const
                .shallow_clone()
                .copy_(&Tensor::randn([resolution, resolution], (Kind::Float, p.device())))
        });
        SynthesisLayer {
            affine,
            weight,
            bias: p.zeros("bias", &[c_out]),
            noise_const,
            noise_strength: p.zeros("noise_strength", &[]),
            up: up.then(|| resample::fir_filter(p.device())),
            resolution,
            noise_key: layer_key(resolution, up),
            conv_clamp,
        }
    }

    fn forward(&self, x: &Tensor, w: &Tensor, noise: NoiseMode) -> Tensor {
        let styles = self.affine.forward(w);
        let y = modulated_conv2d(x, &self.weight, &styles, true, self.up.as_ref());
        let n = x.size()[0];
        let noise = match noise {
            NoiseMode::Random => {
                Tensor::randn([n, 1, self.resolution, self.resolution], (y.kind(), y.device()))
            }
            NoiseMode::Const => self.noise_const.view([1, 1, self.resolution, self.resolution]),
            NoiseMode::Seeded { seed, first } => {
                seeded_noise(seed, first, n, self.noise_key, self.resolution, y.device()).to_kind(y.kind())
            }
        };
        let y = y + noise * &self.noise_strength;
        bias_act(&y, Some(&self.bias), Act::Lrelu, 1.0, self.conv_clamp)
    }
}

/// A 1x1 modulated convolution to image channels without demodulation (`ToRGBLayer`).
struct ToRgb {
    affine: FullyConnected,
    weight: Tensor,
    bias: Tensor,
    weight_gain: f64,
    conv_clamp: Option<f64>,
}

impl ToRgb {
    fn new(p: nn::Path, c_in: i64, img_channels: i64, w_dim: i64, conv_clamp: Option<f64>) -> Self {
        ToRgb {
            affine: FullyConnected::new(&p / "affine", w_dim, c_in, Act::Linear, 1.0, 1.0),
            weight: p.var("weight", &[img_channels, c_in, 1, 1], nn::Init::Randn { mean: 0.0, stdev: 1.0 }),
            bias: p.zeros("bias", &[img_channels]),
            weight_gain: 1.0 / (c_in as f64).sqrt(),
            conv_clamp,
        }
    }

    fn forward(&self, x: &Tensor, w: &Tensor) -> Tensor {
        let styles = self.affine.forward(w) * self.weight_gain;
        let y = modulated_conv2d(x, &self.weight, &styles, false, None);
        bias_act(&y, Some(&self.bias), Act::Linear, 1.0, self.conv_clamp)
    }
}

/// One resolution (`SynthesisBlock`): b4 holds the constant and one conv, later blocks two convs
/// (the first upsamples); every block ends in ToRGB.
struct Block {
    constant: Option<Tensor>,
    conv0: Option<SynthesisLayer>,
    conv1: SynthesisLayer,
    torgb: ToRgb,
    filter: Tensor,
}

impl Block {
    /// ws this block's convolutions consume (its ToRGB reads the next one, shared with the next block).
    fn num_conv(&self) -> i64 {
        if self.conv0.is_some() {
            2
        } else {
            1
        }
    }

    fn forward(
        &self,
        x: Option<Tensor>,
        img: Option<Tensor>,
        ws: &Tensor,
        noise: NoiseMode,
    ) -> (Tensor, Tensor) {
        let w = |i: i64| ws.select(1, i);
        let (x, next) = match (&self.constant, &self.conv0, x) {
            (Some(constant), _, _) => {
                let n = ws.size()[0];
                let x = constant.unsqueeze(0).repeat([n, 1, 1, 1]).to_kind(ws.kind());
                (self.conv1.forward(&x, &w(0), noise), 1)
            }
            (None, Some(conv0), Some(x)) => {
                let x = conv0.forward(&x, &w(0), noise);
                (self.conv1.forward(&x, &w(1), noise), 2)
            }
            _ => unreachable!("a block after b4 always gets the previous block's features"),
        };
        let rgb = self.torgb.forward(&x, &w(next));
        let img = match img {
            Some(img) => resample::upsample2d(&img, &self.filter) + rgb,
            None => rgb,
        };
        (x, img)
    }
}

/// What the synthesis network is.
#[derive(Clone, Copy, Debug)]
pub struct SynthesisSpec {
    pub w_dim: i64,
    pub resolution: i64,
    pub img_channels: i64,
    pub channel_base: i64,
    pub channel_max: i64,
    pub conv_clamp: Option<f64>,
}

impl SynthesisSpec {
    pub fn channels_at(&self, res: i64) -> i64 {
        (self.channel_base / res).min(self.channel_max)
    }

    /// Block resolutions 4, 8, ..., resolution.
    pub fn block_resolutions(&self) -> Vec<i64> {
        (2..).map(|log2| 1i64 << log2).take_while(|&r| r <= self.resolution).collect()
    }

    /// ws the network reads: 2 log2(resolution) - 2.
    pub fn num_ws(&self) -> i64 {
        2 * self.block_resolutions().len() as i64
    }
}

pub struct Synthesis {
    blocks: Vec<Block>,
}

impl Synthesis {
    pub fn new(p: nn::Path, s: SynthesisSpec) -> Self {
        let blocks = s
            .block_resolutions()
            .into_iter()
            .map(|res| {
                let bp = &p / format!("b{res}");
                let c_out = s.channels_at(res);
                let first = res == 4;
                let c_in = if first { 0 } else { s.channels_at(res / 2) };
                let layer = |name: &str, c_in, up| {
                    SynthesisLayer::new(&bp / name, c_in, c_out, s.w_dim, res, up, s.conv_clamp)
                };
                Block {
                    constant: first
                        .then(|| bp.var("const", &[c_out, 4, 4], nn::Init::Randn { mean: 0.0, stdev: 1.0 })),
                    conv0: (!first).then(|| layer("conv0", c_in, true)),
                    conv1: layer("conv1", c_out, false),
                    torgb: ToRgb::new(&bp / "torgb", c_out, s.img_channels, s.w_dim, s.conv_clamp),
                    filter: resample::fir_filter(p.device()),
                }
            })
            .collect();
        Synthesis { blocks }
    }

    /// Images [N, C, res, res] from ws [N, num_ws, w_dim].
    pub fn forward(&self, ws: &Tensor, noise: NoiseMode) -> Tensor {
        let (mut x, mut img) = (None, None);
        let mut w_idx = 0;
        for block in &self.blocks {
            let span = block.num_conv() + 1;
            let (y, rgb) = block.forward(x, img, &ws.narrow(1, w_idx, span), noise);
            (x, img) = (Some(y), Some(rgb));
            w_idx += block.num_conv();
        }
        img.expect("at least the 4x4 block")
    }
}
