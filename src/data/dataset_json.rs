//! StyleGAN's `dataset.json`, which its `dataset_tool.py` writes beside the images (in a zip, and
//! read from a source folder too): `{"labels": [["00000/img00000000.png", 6], ...]}` keyed by the
//! image's path inside the dataset with `/` separators, or `"labels": null` for unlabelled data.
use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Deserialize)]
struct DatasetJson {
    labels: Option<Vec<(String, serde_json::Value)>>,
}

/// The labels of a dataset's images.
#[derive(Debug)]
pub struct Labels {
    pub by_name: HashMap<String, u32>,
    /// 0 when every label is 0: one class conditions nothing, so that is unlabelled data.
    pub num_classes: u32,
}

fn bad(path: &Path, message: String) -> Error {
    Error::Dataset { path: path.to_path_buf(), message }
}

/// Parses `text`, read from `json_path`, and checks that it labels exactly the images `names`;
/// `None` when it says the data are unlabelled.
pub fn parse(json_path: &Path, text: &str, names: &[String]) -> Result<Option<Labels>> {
    let parsed: DatasetJson =
        serde_json::from_str(text).map_err(|e| bad(json_path, format!("not valid dataset.json: {e}")))?;
    let Some(entries) = parsed.labels else { return Ok(None) };
    let by_name: HashMap<String, u32> = entries
        .into_iter()
        .map(|(name, value)| match value.as_u64() {
            Some(label) if label <= u64::from(u32::MAX) => Ok((name, label as u32)),
            _ => Err(bad(json_path, format!("the label of {name} is {value}, not a class index"))),
        })
        .collect::<Result<_>>()?;
    if by_name.len() != names.len() {
        return Err(bad(json_path, format!("{} labels for {} images", by_name.len(), names.len())));
    }
    if let Some(missing) = names.iter().find(|n| !by_name.contains_key(*n)) {
        return Err(bad(json_path, format!("no label for {missing}")));
    }
    let num_classes = match by_name.values().max() {
        Some(0) | None => 0,
        Some(max) => max + 1,
    };
    Ok(Some(Labels { by_name, num_classes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn labels_must_match_the_images() {
        let json = Path::new("ds/dataset.json");
        let text = r#"{"labels": [["a/x.png", 2], ["a/y.png", 0]]}"#;
        let labels = parse(json, text, &names(&["a/x.png", "a/y.png"])).unwrap().unwrap();
        assert_eq!((labels.by_name["a/x.png"], labels.num_classes), (2, 3));
        let err = parse(json, text, &names(&["a/x.png", "a/z.png"])).unwrap_err().to_string();
        assert!(err.contains("no label for a/z.png"), "{err}");
        let err = parse(json, text, &names(&["a/x.png"])).unwrap_err().to_string();
        assert!(err.contains("2 labels for 1 images"), "{err}");
        let err = parse(json, r#"{"labels": [["a/x.png", "cat"]]}"#, &names(&["a/x.png"])).unwrap_err();
        assert!(err.to_string().contains("not a class index"), "{err}");
        assert!(parse(json, r#"{"labels": null}"#, &names(&["a/x.png"])).unwrap().is_none());
        let zeros = parse(json, r#"{"labels": [["a/x.png", 0]]}"#, &names(&["a/x.png"])).unwrap().unwrap();
        assert_eq!(zeros.num_classes, 0, "one class is no labelling");
    }
}
