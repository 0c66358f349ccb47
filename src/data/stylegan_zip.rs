//! StyleGAN dataset zips (what `dataset_tool.py` of StyleGAN2-ADA/StyleGAN3 writes): image files
//! (PNG, JPEG) anywhere in the archive, and optionally `dataset.json` with
//! `{"labels": [["00000/img00000000.png", 6], ...]}` (or `"labels": null` for unlabelled data).
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{dataset_json, folder};
use crate::error::{Error, Result};

/// One image file of the archive, read into memory, with its label.
pub struct ZipImage {
    /// `archive.zip/inner/path.png`, for messages.
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub label: u32,
}

/// The images' names in archive order (sorted by name, as the StyleGAN tools do) and, when the
/// archive has labels, the class count.
pub struct ZipListing {
    pub names: Vec<String>,
    pub labels: Option<HashMap<String, u32>>,
    pub num_classes: u32,
    pub has_dataset_json: bool,
}

impl ZipListing {
    /// Takes the images as unlabelled, whatever dataset.json says.
    pub fn drop_labels(&mut self) {
        self.labels = None;
        self.num_classes = 0;
    }
}

fn bad(path: &Path, message: String) -> Error {
    Error::Dataset { path: path.to_path_buf(), message }
}

fn open(path: &Path) -> Result<zip::ZipArchive<std::fs::File>> {
    let file = std::fs::File::open(path).map_err(|e| bad(path, format!("cannot open: {e}")))?;
    zip::ZipArchive::new(file).map_err(|e| bad(path, format!("not a readable zip archive: {e}")))
}

/// Lists the archive's images and reads `dataset.json`, checking every image has a label.
pub fn list(path: &Path) -> Result<ZipListing> {
    let mut archive = open(path)?;
    let mut names: Vec<String> = archive
        .file_names()
        .filter(|n| {
            let lower = n.to_lowercase();
            let image = lower.ends_with(".png") || lower.ends_with(".jpg") || lower.ends_with(".jpeg");
            image && !n.split('/').any(folder::is_hidden)
        })
        .map(String::from)
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(bad(path, "the archive holds no PNG or JPEG images".into()));
    }
    let json_path = path.join("dataset.json");
    let has_dataset_json = archive.index_for_name("dataset.json").is_some();
    let labels = match archive.by_name("dataset.json") {
        Err(_) => None,
        Ok(mut entry) => {
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(|e| bad(&json_path, format!("cannot read: {e}")))?;
            dataset_json::parse(&json_path, &text, &names)?
        }
    };
    let num_classes = labels.as_ref().map_or(0, |l| l.num_classes);
    let labels = labels.map(|l| l.by_name);
    Ok(ZipListing { names, labels, num_classes, has_dataset_json })
}

/// Reads the images `names` (a slice of the listing) into memory.
pub fn read(path: &Path, listing: &ZipListing, names: &[String]) -> Result<Vec<ZipImage>> {
    let mut archive = open(path)?;
    names
        .iter()
        .map(|name| {
            let inner = path.join(name);
            let mut entry = archive.by_name(name).map_err(|e| bad(&inner, format!("cannot read: {e}")))?;
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| bad(&inner, format!("cannot read (corrupt archive?): {e}")))?;
            let label = listing.labels.as_ref().map_or(0, |l| l[name]);
            Ok(ZipImage { path: inner, bytes, label })
        })
        .collect()
}
