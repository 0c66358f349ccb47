//! A run's outputs besides checkpoints, written by rank 0: the resolved config and manifest at
//! the start, the sample grids, `stats.jsonl`, `eval.jsonl` and the final G_ema. The secondary
//! ones (grids, figures, a checkpoint's late `eval.json`) go through [`keep_going`]: a write that
//! fails, on a full disk or over a quota, is logged and training goes on. Losing a grid or a line
//! of figures costs little; stopping a multi-day run for one, when its checkpoints already go on
//! through failed writes, would cost the run.
use std::path::PathBuf;

use tch::Device;

use super::checkpointing::Position;
use super::samples::{reals_grid_rows, write_reals_grid};
use super::setup::{Setup, LIBTORCH_VERSION};
use crate::ckpt;
use gan_core::checkpoint::GEmaInfo;
use gan_core::diversity;
use gan_core::error::{Error, Result};
use gan_core::rundir::RunManifest;

/// Logs a failed write of `what` as an error, and goes on.
pub fn keep_going(what: &str, written: Result<()>) {
    if let Err(e) = written {
        tracing::error!("could not write {what}: {e}; training continues without it");
    }
}

/// Where a rank's outputs go, and writing them.
impl Setup {
    /// `eval.jsonl`: one line per finished evaluation (rank 0).
    pub fn eval_history_path(&self) -> PathBuf {
        self.run_dir.root.join("eval.jsonl")
    }

    /// `stats.jsonl`: one line of figures per tick (rank 0).
    pub fn stats_path(&self) -> PathBuf {
        self.run_dir.root.join("stats.jsonl")
    }

    /// Rank 0 writes the resolved config, the manifest, the reals grid and the initial fakes.
    pub fn write_start_files(&mut self) -> Result<()> {
        if !self.is_rank0() {
            return Ok(());
        }
        // Read on a resume too (the same images: a fixed stream), as the grids' reference.
        let reals = reals_grid_rows(self.source.as_ref());
        self.reals_diversity = Some(diversity::Reference::of_reals(&reals));
        let resumed_step = self.resumed.as_ref().map(|r| r.state.step);
        let device = self.device_description();
        let manifest =
            RunManifest::new(&self.cfg, LIBTORCH_VERSION, device, self.restart_count, resumed_step);
        self.run_dir.initialise(&self.cfg, &manifest)?;
        super::evaluation::report::keep_history_until(&self.eval_history_path(), resumed_step)?;
        if let Some(r) = &self.resumed {
            // The statistics up to the checkpoint; lines a killed run wrote after it go away.
            let stats = std::fs::read(r.dir.join("stats.jsonl"))
                .map_err(Error::io("read", r.dir.join("stats.jsonl")))?;
            keep_going("stats.jsonl", gan_core::fsutil::write_atomic(&self.stats_path(), &stats));
            return Ok(());
        }
        let _ = std::fs::remove_file(self.stats_path());
        let run = &self.run_dir;
        keep_going("the reals grid", write_reals_grid(&reals, self.source.as_ref(), &run.reals_grid_path()));
        keep_going("the initial grid", self.grid.write(self.g_ema.as_ref(), &run.init_grid_path()));
        Ok(())
    }

    /// A grid from G_ema named by the kimg it was taken at, and its diversity next to the
    /// reals' (None when the reals do not vary).
    pub fn write_sample_grid(&self, kimg: f64) -> Result<Option<diversity::Diversity>> {
        let path = self.sample_grid_path(kimg);
        let grid = self.grid.render(self.g_ema.as_ref());
        keep_going(&format!("the sample grid {}", path.display()), grid.save(&path));
        let reference = self.reals_diversity.as_ref();
        Ok(reference.and_then(|r| r.ratio(&grid.rows(), self.grid.row_classes().is_some())))
    }

    /// The sample grid at `kimg`: named to the image when grids come more than once a kimg.
    pub fn sample_grid_path(&self, kimg: f64) -> PathBuf {
        let t = &self.cfg.train;
        self.run_dir.grid_path(kimg, t.kimg_per_tick * f64::from(t.sample_ticks) < 1.0)
    }

    /// The class of grid row `row`, when the grid's rows are classes.
    pub fn grid_row_class(&self, row: usize) -> Option<u32> {
        self.grid.row_classes().and_then(|classes| classes.get(row).copied())
    }

    /// Rank 0 saves G_ema at the end of a run as a G_ema file (safetensors with the config,
    /// counters and dataset in its metadata, as `ckpt export` writes), which `sample` and `eval`
    /// take.
    pub fn write_final_files(&self, pos: Position) -> Result<()> {
        if !self.is_rank0() {
            return Ok(());
        }
        let info = GEmaInfo {
            arch: self.cfg.model.arch.to_string(),
            step: pos.step,
            cur_nimg: pos.cur_nimg,
            config_yaml: gan_core::config::to_yaml(&self.cfg),
            dataset: Some(self.dataset.clone()),
            source: None,
            init_from: self.init_source.clone(),
        };
        let path = self.run_dir.g_ema_final_path();
        info.write(&path, &ckpt::varstore_raw(&self.g_ema_vs))?;
        tracing::info!(path = %path.display(), "saved G_ema");
        Ok(())
    }

    fn device_description(&self) -> String {
        match self.device {
            Device::Cuda(i) => format!("cuda:{i} ({} visible)", tch::Cuda::device_count()),
            _ => format!("cpu ({} threads)", self.plan.threads),
        }
    }
}
