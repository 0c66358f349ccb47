//! The run directory `run.dir/run.name/`: the resolved config and a manifest of what produced the
//! run (code, libraries, machine, seeds), so any result can be traced back and reproduced.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{self, RunConfig};
use crate::error::Result;
use crate::fsutil;

/// Commit the binaries were built from (`-dirty` when the tree had uncommitted changes).
pub const GIT_COMMIT: &str = env!("GAN_BUILD_GIT_COMMIT");
/// Version of this crate.
pub const CRATE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What produced a run; written as `run.json` by rank 0 at start.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunManifest {
    pub name: String,
    pub git_commit: String,
    pub crate_version: String,
    pub libtorch_version: String,
    /// Device of rank 0 (`cpu`, `cuda:0`) and, for CUDA, the device name.
    pub device: String,
    pub world_size: u32,
    pub run_seed: u64,
    /// Seed of each rank's latent and augmentation stream, in rank order.
    pub rank_seeds: Vec<u64>,
    pub host: String,
    /// RFC 3339, UTC.
    pub start_time: String,
    /// How many times the launcher restarted the ranks before this start.
    pub restart_count: u32,
    pub command_line: Vec<String>,
}

impl RunManifest {
    /// The manifest for a run starting now on this host.
    pub fn new(cfg: &RunConfig, libtorch_version: &str, device: String, restart_count: u32) -> Self {
        let world = config::world_size(cfg);
        RunManifest {
            name: cfg.name().to_string(),
            git_commit: GIT_COMMIT.into(),
            crate_version: CRATE_VERSION.into(),
            libtorch_version: libtorch_version.into(),
            device,
            world_size: world,
            run_seed: cfg.run.seed,
            rank_seeds: (0..world).map(|r| config::rank_seed(cfg.run.seed, r)).collect(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            start_time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            restart_count,
            command_line: std::env::args().collect(),
        }
    }
}

/// Paths inside a run directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.yaml")
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.root.join("run.json")
    }

    pub fn samples_dir(&self) -> PathBuf {
        self.root.join("samples")
    }

    /// Creates the directory and writes the resolved config and the manifest.
    pub fn initialise(&self, cfg: &RunConfig, manifest: &RunManifest) -> Result<()> {
        fsutil::create_dir_all(&self.samples_dir())?;
        config::save_resolved(cfg, &self.config_path())?;
        let json = serde_json::to_vec_pretty(manifest).expect("a manifest always serialises");
        fsutil::write_atomic(&self.manifest_path(), &json)
    }

    /// Reads a manifest back.
    pub fn read_manifest(path: &Path) -> Result<RunManifest> {
        let bytes = std::fs::read(path).map_err(crate::error::Error::io("read", path))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| crate::error::Error::ConfigFile { path: path.to_path_buf(), message: e.to_string() })
    }
}
