//! Per-pixel noise of the synthesis layers: how it is drawn (`NoiseMode`) and the seeded noise of
//! metric sampling, generated on the layer's own device.
//!
//! Seeded noise must not depend on the batch split, the ranks or torch's generator (training
//! reseeds it every step on another thread), so each image's noise comes from a SplitMix64
//! stream keyed by (seed, image, layer), turned into normals by Box-Muller. SplitMix64 is
//! counter-based: its k-th output (from 0) is a pure function of `key + (k + 1) * GAMMA`. That
//! lets every value be computed at once with wrapping int64 tensor arithmetic on the layer's
//! device instead of in a host loop: at 256x256 a metric image needs 174,736 noise values, about
//! 5 ms per image on one CPU core, which every batch waited for before its forward
//! (`gan-train gpu-check noise` measures both forms). The values equal the host stream's
//! (`SplitMix64::for_item` + `standard_normal`) up to the last bits of the f64 `ln`/`cos`; a test
//! holds them to it.
use gan_core::rng::SplitMix64;
use tch::{Device, Kind, Tensor};

/// How per-pixel noise is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoiseMode {
    /// Fresh N(0, 1) noise every forward (training).
    Random,
    /// The layer's stored noise (`noise_const`), so a latent always draws the same image.
    Const,
    /// Fresh N(0, 1) noise as the reference's metrics draw it, but image i of the batch (image
    /// `first + i` of the evaluation) gets noise from (seed, image, layer) alone.
    Seeded { seed: u64, first: u64 },
}

const GAMMA: u64 = SplitMix64::GAMMA;

/// The key of a synthesis layer's noise: 2 x its resolution, + 1 for a block's upsampling conv0.
pub fn layer_key(resolution: i64, up: bool) -> u64 {
    2 * resolution as u64 + u64::from(up)
}

/// The stream of `layer`'s noise for one evaluation seed (what `for_item` is keyed by).
fn layer_stream(seed: u64, layer: u64) -> u64 {
    seed ^ layer.wrapping_mul(GAMMA)
}

/// N(0, 1) noise [n, 1, res, res] for images `first..first + n` of layer `layer`, on `device`.
/// Pixel j of image i is Box-Muller of outputs 2j and 2j + 1 of the image's SplitMix64 stream.
pub fn seeded_noise(seed: u64, first: u64, n: i64, layer: u64, res: i64, device: Device) -> Tensor {
    let stream = layer_stream(seed, layer);
    // Output k of a stream keyed `key` mixes the state key + (k + 1) * gamma.
    let keys: Vec<i64> =
        (first..first + n as u64).map(|image| SplitMix64::item_key(stream, image) as i64).collect();
    let keys = Tensor::from_slice(&keys).to_device(device).view([n, 1]);
    let pixels = res * res;
    let steps = Tensor::arange_start(1, 2 * pixels + 1, (Kind::Int64, device)).g_mul_scalar(GAMMA as i64);
    let states = keys + steps.view([1, 2 * pixels]); // int64 addition wraps like u64's
    let uniform = unit_interval(splitmix_output(states)).view([n, pixels, 2]);
    // In place where possible: at 256x256 a batch's temporaries are hundreds of MB.
    let mut radius = uniform.select(2, 0).clamp_min(f64::MIN_POSITIVE);
    let _ = radius.log_().g_mul_scalar_(-2.0).sqrt_();
    let mut angle = uniform.select(2, 1) * (2.0 * std::f64::consts::PI);
    let _ = radius.g_mul_(&angle.cos_());
    radius.to_kind(Kind::Float).view([n, 1, res, res])
}

/// The same noise from the host stream, value by value: the definition the tensor form follows
/// (and the speed it replaces, in `gpu-check noise`).
pub fn seeded_noise_host(seed: u64, first: u64, n: i64, layer: u64, res: i64) -> Tensor {
    let per_image = (res * res) as usize;
    let mut values = Vec::with_capacity(n as usize * per_image);
    for image in first..first + n as u64 {
        let mut rng = SplitMix64::for_item(layer_stream(seed, layer), image);
        values.extend((0..per_image).map(|_| crate::train::samples::standard_normal(&mut rng) as f32));
    }
    Tensor::from_slice(&values).view([n, 1, res, res])
}

/// SplitMix64's output function on int64 tensors holding u64 bit patterns (int64 multiplication
/// wraps like u64's), computed in place.
fn splitmix_output(mut z: Tensor) -> Tensor {
    xor_shift(&mut z, 30);
    let _ = z.g_mul_scalar_(SplitMix64::MIX[0] as i64);
    xor_shift(&mut z, 27);
    let _ = z.g_mul_scalar_(SplitMix64::MIX[1] as i64);
    xor_shift(&mut z, 31);
    z
}

/// z ^= z >> k with a logical shift: torch shifts int64 arithmetically, so the sign copies are
/// masked off.
fn xor_shift(z: &mut Tensor, k: i64) {
    let mut shifted = z.bitwise_right_shift_tensor_scalar(k);
    let _ = shifted.bitwise_and_((1i64 << (64 - k)) - 1);
    let _ = z.bitwise_xor_tensor_(&shifted);
}

/// The top 53 bits as a double in [0, 1), as `SplitMix64::next_f64`.
fn unit_interval(mut bits: Tensor) -> Tensor {
    let _ = bits.bitwise_right_shift_tensor_scalar_(11).bitwise_and_((1i64 << 53) - 1);
    let mut unit = bits.to_kind(Kind::Double);
    let _ = unit.g_mul_scalar_(1.0 / (1u64 << 53) as f64);
    unit
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tensor form reproduces the host stream: the raw 64-bit outputs exactly, the normals
    /// to the last bits of f32.
    #[test]
    fn tensor_noise_is_the_host_stream() {
        let key = SplitMix64::item_key(layer_stream(3, 17), 5);
        let outputs = splitmix_output(
            Tensor::arange_start(1, 9, (Kind::Int64, Device::Cpu)).g_mul_scalar(GAMMA as i64) + key as i64,
        );
        let mut rng = SplitMix64::for_item(layer_stream(3, 17), 5);
        let host: Vec<i64> = (0..8).map(|_| rng.next_u64() as i64).collect();
        assert_eq!(Vec::<i64>::try_from(&outputs).unwrap(), host);

        for (seed, first, layer, res) in [(0, 0, 8, 4), (7, 1000, 513, 16), (u64::MAX, 49_990, 64, 32)] {
            let device = seeded_noise(seed, first, 3, layer, res, Device::Cpu);
            let host = seeded_noise_host(seed, first, 3, layer, res);
            let gap = (&device - &host).abs().max().double_value(&[]);
            assert!(gap < 1e-6, "seed {seed} layer {layer}: {gap}");
        }
        let noise = seeded_noise(1, 0, 8, 8, 32, Device::Cpu);
        let (mean, std) = (noise.mean(Kind::Double).double_value(&[]), noise.std(true).double_value(&[]));
        assert!(mean.abs() < 0.03 && (std - 1.0).abs() < 0.03, "N(0, 1): mean {mean}, std {std}");
    }
}
