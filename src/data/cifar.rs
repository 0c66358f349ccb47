//! CIFAR-10's python batches (`cifar-10-batches-py`): `data_batch_1..5` and `test_batch`, each a
//! pickled dict with `data`, a numpy uint8 array of N x 3072 (the 1024 red, 1024 green, then 1024
//! blue values of a 32x32 image, row-major), and `labels`, N class indices; `batches.meta` names
//! the classes.
use std::path::{Path, PathBuf};

use super::pickle::{self, Value};
use crate::error::{Error, Result};

/// Side of a CIFAR image.
pub const SIDE: u32 = 32;
const PLANE: usize = (SIDE * SIDE) as usize;

/// The batch files present in `dir`, in the order the dataset is built from (training batches,
/// then the test batch).
pub fn batch_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> =
        (1..=5).map(|i| dir.join(format!("data_batch_{i}"))).filter(|p| p.is_file()).collect();
    let test = dir.join("test_batch");
    if test.is_file() {
        files.push(test);
    }
    if files.is_empty() {
        return Err(Error::Dataset {
            path: dir.to_path_buf(),
            message: "no CIFAR-10 python batches (data_batch_1..5, test_batch) here".into(),
        });
    }
    Ok(files)
}

/// Class names from `batches.meta`, or the digits 0-9 when it is absent.
pub fn class_names(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join("batches.meta");
    if !path.is_file() {
        return Ok((0..10).map(|c| c.to_string()).collect());
    }
    let meta = load(&path)?;
    match meta.get("label_names") {
        Some(Value::List(names)) => Ok(names.iter().map(text).collect()),
        _ => Err(bad(&path, "has no label_names list".into())),
    }
}

/// One batch file as channels-last 32x32 RGB images with labels.
pub fn read_batch(path: &Path) -> Result<Vec<(Vec<u8>, u32)>> {
    let batch = load(path)?;
    let labels: Vec<u32> = match batch.get("labels") {
        Some(Value::List(items)) => items
            .iter()
            .map(|v| match v {
                Value::Int(l) if (0..10).contains(l) => Ok(*l as u32),
                other => Err(bad(path, format!("label {other:?} is not a class index 0-9"))),
            })
            .collect::<Result<_>>()?,
        _ => return Err(bad(path, "has no labels list".into())),
    };
    let (count, raw) = array_payload(path, batch.get("data"))?;
    if count != labels.len() {
        return Err(bad(path, format!("{count} images but {} labels", labels.len())));
    }
    Ok(raw
        .chunks_exact(3 * PLANE)
        .zip(labels)
        .map(|(planar, label)| (planar_to_hwc(planar), label))
        .collect())
}

fn load(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
    pickle::parse(&bytes).map_err(|e| bad(path, format!("not a readable pickle: {e}")))
}

/// The N and the raw bytes of an N x 3072 uint8 numpy array.
fn array_payload<'a>(path: &Path, data: Option<&'a Value>) -> Result<(usize, &'a [u8])> {
    let state = match data {
        Some(Value::Object { state: Some(state), .. }) => state,
        _ => return Err(bad(path, "has no data array".into())),
    };
    let Value::Tuple(fields) = state.as_ref() else { return Err(bad(path, "unexpected array state".into())) };
    let (shape, raw) = match fields.as_slice() {
        [_, Value::Tuple(shape), _, _, Value::Bytes(raw)] => (shape, raw),
        _ => return Err(bad(path, "unexpected array state".into())),
    };
    let count = match shape.as_slice() {
        [Value::Int(n), Value::Int(3072)] => *n as usize,
        other => return Err(bad(path, format!("data has shape {other:?}, expected N x 3072"))),
    };
    if raw.len() != count * 3 * PLANE {
        return Err(bad(
            path,
            format!("data holds {} bytes, expected {count} x 3072 (truncated?)", raw.len()),
        ));
    }
    Ok((count, raw))
}

fn planar_to_hwc(planar: &[u8]) -> Vec<u8> {
    (0..PLANE).flat_map(|i| [planar[i], planar[PLANE + i], planar[2 * PLANE + i]]).collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Str(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn bad(path: &Path, message: String) -> Error {
    Error::Dataset { path: path.to_path_buf(), message }
}
