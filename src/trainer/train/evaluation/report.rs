//! Rank 0's side of a finished evaluation: the log line, the gauges (labelled with the feature
//! network and the image count), `eval.jsonl`, the best FID so far, and the checkpoint of the
//! evaluated step (its manifest when the checkpoint comes after, `eval.json` when the result
//! arrives after the checkpoint was written).
use std::path::Path;

use super::scoring::Scores;
use super::Request;
use crate::eval::weights::FeatureNet;
use crate::train::Setup;
use gan_core::checkpoint::Checkpoints;
use gan_core::error::{Error, Result};

/// Trims a run's `eval.jsonl` as a start at `resumed_step` (None: from scratch) sees it: only
/// evaluations of steps up to that one stay, so lines that a killed or rolled-back run wrote
/// past its checkpoint do not mix with those of the steps trained again.
pub fn keep_history_until(path: &Path, resumed_step: Option<u64>) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let step_of = |line: &str| serde_json::from_str::<serde_json::Value>(line).ok()?["step"].as_u64();
    let kept: String = text
        .lines()
        .filter(|line| resumed_step.is_some_and(|last| step_of(line).is_some_and(|step| step <= last)))
        .map(|line| format!("{line}\n"))
        .collect();
    match (kept.len() == text.len(), kept.is_empty()) {
        (true, _) => Ok(()),
        (false, true) => std::fs::remove_file(path).map_err(Error::io("remove", path)),
        (false, false) => gan_core::fsutil::write_atomic(path, kept.as_bytes()),
    }
}

/// When an evaluation ran and what it cost training.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub step: u64,
    pub cur_nimg: u64,
    pub request: Request,
    /// Seconds the training loop waited for it.
    pub pause_secs: f64,
    /// Seconds the evaluation took.
    pub eval_secs: f64,
    /// Scored in the background while training went on.
    pub background: bool,
}

pub struct Reporter {
    net_id: FeatureNet,
    /// Evaluations since the best FID (for the mode-collapse alert).
    worse_in_a_row: u32,
}

impl Reporter {
    pub fn new(net_id: FeatureNet) -> Self {
        Reporter { net_id, worse_in_a_row: 0 }
    }

    pub fn report(&mut self, s: &mut Setup, scores: &Scores, at: Timing) -> Result<()> {
        #[cfg(test)]
        let scores = &inject(scores, at.step);
        let label = self.net_id.label();
        let Request { num, quick } = at.request;
        let mut line = serde_json::json!({
            "kimg": at.cur_nimg as f64 / 1000.0, "step": at.step, "feature_network": label,
            "num_images": num, "quick": quick, "pause_secs": at.pause_secs, "eval_secs": at.eval_secs,
            "background": at.background,
        });
        for (name, value) in scores {
            line[name] = (*value).into();
        }
        // Only full evaluations judge the run: a quick one's metrics, from fewer images, are
        // biased against theirs.
        if !quick {
            if let Some(&fid) = scores.get("fid") {
                self.track_best(s, fid);
            }
            if let Some(why) = watch_modes(s, scores) {
                respond_to_mode_dropping(s, at.step, &why)?;
            }
        }
        let num_label = num.to_string();
        if let Some(t) = &s.telemetry {
            let labels = [label.as_str(), num_label.as_str()];
            let m = &t.metrics;
            let gauges = [
                ("fid", &m.fid),
                ("kid", &m.kid),
                ("is", &m.inception_score),
                ("precision", &m.precision),
                ("recall", &m.recall),
                ("density", &m.density),
                ("coverage", &m.coverage),
            ];
            for (name, gauge) in gauges {
                if let Some(v) = scores.get(name) {
                    gauge.with_label_values(&labels).set(*v);
                }
            }
            t.metrics.fid_worse_evaluations.set(f64::from(self.worse_in_a_row));
            m.eval_duration_seconds.with_label_values(&labels).set(at.eval_secs);
            m.eval_pause_seconds.with_label_values(&labels).set(at.pause_secs);
        }
        if !quick {
            let results: Scores =
                scores.iter().filter(|(k, _)| *k != "is_std").map(|(k, v)| (k.clone(), *v)).collect();
            if at.background {
                let recorded = s.ckpt_writer.record_metrics(at.step, &results);
                crate::train::outputs::keep_going("the evaluation beside its checkpoint", recorded);
            }
            // A checkpoint taken at this step after now records them in its manifest.
            s.last_eval = Some((at.step, results));
        }
        tracing::info!(step = at.step, "{}", summary(scores, &label, &at, &self.net_id));
        let path = s.eval_history_path();
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str(&format!("{line}\n"));
        crate::train::outputs::keep_going(
            "a line of eval.jsonl",
            gan_core::fsutil::write_atomic(&path, text.as_bytes()),
        );
        Ok(())
    }

    fn track_best(&mut self, s: &mut Setup, fid: f64) {
        let best = s.best_metrics.get("fid").copied();
        if best.is_none_or(|b| fid < b) {
            s.best_metrics.insert("fid".into(), fid);
            self.worse_in_a_row = 0;
        } else {
            self.worse_in_a_row += 1;
        }
    }
}

/// Tests: scores that replace an evaluation's own, by step, each used once (a test cannot steer
/// a real G into collapse in a few CPU steps, but can make its evaluation say so).
#[cfg(test)]
pub static INJECTED: std::sync::Mutex<Vec<(u64, &str, f64)>> = std::sync::Mutex::new(Vec::new());

#[cfg(test)]
fn inject(scores: &Scores, step: u64) -> Scores {
    let mut scores = scores.clone();
    let mut used = Vec::new();
    INJECTED.lock().unwrap().retain(|&(at, name, value)| {
        let now = at == step && !used.contains(&name);
        if now {
            scores.insert(name.to_string(), value);
            used.push(name);
        }
        !now
    });
    scores
}

/// Recall or coverage under this share of its best means G drops modes of the data (the same
/// rule as the `GanModeDropping` alert)...
const DROPPED_SHARE: f64 = 0.5;
/// ...once that best is above this: early in training both are small and noisy.
const MEANINGFUL_BEST: f64 = 0.2;

/// Records the best recall and coverage; says why G is dropping modes, if it is.
fn watch_modes(s: &mut Setup, scores: &Scores) -> Option<String> {
    let mut dropping = None;
    for name in ["recall", "coverage"] {
        let Some(&value) = scores.get(name) else { continue };
        let best = s.best_metrics.entry(name.to_string()).or_insert(value);
        *best = best.max(value);
        if *best > MEANINGFUL_BEST && value < DROPPED_SHARE * *best {
            dropping.get_or_insert(format!("{name} {value:.3} is under half its best {best:.3}"));
        }
    }
    dropping
}

/// Warns, and with `eval.rollback_on_mode_dropping` (and rollbacks left) names the checkpoint
/// to go back to, which the ranks then agree on: the best FID from before the evaluated `step`
/// (the FID can still improve while G drops modes, so that step's own checkpoint is no refuge).
fn respond_to_mode_dropping(s: &mut Setup, step: u64, why: &str) -> Result<()> {
    let (max, done) = (s.cfg.train.max_rollbacks, s.rollbacks);
    let target = if !s.cfg.eval.rollback_on_mode_dropping {
        Err("eval.rollback_on_mode_dropping is off".to_string())
    } else if done >= max {
        Err(format!("no rollbacks left ({done} of train.max_rollbacks {max} taken)"))
    } else {
        match Checkpoints::of_run(&s.cfg.run_dir()).lowest_before("fid", step)? {
            Some((best, fid)) => Ok((best, fid)),
            None => Err(format!("no checkpoint before step {step} has an FID")),
        }
    };
    match target {
        Ok((best, fid)) => {
            tracing::warn!(
                step,
                "G is dropping modes at step {step}: {why}; going back to the checkpoint of step {best} \
                 (the best FID before it, {fid:.3})"
            );
            s.mode_dropping_rollback = Some(best);
        }
        Err(reason) => {
            tracing::warn!(step, "G is dropping modes at step {step}: {why}; training goes on ({reason})")
        }
    }
    Ok(())
}

/// `eval at 4.0 kimg: FID 12.345, KID 0.01234, recall 0.412 (2000 images, <net>); training
/// paused 0.02 s (scored in the background in 226.1 s)`.
fn summary(scores: &Scores, label: &str, at: &Timing, net_id: &FeatureNet) -> String {
    let mut shown = Vec::new();
    if let Some(fid) = scores.get("fid") {
        shown.push(format!("FID {fid:.3}"));
    }
    if let Some(kid) = scores.get("kid") {
        shown.push(format!("KID {kid:.5}"));
    }
    if let (Some(is), Some(std)) = (scores.get("is"), scores.get("is_std")) {
        shown.push(format!("IS {is:.3} ± {std:.3}"));
    }
    for name in ["precision", "recall", "density", "coverage"] {
        if let Some(value) = scores.get(name) {
            shown.push(format!("{name} {value:.3}"));
        }
    }
    let standard = if *net_id == FeatureNet::Standard { "" } else { ", NOT the standard FID network" };
    let how = if at.background {
        format!(" (scored in the background in {:.1} s)", at.eval_secs)
    } else {
        String::new()
    };
    let (what, num) = (if at.request.quick { "quick eval" } else { "eval" }, at.request.num);
    format!(
        "{what} at {:.1} kimg: {} ({num} images, {label}{standard}); training paused {:.2} s{how}",
        at.cur_nimg as f64 / 1000.0,
        shown.join(", "),
        at.pause_secs
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_keeps_the_evaluations_up_to_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eval.jsonl");
        let lines = [
            "{\"step\": 8, \"fid\": 90.0}",
            "{\"step\": 16, \"fid\": 80.0}",
            "{\"step\": 24, \"fid\": 70.0}",
        ];
        std::fs::write(&path, lines.map(|l| format!("{l}\n")).concat()).unwrap();
        keep_history_until(&path, Some(24)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3, "nothing past step 24");
        keep_history_until(&path, Some(16)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{}\n{}\n", lines[0], lines[1]));
        keep_history_until(&path, None).unwrap();
        assert!(!path.exists(), "a start from scratch has no history");
        keep_history_until(&path, Some(8)).unwrap(); // no file: nothing to do
    }
}
