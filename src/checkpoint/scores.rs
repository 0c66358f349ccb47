//! Evaluation results of a checkpoint's G_ema, which `checkpoint.keep_best` ranks by. They are in
//! the manifest when the evaluation finished before the checkpoint was written (training waited
//! for it); a background evaluation finishes later and leaves them in `eval.json` beside the
//! manifest instead. The committed manifest is never rewritten: it and its hash are two files,
//! and a crash between the two writes would make a good checkpoint look corrupt.
use std::collections::BTreeMap;
use std::path::Path;

use super::layout::Checkpoints;
use super::verify::open_verified_by_peer;
use crate::error::{Error, Result};
use crate::fsutil;

/// Results that arrived after the commit (`{"fid": ..., ...}`), written atomically.
pub const EVAL_FILE: &str = "eval.json";

impl Checkpoints {
    /// Records `metrics` for the committed checkpoint of `step`. Returns false (and writes
    /// nothing) when there is none: no checkpoint was taken at that step.
    pub fn record_metrics(&self, step: u64, metrics: &BTreeMap<String, f64>) -> Result<bool> {
        let dir = self.step_dir(step);
        if !dir.join(super::MANIFEST_FILE).is_file() {
            return Ok(false);
        }
        let path = dir.join(EVAL_FILE);
        let text = serde_json::to_vec_pretty(metrics)
            .map_err(|e| Error::Checkpoint { path: path.clone(), message: e.to_string() })?;
        fsutil::write_atomic(&path, &text)?;
        Ok(true)
    }
}

impl Checkpoints {
    /// Of the committed checkpoints before step `before`, the one with the lowest finite
    /// `metric` (e.g. `fid`), by step; the earliest of equals.
    pub fn lowest_before(&self, metric: &str, before: u64) -> Result<Option<(u64, f64)>> {
        // A damaged checkpoint cannot be gone back to, however good its score.
        let earlier =
            self.list()?.into_iter().filter(|(step, dir)| *step < before && super::verify::looks_sound(dir));
        let scored = earlier.filter_map(|(step, dir)| Some((step, metric_of(&dir, metric)?)));
        Ok(scored.filter(|(_, v)| v.is_finite()).min_by(|a, b| a.1.total_cmp(&b.1)))
    }
}

/// A checkpoint's `metric` (e.g. `fid`): from its verified manifest, else from `eval.json`.
/// None when it has neither, or either cannot be read.
pub fn metric_of(dir: &Path, metric: &str) -> Option<f64> {
    let manifest = open_verified_by_peer(dir).ok()?.manifest;
    if let Some(v) = manifest.metrics.get(metric) {
        return Some(*v);
    }
    let text = std::fs::read(dir.join(EVAL_FILE)).ok()?;
    let recorded: BTreeMap<String, f64> = serde_json::from_slice(&text).ok()?;
    recorded.get(metric).copied()
}

/// The sample diversity (`gan_core::diversity`) of the last grid drawn up to a checkpoint's step,
/// from the tick statistics it holds; None when no grid was measured by then.
pub fn sample_diversity_of(dir: &Path) -> Option<f64> {
    let stats = std::fs::read_to_string(dir.join("stats.jsonl")).ok()?;
    stats.lines().rev().find_map(|line| {
        let line: serde_json::Value = serde_json::from_str(line).ok()?;
        line["sample_diversity"]["ratio"].as_f64()
    })
}
