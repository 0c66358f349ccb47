//! ADA's general geometric transforms (StyleGAN2-ADA `augment.py`, `bgc`): isotropic scale,
//! rotation, anisotropic scale, a second rotation and fractional translation, composed per image
//! into one inverse affine map (output pixel -> source pixel, about the image centre, in pixels)
//! and executed as the reference does: reflect-pad by what the batch's corners need, upsample 2x
//! through the sym6 wavelet low-pass, sample bilinearly (zeros outside), and downsample 2x
//! through the same filter. The 2x pass keeps the transforms from aliasing.
//!
//! Sampling is written with gathers: R1 differentiates twice through the augmentation, and
//! libtorch's `grid_sample` has no second derivative (the reference carries a custom op for the
//! same reason).
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
pub(super) fn chosen_or(n: i64, p: f64, device: Device, identity: f64, draw: Tensor) -> Tensor {
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

/// sym6, Daubechies' least-asymmetric wavelet of 12 taps (its low-pass decomposition filter,
/// as the reference's `wavelets` table lists it).
const SYM6: [f64; 12] = [
    0.015404109327027373,
    0.0034907120842174702,
    -0.11799011114819057,
    -0.048311742585633,
    0.4910559419267466,
    0.787641141030194,
    0.3379294217276218,
    -0.07263752278646252,
    -0.021060292512300564,
    0.04472490177066578,
    0.0017677118642428036,
    -0.007800708325034148,
];

/// Output pixels beyond each side of the image the 2x pass computes, so the down-filter has its
/// whole support: a quarter of the filter's taps.
const HZ_PAD: i64 = SYM6.len() as i64 / 4;

/// A 3x3 matrix [1, 3, 3] on the device.
fn affine3(rows: [[f64; 3]; 3], device: Device) -> Tensor {
    let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
    Tensor::from_slice(&flat).view([1, 3, 3]).to_device(device)
}

fn translate3(tx: f64, ty: f64, device: Device) -> Tensor {
    affine3([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]], device)
}

fn scale3(sx: f64, sy: f64, device: Device) -> Tensor {
    affine3([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]], device)
}

impl InverseAffine {
    /// The homogeneous form [n, 3, 3].
    fn homogeneous(&self) -> Tensor {
        let n = self.m.size()[0];
        let top = Tensor::cat(&[&self.m, &self.t], 2);
        let bottom = Tensor::from_slice(&[0.0f32, 0.0, 1.0]).to_device(self.m.device()).view([1, 1, 3]);
        Tensor::cat(&[top, bottom.repeat([n, 1, 1])], 1)
    }
}

/// `upfirdn2d` with the separable 12-tap filter along one axis (3: width, 2: height): insert
/// `up - 1` zeros after each sample, pad (negative: crop), filter, keep every `down`-th sample.
/// `flip`: reverse the taps, i.e. convolve rather than correlate (the reference's
/// `flip_filter=False`).
fn upfirdn_axis(x: &Tensor, axis: i64, up: i64, down: i64, pad: (i64, i64), flip: bool, gain: f64) -> Tensor {
    let x = if axis == 2 { x.transpose(2, 3) } else { x.shallow_clone() };
    let (n, c, h, w) = x.size4().expect("NCHW images");
    let x = x.reshape([n, c, h, w, 1]).constant_pad_nd([0, up - 1]).reshape([n * c, 1, h, w * up]);
    let x = x.constant_pad_nd([pad.0.max(0), pad.1.max(0)]);
    let len = x.size()[3];
    let x = x.narrow(3, (-pad.0).max(0), len - (-pad.0).max(0) - (-pad.1).max(0));
    let taps: Vec<f32> = if flip { SYM6.iter().rev().copied().collect() } else { SYM6.to_vec() }
        .iter()
        .map(|&v| (v / SYM6.iter().sum::<f64>() * gain) as f32)
        .collect();
    let f = Tensor::from_slice(&taps).to_device(x.device()).to_kind(x.kind()).view([1, 1, 1, -1]);
    let y = x.conv2d(&f, None::<Tensor>, [1, down], [0, 0], [1, 1], 1);
    let (yh, yw) = (y.size()[2], y.size()[3]);
    let y = y.reshape([n, c, yh, yw]);
    if axis == 2 {
        y.transpose(2, 3)
    } else {
        y
    }
}

/// Bilinear sampling of `img` at `theta` applied to the normalised coordinates of an `out`-sized
/// grid (`affine_grid` + `grid_sample`, align_corners false): taps outside the image read 0.
fn sample(img: &Tensor, theta: &Tensor, out: (i64, i64)) -> Tensor {
    let (n, c, ih, iw) = img.size4().expect("NCHW images");
    let (oh, ow) = out;
    let device = img.device();
    let axis = |size: i64| (Tensor::arange(size, (Kind::Float, device)) * 2.0 + 1.0) / size as f64 - 1.0;
    let xs = axis(ow).view([1, ow]).expand([oh, ow], false).reshape([oh * ow]);
    let ys = axis(oh).view([oh, 1]).expand([oh, ow], false).reshape([oh * ow]);
    let base = Tensor::stack(&[xs, ys, Tensor::ones([oh * ow], (Kind::Float, device))], 0).unsqueeze(0);
    let grid = theta.narrow(1, 0, 2).matmul(&base); // [n, 2, oh * ow]
    let px = ((grid.select(1, 0) + 1.0) * iw as f64 - 1.0) / 2.0;
    let py = ((grid.select(1, 1) + 1.0) * ih as f64 - 1.0) / 2.0;
    let (x0, y0) = (px.floor(), py.floor());
    let (wx, wy) = ((&px - &x0).view([n, 1, oh * ow]), (&py - &y0).view([n, 1, oh * ow]));
    let flat = img.reshape([n, c, ih * iw]);
    let tap = |yy: &Tensor, xx: &Tensor| {
        let inside = xx
            .ge(0.0)
            .logical_and(&xx.le((iw - 1) as f64))
            .logical_and(&yy.ge(0.0))
            .logical_and(&yy.le((ih - 1) as f64));
        let index = (yy.clamp(0.0, (ih - 1) as f64) * iw as f64 + xx.clamp(0.0, (iw - 1) as f64))
            .to_kind(Kind::Int64);
        let index = index.view([n, 1, oh * ow]).expand([n, c, oh * ow], false);
        flat.gather(2, &index, false) * inside.to_kind(Kind::Float).view([n, 1, oh * ow])
    };
    let (x1, y1) = (&x0 + 1.0, &y0 + 1.0);
    let top = tap(&y0, &x0) * (-&wx + 1.0) + tap(&y0, &x1) * &wx;
    let bottom = tap(&y1, &x0) * (-&wx + 1.0) + tap(&y1, &x1) * &wx;
    (top * (-&wy + 1.0) + bottom * &wy).view([n, c, oh, ow])
}

/// The reflect padding (left, top, right, bottom) the pass needs: what every image's
/// transformed corners reach, plus the filter's reach, at most the image size less one (what
/// reflection can give). None when no image has a general transform. One host read, as the
/// reference's `margin.ceil().to(torch.int32)`.
fn margins(g_inv: &Tensor, (h, w): (i64, i64)) -> Option<[i64; 4]> {
    let device = g_inv.device();
    let (cx, cy) = ((w - 1) as f64 / 2.0, (h - 1) as f64 / 2.0);
    #[rustfmt::skip]
    let corners = Tensor::from_slice(&[
        -cx, cx, cx, -cx,
        -cy, -cy, cy, cy,
        1.0, 1.0, 1.0, 1.0,
    ]);
    let corners = corners.to_kind(Kind::Float).view([1, 3, 4]).to_device(device);
    let cp = g_inv.matmul(&corners).narrow(1, 0, 2).permute([1, 0, 2]).reshape([2, -1]);
    let reach = |v: f64| ((2 * HZ_PAD) as f64 - v) as f32;
    let offset = Tensor::from_slice(&[reach(cx), reach(cy), reach(cx), reach(cy)]).to_device(device);
    let (wmax, hmax) = ((w - 1) as f32, (h - 1) as f32);
    let top = Tensor::from_slice(&[wmax, hmax, wmax, hmax]).to_device(device);
    let margin = (Tensor::cat(&[-&cp, cp], 0).amax(1, false) + offset).clamp_min(0.0).minimum(&top).ceil();
    let moved = (g_inv - Tensor::eye(3, (Kind::Float, device))).abs().max().view([1]);
    let host = Tensor::cat(&[margin, moved], 0).to_kind(Kind::Double).to_device(Device::Cpu);
    let host = Vec::<f64>::try_from(host).expect("five numbers");
    (host[4] != 0.0).then(|| [host[0], host[1], host[2], host[3]].map(|v| v as i64))
}

/// `x` transformed by `g` as the reference executes its geometric pass; `x` itself when no image
/// has a general transform (the pass would only round-trip through the filters).
pub fn apply(x: &Tensor, g: &InverseAffine) -> Tensor {
    let (_, _, h, w) = x.size4().expect("NCHW images");
    let device = x.device();
    let g_inv = g.homogeneous();
    let Some([mx0, my0, mx1, my1]) = margins(&g_inv, (h, w)) else {
        return x.shallow_clone();
    };
    let padded = x.reflection_pad2d([mx0, mx1, my0, my1]);
    let mut g_inv = translate3((mx0 - mx1) as f64 / 2.0, (my0 - my1) as f64 / 2.0, device).matmul(&g_inv);
    // Upsample 2x (gain 2 per axis), and express the map in the upsampled pixels.
    let taps = SYM6.len() as i64;
    let up_pad = ((taps + 1) / 2, (taps - 2) / 2);
    let up = upfirdn_axis(&upfirdn_axis(&padded, 3, 2, 1, up_pad, true, 2.0), 2, 2, 1, up_pad, true, 2.0);
    g_inv = scale3(2.0, 2.0, device).matmul(&g_inv).matmul(&scale3(0.5, 0.5, device));
    g_inv = translate3(-0.5, -0.5, device).matmul(&g_inv).matmul(&translate3(0.5, 0.5, device));
    // Sample an output HZ_PAD pixels wider on each side, in normalised coordinates.
    let (oh, ow) = ((h + HZ_PAD * 2) * 2, (w + HZ_PAD * 2) * 2);
    let (ih, iw) = (up.size()[2], up.size()[3]);
    let to_input = scale3(2.0 / iw as f64, 2.0 / ih as f64, device);
    let from_output = scale3(ow as f64 / 2.0, oh as f64 / 2.0, device);
    let sampled = sample(&up, &to_input.matmul(&g_inv).matmul(&from_output), (oh, ow));
    // Downsample 2x through the same filter as a correlation, cropping the extra border.
    let down_pad = ((taps - 1) / 2 - 2 * HZ_PAD, (taps - 2) / 2 - 2 * HZ_PAD);
    upfirdn_axis(&upfirdn_axis(&sampled, 3, 1, 2, down_pad, false, 1.0), 2, 1, 2, down_pad, false, 1.0)
}
