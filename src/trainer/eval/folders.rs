//! FID or KID between two folders of images, as pytorch-fid's command line: every PNG or JPEG
//! directly in each folder, sorted by path, converted to RGB, /255, through the same network.
//! Consecutive images of one size share a batch (images of several sizes are allowed; each goes
//! through the network's own resize to 299).
use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

use super::extract::{Accumulator, Extracted};
use super::inception::FidInception;
use gan_core::error::{Error, Result};

/// The image files of `dir`, sorted (`gan_core::images::image_files`); at least two.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let files = gan_core::images::image_files(dir)?;
    if files.len() < 2 {
        return Err(Error::Dataset {
            path: dir.to_path_buf(),
            message: format!("has {} PNG/JPEG images; a metric needs at least 2", files.len()),
        });
    }
    Ok(files)
}

/// Features of every image of `dir`.
pub fn extract(net: &FidInception, dir: &Path, batch: u32, device: Device) -> Result<Extracted> {
    let files = image_files(dir)?;
    let mut acc = Accumulator::new(files.len() as u64);
    let mut pending: Vec<u8> = Vec::new();
    let mut pending_size = (0u32, 0u32);
    let mut count = 0i64;
    let flush = |pixels: &mut Vec<u8>, (w, h): (u32, u32), n: &mut i64, acc: &mut Accumulator| {
        if *n > 0 {
            let images =
                Tensor::from_slice(pixels).view([*n, i64::from(h), i64::from(w), 3]).permute([0, 3, 1, 2]);
            acc.add(net, &images, device, &mut || Ok(()))?;
            pixels.clear();
            *n = 0;
        }
        Ok::<(), Error>(())
    };
    for file in &files {
        let bytes = std::fs::read(file).map_err(Error::io("read", file))?;
        let rgb = image::load_from_memory(&bytes)
            .map_err(|e| Error::Dataset { path: file.clone(), message: format!("cannot decode: {e}") })?
            .to_rgb8();
        let size = rgb.dimensions();
        if size != pending_size || count == i64::from(batch) {
            flush(&mut pending, pending_size, &mut count, &mut acc)?;
            pending_size = size;
        }
        pending.extend_from_slice(rgb.as_raw());
        count += 1;
    }
    flush(&mut pending, pending_size, &mut count, &mut acc)?;
    Ok(acc.finish())
}
