//! Centre crop and resize as StyleGAN2-ADA's dataset tool does them (`--transform=center-crop`,
//! then `--resize-filter box|lanczos`; bilinear is torchvision's `Resize`): Pillow's `Image.resize`, reproduced byte for byte (two
//! separable passes, horizontal first, with weights in 22-bit fixed point and the image rounded to
//! 8 bits between the passes), so a dataset prepared here holds the pixels the tool would write.
//! The filter matters: FFHQ at 256 prepared with box instead of Lanczos moves FID by about 1 point
//! (SPECS.md 1.4), and box is what the papers' numbers used.
/// Crops the centred square of a `width x height` channels-last image. The offset of an odd
/// margin is rounded as the tool the filter comes from rounds it: down, as the dataset tool's
/// `(w - crop) // 2`, or for [`ResizeFilter::Bilinear`] half to even, as torchvision's
/// `CenterCrop` (`int(round((w - crop) / 2.0))`), which BigGAN-PyTorch's loader uses.
pub fn centre_crop(
    pixels: &[u8],
    width: u32,
    height: u32,
    channels: u32,
    filter: ResizeFilter,
) -> (Vec<u8>, u32) {
    let side = width.min(height);
    let offset = |margin: u32| match filter {
        ResizeFilter::Bilinear if margin % 4 == 3 => margin / 2 + 1,
        _ => margin / 2,
    };
    let (x0, y0) = (offset(width - side), offset(height - side));
    let (side_u, ch) = (side as usize, channels as usize);
    let mut out = Vec::with_capacity(side_u * side_u * ch);
    for y in 0..side_u {
        let row = ((y0 as usize + y) * width as usize + x0 as usize) * ch;
        out.extend_from_slice(&pixels[row..row + side_u * ch]);
    }
    (out, side)
}

/// The resampling filter (`data prepare --resize-filter`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResizeFilter {
    /// Each output pixel is the mean of the source pixels it covers: the papers' datasets.
    #[default]
    Box,
    /// Lanczos with 3 lobes: the dataset tool's default.
    Lanczos,
    /// Triangle (antialiased when shrinking): torchvision's `Resize` on a PIL image, which
    /// BigGAN-PyTorch's ImageNet loader applies after its centre crop.
    Bilinear,
}

impl ResizeFilter {
    /// Half the filter's width, in output pixels.
    fn support(self) -> f64 {
        match self {
            ResizeFilter::Box => 0.5,
            ResizeFilter::Lanczos => 3.0,
            ResizeFilter::Bilinear => 1.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            ResizeFilter::Box => f64::from(u8::from(x > -0.5 && x <= 0.5)),
            ResizeFilter::Lanczos if (-3.0..3.0).contains(&x) => sinc(x) * sinc(x / 3.0),
            ResizeFilter::Lanczos => 0.0,
            ResizeFilter::Bilinear => (1.0 - x.abs()).max(0.0),
        }
    }

    /// The name `--resize-filter` takes.
    pub fn name(self) -> &'static str {
        match self {
            ResizeFilter::Box => "box",
            ResizeFilter::Lanczos => "lanczos",
            ResizeFilter::Bilinear => "bilinear",
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let x = x * std::f64::consts::PI;
    x.sin() / x
}

/// Bits of a fixed-point weight (Pillow's PRECISION_BITS: 32 - 8 - 2).
const PRECISION_BITS: u32 = 22;

/// The source pixels one output pixel is made of: the first one's index and each one's weight.
struct Taps {
    first: usize,
    weights: Vec<i64>,
}

/// Every output index's taps, as Pillow's `precompute_coeffs` and `normalize_coeffs_8bpc` make them.
fn taps(size: u32, target: u32, filter: ResizeFilter) -> Vec<Taps> {
    let scale = f64::from(size) / f64::from(target);
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    (0..target)
        .map(|out| {
            let center = (f64::from(out) + 0.5) * scale;
            // `as i64` truncates toward zero, as the C cast does.
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let end = ((center + support + 0.5) as i64).min(i64::from(size)) as usize;
            let raw: Vec<f64> =
                (first..end).map(|x| filter.weight((x as f64 - center + 0.5) / filter_scale)).collect();
            let total: f64 = raw.iter().sum();
            let weights = raw
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    let fixed = w * f64::from(1u32 << PRECISION_BITS);
                    (if w < 0.0 { fixed - 0.5 } else { fixed + 0.5 }) as i64
                })
                .collect();
            Taps { first, weights }
        })
        .collect()
}

/// A fixed-point sum back to 8 bits.
fn clip8(sum: i64) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One pass along x (`stride` 1: within rows) or y, from `input` (`lines` lines of `size` pixels
/// along the pass) to `taps.len()` pixels per line.
fn pass(input: &[u8], size: usize, channels: usize, taps: &[Taps], horizontal: bool) -> Vec<u8> {
    let target = taps.len();
    let lines = input.len() / (size * channels);
    let mut out = vec![0u8; lines * target * channels];
    let half = 1i64 << (PRECISION_BITS - 1);
    for line in 0..lines {
        for (o, t) in taps.iter().enumerate() {
            for c in 0..channels {
                let sum = t.weights.iter().enumerate().fold(half, |acc, (k, &w)| {
                    let i = t.first + k;
                    let at = if horizontal { line * size + i } else { i * lines + line };
                    acc + i64::from(input[at * channels + c]) * w
                });
                let at = if horizontal { line * target + o } else { o * lines + line };
                out[at * channels + c] = clip8(sum);
            }
        }
    }
    out
}

/// Shrinks a square `size x size` channels-last image to `target x target` (target <= size) as
/// Pillow's `resize((target, target), BOX or LANCZOS)` does.
pub fn resize(pixels: &[u8], size: u32, channels: u32, target: u32, filter: ResizeFilter) -> Vec<u8> {
    assert!(target <= size && target > 0, "resize only shrinks");
    if target == size {
        return pixels.to_vec();
    }
    let (ch, weights) = (channels as usize, taps(size, target, filter));
    // Rows of `size` become rows of `target`; then the `target` columns, each `size` tall.
    let horizontal = pass(pixels, size as usize, ch, &weights, true);
    pass(&horizontal, size as usize, ch, &weights, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_factor_is_a_block_mean() {
        // 4x4 grayscale, 2x2 blocks of 0/100/200/40 -> 2x2.
        let src: Vec<u8> =
            (0..16u32).map(|i| [0u8, 100, 200, 40][((i / 8) * 2 + (i % 4) / 2) as usize]).collect();
        assert_eq!(resize(&src, 4, 1, 2, ResizeFilter::Box), vec![0, 100, 200, 40]);
    }

    #[test]
    fn non_integer_factor_takes_the_pixels_whose_centres_fall_in_the_box() {
        let constant = vec![77u8; 5 * 5 * 3];
        assert_eq!(resize(&constant, 5, 3, 3, ResizeFilter::Box), vec![77u8; 27]);
        // 3 -> 2, as Pillow's BOX does it: the first output pixel's box [-0.25, 1.25] in source
        // pixel units holds the centres of pixels 0 and 1; the second one's holds pixel 2's.
        let row: Vec<u8> = [0u8, 90, 180].repeat(3);
        assert_eq!(resize(&row, 3, 1, 2, ResizeFilter::Box), [45, 180, 45, 180]);
    }

    /// Pillow's `Image.resize` of seeded random RGB squares (`scripts/make_resize_fixture.py`),
    /// integer and fractional factors, box, Lanczos and bilinear: equal byte for byte.
    #[test]
    fn resizes_equal_pillows() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/data/testdata/pil_resize.json");
        let fixture: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let hex = |v: &serde_json::Value| -> Vec<u8> {
            let text = v.as_str().unwrap();
            (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
        };
        let mut checked = 0;
        for source in fixture["sources"].as_array().unwrap() {
            let size = source["size"].as_u64().unwrap() as u32;
            let pixels = hex(&source["pixels"]);
            for case in source["resizes"].as_array().unwrap() {
                let target = case["target"].as_u64().unwrap() as u32;
                let filter = match case["filter"].as_str().unwrap() {
                    "box" => ResizeFilter::Box,
                    "bilinear" => ResizeFilter::Bilinear,
                    _ => ResizeFilter::Lanczos,
                };
                let ours = resize(&pixels, size, 3, target, filter);
                assert_eq!(ours, hex(&case["expected"]), "{size} -> {target} with {filter:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, 18);
    }

    #[test]
    fn centre_crop_takes_the_middle() {
        // 4x2 (w x h), single channel: columns 1 and 2 survive.
        let (out, side) = centre_crop(&[1, 2, 3, 4, 5, 6, 7, 8], 4, 2, 1, ResizeFilter::Box);
        assert_eq!((out, side), (vec![2, 3, 6, 7], 2));
        // Odd margins: 3 of 4 columns to drop; the tool floors 1.5, torchvision rounds it to 2.
        let wide: Vec<u8> = (0..4).collect();
        assert_eq!(centre_crop(&wide, 4, 1, 1, ResizeFilter::Box).0, [1]);
        assert_eq!(centre_crop(&wide, 4, 1, 1, ResizeFilter::Bilinear).0, [2]);
        // 5 of 6: 2.5 rounds to even, 2, as floor gives.
        let wider: Vec<u8> = (0..6).collect();
        assert_eq!(centre_crop(&wider, 6, 1, 1, ResizeFilter::Bilinear).0, [2]);
    }
}
