//! ADA's general geometric transforms (StyleGAN2-ADA `augment.py`, `bgc`): isotropic scale,
//! rotation, anisotropic scale, a second rotation and fractional translation, composed per image
//! into one inverse affine map (output pixel -> source pixel, about the image centre, in pixels)
//! and applied with one bilinear resampling of the reflect-extended image.
//!
//! The reference samples a 2x upsampled image through `grid_sample` and downsamples again (its
//! anti-aliasing); this samples at the image's own resolution. Sampling is written with gathers:
//! R1 differentiates twice through the augmentation, and libtorch's `grid_sample` has no second
//! derivative (the reference carries a custom op for the same reason).
use std::f64::consts::{LN_2, PI};

use tch::{Device, Kind, Tensor};

/// Standard deviations of the log2 scales and of the translation (a fraction of the size), and
/// the largest rotation (a fraction of a half turn): `AugmentPipe`'s defaults.
const SCALE_STD: f64 = 0.2;
const ANISO_STD: f64 = 0.2;
const XFRAC_STD: f64 = 0.125;
const ROTATE_MAX: f64 = 1.0;

/// Per image: source = m @ output + t, in pixels about the image centre.
pub struct InverseAffine {
    /// [n, 2, 2], acting on (x, y).
    pub m: Tensor,
    /// [n, 2, 1].
    pub t: Tensor,
}

impl InverseAffine {
    pub fn identity(n: i64, device: Device) -> Self {
        let eye = Tensor::eye(2, (Kind::Float, device)).unsqueeze(0).repeat([n, 1, 1]);
        InverseAffine { m: eye, t: Tensor::zeros([n, 2, 1], (Kind::Float, device)) }
    }

    /// Composes the inverse of one more forward transform, applied after those before (the
    /// reference's `G_inv = G_inv @ op_inv`).
    fn then(self, m: &Tensor, t: &Tensor) -> Self {
        InverseAffine { t: self.m.matmul(t) + &self.t, m: self.m.matmul(m) }
    }

    fn then_linear(self, m: &Tensor) -> Self {
        let zero = Tensor::zeros_like(&self.t);
        self.then(m, &zero)
    }
}

/// A per-image value drawn by `draw` where an image is chosen with probability `p`, else
/// `identity` (the value that leaves images alone).
fn chosen_or(n: i64, p: f64, device: Device, identity: f64, draw: Tensor) -> Tensor {
    let chosen = Tensor::rand([n], (Kind::Float, device)).lt(p);
    draw.where_self(&chosen, &Tensor::full([n], identity, (Kind::Float, device)))
}

/// diag(1/sx, 1/sy): the inverse of scaling by (sx, sy).
fn scale_inv(sx: &Tensor, sy: &Tensor) -> Tensor {
    let zero = sx.zeros_like();
    Tensor::stack(
        &[
            Tensor::stack(&[sx.reciprocal(), zero.shallow_clone()], 1),
            Tensor::stack(&[zero, sy.reciprocal()], 1),
        ],
        1,
    )
}

/// The inverse of rotating by -theta, i.e. the rotation by theta (the reference's
/// `rotate2d_inv(-theta)`).
fn rotation(theta: &Tensor) -> Tensor {
    let (c, s) = (theta.cos(), theta.sin());
    Tensor::stack(&[Tensor::stack(&[c.shallow_clone(), -&s], 1), Tensor::stack(&[s, c], 1)], 1)
}

/// The pipe's general transforms at probability `p`, as one inverse map per image.
pub fn draw(n: i64, size: (i64, i64), p: f64, device: Device) -> InverseAffine {
    let normal = || Tensor::randn([n], (Kind::Float, device));
    let uniform = || Tensor::rand([n], (Kind::Float, device));
    let s = chosen_or(n, p, device, 1.0, (normal() * (SCALE_STD * LN_2)).exp());
    let mut g = InverseAffine::identity(n, device).then_linear(&scale_inv(&s, &s));
    // Rotation is split in two, before and after the anisotropic scale, each drawn with
    // 1 - sqrt(1 - p), so that some rotation happens with probability p.
    let p_rot = 1.0 - (1.0 - p).clamp(0.0, 1.0).sqrt();
    let turn = || chosen_or(n, p_rot, device, 0.0, (uniform() * 2.0 - 1.0) * (PI * ROTATE_MAX));
    g = g.then_linear(&rotation(&turn()));
    let a = chosen_or(n, p, device, 1.0, (normal() * (ANISO_STD * LN_2)).exp());
    g = g.then_linear(&scale_inv(&a, &a.reciprocal()));
    g = g.then_linear(&rotation(&turn()));
    let (h, w) = size;
    let scale = Tensor::from_slice(&[w as f32, h as f32]).to_device(device).view([1, 2]);
    let chosen = Tensor::rand([n, 1], (Kind::Float, device)).lt(p).to_kind(Kind::Float);
    let t = (Tensor::randn([n, 2], (Kind::Float, device)) * XFRAC_STD * scale * chosen).view([n, 2, 1]);
    let eye = Tensor::eye(2, (Kind::Float, device)).unsqueeze(0).repeat([n, 1, 1]);
    g.then(&eye, &-t)
}

/// Reflects coordinates into [0, size - 1] about the edge pixels' centres (numpy's "reflect"),
/// however far outside they fall.
fn reflect(u: &Tensor, size: i64) -> Tensor {
    let top = (size - 1) as f64;
    if top == 0.0 {
        return u.zeros_like();
    }
    let folded = u.abs().remainder(2.0 * top);
    (-(folded - top).abs() + top).clamp(0.0, top)
}

/// `x` resampled through `g`: output pixel (i, j) reads the source at g applied to its offset
/// from the centre, bilinearly, from the reflect-extended image.
pub fn resample(x: &Tensor, g: &InverseAffine) -> Tensor {
    let (n, c, h, w) = x.size4().expect("NCHW images");
    let device = x.device();
    let (cx, cy) = ((w - 1) as f64 / 2.0, (h - 1) as f64 / 2.0);
    let xs = Tensor::arange(w, (Kind::Float, device)).view([1, w]).expand([h, w], false) - cx;
    let ys = Tensor::arange(h, (Kind::Float, device)).view([h, 1]).expand([h, w], false) - cy;
    let points = Tensor::stack(&[xs.reshape([h * w]), ys.reshape([h * w])], 0).unsqueeze(0); // [1, 2, hw]
    let source = g.m.matmul(&points) + &g.t; // [n, 2, hw]
    let sx = reflect(&(source.select(1, 0) + cx), w);
    let sy = reflect(&(source.select(1, 1) + cy), h);
    let (x0, y0) = (sx.floor(), sy.floor());
    let (wx, wy) = ((&sx - &x0).view([n, 1, h * w]), (&sy - &y0).view([n, 1, h * w]));
    let (x0, y0) = (x0.to_kind(Kind::Int64), y0.to_kind(Kind::Int64));
    let (x1, y1) = ((&x0 + 1).clamp_max(w - 1), (&y0 + 1).clamp_max(h - 1));
    let flat = x.reshape([n, c, h * w]);
    let at = |yy: &Tensor, xx: &Tensor| {
        let index = (yy * w + xx).view([n, 1, h * w]).expand([n, c, h * w], false);
        flat.gather(2, &index, false)
    };
    let top = at(&y0, &x0) * (-&wx + 1.0) + at(&y0, &x1) * &wx;
    let bottom = at(&y1, &x0) * (-&wx + 1.0) + at(&y1, &x1) * &wx;
    (top * (-&wy + 1.0) + bottom * &wy).view([n, c, h, w])
}
