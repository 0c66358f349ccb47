//! The prepared dataset format: fixed-size shard files of decoded uint8 images plus labels, and a
//! JSON index. A shard `shard-NNNNN.bin` holds `count` images (channels-last, `res x res x ch`
//! bytes each) followed by `count` little-endian u32 labels, so it can be memory-mapped and read
//! with no decoding. `index.json` lists each shard with its size and BLAKE3 checksum, plus a
//! content hash of the whole dataset (keys caches such as FID statistics). Opening a dataset
//! checks every shard's size and, by default, its checksum, so a bad shard is found at start,
//! not hours into training.
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use super::provenance::Provenance;
use super::{ImageSource, Sample};
use crate::error::{Error, Result};

pub const INDEX_FILE: &str = "index.json";
pub const FORMAT: &str = "gan-launch-shards";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ShardEntry {
    pub file: String,
    pub count: u64,
    pub bytes: u64,
    pub blake3: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DatasetIndex {
    pub format: String,
    pub version: u32,
    pub count: u64,
    pub resolution: u32,
    pub channels: u32,
    /// 0 when unlabelled.
    pub num_classes: u32,
    /// Names of the classes, in label order (folder names for an image folder).
    pub class_names: Vec<String>,
    pub shards: Vec<ShardEntry>,
    /// BLAKE3 over the shape and every shard checksum, in order.
    pub content_hash: String,
    /// How `data prepare` made it (not in the content hash; absent from older indices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepared: Option<Provenance>,
}

impl DatasetIndex {
    fn image_bytes(&self) -> u64 {
        u64::from(self.resolution) * u64::from(self.resolution) * u64::from(self.channels)
    }
}

/// Writes shards of `images_per_shard` images as images are pushed; `finish` writes the index.
pub struct ShardWriter {
    dir: PathBuf,
    resolution: u32,
    channels: u32,
    images_per_shard: u64,
    pixels: Vec<u8>,
    labels: Vec<u32>,
    shards: Vec<ShardEntry>,
}

impl ShardWriter {
    /// Starts writing into `dir`, which must be empty or absent, or with `force` hold a prepared
    /// dataset (complete or interrupted), whose files are removed first.
    pub fn create(
        dir: &Path,
        resolution: u32,
        channels: u32,
        images_per_shard: u64,
        force: bool,
    ) -> Result<Self> {
        if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
            if !force {
                let message = match interrupted_preparation(dir) {
                    true => {
                        "holds the shards of an unfinished preparation (no index.json: interrupted?); pass \
                             --force to prepare it again"
                    }
                    false => "the output directory is not empty; pass --force to overwrite it",
                };
                return Err(Error::Dataset { path: dir.to_path_buf(), message: message.into() });
            }
            remove_previous_dataset(dir)?;
        }
        crate::fsutil::create_dir_all(dir)?;
        Ok(ShardWriter {
            dir: dir.to_path_buf(),
            resolution,
            channels,
            images_per_shard: images_per_shard.max(1),
            pixels: Vec::new(),
            labels: Vec::new(),
            shards: Vec::new(),
        })
    }

    /// Adds one image (channels-last, exactly res x res x channels bytes) with its label.
    pub fn push(&mut self, pixels: &[u8], label: u32) -> Result<()> {
        debug_assert_eq!(pixels.len() as u64, u64::from(self.resolution).pow(2) * u64::from(self.channels));
        self.pixels.extend_from_slice(pixels);
        self.labels.push(label);
        if self.labels.len() as u64 == self.images_per_shard {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.labels.is_empty() {
            return Ok(());
        }
        let file = format!("shard-{:05}.bin", self.shards.len());
        let path = self.dir.join(&file);
        let mut hasher = blake3::Hasher::new();
        let mut out = File::create(&path).map_err(Error::io("create", &path))?;
        let labels: Vec<u8> = self.labels.iter().flat_map(|l| l.to_le_bytes()).collect();
        for part in [&self.pixels[..], &labels[..]] {
            hasher.update(part);
            out.write_all(part).map_err(Error::io("write", &path))?;
        }
        out.sync_all().map_err(Error::io("sync", &path))?;
        let bytes = (self.pixels.len() + labels.len()) as u64;
        self.shards.push(ShardEntry {
            file,
            count: self.labels.len() as u64,
            bytes,
            blake3: hasher.finalize().to_hex().to_string(),
        });
        self.pixels.clear();
        self.labels.clear();
        Ok(())
    }

    /// Writes the last shard and the index, with how the dataset was made; returns the index.
    pub fn finish(mut self, class_names: Vec<String>, prepared: Provenance) -> Result<DatasetIndex> {
        self.flush()?;
        let count: u64 = self.shards.iter().map(|s| s.count).sum();
        if count == 0 {
            return Err(Error::Dataset { path: self.dir.clone(), message: "no images were written".into() });
        }
        let num_classes = class_names.len() as u32;
        let mut index = DatasetIndex {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            count,
            resolution: self.resolution,
            channels: self.channels,
            num_classes,
            class_names,
            shards: self.shards,
            content_hash: String::new(),
            prepared: Some(prepared),
        };
        index.content_hash = content_hash(&index);
        let json = serde_json::to_vec_pretty(&index).expect("an index serialises");
        crate::fsutil::write_atomic(&self.dir.join(INDEX_FILE), &json)?;
        Ok(index)
    }
}

/// A file `data prepare` writes: the index (and its temporary name while being replaced) and the
/// shards.
fn is_dataset_file(name: &str) -> bool {
    name == INDEX_FILE
        || (name.starts_with(&format!(".{INDEX_FILE}.tmp")))
        || (name.starts_with("shard-") && name.ends_with(".bin"))
}

/// Whether `dir` holds only what `data prepare` writes, without the index it writes last.
fn interrupted_preparation(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    let names: Vec<String> =
        entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    !names.is_empty() && names.iter().all(|n| is_dataset_file(n)) && !names.iter().any(|n| n == INDEX_FILE)
}

/// Removes the prepared dataset in `dir` before it is written again. Anything else there is
/// refused, never deleted: `--force` with a mistyped `--out` (a home directory, a data folder, the
/// folder of the source images themselves) must not cost the user a file.
fn remove_previous_dataset(dir: &Path) -> Result<()> {
    let mut ours = Vec::new();
    let mut foreign = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(Error::io("read", dir))? {
        let entry = entry.map_err(Error::io("read", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && is_dataset_file(&name) {
            ours.push(entry.path());
        } else {
            foreign.push(name);
        }
    }
    if !foreign.is_empty() {
        foreign.sort();
        return Err(Error::Dataset {
            path: dir.to_path_buf(),
            message: format!(
                "holds {} entr{} that no prepared dataset has (e.g. {}); --force replaces a prepared \
                 dataset and deletes nothing else: choose an empty or new --out",
                foreign.len(),
                if foreign.len() == 1 { "y" } else { "ies" },
                foreign[0]
            ),
        });
    }
    for path in ours {
        std::fs::remove_file(&path).map_err(Error::io("remove", &path))?;
    }
    Ok(())
}

fn content_hash(index: &DatasetIndex) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(
        format!("{}x{}x{}:{}", index.resolution, index.resolution, index.channels, index.num_classes)
            .as_bytes(),
    );
    for shard in &index.shards {
        hasher.update(shard.blake3.as_bytes());
    }
    hasher.finalize().to_hex().to_string()
}

/// A prepared dataset, memory-mapped.
pub struct PreparedDataset {
    pub index: DatasetIndex,
    shards: Vec<Mmap>,
    /// First global image index of each shard.
    starts: Vec<u64>,
}

/// Reads and checks `dir`'s index alone (format, content hash, counts), without touching a shard.
pub fn read_index(dir: &Path) -> Result<DatasetIndex> {
    let index_path = dir.join(INDEX_FILE);
    let bad = |message: String| Error::Dataset { path: index_path.clone(), message };
    let text = std::fs::read(&index_path).map_err(|e| {
        // The usual cause: the dataset was never prepared (or data.path points elsewhere).
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "; is it prepared? `gan-launch data prepare --from IMAGES --out {} --resolution R` writes it",
                dir.display()
            )
        } else {
            String::new()
        };
        bad(format!("cannot read the index: {e}{hint}"))
    })?;
    let index: DatasetIndex =
        serde_json::from_slice(&text).map_err(|e| bad(format!("not a valid index: {e}")))?;
    if index.format != FORMAT || index.version != FORMAT_VERSION {
        let found =
            format!("format {} v{}, expected {FORMAT} v{FORMAT_VERSION}", index.format, index.version);
        return Err(bad(found));
    }
    if content_hash(&index) != index.content_hash {
        return Err(bad("the content hash does not match the shard list".into()));
    }
    if index.shards.iter().map(|s| s.count).sum::<u64>() != index.count {
        return Err(bad("the shard counts do not add up to the image count".into()));
    }
    Ok(index)
}

impl PreparedDataset {
    /// Opens `dir`, checking the index, every shard's size and, when `verify_checksums`, its
    /// BLAKE3 checksum. Every problem names the file.
    pub fn open(dir: &Path, verify_checksums: bool) -> Result<Self> {
        let bad = |path: &Path, message: String| Error::Dataset { path: path.to_path_buf(), message };
        let index = read_index(dir)?;
        let mut shards = Vec::with_capacity(index.shards.len());
        let mut starts = Vec::with_capacity(index.shards.len());
        let mut start = 0;
        for entry in &index.shards {
            let path = dir.join(&entry.file);
            let file = File::open(&path).map_err(|e| bad(&path, format!("missing shard: {e}")))?;
            let expected = entry.count * (index.image_bytes() + 4);
            let actual = file.metadata().map_err(Error::io("stat", &path))?.len();
            if actual != entry.bytes || actual != expected {
                return Err(bad(
                    &path,
                    format!("{actual} bytes, the index says {} (truncated or replaced?)", entry.bytes),
                ));
            }
            // SAFETY: the shard is opened read-only and prepared datasets are not modified in place.
            let map = unsafe { Mmap::map(&file) }.map_err(Error::io("map", &path))?;
            if verify_checksums && blake3::hash(&map).to_hex().as_str() != entry.blake3 {
                return Err(bad(&path, "checksum mismatch: the shard is corrupt".into()));
            }
            shards.push(map);
            starts.push(start);
            start += entry.count;
        }
        Ok(PreparedDataset { index, shards, starts })
    }

    fn locate(&self, index: u64) -> (usize, u64) {
        let shard = self.starts.partition_point(|&s| s <= index) - 1;
        (shard, index - self.starts[shard])
    }
}

impl ImageSource for PreparedDataset {
    fn len(&self) -> u64 {
        self.index.count
    }
    fn resolution(&self) -> u32 {
        self.index.resolution
    }
    fn channels(&self) -> u32 {
        self.index.channels
    }
    fn num_classes(&self) -> u32 {
        self.index.num_classes
    }
    fn read(&self, index: u64, pixels: &mut [u8]) -> Sample {
        let (shard, i) = self.locate(index);
        let image_bytes = self.index.image_bytes() as usize;
        let map = &self.shards[shard];
        let count = self.index.shards[shard].count as usize;
        pixels.copy_from_slice(&map[i as usize * image_bytes..][..image_bytes]);
        let at = count * image_bytes + i as usize * 4;
        Sample { label: u32::from_le_bytes(map[at..at + 4].try_into().expect("4 bytes")) }
    }
    fn label(&self, index: u64) -> u32 {
        let (shard, i) = self.locate(index);
        let count = self.index.shards[shard].count as usize;
        let at = count * self.index.image_bytes() as usize + i as usize * 4;
        u32::from_le_bytes(self.shards[shard][at..at + 4].try_into().expect("4 bytes"))
    }
}
