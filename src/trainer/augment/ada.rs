//! ADA (Karras et al. 2020, StyleGAN2-ADA): augmentations applied to each image with probability
//! p, where p adapts so that D's overfitting heuristic r_t = E[sign(D(real))] stays near a
//! target (SPECS.md 4.5). The pipe is the reference's default `bgc`, in its order: pixel blits
//! (x-flip, 90-degree rotation, integer translation up to 1/8, reflect-padded), the general
//! geometric transforms (`geometry`: isotropic scale, rotation, anisotropic scale, rotation,
//! fractional translation) and the colour transforms (`color`: brightness, contrast, luma flip,
//! hue, saturation). All are differentiable in the pixels, twice (R1 runs through them).
use tch::{Device, Kind, Tensor};

use super::{color, geometry};

/// Fraction of the size integer translation may shift by.
const TRANSLATION_RATIO: f64 = 0.125;

/// A per-image mask [n, 1, 1, 1] that is 1 with probability p.
fn chosen(n: i64, p: f64, device: Device) -> Tensor {
    Tensor::rand([n, 1, 1, 1], (Kind::Float, device)).lt(p).to_kind(Kind::Float)
}

/// Where `mask` is 1, `a`; else `b`.
fn select(mask: &Tensor, a: &Tensor, b: &Tensor) -> Tensor {
    a * mask + b * (-mask + 1.0)
}

/// The whole pipe at probability `p` (square images).
pub fn apply(x: &Tensor, p: f64) -> Tensor {
    if p <= 0.0 {
        return x.shallow_clone();
    }
    let (n, device) = (x.size()[0], x.device());
    let x = select(&chosen(n, p, device), &x.flip([3]), x);
    let x = rotate90(&x, p);
    let x = translate(&x, p);
    let (h, w) = (x.size()[2], x.size()[3]);
    let x = geometry::apply(&x, &geometry::draw(n, (h, w), p, device));
    let rgb = x.size()[1] == 3;
    color::apply(&x, &color::matrix(&color::draw(n, p, device), rgb, device))
}

/// Rotation by k x 90 degrees, k uniform in {0, 1, 2, 3}, for the chosen images.
fn rotate90(x: &Tensor, p: f64) -> Tensor {
    let (n, device) = (x.size()[0], x.device());
    let mask = chosen(n, p, device);
    let k = Tensor::randint(4, [n, 1, 1, 1], (Kind::Int64, device));
    let mut out = x.shallow_clone();
    for quarter in 1..4i64 {
        let this = k.eq(quarter).to_kind(Kind::Float) * &mask;
        out = select(&this, &x.rot90(quarter, [2, 3]), &out);
    }
    out
}

/// Integer translation up to 1/8 of the size in each direction, reading reflect-padded pixels.
fn translate(x: &Tensor, p: f64) -> Tensor {
    let (n, h, w) = (x.size()[0], x.size()[2], x.size()[3]);
    let device = x.device();
    let pad = ((h as f64) * TRANSLATION_RATIO).ceil() as i64;
    let mask = chosen(n, p, device).view([n, 1, 1]).to_kind(Kind::Int64);
    let shift = |size: i64| {
        let t =
            (Tensor::rand([n, 1, 1], (Kind::Float, device)) * 2.0 - 1.0) * (TRANSLATION_RATIO * size as f64);
        t.round().to_kind(Kind::Int64) * &mask
    };
    let opts = (Kind::Int64, device);
    let b = Tensor::arange(n, opts).view([n, 1, 1]).expand([n, h, w], false);
    let r = Tensor::arange(h, opts).view([1, h, 1]).expand([n, h, w], false) + shift(h) + pad;
    let c = Tensor::arange(w, opts).view([1, 1, w]).expand([n, h, w], false) + shift(w) + pad;
    let padded = x.reflection_pad2d([pad, pad, pad, pad]).permute([0, 2, 3, 1]);
    padded.index(&[Some(b), Some(r), Some(c)]).permute([0, 3, 1, 2])
}

/// The adaptive controller: every `interval` steps, p moves by batch x interval /
/// (ada_kimg x 1000), up when D is too sure about reals (r_t > target), down otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct AdaController {
    pub p: f64,
    pub target: f64,
    pub interval: u32,
    pub ada_kimg: f64,
    /// Sum of sign(D(real)) over all ranks and the number of logits, since the last adjustment.
    pub sign_sum: f64,
    pub sign_count: f64,
    /// Steps since the last adjustment.
    pub steps: u32,
}

impl AdaController {
    /// Adds one step's real-logit signs (summed over all ranks); adjusts p every `interval`
    /// steps and returns r_t when it did.
    pub fn observe(&mut self, sign_sum: f64, sign_count: f64, batch_size: u32) -> Option<f64> {
        self.sign_sum += sign_sum;
        self.sign_count += sign_count;
        self.steps += 1;
        if self.steps < self.interval {
            return None;
        }
        let r_t = self.sign_sum / self.sign_count.max(1.0);
        let step = f64::from(batch_size * self.interval) / (self.ada_kimg * 1000.0);
        self.p = (self.p + (r_t - self.target).signum() * step).clamp(0.0, 1.0);
        self.sign_sum = 0.0;
        self.sign_count = 0.0;
        self.steps = 0;
        Some(r_t)
    }

    /// The state a checkpoint keeps (`TrainState::augment`).
    pub fn state(&self) -> Vec<(String, f64)> {
        vec![
            ("ada_p".into(), self.p),
            ("ada_sign_sum".into(), self.sign_sum),
            ("ada_sign_count".into(), self.sign_count),
            ("ada_steps".into(), f64::from(self.steps)),
        ]
    }

    /// Restores what [`AdaController::state`] saved (missing keys keep their values).
    pub fn restore(&mut self, saved: &std::collections::BTreeMap<String, f64>) {
        let get = |k: &str, v: f64| saved.get(k).copied().unwrap_or(v);
        self.p = get("ada_p", self.p);
        self.sign_sum = get("ada_sign_sum", self.sign_sum);
        self.sign_count = get("ada_sign_count", self.sign_count);
        self.steps = get("ada_steps", f64::from(self.steps)) as u32;
    }
}
