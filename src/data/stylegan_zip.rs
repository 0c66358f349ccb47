//! StyleGAN dataset zips (what `dataset_tool.py` of StyleGAN2-ADA/StyleGAN3 writes): image files
//! (PNG, JPEG) anywhere in the archive, and optionally `dataset.json` with
//! `{"labels": [["00000/img00000000.png", 6], ...]}` (or `"labels": null` for unlabelled data).
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// One image file of the archive, read into memory, with its label.
pub struct ZipImage {
    /// `archive.zip/inner/path.png`, for messages.
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub label: u32,
}

#[derive(Deserialize)]
struct DatasetJson {
    labels: Option<Vec<(String, serde_json::Value)>>,
}

/// The images' names in archive order (sorted by name, as the StyleGAN tools do) and, when the
/// archive has labels, the class count.
pub struct ZipListing {
    pub names: Vec<String>,
    pub labels: Option<HashMap<String, u32>>,
    pub num_classes: u32,
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
            lower.ends_with(".png") || lower.ends_with(".jpg") || lower.ends_with(".jpeg")
        })
        .map(String::from)
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(bad(path, "the archive holds no PNG or JPEG images".into()));
    }
    let json_path = path.join("dataset.json");
    let labels = match archive.by_name("dataset.json") {
        Err(_) => None,
        Ok(mut entry) => {
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(|e| bad(&json_path, format!("cannot read: {e}")))?;
            let parsed: DatasetJson = serde_json::from_str(&text)
                .map_err(|e| bad(&json_path, format!("not valid dataset.json: {e}")))?;
            parsed.labels.map(|l| parse_labels(&json_path, l)).transpose()?
        }
    };
    let mut num_classes = 0;
    if let Some(labels) = &labels {
        if labels.len() != names.len() {
            return Err(bad(&json_path, format!("{} labels for {} images", labels.len(), names.len())));
        }
        if let Some(missing) = names.iter().find(|n| !labels.contains_key(*n)) {
            return Err(bad(&json_path, format!("no label for {missing}")));
        }
        num_classes = labels.values().max().map_or(0, |m| m + 1);
        // Every label 0 is one class, no labelling a conditional model could use: unlabelled.
        if num_classes == 1 {
            num_classes = 0;
        }
    }
    Ok(ZipListing { names, labels, num_classes })
}

fn parse_labels(json_path: &Path, labels: Vec<(String, serde_json::Value)>) -> Result<HashMap<String, u32>> {
    labels
        .into_iter()
        .map(|(name, value)| match value.as_u64() {
            Some(label) => Ok((name, label as u32)),
            None => Err(bad(json_path, format!("the label of {name} is {value}, not a class index"))),
        })
        .collect()
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
