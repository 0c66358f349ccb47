//! Image folders as `data prepare` reads them: which files are images, in what order, and where
//! their labels come from (class sub-folders as torchvision's `ImageFolder`, StyleGAN's
//! `dataset.json`, or none, as StyleGAN's dataset_tool takes a folder).
use std::path::{Path, PathBuf};

use super::dataset_json;
use crate::error::{Error, Result};

/// Where an image folder's labels come from (`data prepare --labels`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Labels {
    /// `dataset.json` when the folder has one, else class sub-folders when there are two or
    /// more, else none.
    Auto,
    /// Each sub-folder is a class (sorted by name), its images found at any depth.
    Folders,
    /// StyleGAN's `dataset.json` at the top of the folder.
    DatasetJson,
    /// Every image under the folder, at any depth, unlabelled (FFHQ's numbered 1000-image
    /// folders are chunks, not classes).
    None,
}

impl Labels {
    /// The name `--labels` takes.
    pub fn name(self) -> &'static str {
        match self {
            Labels::Auto => "auto",
            Labels::Folders => "folders",
            Labels::DatasetJson => "dataset-json",
            Labels::None => "none",
        }
    }
}

/// Image files with their labels, in a fixed order, and the class names.
#[derive(Debug)]
pub struct FolderListing {
    pub files: Vec<(PathBuf, u32)>,
    pub class_names: Vec<String>,
    /// Something the user should hear about how the labels were chosen.
    pub notice: Option<String>,
}

/// Folders nested deeper than this are refused (a symbolic link loop, most likely).
const MAX_DEPTH: usize = 32;

/// A name to pass over: hidden files and folders (`.ipynb_checkpoints`, macOS's `._x.png`
/// resource forks) and the `__MACOSX` folder of zips made on a Mac.
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('.') || name == "__MACOSX"
}

fn bad(path: &Path, message: String) -> Error {
    Error::Dataset { path: path.to_path_buf(), message }
}

/// Lists the images of `dir` and their labels, as `labels` says.
pub fn list(dir: &Path, labels: Labels) -> Result<FolderListing> {
    let entries = visible_entries(dir).map_err(|e| bad(dir, format!("cannot read the folder: {e}")))?;
    let sub_folders: Vec<PathBuf> = entries.iter().filter(|p| p.is_dir()).cloned().collect();
    let json_path = dir.join("dataset.json");
    let listing = match labels {
        Labels::Auto if json_path.is_file() => from_dataset_json(dir, &json_path)?,
        Labels::Auto if sub_folders.len() >= 2 => {
            let mut listing = from_class_folders(&entries, &sub_folders)?;
            listing.notice = suspicious_classes_notice(&listing.class_names);
            listing
        }
        Labels::Auto | Labels::None => unlabelled(dir)?,
        Labels::Folders if sub_folders.len() < 2 => {
            return Err(bad(
                dir,
                format!("--labels folders needs two or more class folders; found {}", sub_folders.len()),
            ))
        }
        Labels::Folders => from_class_folders(&entries, &sub_folders)?,
        Labels::DatasetJson if !json_path.is_file() => {
            return Err(bad(&json_path, "not found (--labels dataset-json reads labels from it)".into()))
        }
        Labels::DatasetJson => from_dataset_json(dir, &json_path)?,
    };
    if listing.files.is_empty() {
        return Err(bad(dir, "no PNG or JPEG images found (looked in every sub-folder)".into()));
    }
    Ok(listing)
}

/// Every image under `dir`, label 0.
fn unlabelled(dir: &Path) -> Result<FolderListing> {
    let files = images_under(dir)?.into_iter().map(|p| (p, 0)).collect();
    Ok(FolderListing { files, class_names: Vec::new(), notice: None })
}

/// One class per sub-folder; images beside the class folders would belong to none, so they are
/// refused rather than silently left out, and so is a class folder without images.
fn from_class_folders(entries: &[PathBuf], classes: &[PathBuf]) -> Result<FolderListing> {
    if let Some(loose) = entries.iter().find(|p| is_image(p)) {
        return Err(bad(
            loose,
            "is an image beside the class folders, in no class; move it into one, or pass \
             --labels none for an unlabelled dataset of every image"
                .into(),
        ));
    }
    let mut files = Vec::new();
    let mut class_names = Vec::new();
    for (label, class_dir) in classes.iter().enumerate() {
        let images = images_under(class_dir)?;
        if images.is_empty() {
            return Err(bad(
                class_dir,
                "is a class folder without PNG or JPEG images; remove it (a class without images \
                 cannot be learnt), or pass --labels none"
                    .into(),
            ));
        }
        class_names.push(class_dir.file_name().unwrap_or_default().to_string_lossy().into_owned());
        files.extend(images.into_iter().map(|p| (p, label as u32)));
    }
    Ok(FolderListing { files, class_names, notice: None })
}

/// Every image under `dir`, labelled by `dataset.json` (class names are the label numbers, as a
/// StyleGAN zip's are).
fn from_dataset_json(dir: &Path, json_path: &Path) -> Result<FolderListing> {
    let images = images_under(dir)?;
    let names: Vec<String> = images.iter().map(|p| relative_name(dir, p)).collect();
    let text = std::fs::read_to_string(json_path).map_err(|e| bad(json_path, format!("cannot read: {e}")))?;
    let Some(labels) = dataset_json::parse(json_path, &text, &names)? else {
        return Ok(FolderListing { files: images.into_iter().map(|p| (p, 0)).collect(), ..empty() });
    };
    let files = images.into_iter().zip(&names).map(|(p, n)| (p, labels.by_name[n])).collect();
    let class_names = (0..labels.num_classes).map(|c| c.to_string()).collect();
    Ok(FolderListing { files, class_names, notice: None })
}

fn empty() -> FolderListing {
    FolderListing { files: Vec::new(), class_names: Vec::new(), notice: None }
}

/// Folder names that say the sub-folders are not classes: zero-padded numbers of one width are
/// how a dataset is split into chunks (FFHQ: `00000`, `01000`, ... of 1000 images each), and
/// `train`/`val`/`test` are splits (AFHQ's root holds `train/` and `val/`, each with the classes).
fn suspicious_classes_notice(class_names: &[String]) -> Option<String> {
    const SPLITS: [&str; 5] = ["train", "val", "valid", "validation", "test"];
    let width = class_names.first()?.len();
    let numbered = class_names.iter().all(|n| n.len() == width && n.bytes().all(|b| b.is_ascii_digit()));
    let splits: Vec<&str> = class_names
        .iter()
        .map(String::as_str)
        .filter(|n| SPLITS.contains(&n.to_lowercase().as_str()))
        .collect();
    let took = format!(
        "took the {} sub-folders ({} ... {}) as classes",
        class_names.len(),
        class_names[0],
        class_names[class_names.len() - 1]
    );
    if numbered && width >= 4 {
        return Some(format!(
            "{took}; zero-padded numbers are how FFHQ and other datasets split images into chunks: if \
             they are not classes, prepare again with --labels none"
        ));
    }
    (splits.len() >= 2).then(|| {
        format!(
            "{took}; {} look like dataset splits, not classes: prepare again from one split's folder \
             (e.g. afhq/train, whose sub-folders are the classes)",
            splits.join(" and ")
        )
    })
}

/// `path` relative to `dir`, with `/` separators, as dataset.json names images.
fn relative_name(dir: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(dir).unwrap_or(path);
    let parts: Vec<String> =
        relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    parts.join("/")
}

/// The images under `dir` at any depth, in path order (each folder's entries sorted by name).
fn images_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    walk(dir, 0, &mut found)?;
    Ok(found)
}

fn walk(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(bad(
            dir,
            format!("is nested more than {MAX_DEPTH} folders deep (a symbolic link loop?)"),
        ));
    }
    let entries = visible_entries(dir).map_err(|e| bad(dir, format!("cannot read the folder: {e}")))?;
    for entry in entries {
        if entry.is_dir() {
            walk(&entry, depth + 1, found)?;
        } else if is_image(&entry) {
            found.push(entry);
        }
    }
    Ok(())
}

fn visible_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !is_hidden(&entry.file_name().to_string_lossy()) {
            entries.push(entry.path());
        }
    }
    entries.sort();
    Ok(entries)
}

/// PNG and JPEG files, by extension.
pub fn is_image(path: &Path) -> bool {
    let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
    path.is_file() && matches!(ext.as_str(), "png" | "jpg" | "jpeg")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tests::dataset_error;

    /// Writes a 4x4 PNG (the listing never decodes it, but `data prepare` would).
    fn png(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3])).save(path).unwrap();
    }

    /// The listing as (path under `dir`, label) pairs.
    fn names(dir: &Path, listing: &FolderListing) -> Vec<(String, u32)> {
        listing.files.iter().map(|(p, l)| (relative_name(dir, p), *l)).collect()
    }

    #[test]
    fn numbered_chunks_are_classes_only_when_asked_and_every_depth_is_read() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["00000/00000.png", "00000/00001.png", "01000/01000.png", "01000/deeper/01001.png"] {
            png(&dir.path().join(name));
        }
        // Hidden entries and macOS's resource forks are not images of the dataset.
        std::fs::write(dir.path().join("00000/._00000.png"), b"resource fork").unwrap();
        png(&dir.path().join(".ipynb_checkpoints/x.png"));
        png(&dir.path().join("__MACOSX/00000/y.png"));

        let auto = list(dir.path(), Labels::Auto).unwrap();
        assert_eq!(auto.class_names, ["00000", "01000"]);
        assert_eq!(
            names(dir.path(), &auto),
            [
                ("00000/00000.png".into(), 0),
                ("00000/00001.png".into(), 0),
                ("01000/01000.png".into(), 1),
                ("01000/deeper/01001.png".into(), 1)
            ]
        );
        let notice = auto.notice.unwrap();
        assert!(
            notice.contains("2 sub-folders (00000 ... 01000)") && notice.contains("--labels none"),
            "{notice}"
        );

        let none = list(dir.path(), Labels::None).unwrap();
        assert!(none.class_names.is_empty() && none.notice.is_none());
        assert_eq!(none.files.len(), 4);
        assert!(none.files.iter().all(|(_, label)| *label == 0));
        // Real class names draw no notice.
        let classes = tempfile::tempdir().unwrap();
        png(&classes.path().join("cat/a.png"));
        png(&classes.path().join("dog/b.png"));
        assert!(list(classes.path(), Labels::Auto).unwrap().notice.is_none());
        assert!(list(classes.path(), Labels::Folders).unwrap().notice.is_none());
        // AFHQ's root: its sub-folders are splits, each holding the classes.
        let afhq = tempfile::tempdir().unwrap();
        png(&afhq.path().join("train/cat/a.png"));
        png(&afhq.path().join("val/cat/b.png"));
        let notice = list(afhq.path(), Labels::Auto).unwrap().notice.unwrap();
        assert!(notice.contains("train and val look like dataset splits"), "{notice}");
    }

    #[test]
    fn class_folders_leave_no_image_out_silently() {
        let dir = tempfile::tempdir().unwrap();
        png(&dir.path().join("cat/a.png"));
        png(&dir.path().join("dog/b.png"));
        png(&dir.path().join("loose.png"));
        let (path, why) = dataset_error(list(dir.path(), Labels::Auto).unwrap_err());
        assert!(path.ends_with("loose.png") && why.contains("--labels none"), "{path:?}: {why}");
        assert_eq!(list(dir.path(), Labels::None).unwrap().files.len(), 3, "none takes every image");

        std::fs::remove_file(dir.path().join("loose.png")).unwrap();
        std::fs::create_dir_all(dir.path().join("empty/sub")).unwrap();
        let (path, why) = dataset_error(list(dir.path(), Labels::Folders).unwrap_err());
        assert!(path.ends_with("empty") && why.contains("without PNG or JPEG images"), "{path:?}: {why}");

        let one = tempfile::tempdir().unwrap();
        png(&one.path().join("faces/a.png"));
        let (_, why) = dataset_error(list(one.path(), Labels::Folders).unwrap_err());
        assert!(why.contains("two or more class folders; found 1"), "{why}");
        assert_eq!(list(one.path(), Labels::Auto).unwrap().class_names.len(), 0, "one folder is unlabelled");
    }

    #[test]
    fn dataset_json_labels_a_folder_as_stylegan_does() {
        let dir = tempfile::tempdir().unwrap();
        png(&dir.path().join("00000/img0.png"));
        png(&dir.path().join("00000/img1.png"));
        png(&dir.path().join("00001/img2.png"));
        let (path, _) = dataset_error(list(dir.path(), Labels::DatasetJson).unwrap_err());
        assert!(path.ends_with("dataset.json"));
        std::fs::write(
            dir.path().join("dataset.json"),
            r#"{"labels": [["00000/img0.png", 1], ["00000/img1.png", 0], ["00001/img2.png", 2]]}"#,
        )
        .unwrap();
        let auto = list(dir.path(), Labels::Auto).unwrap();
        assert_eq!(auto.class_names, ["0", "1", "2"]);
        let labels: Vec<u32> = auto.files.iter().map(|(_, l)| *l).collect();
        assert_eq!(labels, [1, 0, 2]);
        // The flag wins over the file.
        assert_eq!(list(dir.path(), Labels::Folders).unwrap().class_names, ["00000", "00001"]);
        assert_eq!(list(dir.path(), Labels::None).unwrap().class_names.len(), 0);
        png(&dir.path().join("00001/img3.png"));
        let (path, why) = dataset_error(list(dir.path(), Labels::Auto).unwrap_err());
        assert!(path.ends_with("dataset.json") && why.contains("3 labels for 4 images"), "{path:?}: {why}");
    }
}
