//! DiffAugment's three transforms (Zhao et al. 2020, "Differentiable Augmentation for
//! Data-Efficient GAN Training"), each drawn per image and differentiable in the pixels:
//! - color: brightness + U(-0.5, 0.5); saturation x U(0, 2) around the per-pixel channel mean;
//!   contrast x U(0.5, 1.5) around the image mean;
//! - translation: an integer shift of up to 1/8 of the size in each direction, zero-filled;
//! - cutout: a zeroed square of half the size at a random position (clipped at the border).
use tch::{Device, Kind, Tensor};

use gan_core::config::DiffAugmentOp;

/// Fraction of the image size translation may shift by.
const TRANSLATION_RATIO: f64 = 0.125;
/// Side of the cutout square as a fraction of the image size.
const CUTOUT_RATIO: f64 = 0.5;

pub fn apply(x: &Tensor, ops: &[DiffAugmentOp]) -> Tensor {
    let mut x = x.shallow_clone();
    for op in ops {
        x = match op {
            DiffAugmentOp::Color => color(&x),
            DiffAugmentOp::Translation => translation(&x),
            DiffAugmentOp::Cutout => cutout(&x),
        };
    }
    x
}

fn per_image_uniform(n: i64, device: Device) -> Tensor {
    Tensor::rand([n, 1, 1, 1], (Kind::Float, device))
}

fn color(x: &Tensor) -> Tensor {
    let (n, device) = (x.size()[0], x.device());
    let x = x + (per_image_uniform(n, device) - 0.5);
    let mean = x.mean_dim(1, true, Kind::Float);
    let x = (&x - &mean) * (per_image_uniform(n, device) * 2.0) + &mean;
    let mean = x.mean_dim(&[1i64, 2, 3][..], true, Kind::Float);
    (&x - &mean) * (per_image_uniform(n, device) + 0.5) + &mean
}

/// Index grids [n, h, w] of batch, row and column.
fn grids(n: i64, h: i64, w: i64, device: Device) -> (Tensor, Tensor, Tensor) {
    let opts = (Kind::Int64, device);
    let b = Tensor::arange(n, opts).view([n, 1, 1]).expand([n, h, w], false);
    let r = Tensor::arange(h, opts).view([1, h, 1]).expand([n, h, w], false);
    let c = Tensor::arange(w, opts).view([1, 1, w]).expand([n, h, w], false);
    (b, r, c)
}

fn translation(x: &Tensor) -> Tensor {
    let (n, h, w) = (x.size()[0], x.size()[2], x.size()[3]);
    let device = x.device();
    let (sh, sw) = ((h as f64 * TRANSLATION_RATIO + 0.5) as i64, (w as f64 * TRANSLATION_RATIO + 0.5) as i64);
    let tx = Tensor::randint_low(-sh, sh + 1, [n, 1, 1], (Kind::Int64, device));
    let ty = Tensor::randint_low(-sw, sw + 1, [n, 1, 1], (Kind::Int64, device));
    let (b, r, c) = grids(n, h, w, device);
    // Read from a copy padded with one zero row/column on each side; out-of-range reads land there.
    let r = (r + tx + 1).clamp(0, h + 1);
    let c = (c + ty + 1).clamp(0, w + 1);
    let padded = x.constant_pad_nd([1, 1, 1, 1]).permute([0, 2, 3, 1]);
    padded.index(&[Some(b), Some(r), Some(c)]).permute([0, 3, 1, 2])
}

fn cutout(x: &Tensor) -> Tensor {
    let (n, h, w) = (x.size()[0], x.size()[2], x.size()[3]);
    let device = x.device();
    let (ch, cw) = ((h as f64 * CUTOUT_RATIO + 0.5) as i64, (w as f64 * CUTOUT_RATIO + 0.5) as i64);
    let ox = Tensor::randint(h + (1 - ch % 2), [n, 1, 1], (Kind::Int64, device));
    let oy = Tensor::randint(w + (1 - cw % 2), [n, 1, 1], (Kind::Int64, device));
    let (b, r, c) = grids(n, ch, cw, device);
    let r = (r + ox - ch / 2).clamp(0, h - 1);
    let c = (c + oy - cw / 2).clamp(0, w - 1);
    let mask = Tensor::ones([n, h, w], (Kind::Float, device));
    let mask = mask.index_put(&[Some(b), Some(r), Some(c)], &Tensor::zeros([], (Kind::Float, device)), false);
    x * mask.unsqueeze(1)
}
