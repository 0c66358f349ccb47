//! Sample grids: a fixed set of latents (one row per class when conditional) rendered through
//! G_ema and written as PNG, so successive grids show the same "people" evolving. The latents come
//! from the torch-free generator keyed by the run seed, independent of training's random stream.
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::models::{Generator, Truncation};
use gan_core::data::ImageSource;
use gan_core::error::Result;
use gan_core::images::write_grid;
use gan_core::rng::SplitMix64;

/// Columns of a grid; rows are the classes (or 8 rows when unconditional).
pub const GRID_COLS: u32 = 8;

pub struct SampleGrid {
    z: Tensor,
    c: Tensor,
    rows: u32,
    /// Truncation psi applied by G (StyleGAN's, toward w_avg); None when there is none or the
    /// latents carry it (BigGAN's).
    psi_in_g: Option<f64>,
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
        let rows = match (num_classes, class) {
            (0, _) | (_, Some(_)) => 8,
            (n, None) => n,
        };
        let count = (rows * GRID_COLS) as usize;
        let mut rng = SplitMix64::for_item(seed, 0x5A4D_504C_4553); // stream "SAMPLES"
        let draw = |rng: &mut SplitMix64| match latent_psi {
            None => standard_normal(rng),
            Some(psi) => loop {
                let v = standard_normal(rng);
                if v.abs() <= 2.0 {
                    break v * psi;
                }
            },
        };
        let z: Vec<f32> = (0..count * z_dim as usize).map(|_| draw(&mut rng) as f32).collect();
        let c: Vec<i64> = (0..count)
            .map(|i| match (num_classes, class) {
                (0, _) => 0,
                (_, Some(k)) => k.into(),
                (_, None) => (i as u32 / GRID_COLS).into(),
            })
            .collect();
        SampleGrid {
            z: Tensor::from_slice(&z).view([count as i64, z_dim]).to_device(device),
            c: Tensor::from_slice(&c).to_device(device),
            rows,
            psi_in_g,
        }
    }

    /// Renders the grid with `g` and writes it to `path`.
    pub fn write(&self, g: &dyn Generator, path: &Path) -> Result<()> {
        let images = tch::no_grad(|| match self.psi_in_g {
            Some(psi) => g.forward_truncated(&self.z, &self.c, psi),
            None => g.forward_eval(&self.z, &self.c),
        });
        let (channels, res) = (images.size()[1] as u32, images.size()[2] as u32);
        write_grid(path, &to_uint8_nhwc(&images), res, channels, self.rows, GRID_COLS)
    }
}

/// Images in [-1, 1] (NCHW float) to channels-last uint8, quantised as StyleGAN does:
/// x * 127.5 + 128, clamped to [0, 255], truncated.
pub fn to_uint8_nhwc(images: &Tensor) -> Vec<u8> {
    let q = (images * 127.5 + 128.0).clamp(0.0, 255.0).to_kind(Kind::Uint8);
    let nhwc = q.permute([0, 2, 3, 1]).contiguous().to_device(Device::Cpu);
    Vec::try_from(&nhwc.reshape([-1])).expect("uint8 tensor converts to Vec<u8>")
}

/// Writes a grid of real images: row r holds the first GRID_COLS images of class r.
pub fn write_reals_grid(source: &dyn ImageSource, path: &Path) -> Result<()> {
    let rows = if source.num_classes() > 0 { source.num_classes() } else { 8 };
    let image_bytes = source.image_bytes();
    let mut cells: Vec<Vec<Vec<u8>>> = vec![Vec::new(); rows as usize];
    let mut pixels = vec![0u8; image_bytes];
    // Classes are interleaved in index order, so a short scan fills every row.
    let scan = (u64::from(rows * GRID_COLS) * 4).min(source.len());
    for index in 0..scan {
        let label = source.read(index, &mut pixels).label as usize;
        let row = if source.num_classes() > 0 { label } else { index as usize % rows as usize };
        if cells[row].len() < GRID_COLS as usize {
            cells[row].push(pixels.clone());
        }
    }
    let mut grid = Vec::with_capacity(image_bytes * (rows * GRID_COLS) as usize);
    for row in cells {
        for col in 0..GRID_COLS as usize {
            match row.get(col) {
                Some(image) => grid.extend_from_slice(image),
                None => grid.resize(grid.len() + image_bytes, 0), // a class with too few images
            }
        }
    }
    write_grid(path, &grid, source.resolution(), source.channels(), rows, GRID_COLS)
}

/// Box-Muller from two uniforms.
pub fn standard_normal(rng: &mut SplitMix64) -> f64 {
    let u1 = rng.next_f64().max(f64::MIN_POSITIVE);
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
