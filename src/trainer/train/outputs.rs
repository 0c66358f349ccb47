//! A run's secondary outputs (sample grids, `stats.jsonl`, `eval.jsonl`, a checkpoint's late
//! `eval.json`): a write that fails, on a full disk or over a quota, is logged and training goes
//! on. Losing a grid or a line of figures costs little; stopping a multi-day run for one, when
//! its checkpoints already go on through failed writes, would cost the run.
use gan_core::error::Result;

/// Logs a failed write of `what` as an error, and goes on.
pub fn keep_going(what: &str, written: Result<()>) {
    if let Err(e) = written {
        tracing::error!("could not write {what}: {e}; training continues without it");
    }
}
