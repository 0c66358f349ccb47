//! Training data: where images come from (`ImageSource`), which rank sees which image in what
//! order (`sampler`), and batches of uint8 pixels ready to become tensors. Torch-free; the
//! trainer turns a [`Batch`] into tensors on its device.
pub mod cifar;
pub mod classes;
pub mod dataset_json;
pub mod folder;
pub mod generated;
pub mod identity;
pub mod loader;
pub mod pickle;
pub mod prepare;
pub mod provenance;
pub mod resize;
pub mod sampler;
pub mod shards;
pub mod stylegan_zip;

#[cfg(test)]
mod tests;

use crate::config::{DataSection, DataSource};
use crate::error::{Error, Result};

/// Per-image facts besides the pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Class index; 0 for unlabelled data.
    pub label: u32,
}

/// A dataset of equally sized images stored channels-last (HWC, uint8), as image files are.
pub trait ImageSource: Send + Sync {
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn resolution(&self) -> u32;
    fn channels(&self) -> u32;
    /// 0 for unlabelled datasets.
    fn num_classes(&self) -> u32;
    /// Writes image `index` into `pixels` (exactly [`ImageSource::image_bytes`] long).
    fn read(&self, index: u64, pixels: &mut [u8]) -> Sample;
    /// Image `index`'s label alone. Sources that store labels apart from pixels answer without
    /// decoding the image.
    fn label(&self, index: u64) -> u32 {
        let mut pixels = vec![0; self.image_bytes()];
        self.read(index, &mut pixels).label
    }
    fn image_bytes(&self) -> usize {
        (self.resolution() * self.resolution() * self.channels()) as usize
    }
}

/// Opens the dataset a config names. `seed` is the run seed (it keys the generated images).
/// A prepared dataset must match the config's resolution, channels and classes.
/// `verify_checksums` hashes every shard; ranks pass it for one rank per node only (the node's
/// shards are the same files for all its ranks, and hashing a large dataset once is enough).
pub fn open(data: &DataSection, seed: u64, verify_checksums: bool) -> Result<Box<dyn ImageSource>> {
    match data.source {
        DataSource::Generated => Ok(Box::new(generated::GeneratedShapes {
            seed,
            len: data.num_images,
            resolution: data.resolution,
            channels: data.channels,
            num_classes: data.num_classes,
        })),
        DataSource::Prepared => {
            let dir = data.path.as_deref().expect("validation requires data.path for prepared data");
            let dataset = shards::PreparedDataset::open(dir, verify_checksums)?;
            check_matches(data, &dataset.index)?;
            Ok(Box::new(dataset))
        }
    }
}

/// Checks, cheaply (index and shard sizes, no checksums), that the dataset a config names is
/// there and matches it: what the launcher runs before starting any rank.
pub fn check(data: &DataSection) -> Result<()> {
    if let (DataSource::Prepared, Some(dir)) = (data.source, data.path.as_deref()) {
        check_matches(data, &shards::PreparedDataset::open(dir, false)?.index)?;
    }
    Ok(())
}

/// The config must describe the prepared dataset it names.
fn check_matches(data: &DataSection, index: &shards::DatasetIndex) -> Result<()> {
    let facts = [
        ("data.resolution", data.resolution, index.resolution),
        ("data.channels", data.channels, index.channels),
        ("data.num_classes", data.num_classes, index.num_classes),
    ];
    for (key, configured, actual) in facts {
        if configured != actual {
            let mut allowed = format!("{actual}, as the prepared dataset has");
            if key == "data.num_classes" {
                allowed += &classes_hint(index);
            }
            return Err(Error::config(key, configured, allowed));
        }
    }
    Ok(())
}

/// What a class-count mismatch should tell: the dataset's classes, and how to drop them.
fn classes_hint(index: &shards::DatasetIndex) -> String {
    match index.class_names.len() {
        0 => " (it is unlabelled)".into(),
        _ => format!(
            " (classes {}; `data prepare --labels none` makes an unlabelled dataset)",
            identity::abbreviate_names(&index.class_names, 4)
        ),
    }
}

/// A batch of images, channels-last uint8 (`[n, res, res, channels]`), with labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub pixels: Vec<u8>,
    pub labels: Vec<u32>,
    pub resolution: u32,
    pub channels: u32,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Reads `indices` from `source`, optionally mirroring some images horizontally.
    pub fn read(source: &dyn ImageSource, indices: &[u64], flips: Option<&[bool]>) -> Batch {
        let image_bytes = source.image_bytes();
        let mut pixels = vec![0u8; image_bytes * indices.len()];
        let mut labels = Vec::with_capacity(indices.len());
        for (i, (&index, out)) in indices.iter().zip(pixels.chunks_exact_mut(image_bytes)).enumerate() {
            labels.push(source.read(index, out).label);
            if flips.is_some_and(|f| f[i]) {
                mirror(out, source.resolution() as usize, source.channels() as usize);
            }
        }
        Batch { pixels, labels, resolution: source.resolution(), channels: source.channels() }
    }
}

fn mirror(image: &mut [u8], res: usize, channels: usize) {
    for row in image.chunks_exact_mut(res * channels) {
        for x in 0..res / 2 {
            for c in 0..channels {
                row.swap(x * channels + c, (res - 1 - x) * channels + c);
            }
        }
    }
}
