//! ADA's colour transforms (StyleGAN2-ADA `augment.py`, `bgc`): brightness, contrast, luma flip,
//! hue rotation and saturation, each chosen per image with probability p, composed into one 4x4
//! affine colour matrix per image and applied once, as the reference does. Pixels are in
//! [-1, 1], so contrast scales about mid-grey (0), and luma flip, hue and saturation act about
//! the grey axis v = (1, 1, 1) / sqrt(3).
use std::f64::consts::{LN_2, PI};

use tch::{Device, Kind, Tensor};

/// `AugmentPipe`'s defaults: brightness N(0, 0.2); contrast and saturation 2^(N(0, 0.5)) and
/// 2^(N(0, 1)); hue up to a full turn.
const BRIGHTNESS_STD: f64 = 0.2;
const CONTRAST_STD: f64 = 0.5;
const SATURATION_STD: f64 = 1.0;
const HUE_MAX: f64 = 1.0;

/// Constant 4x4 matrices on the device: the identity, v v^T (the projection on the grey axis,
/// 0 in the homogeneous row and column), the cross-product matrix of v, the RGB diagonal, and
/// the column that translates RGB.
struct Basis {
    eye: Tensor,
    vv: Tensor,
    cross: Tensor,
    rgb: Tensor,
    offset: Tensor,
}

impl Basis {
    fn new(device: Device) -> Self {
        let a = 1.0 / 3f64.sqrt();
        let v = Tensor::from_slice(&[a, a, a, 0.0]).to_kind(Kind::Float);
        #[rustfmt::skip]
        let cross = Tensor::from_slice(&[
            0.0, -a, a, 0.0,
            a, 0.0, -a, 0.0,
            -a, a, 0.0, 0.0,
            0.0, 0.0, 0.0, 0.0,
        ])
        .view([4, 4]);
        let rgb = Tensor::from_slice(&[1.0f32, 1.0, 1.0, 0.0]).diag(0);
        let offset = Tensor::zeros([4, 4], (Kind::Float, Device::Cpu));
        let _ = offset.narrow(0, 0, 3).narrow(1, 3, 1).fill_(1.0);
        let to = |t: Tensor| t.to_kind(Kind::Float).to_device(device).unsqueeze(0);
        Basis {
            eye: to(Tensor::eye(4, (Kind::Float, Device::Cpu))),
            vv: to(v.outer(&v)),
            cross: to(cross),
            rgb: to(rgb),
            offset: to(offset),
        }
    }
}

/// A per-image scalar [n, 1, 1]: drawn by `draw` where the image is chosen with probability
/// `p`, else `identity`.
fn chosen_or(n: i64, p: f64, device: Device, identity: f64, draw: Tensor) -> Tensor {
    super::geometry::chosen_or(n, p, device, identity, draw).view([n, 1, 1])
}

/// Each image's colour parameters, [n, 1, 1] each; the identity values leave it alone.
pub struct ColorParams {
    /// Added to every channel (identity 0).
    pub brightness: Tensor,
    /// Gain about mid-grey (identity 1).
    pub contrast: Tensor,
    /// 1 inverts luma, 0 not.
    pub luma_flip: Tensor,
    /// Rotation about the grey axis, radians (identity 0).
    pub hue: Tensor,
    /// Gain of the distance from the grey axis (identity 1).
    pub saturation: Tensor,
}

/// Draws the pipe's parameters at probability `p`.
pub fn draw(n: i64, p: f64, device: Device) -> ColorParams {
    let normal = || Tensor::randn([n], (Kind::Float, device));
    let uniform = || Tensor::rand([n], (Kind::Float, device));
    ColorParams {
        brightness: chosen_or(n, p, device, 0.0, normal() * BRIGHTNESS_STD),
        contrast: chosen_or(n, p, device, 1.0, (normal() * (CONTRAST_STD * LN_2)).exp()),
        luma_flip: chosen_or(n, p, device, 0.0, (uniform() * 2.0).floor()),
        hue: chosen_or(n, p, device, 0.0, (uniform() * 2.0 - 1.0) * (PI * HUE_MAX)),
        saturation: chosen_or(n, p, device, 1.0, (normal() * (SATURATION_STD * LN_2)).exp()),
    }
}

/// The composed colour matrix [n, 4, 4], in the reference's order; `rgb`: hue and saturation
/// apply only to colour images (the reference skips them for one channel).
pub fn matrix(q: &ColorParams, rgb: bool, device: Device) -> Tensor {
    let b = Basis::new(device);
    let mut c = &b.eye + &b.offset * &q.brightness;
    c = (&b.eye + &b.rgb * (&q.contrast - 1.0)).matmul(&c);
    // Luma flip: reflect through the plane normal to the grey axis (inverts luma, keeps chroma).
    c = (&b.eye - &b.vv * (&q.luma_flip * 2.0)).matmul(&c);
    if rgb {
        // Hue: rotate about the grey axis (Rodrigues: cos I + sin [v]x + (1 - cos) v v^T).
        let (cos, sin) = (q.hue.cos(), q.hue.sin());
        let rotation = &b.rgb * &cos + &b.cross * sin + &b.vv * (-&cos + 1.0) + (&b.eye - &b.rgb);
        c = rotation.matmul(&c);
        // Saturation: scale the distance from the grey axis.
        c = (&b.vv + (&b.eye - &b.vv) * &q.saturation).matmul(&c);
    }
    c
}

/// Applies colour matrices `c` [n, 4, 4] to RGB or grey images in [-1, 1].
pub fn apply(x: &Tensor, c: &Tensor) -> Tensor {
    let (n, channels, h, w) = x.size4().expect("NCHW images");
    let c = c.to_kind(x.kind());
    let flat = x.reshape([n, channels, h * w]);
    let out = match channels {
        3 => c.narrow(1, 0, 3).narrow(2, 0, 3).matmul(&flat) + c.narrow(1, 0, 3).narrow(2, 3, 1),
        // One channel: the mean of the RGB rows, its gains summed (the reference's reduction).
        1 => {
            let row = c.narrow(1, 0, 3).mean_dim(1, true, Kind::Float); // [n, 1, 4]
            flat * row.narrow(2, 0, 3).sum_dim_intlist(2, true, Kind::Float) + row.narrow(2, 3, 1)
        }
        other => panic!("colour augmentation takes 1 or 3 channels, not {other} (validated in the config)"),
    };
    out.view([n, channels, h, w])
}
