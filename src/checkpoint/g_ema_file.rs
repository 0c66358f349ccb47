//! G_ema alone in one safetensors file: what `gan-launch ckpt export` writes and what a run leaves
//! as `g_ema-final.safetensors`. The header's metadata make the file self-describing, so
//! `gan-launch sample` and `eval` take it as they take a checkpoint, on any machine: the resolved
//! config that trained it (to build the network and find the reals), its step and kimg, the
//! dataset it was trained on (readable, and as the identity `eval` compares with the reals), and
//! a BLAKE3 digest of its tensors, so a damaged file is refused rather than sampled from.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::manifest::{FileEntry, InitSource};
use super::safetensors::{write_tensors, RawTensor, TensorFile};
use crate::data::identity::DatasetIdentity;
use crate::error::{Error, Result};

/// The metadata `format` of a G_ema file.
pub const G_EMA_FORMAT: &str = "gan-launch-g-ema";

/// What a G_ema file's metadata say.
#[derive(Clone, Debug, PartialEq)]
pub struct GEmaInfo {
    /// `model.arch` of the config.
    pub arch: String,
    pub step: u64,
    pub cur_nimg: u64,
    /// The resolved config of the run (YAML), as a checkpoint's `config.yaml`.
    pub config_yaml: String,
    pub dataset: Option<DatasetIdentity>,
    /// The checkpoint it was exported from; None for a run's final file.
    pub source: Option<PathBuf>,
    /// What the run started from, when it was fine-tuned (`checkpoint.init_from`).
    pub init_from: Option<InitSource>,
}

impl GEmaInfo {
    /// The safetensors metadata that describe the file whose tensors have `digest`.
    fn metadata(&self, digest: String) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = [
            ("format", G_EMA_FORMAT.to_string()),
            ("tensors_blake3", digest),
            ("arch", self.arch.clone()),
            ("step", self.step.to_string()),
            ("cur_nimg", self.cur_nimg.to_string()),
            ("kimg", format!("{:.3}", self.cur_nimg as f64 / 1000.0)),
            ("config", self.config_yaml.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(d) = &self.dataset {
            m.insert("dataset".into(), d.describe());
            m.insert("dataset_identity".into(), serde_json::to_string(d).expect("an identity serialises"));
        }
        if let Some(source) = &self.source {
            m.insert("source".into(), source.display().to_string());
        }
        if let Some(init) = &self.init_from {
            m.insert("init_from".into(), serde_json::to_string(init).expect("an init source serialises"));
        }
        m
    }

    /// Writes `tensors` as a G_ema file at `path`: beside it first, then renamed, so the file is
    /// whole or absent.
    pub fn write(&self, path: &Path, tensors: &[RawTensor]) -> Result<FileEntry> {
        let digest = tensors_digest(tensors.iter().map(|t| (t.name.as_str(), t.data.as_slice())));
        let partial = path.with_extension("safetensors.tmp");
        let written = write_tensors(&partial, tensors, &self.metadata(digest)).and_then(|entry| {
            std::fs::rename(&partial, path).map(|()| entry).map_err(Error::io("rename", &partial))
        });
        if written.is_err() {
            // A full disk leaves no half file behind (and gives the space back).
            let _ = std::fs::remove_file(&partial);
        }
        written
    }

    /// Reads and checks the G_ema file at `path`: its metadata, and its tensors against the
    /// digest they were written with. Anything else (another safetensors file, a checkpoint's
    /// `g.safetensors`) and a damaged file are refused, saying why.
    pub fn read(path: &Path) -> Result<GEmaInfo> {
        let refuse = |why: String| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!(
                "{why}; expected a G_ema file (`gan-launch ckpt export` or a run's g_ema-final.safetensors), \
                 a checkpoint directory (step-NNNNNNNN), or a run directory"
            ),
        };
        let file = TensorFile::open(path).map_err(|e| match e {
            // A file of another kind (a config, an image) or a damaged one; not libtorch's fault.
            Error::Tensor(_) => refuse("it does not read as a safetensors file".into()),
            other => other,
        })?;
        let metadata = file.metadata()?;
        if metadata.get("format").map(String::as_str) != Some(G_EMA_FORMAT) {
            return Err(refuse(format!("its metadata do not say format {G_EMA_FORMAT}")));
        }
        let field = |key: &str| metadata.get(key).ok_or_else(|| refuse(format!("its metadata lack `{key}`")));
        let number = |key: &str| -> Result<u64> {
            field(key)?.parse().map_err(|_| refuse(format!("its metadata `{key}` is not a whole number")))
        };
        let digest = tensors_digest(file.tensors()?.iter().map(|t| (t.name.as_str(), t.data)));
        if *field("tensors_blake3")? != digest {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                message: "its tensors do not match the BLAKE3 digest they were written with (damaged since)"
                    .into(),
            });
        }
        Ok(GEmaInfo {
            arch: field("arch")?.clone(),
            step: number("step")?,
            cur_nimg: number("cur_nimg")?,
            config_yaml: field("config")?.clone(),
            dataset: metadata.get("dataset_identity").and_then(|j| serde_json::from_str(j).ok()),
            source: metadata.get("source").map(PathBuf::from),
            init_from: metadata.get("init_from").and_then(|j| serde_json::from_str(j).ok()),
        })
    }
}

/// BLAKE3 over the tensors in name order, each as its name and data with their lengths (so no
/// two different sets of tensors hash alike by shifting bytes between them).
fn tensors_digest<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut sorted: Vec<(&str, &[u8])> = tensors.collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut hasher = blake3::Hasher::new();
    for (name, data) in sorted {
        for part in [name.as_bytes(), data] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    }
    hasher.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Dtype;

    fn tensor() -> Vec<RawTensor> {
        vec![RawTensor {
            name: "w".into(),
            dtype: Dtype::F32,
            shape: vec![1],
            data: 1f32.to_le_bytes().to_vec(),
        }]
    }

    #[test]
    fn a_written_file_reads_back_and_damaged_or_other_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let info = GEmaInfo {
            arch: "dcgan".into(),
            step: 47,
            cur_nimg: 1008,
            config_yaml: "run: {name: x}\n".into(),
            dataset: Some(DatasetIdentity {
                id: "generated 0123".into(),
                images: 2048,
                resolution: 16,
                channels: 3,
                classes: vec!["disc".into(), "square".into()],
                path: None,
            }),
            source: Some("runs/x/checkpoints/step-00000047".into()),
            init_from: Some(InitSource {
                path: "runs/base/checkpoints/step-00000900".into(),
                step: 900,
                cur_nimg: 28_800,
                dataset: None,
            }),
        };
        let path = dir.path().join("g.safetensors");
        let entry = info.write(&path, &tensor()).unwrap();
        assert_eq!(GEmaInfo::read(&path).unwrap(), info);
        assert!(!path.with_extension("safetensors.tmp").exists());
        let meta = TensorFile::open(&path).unwrap().metadata().unwrap();
        assert_eq!((meta["kimg"].as_str(), meta["step"].as_str()), ("1.008", "47"));

        // One flipped bit in the last tensor byte: the file still parses, the digest catches it.
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, entry.bytes);
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = GEmaInfo::read(&path).unwrap_err().to_string();
        assert!(err.contains("do not match the BLAKE3 digest"), "{err}");

        let plain = dir.path().join("plain.safetensors");
        write_tensors(&plain, &tensor(), &BTreeMap::new()).unwrap();
        let err = GEmaInfo::read(&plain).unwrap_err().to_string();
        assert!(err.contains("plain.safetensors") && err.contains("format gan-launch-g-ema"), "{err}");
        // Another kind of file (a config passed by mistake) is a user's error, said as such.
        std::fs::write(&plain, b"run:\n  name: demo\n").unwrap();
        let err = GEmaInfo::read(&plain).unwrap_err();
        assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
        let err = err.to_string();
        assert!(err.contains("plain.safetensors: it does not read as a safetensors file"), "{err}");
    }
}
