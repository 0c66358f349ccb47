//! The training loop: steps (`step.rs`) until `total_kimg` or a stop signal all ranks agree on,
//! G_ema following G after each G step, and every `kimg_per_tick` the tick: statistics reduced
//! across ranks and reported (log, stats.jsonl, metrics), parameter agreement checked, sample
//! grids written, evaluations started and reported, checkpoints taken.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::checkpointing::{append_stats, checkpoint, Position};
use super::ema::ema_beta;
use super::evaluation::Evaluator;
use super::outputs::keep_going;
use super::progress::{Progress, TickReport};
use super::setup::Setup;
use super::step::run_step;
use super::sync::check_parameters_agree;
use super::telemetry::TickRates;
use gan_core::diversity;
use gan_core::error::{Error, Result};
use gan_core::flight::Activity;

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOutcome {
    pub step: u64,
    pub cur_nimg: u64,
    pub ticks: Vec<TickReport>,
    /// The signal that stopped training early, if one did.
    pub stopped_by_signal: Option<i32>,
    /// Why the checkpoint taken for that signal could not be written (e.g. a full disk). The
    /// run still ends as the signal asked (a preempted job is requeued and resumes from the
    /// newest checkpoint that verifies); at the natural end such a failure fails the run.
    pub checkpoint_failed: Option<String>,
}

/// Runs training until `total_kimg` or until `stop` holds a signal number.
pub fn train(s: &mut Setup, stop: &AtomicUsize) -> Result<TrainOutcome> {
    let total_nimg = s.cfg.train.total_nimg();
    let tick_nimg = (s.cfg.train.kimg_per_tick * 1000.0).round().max(1.0) as u64;
    let progress = Progress::new(s.cfg.log.progress && s.is_rank0(), total_nimg);
    let start = s.start;
    let mut outcome = TrainOutcome {
        step: start.step,
        cur_nimg: start.cur_nimg,
        ticks: Vec::new(),
        stopped_by_signal: None,
        checkpoint_failed: None,
    };
    let mut tick_start = (Instant::now(), start.cur_nimg);
    let mut next_tick = start.tick;
    // Nothing new to save at the step a run resumed at.
    let mut last_checkpoint = s.resumed.as_ref().map(|_| start.step);
    let mut last_beta = 0.0;
    let started = Instant::now();
    s.write_start_files()?;
    let mut evaluator = Evaluator::start(s)?;
    s.heartbeat.beat(start.step, start.cur_nimg)?;
    tracing::info!(device = %s.device_name(), world = s.pg.world_size(), "training {} kimg", s.cfg.train.total_kimg);
    if start.cur_nimg >= total_nimg {
        log_already_trained(s, evaluator.is_some());
    }
    loop {
        s.flight.enter(Activity::StepBoundary, outcome.step);
        let signal = agree_on_stop(s.pg.as_mut(), stop.load(Ordering::SeqCst))?;
        let done = outcome.cur_nimg >= total_nimg || signal != 0;
        if done || outcome.cur_nimg >= tick_start.1 + tick_nimg {
            s.flight.enter(Activity::Tick, outcome.step);
            // A start that ends before its first step (a finished run started again, a stop
            // signal during setup) has no tick to report: no speed, no losses, and the grid and
            // statistics of this step were written when it was trained.
            if outcome.step != start.step {
                let report = tick_report(s, &outcome, next_tick, tick_start)?;
                next_tick += 1;
                report_tick(s, &progress, &report, outcome.cur_nimg, last_beta);
                maintenance(s, &report, done)?;
                outcome.ticks.push(report);
            }
            if let Some(ev) = evaluator.as_mut() {
                s.flight.enter(Activity::Evaluating, outcome.step);
                ev.poll(s)?;
                if ev.due(outcome.cur_nimg, done, signal != 0) {
                    ev.run(s, outcome.step, outcome.cur_nimg, done)?;
                }
            }
            s.flight.enter(Activity::Checkpointing, outcome.step);
            // Before this tick's checkpoint, which would save the collapsed state.
            if let Some(to_step) = agree_on_mode_dropping_rollback(s, signal != 0)? {
                return Err(Error::ModeDropping { step: outcome.step, to_step });
            }
            let every = u64::from(s.cfg.checkpoint.every_ticks);
            let due = done || (every > 0 && next_tick.is_multiple_of(every));
            if due && last_checkpoint != Some(outcome.step) {
                let pos = Position { step: outcome.step, cur_nimg: outcome.cur_nimg, tick: next_tick };
                checkpoint(s, pos)?;
                last_checkpoint = Some(outcome.step);
            }
            tick_start = (Instant::now(), outcome.cur_nimg);
        }
        if done {
            outcome.stopped_by_signal = (signal != 0).then_some(signal as i32);
            if let (Some(ev), true) = (&evaluator, signal != 0) {
                ev.abandon();
            }
            break;
        }
        let g_stepped = run_step(s, outcome.step)?;
        adapt_augmentation(s)?;
        if outcome.step == 0 {
            tracing::info!("first step done");
        }
        outcome.step += 1;
        outcome.cur_nimg += u64::from(s.cfg.train.batch_size);
        s.heartbeat.beat(outcome.step, outcome.cur_nimg)?;
        progress.step(outcome.step, outcome.cur_nimg);
        if g_stepped {
            last_beta = ema_beta(&s.cfg.train, outcome.cur_nimg);
            s.ema.update(last_beta);
        }
    }
    progress.finish();
    s.heartbeat.beat_now(outcome.step, outcome.cur_nimg)?;
    s.flight.enter(Activity::Finishing, outcome.step);
    // A last checkpoint that cannot be written (a full disk) still leaves the trained G_ema: it is
    // saved apart (a smaller file) before the run fails on the checkpoint's error.
    let last_checkpoint = s.ckpt_writer.finish();
    if let Err(e) = &last_checkpoint {
        tracing::error!("the last checkpoint could not be written: {e}; saving G_ema apart");
    }
    s.write_final_files(Position { step: outcome.step, cur_nimg: outcome.cur_nimg, tick: next_tick })?;
    match last_checkpoint {
        Err(e) if outcome.stopped_by_signal.is_some() => outcome.checkpoint_failed = Some(e.to_string()),
        result => result?,
    }
    push_final_results(s, &outcome, started.elapsed().as_secs_f64());
    Ok(outcome)
}

/// A start at or past `total_kimg` (a finished job started again) takes no step: it says so,
/// scores the final G_ema again when evaluation is on, and rewrites the final G_ema.
fn log_already_trained(s: &Setup, evaluating: bool) {
    let kimg = s.start.cur_nimg as f64 / 1000.0;
    let then = if evaluating { "; scoring its G_ema again" } else { "" };
    tracing::info!(
        "already trained: step {}, {kimg:.3} kimg of train.total_kimg {}; no step to take (raise \
         train.total_kimg to train on, or start over with --resume none){then}",
        s.start.step,
        s.cfg.train.total_kimg
    );
}

/// The tick on the console and progress bar and in the metrics.
fn report_tick(s: &Setup, progress: &Progress, report: &TickReport, cur_nimg: u64, ema_beta: f64) {
    progress.tick(report);
    if let Some(t) = &s.telemetry {
        let rates =
            TickRates { g_lr: s.g_opt.lr, d_lr: s.d_opt.lr, ema_beta, augment_p: s.augment.probability() };
        t.tick(report, cur_nimg, rates, s.device);
    }
}

/// Rank 0 pushes the run's outcome to the Pushgateway, when one is configured (a failed push is
/// a warning: the run itself succeeded).
fn push_final_results(s: &Setup, outcome: &TrainOutcome, duration_seconds: f64) {
    let Some(url) = s.cfg.metrics.pushgateway.as_deref().filter(|_| s.is_rank0()) else { return };
    let results = gan_core::metrics::FinalResults {
        step: outcome.step,
        cur_nimg: outcome.cur_nimg,
        duration_seconds,
        completed: outcome.stopped_by_signal.is_none(),
    };
    match gan_core::metrics::push_to_gateway(url, s.cfg.name(), &results.render()) {
        Ok(()) => tracing::info!("pushed the final results to {url}"),
        Err(e) => tracing::warn!("{e}"),
    }
}

/// ADA: the step's sign(D(real)) sums of all ranks go to the controller, which adjusts p every
/// `ada_interval` steps. Reduced every step (two numbers), so every rank holds the same sums and
/// a checkpoint taken at any step resumes the controller exactly.
fn adapt_augmentation(s: &mut Setup) -> Result<()> {
    let signs: Vec<tch::Tensor> = std::mem::take(&mut s.ada_signs);
    let crate::augment::Augmenter::Ada(_) = &s.augment else { return Ok(()) };
    let count = (s.plan.batch_per_rank * s.plan.accumulation) as f64;
    // One device-to-host read per step, not one per accumulation round.
    let local = if signs.is_empty() {
        0.0
    } else {
        tch::Tensor::stack(&signs, 0).sum(tch::Kind::Double).double_value(&[])
    };
    let mut sums = [local, count];
    s.pg.all_reduce_f64(&mut sums, gan_core::comm::ReduceOp::Sum)?;
    let batch_size = s.cfg.train.batch_size;
    if let crate::augment::Augmenter::Ada(ctrl) = &mut s.augment {
        if let Some(r_t) = ctrl.observe(sums[0], sums[1], batch_size) {
            s.stats.report_host("Augment/rt", r_t);
        }
        s.stats.report_host("Augment/p", ctrl.p);
    }
    Ok(())
}

/// The signal any rank received, agreed by all ranks at this step boundary, so every rank stops
/// after the same step (a signal may reach the ranks of different nodes at different moments).
fn agree_on_stop(pg: &mut dyn gan_core::comm::ProcessGroup, local: usize) -> Result<usize> {
    if pg.world_size() == 1 {
        return Ok(local);
    }
    let mut flag = [local as f32];
    pg.all_reduce_f32(&mut flag, gan_core::comm::ReduceOp::Max)?;
    Ok(flag[0] as usize)
}

/// Rank 0's decision to go back to an earlier checkpoint after an evaluation found G dropping
/// modes, agreed by all ranks at this tick (only when `eval.rollback_on_mode_dropping`, so other
/// runs pay no collective for it). A run that a signal stops (agreed, so on every rank) saves
/// and exits instead: preemption leaves no time to train again, and a resume finds the collapse
/// again at its next evaluation.
fn agree_on_mode_dropping_rollback(s: &mut Setup, stopping: bool) -> Result<Option<u64>> {
    if !s.cfg.eval.rollback_on_mode_dropping || stopping {
        s.mode_dropping_rollback = None;
        return Ok(None);
    }
    // The step + 1, 0 for none; f64 holds every step exactly.
    let mut target = [s.mode_dropping_rollback.take().map_or(0.0, |step| step as f64 + 1.0)];
    s.pg.all_reduce_f64(&mut target, gan_core::comm::ReduceOp::Max)?;
    Ok((target[0] > 0.0).then(|| target[0] as u64 - 1))
}

fn tick_report(
    s: &mut Setup,
    outcome: &TrainOutcome,
    tick: u64,
    tick_start: (Instant, u64),
) -> Result<TickReport> {
    let mut stats = s.stats.reduce(s.pg.as_mut())?;
    if let Some((name, _)) = stats.iter().find(|(name, v)| name.starts_with("Loss/") && !v.is_finite()) {
        return Err(Error::NonFinite { what: name.clone(), step: outcome.step });
    }
    // Spectrally normalised networks (BigGAN): their largest singular value, read from the
    // power iteration's buffer (the same on every rank: weights and buffers start broadcast and
    // take the same averaged steps), so nothing to reduce.
    for (name, vs) in [("SV0/G", &s.g_vs), ("SV0/D", &s.d_vs)] {
        if let Some(sv0) = crate::models::biggan::largest_sv0(vs) {
            stats.insert(name.into(), sv0);
        }
    }
    let seconds = tick_start.0.elapsed().as_secs_f64().max(1e-9);
    let nimg = (outcome.cur_nimg - tick_start.1) as f64;
    Ok(TickReport {
        tick,
        step: outcome.step,
        kimg: outcome.cur_nimg as f64 / 1000.0,
        imgs_per_sec: nimg / seconds,
        sec_per_kimg: if nimg > 0.0 { seconds / nimg * 1000.0 } else { 0.0 },
        stats,
    })
}

/// Per-tick work besides statistics, evaluation and checkpoints: sample grids and their
/// diversity, the stats line and the parameter agreement check.
fn maintenance(s: &mut Setup, report: &TickReport, done: bool) -> Result<()> {
    s.heartbeat.beat(report.step, (report.kimg * 1000.0).round() as u64)?;
    let every = u64::from(s.cfg.train.sample_ticks);
    let mut diversity = None;
    if s.is_rank0() && (done || (every > 0 && report.tick.is_multiple_of(every))) {
        diversity = s.write_sample_grid(report.kimg)?;
        if let Some(d) = &diversity {
            watch_diversity(s, report, d);
        }
    }
    if s.is_rank0() {
        keep_going("a line of stats.jsonl", append_stats(s, report, diversity.as_ref()));
    }
    let check_every = u64::from(s.cfg.dist.param_check_ticks);
    if done || (check_every > 0 && report.tick.is_multiple_of(check_every)) {
        check_parameters_agree(s.pg.as_mut(), &[&s.g_vs, &s.d_vs], report.step)?;
    }
    Ok(())
}

/// Rank 0: logs and exports a sample grid's diversity, keeps the run's best (saved in
/// checkpoints), and warns when G's images stopped varying (`diversity::collapsed`: the rule of
/// the `GanSamplesCollapsing` alert). Only a warning: pixel distances are too crude to roll a
/// run back on; `eval.rollback_on_mode_dropping` does that from recall and coverage. Returns
/// whether it warned.
pub(super) fn watch_diversity(s: &mut Setup, report: &TickReport, d: &diversity::Diversity) -> bool {
    if let Some(gauge) = s.telemetry.as_ref().and_then(|t| t.metrics.sample_diversity_ratio.as_ref()) {
        gauge.set(d.ratio);
    }
    let lowest = match s.grid_row_class(d.lowest_row) {
        Some(class) => format!("; lowest class {class}: {:.2}", d.lowest_ratio),
        None => String::new(),
    };
    let best = s.best_metrics.entry("sample_diversity".into()).or_insert(d.ratio);
    *best = best.max(d.ratio);
    let best = *best;
    let grid = s.sample_grid_path(report.kimg);
    let grid = grid.file_name().unwrap_or_default().to_string_lossy();
    tracing::info!(step = report.step, "sample grid {grid}: diversity {:.2} of the reals'{lowest}", d.ratio);
    let collapsed = diversity::collapsed(best, d.ratio);
    if collapsed {
        tracing::warn!(
            step = report.step,
            "G's samples are collapsing at step {}: their diversity {:.2} is under half the run's best {best:.2} \
             (near-identical images whatever the latent); see the grid, and recall/coverage at the next evaluation",
            report.step,
            d.ratio
        );
    }
    collapsed
}
