//! The background evaluator: a thread per rank that owns the feature network, a snapshot
//! generator and a second process group, and scores a copy of G_ema while training goes on.
//! Training pauses only to copy G_ema's tensors (on the device, no host round trip). The
//! evaluator's collectives run on their own ring, so they never interleave with training's.
//! At most one evaluation is in flight; the next one waits for it. Dropping the evaluator
//! (training over, or stopped by a signal) cancels an evaluation in flight: the thread stops at
//! its next batch, its group's connections are shut so a collective it is blocked in fails at
//! once, and the thread is joined, so it never runs libtorch while the process exits.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tch::{nn, Tensor};

use super::scoring::{Scorer, Scores};
use super::Request;
use crate::models::Generator;
use gan_core::comm::ProcessGroup;
use gan_core::error::{Error, Result};

/// An evaluation handed to the thread: where training stood, and G_ema's tensors by name.
struct Job {
    step: u64,
    cur_nimg: u64,
    request: Request,
    tensors: Vec<(String, Tensor)>,
}

/// A finished evaluation (scores on rank 0 only).
pub struct Finished {
    pub step: u64,
    pub cur_nimg: u64,
    pub request: Request,
    pub scores: Option<Scores>,
    /// Seconds from hand-over to result.
    pub secs: f64,
}

/// The copy of G_ema the thread scores, in its own VarStore on the training device.
pub struct EmaCopy {
    pub vs: nn::VarStore,
    pub g: Box<dyn Generator>,
}

pub struct Background {
    /// None once closed.
    jobs: Option<Sender<Job>>,
    results: Receiver<Result<Finished>>,
    /// Step of the evaluation in flight.
    pending: Option<u64>,
    cancel: Arc<AtomicBool>,
    /// Breaks the evaluator group's collectives (None for a group that never blocks).
    abort: Option<Box<dyn FnOnce() + Send>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Starts the thread; `pg` is the evaluator's own group (every rank starts one).
    pub fn start(mut scorer: Scorer, snapshot: EmaCopy, mut pg: Box<dyn ProcessGroup>) -> Result<Self> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (outbox, results) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let abort = pg.abort_handle();
        let cancelled = Arc::clone(&cancel);
        let thread = std::thread::Builder::new()
            .name("evaluator".into())
            .spawn(move || {
                let mut keep_going = || {
                    if cancelled.load(Ordering::SeqCst) {
                        return Err(Error::Collective("evaluation cancelled".into()));
                    }
                    Ok(())
                };
                for job in inbox {
                    let started = Instant::now();
                    let scored = load(&snapshot.vs, job.tensors).and_then(|()| {
                        scorer.score(pg.as_mut(), snapshot.g.as_ref(), job.request.num, &mut keep_going)
                    });
                    let failed = scored.is_err();
                    let finished = scored.map(|scores| Finished {
                        step: job.step,
                        cur_nimg: job.cur_nimg,
                        request: job.request,
                        scores,
                        secs: started.elapsed().as_secs_f64(),
                    });
                    // The trainer gone means the run is ending: nothing left to report to.
                    if outbox.send(finished).is_err() || failed {
                        break;
                    }
                }
            })
            .map_err(|e| Error::Tensor(format!("starting the evaluator thread: {e}")))?;
        Ok(Background { jobs: Some(jobs), results, pending: None, cancel, abort, thread: Some(thread) })
    }

    /// Step of the evaluation in flight, if any.
    pub fn pending(&self) -> Option<u64> {
        self.pending
    }

    /// Hands over a copy of G_ema's tensors (`vs`) at this step; call only when none is pending.
    pub fn submit(&mut self, step: u64, cur_nimg: u64, request: Request, vs: &nn::VarStore) -> Result<()> {
        debug_assert!(self.pending.is_none());
        let tensors = tch::no_grad(|| vs.variables().into_iter().map(|(name, t)| (name, t.copy())).collect());
        let sent = self.jobs.as_ref().map(|jobs| jobs.send(Job { step, cur_nimg, request, tensors }));
        if !matches!(sent, Some(Ok(()))) {
            return Err(Error::Tensor("the evaluator thread has stopped".into()));
        }
        self.pending = Some(step);
        Ok(())
    }

    /// The evaluation in flight, if it has finished.
    pub fn poll(&mut self) -> Result<Option<Finished>> {
        if self.pending.is_none() {
            return Ok(None);
        }
        match self.results.try_recv() {
            Ok(result) => self.finished(result).map(Some),
            Err(mpsc::TryRecvError::Empty) => Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => Err(stopped()),
        }
    }

    /// Waits for the evaluation in flight (None when there is none), calling `beat` every
    /// second meanwhile.
    pub fn wait(&mut self, beat: &mut dyn FnMut() -> Result<()>) -> Result<Option<Finished>> {
        if self.pending.is_none() {
            return Ok(None);
        }
        loop {
            beat()?;
            match self.results.recv_timeout(Duration::from_secs(1)) {
                Ok(result) => return self.finished(result).map(Some),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Err(stopped()),
            }
        }
    }

    fn finished(&mut self, result: Result<Finished>) -> Result<Finished> {
        self.pending = None;
        result
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        if self.pending.is_some() {
            if let Some(abort) = self.abort.take() {
                abort();
            }
        }
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stopped() -> Error {
    Error::Tensor("the evaluator thread stopped without a result".into())
}

/// Copies `tensors` into the snapshot's variables of the same names.
fn load(vs: &nn::VarStore, tensors: Vec<(String, Tensor)>) -> Result<()> {
    let mut vars = vs.variables();
    tch::no_grad(|| {
        for (name, t) in tensors {
            let var = vars
                .get_mut(&name)
                .ok_or_else(|| Error::Tensor(format!("the evaluator's G has no tensor {name}")))?;
            var.copy_(&t);
        }
        Ok(())
    })
}
