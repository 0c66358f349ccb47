//! Which dataset a run trains on, as its checkpoints record it. Resuming on another dataset (a
//! `data.path` that now points elsewhere, a folder prepared again with other classes) otherwise
//! goes unnoticed: the data cursor runs on, class labels silently mean other classes, and the run
//! looks as if it collapsed (BigGAN-PyTorch #26). The identity is cheap to compute (the index,
//! or the generator's parameters; no image is read) and survives moving a dataset.
use serde::{Deserialize, Serialize};

use super::generated;
use super::shards;
use crate::config::{DataSection, DataSource};
use crate::error::Result;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetIdentity {
    /// "prepared <content hash>" (over every shard's checksum, not the path), or "generated
    /// <hash of the generator's parameters and seed>".
    pub id: String,
    pub images: u64,
    pub resolution: u32,
    pub channels: u32,
    /// Class names in label order; empty when unlabelled.
    pub classes: Vec<String>,
    /// Where it was read from, for the message only.
    pub path: Option<String>,
}

impl DatasetIdentity {
    /// The dataset `data` names; `seed` is the run seed, which keys generated images.
    pub fn of(data: &DataSection, seed: u64) -> Result<Self> {
        match (data.source, data.path.as_deref()) {
            (DataSource::Prepared, Some(dir)) => {
                let index = shards::read_index(dir)?;
                Ok(DatasetIdentity {
                    id: format!("prepared {}", short(&index.content_hash)),
                    images: index.count,
                    resolution: index.resolution,
                    channels: index.channels,
                    classes: index.class_names,
                    path: Some(dir.display().to_string()),
                })
            }
            _ => {
                let params = format!(
                    "generated {} {} {} {} seed {seed}",
                    data.resolution, data.channels, data.num_classes, data.num_images
                );
                Ok(DatasetIdentity {
                    id: format!("generated {}", short(&blake3::hash(params.as_bytes()).to_hex())),
                    images: data.num_images,
                    resolution: data.resolution,
                    channels: data.channels,
                    classes: generated::class_names(data.num_classes),
                    path: None,
                })
            }
        }
    }

    /// Why `now` is not the dataset this identity names, or None when it is.
    pub fn differs_from(&self, now: &DatasetIdentity) -> Option<String> {
        if self.id == now.id {
            return None;
        }
        let labels = if self.classes != now.classes && !self.classes.is_empty() {
            " The class lists differ, so the labels of a conditional model would mean other classes."
        } else {
            ""
        };
        Some(format!(
            "it was trained on {}, and the config now names {}.{labels}",
            self.describe(),
            now.describe()
        ))
    }

    /// e.g. "prepared 7f3e12ab9c0d4e51 (at data/afhq): 14630 images of 64x64x3, 3 classes (cat, dog, wild)".
    pub fn describe(&self) -> String {
        let at = self.path.as_ref().map_or_else(String::new, |p| format!(" (at {p})"));
        let classes = match self.classes.len() {
            0 => "unlabelled".to_string(),
            n => format!("{n} classes ({})", abbreviate_names(&self.classes, 12)),
        };
        format!(
            "{}{at}: {} images of {}x{}x{}, {classes}",
            self.id, self.images, self.resolution, self.resolution, self.channels
        )
    }
}

/// `names` joined with commas, or when there are more than `shown`, the first `shown - 1`, `...`
/// and the last: ImageNet's thousand synsets would make a line of ten thousand characters.
pub fn abbreviate_names(names: &[String], shown: usize) -> String {
    let shown = shown.max(2);
    match names.len() {
        n if n <= shown => names.join(", "),
        n => format!("{}, ..., {}", names[..shown - 1].join(", "), names[n - 1]),
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(16)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::prepare::{prepare, PrepareOptions, PrepareSource};

    fn data(num_classes: u32) -> DataSection {
        DataSection {
            source: DataSource::Generated,
            path: None,
            verify_checksums: false,
            resolution: 32,
            channels: 3,
            num_classes,
            num_images: 40,
            xflip: false,
            prefetch: 1,
        }
    }

    #[test]
    fn generated_data_is_named_by_its_parameters_and_seed() {
        let a = DatasetIdentity::of(&data(4), 1).unwrap();
        assert_eq!(a, DatasetIdentity::of(&data(4), 1).unwrap());
        assert_eq!(a.classes, ["disc", "square", "triangle", "ring"]);
        let other_seed = a.differs_from(&DatasetIdentity::of(&data(4), 2).unwrap()).unwrap();
        assert!(other_seed.starts_with("it was trained on generated "), "{other_seed}");
        assert!(!other_seed.contains("class lists differ"), "same classes: {other_seed}");
        let fewer = a.differs_from(&DatasetIdentity::of(&data(3), 1).unwrap()).unwrap();
        assert!(
            fewer.contains("3 classes (disc, square, triangle)") && fewer.contains("class lists differ"),
            "{fewer}"
        );
    }

    #[test]
    fn a_prepared_dataset_keeps_its_identity_when_moved() {
        let dir = tempfile::tempdir().unwrap();
        let opts = PrepareOptions { images_per_shard: 16, force: true, ..PrepareOptions::new(32, 1) };
        let write = |seed: u64, out: &std::path::Path| {
            let source = PrepareSource::Generated { count: 40, num_classes: 2, seed };
            prepare(&source, out, &opts, &|_, _| {}).unwrap();
        };
        let identity = |path: &std::path::Path| {
            let section =
                DataSection { source: DataSource::Prepared, path: Some(path.to_path_buf()), ..data(2) };
            DatasetIdentity::of(&section, 0).unwrap()
        };
        let first = dir.path().join("first");
        write(7, &first);
        let before = identity(&first);
        assert!(before.id.starts_with("prepared ") && before.images == 40, "{before:?}");
        assert_eq!(before.classes, ["disc", "square"]);
        let moved = dir.path().join("moved");
        std::fs::rename(&first, &moved).unwrap();
        assert!(before.differs_from(&identity(&moved)).is_none(), "same content, another path");
        write(8, &first);
        let other = before.differs_from(&identity(&first)).unwrap();
        assert!(
            other.contains("(at ") && other.contains("40 images of 32x32x3, 2 classes (disc, square)"),
            "{other}"
        );
        // A thousand classes are named by their first and last few.
        let imagenet = DatasetIdentity { classes: (0..1000).map(|k| format!("n{k:08}")).collect(), ..before };
        let text = imagenet.describe();
        assert!(
            text.ends_with(
                "1000 classes (n00000000, n00000001, n00000002, n00000003, n00000004, n00000005, \
             n00000006, n00000007, n00000008, n00000009, n00000010, ..., n00000999)"
            ),
            "{text}"
        );
    }
}
