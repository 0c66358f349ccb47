//! The built-in dataset: procedurally drawn shapes, one shape per class, so whether a conditional
//! GAN learned its classes can be seen in a sample grid and measured by a classifier.
//!
//! Image `i` is a pure function of (seed, i): a dark random background and one bright random-colour
//! shape at a random position and size. Class = shape; colour and placement carry no class
//! information, so a model can only match the classes by drawing the right shape. Edges are
//! anti-aliased by 4x4 supersampling.
use super::{ImageSource, Sample};
use crate::rng::SplitMix64;

/// Shapes in class order; `num_classes` takes the first n.
pub const SHAPES: [Shape; 8] = [
    Shape::Disc,
    Shape::Square,
    Shape::Triangle,
    Shape::Ring,
    Shape::Plus,
    Shape::Diamond,
    Shape::Bars,
    Shape::Cross,
];

/// Most classes the generated source can draw.
pub const MAX_CLASSES: u32 = SHAPES.len() as u32;

/// The names of the first `num_classes` classes ("disc", "square", ...), in label order.
pub fn class_names(num_classes: u32) -> Vec<String> {
    SHAPES.iter().take(num_classes as usize).map(|s| format!("{s:?}").to_lowercase()).collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Disc,
    Square,
    Triangle,
    Ring,
    Plus,
    Diamond,
    Bars,
    Cross,
}

impl Shape {
    /// Whether offset (dx, dy) from the centre, in units of the shape's radius, is inside.
    fn contains(self, dx: f64, dy: f64) -> bool {
        let (ax, ay) = (dx.abs(), dy.abs());
        let d2 = dx * dx + dy * dy;
        match self {
            Shape::Disc => d2 <= 1.0,
            Shape::Square => ax <= 0.8 && ay <= 0.8,
            // Apex up, base at dy = 0.8; inside when below both slanted edges.
            Shape::Triangle => (-1.0..=0.8).contains(&dy) && ax <= (dy + 1.0) / 1.8 * 0.95,
            Shape::Ring => (0.3..=1.0).contains(&d2),
            Shape::Plus => (ax <= 0.28 && ay <= 1.0) || (ay <= 0.28 && ax <= 1.0),
            Shape::Diamond => ax + ay <= 1.0,
            Shape::Bars => ax <= 0.95 && ((dy - 0.5).abs() <= 0.22 || (dy + 0.5).abs() <= 0.22),
            Shape::Cross => ax <= 0.85 && ay <= 0.85 && ((dx - dy).abs() <= 0.3 || (dx + dy).abs() <= 0.3),
        }
    }
}

/// The generated dataset of a run.
#[derive(Clone, Debug)]
pub struct GeneratedShapes {
    pub seed: u64,
    pub len: u64,
    pub resolution: u32,
    pub channels: u32,
    /// 0 = unlabelled (shapes drawn at random over all classes, labels reported as 0). Configs
    /// are held to [`MAX_CLASSES`]; beyond it, classes repeat the shapes (class k draws shape
    /// k mod 8), which only stand-ins that need a dataset's label range but not its content use
    /// (the memory measurement of a dataset that is not on this machine).
    pub num_classes: u32,
}

const SUPERSAMPLE: u32 = 4;

impl GeneratedShapes {
    fn draw(&self, index: u64, pixels: &mut [u8]) -> u32 {
        let mut rng = SplitMix64::for_item(self.seed, index);
        // Balanced classes: index i has class i mod n. Unlabelled data draws its shape at random.
        let class = if self.num_classes == 0 {
            rng.below(u64::from(MAX_CLASSES)) as u32
        } else {
            (index % u64::from(self.num_classes)) as u32
        };
        let shape = SHAPES[class as usize % SHAPES.len()];
        let radius = rng.uniform(0.22, 0.36);
        let (cx, cy) = (rng.uniform(radius, 1.0 - radius), rng.uniform(radius, 1.0 - radius));
        let background: [f64; 3] = [rng.uniform(0.0, 0.3), rng.uniform(0.0, 0.3), rng.uniform(0.0, 0.3)];
        let foreground: [f64; 3] = [rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0)];
        let res = self.resolution as usize;
        let channels = self.channels as usize;
        let step = 1.0 / f64::from(self.resolution * SUPERSAMPLE);
        for y in 0..res {
            for x in 0..res {
                let mut hits = 0u32;
                for sy in 0..SUPERSAMPLE {
                    for sx in 0..SUPERSAMPLE {
                        let px = (x as f64 * f64::from(SUPERSAMPLE) + f64::from(sx) + 0.5) * step;
                        let py = (y as f64 * f64::from(SUPERSAMPLE) + f64::from(sy) + 0.5) * step;
                        hits += u32::from(shape.contains((px - cx) / radius, (py - cy) / radius));
                    }
                }
                let coverage = f64::from(hits) / f64::from(SUPERSAMPLE * SUPERSAMPLE);
                let rgb = [0, 1, 2].map(|c| background[c] + (foreground[c] - background[c]) * coverage);
                let out = &mut pixels[(y * res + x) * channels..][..channels];
                if channels == 1 {
                    out[0] = to_u8(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]);
                } else {
                    out.iter_mut().zip(rgb).for_each(|(o, v)| *o = to_u8(v));
                }
            }
        }
        if self.num_classes == 0 {
            0
        } else {
            class
        }
    }
}

fn to_u8(v: f64) -> u8 {
    (v * 255.0).round().clamp(0.0, 255.0) as u8
}

impl ImageSource for GeneratedShapes {
    fn len(&self) -> u64 {
        self.len
    }
    fn resolution(&self) -> u32 {
        self.resolution
    }
    fn channels(&self) -> u32 {
        self.channels
    }
    fn num_classes(&self) -> u32 {
        self.num_classes
    }
    fn read(&self, index: u64, pixels: &mut [u8]) -> Sample {
        Sample { label: self.draw(index, pixels) }
    }
    fn label(&self, index: u64) -> u32 {
        // As `draw`: balanced classes, and 0 for unlabelled data.
        match self.num_classes {
            0 => 0,
            n => (index % u64::from(n)) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(num_classes: u32) -> GeneratedShapes {
        GeneratedShapes { seed: 3, len: 100, resolution: 16, channels: 3, num_classes }
    }

    #[test]
    fn images_are_a_function_of_seed_and_index() {
        let src = source(4);
        let mut a = vec![0u8; src.image_bytes()];
        let mut b = vec![0u8; src.image_bytes()];
        assert_eq!(src.read(5, &mut a).label, 1);
        src.read(5, &mut b);
        assert_eq!(a, b);
        src.read(6, &mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn every_shape_covers_a_plausible_area() {
        // A radius-1 shape drawn alone must cover a clear, non-trivial part of its 2x2 box.
        for shape in SHAPES {
            let n = 200;
            let inside = (0..n * n)
                .filter(|i| {
                    let dx = (f64::from(i % n) + 0.5) / f64::from(n) * 2.0 - 1.0;
                    let dy = (f64::from(i / n) + 0.5) / f64::from(n) * 2.0 - 1.0;
                    shape.contains(dx, dy)
                })
                .count() as f64;
            let fraction = inside / f64::from(n * n);
            assert!((0.12..0.85).contains(&fraction), "{shape:?} covers {fraction}");
        }
    }

    #[test]
    fn classes_are_balanced_and_shapes_are_brighter_than_background() {
        let src = source(4);
        let mut px = vec![0u8; src.image_bytes()];
        let mut counts = [0; 4];
        for i in 0..40 {
            counts[src.read(i, &mut px).label as usize] += 1;
            let max = *px.iter().max().unwrap();
            assert!(max >= 140, "image {i} has no bright shape (max {max})");
        }
        assert_eq!(counts, [10; 4]);
    }

    /// A stand-in for a dataset with more classes than shapes reports every label in range.
    #[test]
    fn more_classes_than_shapes_repeat_the_shapes() {
        let src = source(1000);
        let mut px = vec![0u8; src.image_bytes()];
        assert_eq!(src.read(999, &mut px).label, 999);
        assert_eq!(src.label(1003), 3);
        let mut same_shape = vec![0u8; src.image_bytes()];
        source(8).draw(999, &mut same_shape);
        assert_eq!(px, same_shape, "class 999 draws shape 999 mod 8, as class 7 does");
    }
}
