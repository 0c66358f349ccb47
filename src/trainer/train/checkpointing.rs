//! The training loop's side of checkpoints: when one is due, the ranks agree on the step and
//! report their random streams, rank 0 copies the state to the host and hands it to the writer;
//! at start, a resumed rank checks that the checkpoint's streams are the ones it derives.
use std::time::Instant;

use super::progress::TickReport;
use super::setup::{Setup, LIBTORCH_VERSION};
use crate::ckpt::{self, gather_rank_streams, named_raw, varstore_raw, Snapshot};
use gan_core::checkpoint::{Manifest, RankState, TrainState, FORMAT, FORMAT_VERSION};
use gan_core::diversity::Diversity;
use gan_core::error::Result;
use gan_core::rundir::{CRATE_VERSION, GIT_COMMIT};

/// Where training stands between two steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub step: u64,
    pub cur_nimg: u64,
    /// Number of the next tick report.
    pub tick: u64,
}

/// Takes a checkpoint at `pos` (every rank calls this at the same step). Returns the seconds
/// rank 0's training paused for it.
pub fn checkpoint(s: &mut Setup, pos: Position) -> Result<f64> {
    let started = Instant::now();
    let ranks = gather_rank_streams(s.pg.as_mut(), pos.step, s.plan.seed)?;
    if !s.is_rank0() {
        return Ok(0.0);
    }
    let snapshot = snapshot(s, pos, ranks)?;
    let copied = started.elapsed().as_secs_f64();
    s.ckpt_writer.submit(snapshot)?;
    let paused = started.elapsed().as_secs_f64();
    if let Some(m) = s.telemetry.as_ref().and_then(|t| t.metrics.checkpoint.as_ref()) {
        m.pause_seconds.observe(paused);
    }
    tracing::info!(
        step = pos.step,
        "checkpoint at step {} ({:.3} kimg): training paused {paused:.3} s (state copy {copied:.3} s){}",
        pos.step,
        pos.cur_nimg as f64 / 1000.0,
        if s.cfg.checkpoint.background { ", files written in the background" } else { "" }
    );
    Ok(paused)
}

fn snapshot(s: &Setup, pos: Position, ranks: Vec<RankState>) -> Result<Snapshot> {
    let state = TrainState {
        step: pos.step,
        cur_nimg: pos.cur_nimg,
        tick: pos.tick,
        data_consumed: s.data_consumed(),
        batch_size: s.cfg.train.batch_size,
        ranks,
        augment: match &s.augment {
            crate::augment::Augmenter::Ada(ctrl) => ctrl.state().into_iter().collect(),
            _ => Default::default(),
        },
        regularisers: if s.cfg.train.pl_weight > 0.0 {
            [("pl_mean".to_string(), s.pl_mean.double_value(&[]))].into()
        } else {
            Default::default()
        },
        best_metrics: s.best_metrics.clone(),
        rollbacks: s.rollbacks,
        dataset: Some(s.dataset.clone()),
        init_from: s.init_source.clone(),
    };
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        step: pos.step,
        cur_nimg: pos.cur_nimg,
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        world_size: s.pg.world_size(),
        arch: s.cfg.model.arch.to_string(),
        git_commit: GIT_COMMIT.into(),
        crate_version: CRATE_VERSION.into(),
        libtorch_version: LIBTORCH_VERSION.into(),
        files: Vec::new(),
        // The evaluation taken at this very step, if any (evaluation runs before the checkpoint).
        metrics: s
            .last_eval
            .as_ref()
            .filter(|(step, _)| *step == pos.step)
            .map(|(_, m)| m.clone())
            .unwrap_or_default(),
    };
    let stats = std::fs::read(s.stats_path()).unwrap_or_default();
    Ok(Snapshot {
        tensor_files: vec![
            ("g.safetensors", varstore_raw(&s.g_vs)),
            ("d.safetensors", varstore_raw(&s.d_vs)),
            ("g_ema.safetensors", varstore_raw(&s.g_ema_vs)),
            ("g_opt.safetensors", named_raw(&s.g_opt.state())),
            ("d_opt.safetensors", named_raw(&s.d_opt.state())),
        ],
        state,
        manifest,
        extra_files: vec![
            ("config.yaml", gan_core::config::to_yaml(&s.cfg).into_bytes()),
            ("stats.jsonl", stats),
        ],
    })
}

/// Logs the settings this start changes from those the checkpoint in `dir` was trained with
/// (before its tensors load, so a changed `model.*` key shows above the shape error it causes).
pub fn report_config_changes(dir: &std::path::Path, cfg: &gan_core::config::RunConfig) {
    use gan_core::config::diff;
    match diff::since_checkpoint(dir, cfg) {
        Ok(changes) if !changes.is_empty() => tracing::info!(
            "this start changes {} setting(s) from the checkpoint's: {}",
            changes.len(),
            diff::describe(&changes)
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot compare the config with the checkpoint's: {e}"),
    }
}

/// Logs how the resumed state relates to this start, and warns when a rank's random stream is
/// not the one the checkpoint recorded (another seed or another world size: training continues
/// correctly, but not bit-identically to an uninterrupted run).
pub fn report_resume(s: &Setup, resumed: &ckpt::Resumed, load_secs: f64) {
    let state = &resumed.state;
    let world = s.pg.world_size();
    let saved_world = resumed.manifest.world_size;
    match state.ranks.iter().find(|r| r.rank == s.pg.rank()) {
        // After a rollback the streams differ from the checkpoint's on purpose.
        Some(saved)
            if saved_world == world && saved.seed != s.plan.seed && s.rollbacks == state.rollbacks =>
        {
            tracing::warn!(
                "rank {} resumes with stream seed {} but the checkpoint recorded {} (run.seed changed?)",
                saved.rank,
                s.plan.seed,
                saved.seed
            )
        }
        _ => {}
    }
    if s.is_rank0() && state.batch_size != s.cfg.train.batch_size {
        // Learning rates and the G_ema half-life (in images) are as configured: nothing is rescaled
        // for the new batch behind the user's back, but they should know the run changed.
        tracing::warn!(
            "resuming with train.batch_size {} where the checkpoint's run used {}: training goes on from \
             {:.3} kimg at the new batch, with the configured learning rates (not rescaled)",
            s.cfg.train.batch_size,
            state.batch_size,
            state.cur_nimg as f64 / 1000.0
        );
    }
    if s.is_rank0() {
        tracing::info!(
            path = %resumed.dir.display(),
            "resumed at step {} ({:.3} kimg, tick {}) from a checkpoint written by {saved_world} rank(s){}; \
             verified and loaded {:.1} MB in {load_secs:.2} s",
            state.step,
            state.cur_nimg as f64 / 1000.0,
            state.tick,
            if saved_world != world { format!("; now {world} ranks, the data stream is re-sharded") } else { String::new() },
            resumed.manifest.total_bytes() as f64 / 1e6
        );
    }
}

/// Appends one tick's figures to `stats.jsonl` (rank 0), with its sample grid's diversity when one was drawn.
pub fn append_stats(s: &Setup, report: &TickReport, diversity: Option<&Diversity>) -> Result<()> {
    let path = s.stats_path();
    let mut line = serde_json::to_value(report).expect("a tick report always serialises");
    if let Some(d) = diversity {
        line["sample_diversity"] = serde_json::to_value(d).expect("numbers serialise");
    }
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    line["time"] = serde_json::Value::String(time);
    gan_core::fsutil::append_line(&path, &line.to_string())
}
