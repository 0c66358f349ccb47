//! Where `sample` and `eval` take a trained G_ema from: a checkpoint directory (its
//! `config.yaml`, `g_ema.safetensors` and `state.json`) or a G_ema file, which carries the same
//! in its metadata (`gan_core::checkpoint::GEmaInfo`).
use std::path::{Path, PathBuf};

use tch::nn;

use super::tensors::load_varstore;
use gan_core::checkpoint::{GEmaInfo, TrainState, STATE_FILE};
use gan_core::config::{self, RunConfig};
use gan_core::data::identity::DatasetIdentity;
use gan_core::error::Result;

/// A trained G_ema and the config that built it.
pub enum GeneratorSource {
    Checkpoint(PathBuf),
    File { path: PathBuf, info: Box<GEmaInfo> },
}

impl GeneratorSource {
    /// A G_ema file when `path` is a file, else a checkpoint directory.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_file() {
            let info = Box::new(GEmaInfo::read(path)?);
            return Ok(GeneratorSource::File { path: path.to_path_buf(), info });
        }
        Ok(GeneratorSource::Checkpoint(path.to_path_buf()))
    }

    /// The resolved config of the run that trained it.
    pub fn config(&self) -> Result<RunConfig> {
        match self {
            GeneratorSource::Checkpoint(dir) => config::load_resolved(&dir.join("config.yaml")),
            GeneratorSource::File { path, info } => config::parse_resolved(&info.config_yaml, path),
        }
    }

    /// Loads the weights into `vs` (built from [`GeneratorSource::config`]).
    pub fn load(&self, vs: &nn::VarStore) -> Result<()> {
        match self {
            GeneratorSource::Checkpoint(dir) => load_varstore(vs, &dir.join("g_ema.safetensors"), "G_ema"),
            GeneratorSource::File { path, .. } => load_varstore(vs, path, "G_ema"),
        }
    }

    /// The dataset it was trained on, when recorded.
    pub fn dataset(&self) -> Option<DatasetIdentity> {
        match self {
            GeneratorSource::Checkpoint(dir) => {
                let state = std::fs::read(dir.join(STATE_FILE)).ok()?;
                serde_json::from_slice::<TrainState>(&state).ok()?.dataset
            }
            GeneratorSource::File { info, .. } => info.dataset.clone(),
        }
    }
}
