//! Image grids written as PNG (sample grids of generated images and the reals grid), and the
//! folders of images metrics read.
use std::path::Path;

use image::ImageEncoder;

use crate::error::{Error, Result};

/// Tiles channels-last uint8 images of side `res` into a `rows x cols` grid and writes a
/// PNG (atomically, so a viewer polling the file never shows half an image).
pub fn write_grid(path: &Path, pixels: &[u8], res: u32, channels: u32, rows: u32, cols: u32) -> Result<()> {
    let png = encode_png(&tile(pixels, res, channels, rows, cols), cols * res, rows * res, channels)
        .map_err(|message| Error::Image { path: path.to_path_buf(), message })?;
    crate::fsutil::write_atomic(path, &png)
}

/// One channels-last uint8 image (grey or RGB) as PNG bytes.
pub fn encode_png(
    pixels: &[u8],
    width: u32,
    height: u32,
    channels: u32,
) -> std::result::Result<Vec<u8>, String> {
    let color = if channels == 1 { image::ExtendedColorType::L8 } else { image::ExtendedColorType::Rgb8 };
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(pixels, width, height, color)
        .map_err(|e| e.to_string())?;
    Ok(png)
}

/// The PNG and JPEG files directly in `dir`, sorted by path (other files are passed over, as
/// pytorch-fid's folder reader does): a folder of images metrics read, as `sample --num` writes.
pub fn image_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(Error::io("read", dir))?;
    let mut files: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let ext = p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
            matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Whether `path` is a folder of images (rather than a run or checkpoint directory, which hold
/// none at their top).
pub fn is_image_folder(path: &Path) -> bool {
    path.is_dir() && image_files(path).is_ok_and(|files| !files.is_empty())
}

/// Lays images out row-major; missing cells stay black.
fn tile(pixels: &[u8], res: u32, channels: u32, rows: u32, cols: u32) -> Vec<u8> {
    let (res, channels, cols) = (res as usize, channels as usize, cols as usize);
    let image_bytes = res * res * channels;
    let row_bytes = cols * res * channels;
    let mut grid = vec![0u8; rows as usize * res * row_bytes];
    for (i, image) in pixels.chunks_exact(image_bytes).enumerate().take(rows as usize * cols) {
        let (gy, gx) = (i / cols, i % cols);
        for y in 0..res {
            let src = &image[y * res * channels..][..res * channels];
            let dst_start = (gy * res + y) * row_bytes + gx * res * channels;
            grid[dst_start..dst_start + res * channels].copy_from_slice(src);
        }
    }
    grid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_png_decodes_to_the_tiled_size_and_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grid.png");
        // Three 2x2 RGB images with distinct constant colours in a 2x2 grid (one cell empty).
        let pixels: Vec<u8> =
            (0..3u8).flat_map(|i| std::iter::repeat_n([i * 50, 10, 200], 4).flatten()).collect();
        write_grid(&path, &pixels, 2, 3, 2, 2).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (4, 4));
        assert_eq!(img.get_pixel(3, 0).0, [50, 10, 200]);
        assert_eq!(img.get_pixel(0, 3).0, [100, 10, 200]);
        assert_eq!(img.get_pixel(3, 3).0, [0, 0, 0]);
    }
}
