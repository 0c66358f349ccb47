//! The run directory `run.dir/run.name/`: the resolved config and a manifest of what produced the
//! run (code, libraries, machine, seeds), so any result can be traced back and reproduced, and
//! where its outputs (sample grids, the final G_ema) lie, and go when a line of training is left.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{self, RunConfig};
use crate::error::{Error, Result};
use crate::fsutil;

/// Commit the binaries were built from (`-dirty` when the tree had uncommitted changes).
pub const GIT_COMMIT: &str = env!("GAN_BUILD_GIT_COMMIT");
/// Version of this crate.
pub const CRATE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What produced a start of a run; written by rank 0 as `run.json` (the latest start) and
/// appended to `starts.jsonl` (every start, so a run resumed on other builds, world sizes or
/// hosts keeps the record of each).
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
    /// The step of the checkpoint this start resumed; None for a fresh start.
    #[serde(default)]
    pub resumed_step: Option<u64>,
}

impl RunManifest {
    /// The manifest for a run starting now on this host.
    pub fn new(
        cfg: &RunConfig,
        libtorch_version: &str,
        device: String,
        restart_count: u32,
        resumed_step: Option<u64>,
    ) -> Self {
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
            resumed_step,
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

    /// Every start's manifest, a line each.
    pub fn starts_path(&self) -> PathBuf {
        self.root.join("starts.jsonl")
    }

    pub fn samples_dir(&self) -> PathBuf {
        self.root.join("samples")
    }

    /// The grid of real images, drawn once at the start of a run.
    pub fn reals_grid_path(&self) -> PathBuf {
        self.samples_dir().join(REALS_GRID)
    }

    /// G_ema's grid before any training, drawn once at the start of a run.
    pub fn init_grid_path(&self) -> PathBuf {
        self.samples_dir().join(INIT_GRID)
    }

    /// G_ema's grid at `kimg` ([`grid_name`]).
    pub fn grid_path(&self, kimg: f64, fine: bool) -> PathBuf {
        self.samples_dir().join(grid_name(kimg, fine))
    }

    /// G_ema at the end of training, as a self-describing G_ema file.
    pub fn g_ema_final_path(&self) -> PathBuf {
        self.root.join("g_ema-final.safetensors")
    }

    /// Moves the end of a line of training that a start leaves (`resume: none`, a rollback, an
    /// earlier checkpoint) into `dest`: the sample grids drawn after `nimg` images (all of them
    /// for None) and the final G_ema. Left in place, `samples/` would show grids of a G the run no
    /// longer has, past the new line's progress, and `g_ema-final` its end.
    pub fn set_aside_outputs_after(&self, nimg: Option<u64>, dest: &Path) -> Result<Vec<PathBuf>> {
        let mut moved = Vec::new();
        let mut move_to = |from: PathBuf, to: PathBuf| -> Result<()> {
            if from.exists() {
                fsutil::create_dir_all(to.parent().expect("a path in dest"))?;
                std::fs::rename(&from, &to).map_err(Error::io("move aside", &from))?;
                moved.push(to);
            }
            Ok(())
        };
        let samples = self.samples_dir();
        if let Ok(entries) = std::fs::read_dir(&samples) {
            for name in entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()) {
                let after = match (nimg, grid_nimg(&name)) {
                    (_, None) => false,
                    (None, Some(_)) => true,
                    (Some(nimg), Some(taken)) => taken > nimg,
                };
                if after {
                    move_to(samples.join(&name), dest.join("samples").join(&name))?;
                }
            }
        }
        move_to(self.g_ema_final_path(), dest.join("g_ema-final.safetensors"))?;
        Ok(moved)
    }

    /// Creates the directory, writes the resolved config and the manifest, and adds the manifest
    /// to the starts' record.
    pub fn initialise(&self, cfg: &RunConfig, manifest: &RunManifest) -> Result<()> {
        fsutil::create_dir_all(&self.samples_dir())?;
        config::save_resolved(cfg, &self.config_path())?;
        let json = serde_json::to_vec_pretty(manifest).expect("a manifest always serialises");
        fsutil::write_atomic(&self.manifest_path(), &json)?;
        let line = serde_json::to_string(manifest).expect("a manifest always serialises");
        fsutil::append_line(&self.starts_path(), &line)
    }

    /// Reads a manifest back.
    pub fn read_manifest(path: &Path) -> Result<RunManifest> {
        let bytes = std::fs::read(path).map_err(Error::io("read", path))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::ConfigFile { path: path.to_path_buf(), message: e.to_string() })
    }
}

/// Names in `samples/` of the grids that do not belong to a point of training.
const REALS_GRID: &str = "reals.png";
const INIT_GRID: &str = "fakes-init.png";

/// The file name of G_ema's sample grid at `kimg`: `fakesNNNNNN.png` by whole kimg, as StyleGAN
/// names them, or `fakesNNNNNN.MMM.png` to the image when grids come more often than once a kimg
/// (`fine`), so that one does not overwrite the last. [`grid_nimg`] reads the names back.
pub fn grid_name(kimg: f64, fine: bool) -> String {
    let nimg = (kimg * 1000.0).round() as u64;
    if fine {
        format!("fakes{:06}.{:03}.png", nimg / 1000, nimg % 1000)
    } else {
        format!("fakes{:06}.png", kimg.floor() as u64)
    }
}

/// The images seen when the grid `fakesKKKKKK.png` (at least K kimg) or `fakesKKKKKK.MMM.png`
/// (exactly) was drawn ([`grid_name`]); None for other files (`reals.png`, `fakes-init.png`).
fn grid_nimg(name: &str) -> Option<u64> {
    let stem = name.strip_prefix("fakes")?.strip_suffix(".png")?;
    let (kimg, rest) = stem.split_once('.').unwrap_or((stem, "000"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(kimg) || !digits(rest) || rest.len() != 3 {
        return None;
    }
    Some(kimg.parse::<u64>().ok()? * 1000 + rest.parse::<u64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_are_dated_by_the_images_in_their_names() {
        assert_eq!(grid_nimg("fakes000016.png"), Some(16_000));
        assert_eq!(grid_nimg("fakes000002.512.png"), Some(2_512));
        assert_eq!(grid_nimg("fakes1234567.png"), Some(1_234_567_000));
        for other in ["fakes-init.png", "reals.png", "fakes000002.5.png", "fakes.png", "fakes000002.png.tmp"]
        {
            assert_eq!(grid_nimg(other), None, "{other}");
        }
    }

    /// Every name [`grid_name`] writes reads back as the images it was drawn at: exactly for a
    /// fine name, at the whole kimg below for a coarse one.
    #[test]
    fn grid_names_read_back_as_the_images_they_were_drawn_at() {
        for nimg in [0_u64, 256, 999, 1_000, 4_096, 16_000, 1_234_567] {
            let kimg = nimg as f64 / 1000.0;
            assert_eq!(grid_nimg(&grid_name(kimg, true)), Some(nimg), "{nimg} fine");
            assert_eq!(grid_nimg(&grid_name(kimg, false)), Some(nimg / 1000 * 1000), "{nimg} coarse");
        }
        assert_eq!(grid_name(4.096, true), "fakes000004.096.png");
        assert_eq!(grid_name(16.0, false), "fakes000016.png");
        for other in [REALS_GRID, INIT_GRID] {
            assert_eq!(grid_nimg(other), None, "{other}");
        }
    }

    /// A line left at 4.096 kimg takes its later grids and its final G_ema along; the reals, the
    /// initial grid and the grids up to the new line's start stay.
    #[test]
    fn a_left_line_takes_its_later_grids_and_final_g_ema() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path().join("run"));
        let names =
            ["reals.png", "fakes-init.png", "fakes000002.png", "fakes000004.096.png", "fakes000004.png"];
        let later = ["fakes000004.608.png", "fakes000006.png"];
        std::fs::create_dir_all(run.samples_dir()).unwrap();
        for name in names.iter().chain(&later) {
            std::fs::write(run.samples_dir().join(name), b"png").unwrap();
        }
        std::fs::write(run.g_ema_final_path(), b"g_ema").unwrap();
        let aside = dir.path().join("run/replaced-x");
        let mut moved = run.set_aside_outputs_after(Some(4_096), &aside).unwrap();
        moved.sort();
        let mut expected: Vec<PathBuf> = later.iter().map(|n| aside.join("samples").join(n)).collect();
        expected.insert(0, aside.join("g_ema-final.safetensors"));
        expected.sort();
        assert_eq!(moved, expected);
        assert!(moved.iter().all(|p| p.is_file()));
        for name in names {
            assert!(run.samples_dir().join(name).is_file(), "{name} stays");
        }
        assert!(!run.g_ema_final_path().exists());
        // A whole line (resume: none) takes every grid but the reals and the initial one.
        let all = run.set_aside_outputs_after(None, &dir.path().join("run/replaced-y")).unwrap();
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(
            run.samples_dir().join("reals.png").is_file()
                && run.samples_dir().join("fakes-init.png").is_file()
        );
    }
}
