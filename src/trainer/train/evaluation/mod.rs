//! Evaluation during training (`eval.every_kimg`): G_ema's FID, KID, IS, precision/recall and
//! density/coverage with pytorch-fid's Inception, scored by all ranks together (`scoring`), and
//! reported by rank 0 (`report`).
//!
//! By default (`eval.background`) training does not wait: at an evaluation tick each rank copies
//! G_ema on its device and hands the copy to its evaluator thread (`background`), which scores
//! it over a second ring while training continues; the result is reported at a later tick, and
//! the checkpoint of the evaluated step is held until then so `keep_best` can rank it. The
//! evaluation at the end of a run is waited for; a preempted run does not evaluate.
//! With `eval.background: false` training waits for each evaluation (the pause is logged).
//!
//! Quick evaluations (`eval.quick_every_kimg`) go between the full ones with fewer images: they
//! are reported like the others but never rank checkpoints or trigger rollbacks.
mod background;
pub mod report;
mod schedule;
mod scoring;

use std::time::Instant;

use self::background::{Background, EmaCopy, Finished};
use self::report::{Reporter, Timing};
use self::schedule::{Request, Schedule};
use self::scoring::Scorer;
use super::setup::Setup;
use crate::models::{self, NetSpec};
use gan_core::comm::{ProcessGroup, SingleRank};
use gan_core::error::Result;

enum Mode {
    /// Training waits while the training group scores G_ema.
    Inline(Box<Scorer>),
    /// The evaluator thread scores copies; `paused_secs` is what the one in flight has cost the
    /// training loop so far.
    Background { worker: Background, paused_secs: f64 },
}

pub struct Evaluator {
    mode: Mode,
    reporter: Reporter,
    schedule: Schedule,
}

impl Evaluator {
    /// Loads the feature network on every rank before training starts (so a problem shows at
    /// start, not hours in), and starts the evaluator thread or, inline, prepares the real
    /// statistics. None when evaluation is off: not configured, or the standard weights are
    /// missing (said once, at start; the run trains without FID).
    pub fn start(s: &mut Setup) -> Result<Option<Self>> {
        let e = s.cfg.eval.clone();
        if e.every_kimg <= 0.0 {
            return Ok(None);
        }
        let labels = s.class_mix.clone();
        let Some(mut scorer) = Scorer::load(&s.cfg, s.device, s.plan.local_rank == 0, s.pg.as_mut(), labels)?
        else {
            return Ok(None);
        };
        let reporter = Reporter::new(scorer.net_id.clone());
        let eval_pg: Option<Box<dyn ProcessGroup>> =
            if s.pg.world_size() == 1 { Some(Box::new(SingleRank)) } else { s.eval_pg.take() };
        let mode = match eval_pg.filter(|_| e.background) {
            Some(pg) => {
                let vs = tch::nn::VarStore::new(s.device);
                let g = models::generator(s.cfg.model.arch, &NetSpec::from_config(&s.cfg), vs.root());
                // The real statistics are prepared by the thread too, before its first score.
                Mode::Background {
                    worker: Background::start(scorer, EmaCopy { vs, g }, pg)?,
                    paused_secs: 0.0,
                }
            }
            None => {
                if e.background {
                    tracing::warn!("no evaluation group in this process: evaluating with training paused");
                }
                let heartbeat = &mut s.heartbeat;
                scorer.prepare_real(s.pg.as_mut(), &mut || {
                    let _ = heartbeat.beat(0, 0);
                    Ok(())
                })?;
                Mode::Inline(Box::new(scorer))
            }
        };
        let schedule = Schedule::new(&e, s.start.cur_nimg);
        Ok(Some(Evaluator { mode, reporter, schedule }))
    }

    /// At the first tick past each multiple of `every_kimg` (or of `quick_every_kimg`), and at
    /// the end, unless a signal ended training (preemption leaves no time for it).
    pub fn due(&self, cur_nimg: u64, done: bool, stopped_by_signal: bool) -> bool {
        !stopped_by_signal && self.schedule.due(cur_nimg, done)
    }

    /// Reports a background evaluation that has finished (every rank calls this every tick).
    pub fn poll(&mut self, s: &mut Setup) -> Result<()> {
        if let Mode::Background { worker, paused_secs } = &mut self.mode {
            if let Some(finished) = worker.poll()? {
                let paused = std::mem::take(paused_secs);
                report_finished(&mut self.reporter, s, finished, paused)?;
            }
        }
        Ok(())
    }

    /// One evaluation at this step (every rank calls it at the same tick): scored now, or handed
    /// to the evaluator thread (after the previous one, if still running, finishes); at the
    /// end of training, waited for.
    pub fn run(&mut self, s: &mut Setup, step: u64, cur_nimg: u64, done: bool) -> Result<()> {
        let started = Instant::now();
        let request = self.schedule.next(cur_nimg, done);
        let reporter = &mut self.reporter;
        match &mut self.mode {
            Mode::Inline(scorer) => {
                let heartbeat = &mut s.heartbeat;
                let mut beat = || heartbeat.beat(step, cur_nimg).or(Ok(()));
                let scores = scorer.score(s.pg.as_mut(), s.g_ema.as_ref(), request.num, &mut beat)?;
                let secs = started.elapsed().as_secs_f64();
                if let Some(scores) = scores {
                    let at = Timing {
                        step,
                        cur_nimg,
                        request,
                        pause_secs: secs,
                        eval_secs: secs,
                        background: false,
                    };
                    reporter.report(s, &scores, at)?;
                }
            }
            Mode::Background { worker, paused_secs } => {
                hand_over(worker, paused_secs, reporter, s, (step, cur_nimg, request), done)?;
            }
        }
        Ok(())
    }

    /// At the end of a run stopped by a signal: an evaluation still running is dropped.
    pub fn abandon(&self) {
        if let Mode::Background { worker, .. } = &self.mode {
            if let Some(step) = worker.pending() {
                tracing::warn!(
                    step,
                    "the evaluation of step {step} was still running; dropped (training stopped)"
                );
            }
        }
    }
}

/// Background: waits for the previous evaluation if it still runs, hands G_ema over, holds its
/// checkpoint (a full evaluation's, for `keep_best` to rank), and at the end of training waits
/// for this one too. `paused_secs` accumulates what the evaluation in flight costs the training
/// loop.
fn hand_over(
    worker: &mut Background,
    paused_secs: &mut f64,
    reporter: &mut Reporter,
    s: &mut Setup,
    (step, cur_nimg, request): (u64, u64, Request),
    done: bool,
) -> Result<()> {
    let started = Instant::now();
    if let Some(previous) = worker.pending() {
        tracing::info!(
            "waiting for the evaluation of step {previous}, still running: evaluations do not queue up, \
             and one takes longer than eval.every_kimg of training here"
        );
    }
    let heartbeat = &mut s.heartbeat;
    if let Some(finished) = worker.wait(&mut || heartbeat.beat(step, cur_nimg).or(Ok(())))? {
        let paused = std::mem::take(paused_secs) + started.elapsed().as_secs_f64();
        report_finished(reporter, s, finished, paused)?;
    }
    let handed_over = Instant::now();
    worker.submit(step, cur_nimg, request, &s.g_ema_vs)?;
    if !request.quick {
        s.ckpt_writer.hold(Some(step));
    }
    *paused_secs = handed_over.elapsed().as_secs_f64();
    if s.is_rank0() {
        tracing::info!(
            step,
            "evaluation of step {step} handed to the background: training paused {:.3} s",
            *paused_secs
        );
    }
    if done {
        let heartbeat = &mut s.heartbeat;
        if let Some(finished) = worker.wait(&mut || heartbeat.beat(step, cur_nimg).or(Ok(())))? {
            let paused = std::mem::take(paused_secs) + handed_over.elapsed().as_secs_f64();
            report_finished(reporter, s, finished, paused)?;
        }
    }
    Ok(())
}

fn report_finished(reporter: &mut Reporter, s: &mut Setup, f: Finished, paused_secs: f64) -> Result<()> {
    let Some(scores) = f.scores else { return Ok(()) };
    let at = Timing {
        step: f.step,
        cur_nimg: f.cur_nimg,
        request: f.request,
        pause_secs: paused_secs,
        eval_secs: f.secs,
        background: true,
    };
    reporter.report(s, &scores, at)
}
