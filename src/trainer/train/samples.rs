//! Sample grids: a fixed set of latents (one row per class when conditional, up to
//! [`MAX_GRID_ROWS`] classes spread over the rest) rendered through G_ema a row at a time and
//! written as PNG, so successive grids show the same "people" evolving. The latents come from the
//! torch-free generator keyed by the run seed, independent of training's random stream.
use std::path::Path;

use tch::{Device, Tensor};

use crate::models::{Generator, Truncation};
use gan_core::data::ImageSource;
use gan_core::diversity::GridRows;
use gan_core::error::Result;
use gan_core::images::write_grid;
use gan_core::rng::SplitMix64;

/// Columns of a grid; rows are the classes (or 8 rows when unconditional).
pub const GRID_COLS: u32 = 8;

/// Rows of a class-conditional grid at most: ImageNet's 1000 classes would make a grid of 8000
/// images, 128,000 pixels tall, and a forward pass no GPU holds.
pub const MAX_GRID_ROWS: u32 = 16;

/// The class of each row of a conditional grid: every class when there are at most
/// [`MAX_GRID_ROWS`], else that many spread evenly over them (0, n/16, 2n/16, ...).
pub fn grid_classes(num_classes: u32) -> Vec<u32> {
    let rows = num_classes.min(MAX_GRID_ROWS);
    (0..rows).map(|r| (u64::from(r) * u64::from(num_classes) / u64::from(rows)) as u32).collect()
}

pub struct SampleGrid {
    z: Tensor,
    c: Tensor,
    rows: u32,
    /// Row r's class, when the rows are the classes of [`grid_classes`] (as the reals grid's).
    row_classes: Option<Vec<u32>>,
    /// Truncation psi applied by G (StyleGAN's, toward w_avg); None when there is none or the
    /// latents carry it (BigGAN's).
    psi_in_g: Option<f64>,
}

/// A sample grid's images, channels-last uint8, `GRID_COLS` a row.
pub struct RenderedGrid {
    pixels: Vec<u8>,
    res: u32,
    channels: u32,
    rows: u32,
}

impl RenderedGrid {
    /// Writes the grid as a PNG at `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_grid(path, &self.pixels, self.res, self.channels, self.rows, GRID_COLS)
    }

    /// Its images, row by row.
    pub fn rows(&self) -> GridRows {
        let image_bytes = (self.channels * self.res * self.res) as usize;
        let images: Vec<Vec<u8>> = self.pixels.chunks(image_bytes.max(1)).map(<[u8]>::to_vec).collect();
        images.chunks(GRID_COLS as usize).map(<[Vec<u8>]>::to_vec).collect()
    }
}

impl SampleGrid {
    /// A grid of `rows x GRID_COLS` latents; row r is class r when `num_classes` > 0.
    pub fn new(z_dim: i64, num_classes: u32, seed: u64, device: Device) -> Self {
        Self::with_options(z_dim, num_classes, seed, device, None, None)
    }

    /// As [`SampleGrid::new`], optionally truncated at psi = `truncation` in the way of `space`
    /// (BigGAN: latent entries with |z| > 2 redrawn, then scaled by psi; StyleGAN: w pulled toward
    /// w_avg by G) and every row of class `class`.
    pub fn with_options(
        z_dim: i64,
        num_classes: u32,
        seed: u64,
        device: Device,
        truncation: Option<(f64, Truncation)>,
        class: Option<u32>,
    ) -> Self {
        let latent_psi = truncation.filter(|(_, space)| *space == Truncation::Latent).map(|(psi, _)| psi);
        let psi_in_g = truncation.filter(|(_, space)| *space != Truncation::Latent).map(|(psi, _)| psi);
        let row_classes = match (num_classes, class) {
            (0, _) => vec![0; 8],
            (_, Some(k)) => vec![k; 8],
            (n, None) => grid_classes(n),
        };
        let rows = row_classes.len() as u32;
        let count = (rows * GRID_COLS) as usize;
        let mut rng = SplitMix64::for_item(seed, 0x5A4D_504C_4553); // stream "SAMPLES"
        let z: Vec<f32> =
            (0..count * z_dim as usize).map(|_| latent_entry(&mut rng, latent_psi) as f32).collect();
        let c: Vec<i64> = (0..count).map(|i| row_classes[i / GRID_COLS as usize].into()).collect();
        SampleGrid {
            z: Tensor::from_slice(&z).view([count as i64, z_dim]).to_device(device),
            c: Tensor::from_slice(&c).to_device(device),
            rows,
            row_classes: (num_classes > 0 && class.is_none()).then_some(row_classes),
            psi_in_g,
        }
    }

    /// Renders the grid with `g`, a row per forward pass (a whole grid at once would hold the
    /// activations of every image: gigabytes at 256x256).
    pub fn render(&self, g: &dyn Generator) -> RenderedGrid {
        let (mut pixels, mut shape) = (Vec::new(), (0, 0));
        for row in 0..i64::from(self.rows) {
            let cols = i64::from(GRID_COLS);
            let (z, c) = (self.z.narrow(0, row * cols, cols), self.c.narrow(0, row * cols, cols));
            let images = tch::no_grad(|| match self.psi_in_g {
                Some(psi) => g.forward_truncated(&z, &c, psi),
                None => g.forward_eval(&z, &c),
            });
            shape = (images.size()[1] as u32, images.size()[2] as u32);
            pixels.extend(to_uint8_nhwc(&images));
        }
        let (channels, res) = shape;
        RenderedGrid { pixels, res, channels, rows: self.rows }
    }

    /// Renders the grid with `g` and writes it to `path`.
    pub fn write(&self, g: &dyn Generator, path: &Path) -> Result<()> {
        self.render(g).save(path)
    }

    /// Row r's class, when row r shows class `grid_classes(..)[r]` as the reals grid's row r
    /// does (a conditional grid not asked for one class).
    pub fn row_classes(&self) -> Option<&[u32]> {
        self.row_classes.as_deref()
    }
}

/// One entry of a latent z: standard normal, or with latent truncation at `psi` (BigGAN) redrawn
/// while |z| > 2, then scaled by psi.
pub fn latent_entry(rng: &mut SplitMix64, psi: Option<f64>) -> f64 {
    let Some(psi) = psi else { return standard_normal(rng) };
    loop {
        let v = standard_normal(rng);
        if v.abs() <= 2.0 {
            return v * psi;
        }
    }
}

/// Images in [-1, 1] (NCHW float) to channels-last uint8, quantised as StyleGAN does
/// (`eval::extract::quantise`).
pub fn to_uint8_nhwc(images: &Tensor) -> Vec<u8> {
    let q = crate::eval::extract::quantise(images);
    let nhwc = q.permute([0, 2, 3, 1]).contiguous().to_device(Device::Cpu);
    Vec::try_from(&nhwc.reshape([-1])).expect("uint8 tensor converts to Vec<u8>")
}

/// Labels the reals grid looks at most, per row. Labels are cheap (every source keeps them apart
/// from the pixels, and only the grid's images are decoded), so the scan can be long: 16 rows
/// draw 65,536 labels, about 65 of each class of ImageNet's 1000, where 8 are needed.
const REALS_SCAN_PER_ROW: u64 = 512 * GRID_COLS as u64;

/// The reals grid's images: each row holds up to GRID_COLS images of its class
/// ([`grid_classes`]), or of the dataset when unlabelled.
pub fn reals_grid_rows(source: &dyn ImageSource) -> GridRows {
    let classes = grid_classes(source.num_classes());
    let rows = if classes.is_empty() { 8 } else { classes.len() as u32 };
    let image_bytes = source.image_bytes();
    let mut cells: GridRows = vec![Vec::new(); rows as usize];
    // Images drawn at random over the dataset (a fixed stream, so the grid is the same every
    // time), so rows fill whether its classes are interleaved (generated shapes: class = index
    // mod classes, which an even stride can alias with) or one after the other (a prepared folder
    // of class folders). Labels are looked at first: only the images of the grid are decoded.
    let scan = (u64::from(rows) * REALS_SCAN_PER_ROW).min(source.len());
    let mut rng = SplitMix64::for_item(0, 0x0052_4541_4C53); // stream "REALS"
    let mut seen = std::collections::HashSet::new();
    for i in 0..scan {
        let index = if scan == source.len() { i } else { rng.next_u64() % source.len() };
        if !seen.insert(index) {
            continue;
        }
        let row = if classes.is_empty() {
            i as usize % 8
        } else {
            match classes.iter().position(|&c| c == source.label(index)) {
                Some(row) => row,
                None => continue,
            }
        };
        if cells[row].len() < GRID_COLS as usize {
            let mut pixels = vec![0u8; image_bytes];
            source.read(index, &mut pixels);
            cells[row].push(pixels);
            if cells.iter().all(|row| row.len() == GRID_COLS as usize) {
                break;
            }
        }
    }
    cells
}

/// Writes the reals grid's rows as PNG; a class with fewer than GRID_COLS images leaves black
/// cells.
pub fn write_reals_grid(rows: &GridRows, source: &dyn ImageSource, path: &Path) -> Result<()> {
    let image_bytes = source.image_bytes();
    let mut grid = Vec::with_capacity(image_bytes * rows.len() * GRID_COLS as usize);
    for row in rows {
        for col in 0..GRID_COLS as usize {
            match row.get(col) {
                Some(image) => grid.extend_from_slice(image),
                None => grid.resize(grid.len() + image_bytes, 0),
            }
        }
    }
    write_grid(path, &grid, source.resolution(), source.channels(), rows.len() as u32, GRID_COLS)
}

/// Box-Muller from two uniforms.
pub fn standard_normal(rng: &mut SplitMix64) -> f64 {
    let u1 = rng.next_f64().max(f64::MIN_POSITIVE);
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use gan_core::data::Sample;
    use tch::Kind;

    /// Pixel value that stands for class `c` (distinct for the classes these tests use).
    fn shade(c: i64) -> u8 {
        (c % 250 + 1) as u8
    }

    /// A G that paints each image in its class's shade and remembers the largest batch it saw.
    struct ClassPainter {
        res: i64,
        largest_batch: AtomicI64,
    }

    impl Generator for ClassPainter {
        fn forward(&self, z: &Tensor, c: &Tensor) -> Tensor {
            let n = z.size()[0];
            self.largest_batch.fetch_max(n, Ordering::SeqCst);
            // x * 127.5 + 128 lands half a step above the shade, so quantising gives the shade.
            let x = ((c.remainder(250) + 1).to_kind(Kind::Float) - 127.5) / 127.5;
            x.view([n, 1, 1, 1]).expand([n, 3, self.res, self.res], false).contiguous()
        }

        fn z_dim(&self) -> i64 {
            4
        }
    }

    /// `rows x cols` cells of `res` pixels: the first byte of each cell.
    fn cell_shades(path: &Path, res: u32) -> Vec<Vec<u8>> {
        let img = image::open(path).unwrap().to_rgb8();
        let (cols, rows) = (img.width() / res, img.height() / res);
        (0..rows).map(|r| (0..cols).map(|c| img.get_pixel(c * res, r * res)[0]).collect()).collect()
    }

    #[test]
    fn grids_of_many_classes_show_sixteen_spread_over_them() {
        assert_eq!(grid_classes(4), [0, 1, 2, 3]);
        assert_eq!(grid_classes(16), (0..16).collect::<Vec<_>>());
        let imagenet = grid_classes(1000);
        assert_eq!(imagenet.len(), 16);
        assert_eq!((imagenet[0], imagenet[1], imagenet[15]), (0, 62, 937));
        assert!(grid_classes(0).is_empty());
    }

    /// 1000 classes: 16 rows of 8, each row its class, rendered 8 images at a time.
    #[test]
    fn a_grid_is_rendered_a_row_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let g = ClassPainter { res: 4, largest_batch: AtomicI64::new(0) };
        let path = dir.path().join("grid.png");
        SampleGrid::new(4, 1000, 7, Device::Cpu).write(&g, &path).unwrap();
        let shades = cell_shades(&path, 4);
        assert_eq!((shades.len(), shades[0].len()), (16, 8));
        for (row, class) in shades.iter().zip(grid_classes(1000)) {
            assert!(row.iter().all(|&s| s == shade(class.into())), "class {class}: {row:?}");
        }
        assert_eq!(g.largest_batch.load(Ordering::SeqCst), i64::from(GRID_COLS));
        // One class asked for: 8 rows of it.
        SampleGrid::with_options(4, 1000, 7, Device::Cpu, None, Some(500)).write(&g, &path).unwrap();
        assert!(cell_shades(&path, 4).iter().flatten().all(|&s| s == shade(500)));
    }

    /// `classes` classes of `per_class` images each, stored one class after another (as a prepared
    /// folder of class folders is) or interleaved (class = index mod classes, as generated shapes
    /// are). Labels are stored apart, as in shards, and `reads` counts the images decoded.
    struct Classes {
        classes: u64,
        per_class: u64,
        interleaved: bool,
        reads: AtomicI64,
    }

    impl ImageSource for Classes {
        fn len(&self) -> u64 {
            self.classes * self.per_class
        }
        fn resolution(&self) -> u32 {
            2
        }
        fn channels(&self) -> u32 {
            3
        }
        fn num_classes(&self) -> u32 {
            self.classes as u32
        }
        fn read(&self, index: u64, pixels: &mut [u8]) -> Sample {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let label = self.label(index);
            pixels.fill(shade(label.into()));
            Sample { label }
        }
        fn label(&self, index: u64) -> u32 {
            (if self.interleaved { index % self.classes } else { index / self.per_class }) as u32
        }
    }

    /// Every row of the reals grid finds 8 images of its class, however the classes are stored:
    /// 40 classes sorted or interleaved (over 65,536 images per class, so an even stride through
    /// the scan, 40 images, would see one class of the interleaved ones), and ImageNet's 1000
    /// classes of 1281 images sorted.
    #[test]
    fn the_reals_grid_finds_classes_sorted_or_interleaved() {
        for (classes, per_class, interleaved) in
            [(40, 65_536, false), (40, 65_536, true), (1000, 1281, false)]
        {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("reals.png");
            let source = Classes { classes, per_class, interleaved, reads: AtomicI64::new(0) };
            write_reals_grid(&reals_grid_rows(&source), &source, &path).unwrap();
            let shades = cell_shades(&path, 2);
            assert_eq!((shades.len(), shades[0].len()), (16, 8));
            for (row, class) in shades.iter().zip(grid_classes(classes as u32)) {
                let label = format!("class {class} of {classes}, interleaved {interleaved}: {row:?}");
                assert!(row.iter().all(|&s| s == shade(class.into())), "{label}");
            }
            // Only the grid's own images are decoded, not every image scanned for its label.
            assert_eq!(source.reads.load(Ordering::SeqCst), 16 * 8);
        }
    }
}
