//! ADA (Karras et al. 2020, StyleGAN2-ADA): augmentations applied to each image with probability
//! p, where p adapts so that D's overfitting heuristic r_t = E[sign(D(real))] stays near a
//! target (SPECS.md 4.5). The transforms here are the ones the issue names from the `bgc` pipe:
//! x-flip, 90-degree rotation, integer translation (up to 1/8, reflect-padded) and isotropic
//! scale (2^(0.2 N(0,1))) as geometry; brightness (+ N(0, 0.2)), contrast (x 2^(0.5 N(0,1)))
//! and saturation (x 2^(N(0,1))) as colour. All are differentiable in the pixels.
use tch::{Device, Kind, Tensor};

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

fn normal(n: i64, device: Device) -> Tensor {
    Tensor::randn([n, 1, 1, 1], (Kind::Float, device))
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
    let x = scale(&x, p);
    let x = &x + normal(n, device) * 0.2 * chosen(n, p, device);
    let mean = x.mean_dim(&[1i64, 2, 3][..], true, Kind::Float);
    let factor = (normal(n, device) * 0.5 * std::f64::consts::LN_2).exp();
    let x = select(&chosen(n, p, device), &((&x - &mean) * factor + &mean), &x);
    let mean = x.mean_dim(1, true, Kind::Float);
    let factor = (normal(n, device) * std::f64::consts::LN_2).exp();
    select(&chosen(n, p, device), &((&x - &mean) * factor + &mean), &x)
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

/// Isotropic scale by 2^(0.2 N(0,1)) about the centre: bilinear resampling with reflection at
/// the border, written with gathers because R1 differentiates twice through it and libtorch's
/// grid_sample has no second derivative (StyleGAN2-ADA carries a custom op for the same reason).
fn scale(x: &Tensor, p: f64) -> Tensor {
    let (n, c, h, w) = x.size4().expect("NCHW images");
    let device = x.device();
    let mask = chosen(n, p, device).view([n, 1]);
    // Sampling at coordinates / s magnifies by s; unchosen images get s = 1 (identity).
    let s = (Tensor::randn([n, 1], (Kind::Float, device)) * 0.2 * std::f64::consts::LN_2).exp();
    let inv = (s.reciprocal() - 1.0) * &mask + 1.0;
    let source = |size: i64| {
        let centre = (size - 1) as f64 / 2.0;
        let coords = Tensor::arange(size, (Kind::Float, device)).view([1, size]);
        let u = (coords - centre) * &inv + centre;
        // Reflect into [0, size - 1] (one reflection covers the scales drawn here), then clamp.
        let top = (size - 1) as f64;
        let u = u.abs();
        (-(-u + top).abs() + top).clamp(0.0, top)
    };
    let (sy, sx) = (source(h), source(w)); // [n, h], [n, w]
    let (y0, x0) = (sy.floor(), sx.floor());
    let (wy, wx) = ((&sy - &y0).view([n, 1, h, 1]), (&sx - &x0).view([n, 1, 1, w]));
    let (y0, x0) = (y0.to_kind(Kind::Int64), x0.to_kind(Kind::Int64));
    let (y1, x1) = ((&y0 + 1).clamp_max(h - 1), (&x0 + 1).clamp_max(w - 1));
    let flat = x.reshape([n, c, h * w]);
    let at = |yy: &Tensor, xx: &Tensor| {
        let index =
            (yy.view([n, h, 1]) * w + xx.view([n, 1, w])).view([n, 1, h * w]).expand([n, c, h * w], false);
        flat.gather(2, &index, false).view([n, c, h, w])
    };
    let top = at(&y0, &x0) * (-&wx + 1.0) + at(&y0, &x1) * &wx;
    let bottom = at(&y1, &x0) * (-&wx + 1.0) + at(&y1, &x1) * &wx;
    top * (-&wy + 1.0) + bottom * &wy
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
