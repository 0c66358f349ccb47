//! The evaluation section's rules: batches, image counts (each rank draws a share; the
//! nearest-neighbour metrics need more than k images a set), quick evaluations between the full
//! ones, and what a rollback on mode dropping needs.
use super::positive;
use crate::config::operations::{EvalMetricName, EvalSection};
use crate::config::plan::world_size;
use crate::config::schema::RunConfig;
use crate::error::{Error, Result};

pub(super) fn validate_eval(cfg: &RunConfig) -> Result<()> {
    let e = &cfg.eval;
    if !(e.every_kimg >= 0.0 && e.every_kimg.is_finite()) {
        return Err(Error::config(
            "eval.every_kimg",
            e.every_kimg,
            "a finite number >= 0 (0 = no evaluation)",
        ));
    }
    if e.rollback_on_mode_dropping {
        validate_mode_dropping_rollback(cfg)?;
    }
    validate_quick_eval(e)?;
    if e.every_kimg == 0.0 {
        return Ok(());
    }
    positive("eval.batch", e.batch)?;
    if let Some(gen_batch) = e.gen_batch {
        if gen_batch == 0 || gen_batch > e.batch {
            return Err(Error::config(
                "eval.gen_batch",
                gen_batch,
                format!("an integer from 1 to eval.batch ({}), or unset for eval.batch", e.batch),
            ));
        }
    }
    if e.metrics.is_empty() {
        return Err(Error::config("eval.metrics", "[]", "one or more of fid, kid, is, pr, dc"));
    }
    let quick = (e.quick_every_kimg > 0.0).then_some(e.quick_num);
    for (key, num) in [("eval.num", Some(e.num)), ("eval.quick_num", quick)] {
        let Some(num) = num else { continue };
        let world = u64::from(world_size(cfg));
        // Ranks draw shares that differ by at most one image, so any count splits; each share
        // needs two images for its moments to mean anything.
        if num < 2 * world {
            return Err(Error::config(
                key,
                num,
                format!("at least 2 per rank: {} for world size {world}", 2 * world),
            ));
        }
    }
    // Nearest-neighbour metrics need a k-th neighbour besides the image itself in either set.
    let Some((metric, k)) =
        e.metrics.iter().filter_map(|m| Some((m, m.neighbours()?))).max_by_key(|(_, k)| *k)
    else {
        return Ok(());
    };
    for (key, n) in [("eval.num", Some(e.num)), ("eval.quick_num", quick), ("eval.num_real", e.num_real)] {
        if n.is_some_and(|n| n <= k as u64) {
            return Err(Error::config(
                key,
                n.unwrap_or(0),
                format!("more than {k} images for {metric} (k = {k})"),
            ));
        }
    }
    Ok(())
}

/// Quick evaluations go between the full ones: more often, with fewer images.
fn validate_quick_eval(e: &EvalSection) -> Result<()> {
    let key = "eval.quick_every_kimg";
    if !(e.quick_every_kimg >= 0.0 && e.quick_every_kimg.is_finite()) {
        return Err(Error::config(
            key,
            e.quick_every_kimg,
            "a finite number >= 0 (0 = no quick evaluations)",
        ));
    }
    if e.quick_every_kimg == 0.0 {
        return Ok(());
    }
    if e.every_kimg == 0.0 || e.quick_every_kimg >= e.every_kimg {
        return Err(Error::config(
            key,
            e.quick_every_kimg,
            format!(
                "0, or less than eval.every_kimg ({}): quick evaluations go between the full ones",
                e.every_kimg
            ),
        ));
    }
    if e.quick_num >= e.num {
        return Err(Error::config(
            "eval.quick_num",
            e.quick_num,
            format!("fewer images than eval.num ({})", e.num),
        ));
    }
    Ok(())
}

/// A rollback on mode dropping needs the signal (recall or coverage), a checkpoint to go back to
/// (the best FID, kept by keep_best) and a rollback budget.
fn validate_mode_dropping_rollback(cfg: &RunConfig) -> Result<()> {
    let key = "eval.rollback_on_mode_dropping";
    if cfg.eval.every_kimg == 0.0 {
        return Err(Error::config(key, true, "false unless evaluations run (eval.every_kimg > 0)"));
    }
    let m = &cfg.eval.metrics;
    if !m.contains(&EvalMetricName::Fid)
        || !(m.contains(&EvalMetricName::Pr) || m.contains(&EvalMetricName::Dc))
    {
        return Err(Error::config(key, true, "false unless eval.metrics holds fid and pr or dc"));
    }
    if cfg.checkpoint.keep_best == 0 || cfg.checkpoint.every_ticks == 0 {
        return Err(Error::config(
            key,
            true,
            "false unless checkpoints are taken (checkpoint.every_ticks) and the best kept (checkpoint.keep_best >= 1)",
        ));
    }
    if cfg.train.max_rollbacks == 0 {
        return Err(Error::config(key, true, "false unless train.max_rollbacks >= 1"));
    }
    Ok(())
}
