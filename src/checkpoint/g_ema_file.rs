//! G_ema alone in one safetensors file: what `gan-launch ckpt export` writes and what a run leaves
//! as `g_ema-final.safetensors`. The header's metadata make the file self-describing, so
//! `gan-launch sample` and `eval` take it as they take a checkpoint, on any machine: the resolved
//! config that trained it (to build the network and find the reals), its step and kimg, and the
//! dataset it was trained on (readable, and as the identity `eval` compares with the reals).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::safetensors::TensorFile;
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
}

impl GEmaInfo {
    /// The safetensors metadata that describe the file.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = [
            ("format", G_EMA_FORMAT.to_string()),
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
        m
    }

    /// Reads the metadata of the G_ema file at `path`; anything else (another safetensors file, a
    /// checkpoint's `g.safetensors`) is refused, saying what is expected.
    pub fn read(path: &Path) -> Result<GEmaInfo> {
        let metadata = TensorFile::open(path)?.metadata()?;
        let refuse = |why: String| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!(
                "{why}; expected a G_ema file (`gan-launch ckpt export` or a run's g_ema-final.safetensors), \
                 a checkpoint directory (step-NNNNNNNN), or a run directory"
            ),
        };
        if metadata.get("format").map(String::as_str) != Some(G_EMA_FORMAT) {
            return Err(refuse(format!("its metadata do not say format {G_EMA_FORMAT}")));
        }
        let field = |key: &str| metadata.get(key).ok_or_else(|| refuse(format!("its metadata lack `{key}`")));
        let number = |key: &str| -> Result<u64> {
            field(key)?.parse().map_err(|_| refuse(format!("its metadata `{key}` is not a whole number")))
        };
        // Files exported before `cur_nimg` was recorded carry kimg to 3 decimals: exact in images.
        let cur_nimg = match metadata.get("cur_nimg") {
            Some(_) => number("cur_nimg")?,
            None => {
                (field("kimg")?.parse::<f64>().map_err(|_| refuse("its `kimg` is not a number".into()))?
                    * 1000.0)
                    .round() as u64
            }
        };
        Ok(GEmaInfo {
            arch: field("arch")?.clone(),
            step: number("step")?,
            cur_nimg,
            config_yaml: field("config")?.clone(),
            dataset: metadata.get("dataset_identity").and_then(|j| serde_json::from_str(j).ok()),
            source: metadata.get("source").map(PathBuf::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{write_tensors, Dtype, RawTensor};

    fn tensor() -> Vec<RawTensor> {
        vec![RawTensor {
            name: "w".into(),
            dtype: Dtype::F32,
            shape: vec![1],
            data: 1f32.to_le_bytes().to_vec(),
        }]
    }

    #[test]
    fn metadata_round_trip_and_other_files_are_refused() {
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
        };
        let path = dir.path().join("g.safetensors");
        write_tensors(&path, &tensor(), &info.metadata()).unwrap();
        assert_eq!(GEmaInfo::read(&path).unwrap(), info);
        assert_eq!(info.metadata()["kimg"], "1.008");

        let plain = dir.path().join("plain.safetensors");
        write_tensors(&plain, &tensor(), &BTreeMap::new()).unwrap();
        let err = GEmaInfo::read(&plain).unwrap_err().to_string();
        assert!(err.contains("plain.safetensors") && err.contains("format gan-launch-g-ema"), "{err}");
        std::fs::write(&plain, b"not safetensors").unwrap();
        assert!(GEmaInfo::read(&plain).unwrap_err().to_string().contains("plain.safetensors"));
    }
}
