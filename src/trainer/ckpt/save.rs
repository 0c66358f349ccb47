//! Writing checkpoints without holding training up: rank 0 copies the state to the host (the
//! only pause), and a background thread writes and commits the files while training goes on.
//! At most one checkpoint is in flight; the next waits for it. Before exit, `finish` waits for
//! the last one, so a preempted or finished run never leaves its final checkpoint half-written.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Instant;

use gan_core::checkpoint::{Checkpoints, Manifest, RankState, RawTensor, Retention, TrainState, STATE_FILE};
use gan_core::comm::ProcessGroup;
use gan_core::error::{Error, Result};
use gan_core::metrics::CheckpointMetrics;
use gan_core::rng::step_seed;

/// Everything one checkpoint holds, already copied to host memory.
pub struct Snapshot {
    /// Tensor files: (file name, tensors).
    pub tensor_files: Vec<(&'static str, Vec<RawTensor>)>,
    pub state: TrainState,
    /// The manifest without its file list (filled in while writing).
    pub manifest: Manifest,
    /// Extra files copied verbatim: (file name, content).
    pub extra_files: Vec<(&'static str, Vec<u8>)>,
}

impl Snapshot {
    fn bytes(&self) -> u64 {
        let tensors: usize =
            self.tensor_files.iter().flat_map(|(_, ts)| ts.iter().map(|t| t.data.len())).sum();
        tensors as u64 + self.extra_files.iter().map(|(_, b)| b.len() as u64).sum::<u64>()
    }
}

/// Every rank's random streams at `step`, gathered on all ranks. It is also the collective in
/// which the ranks confirm they checkpoint the same step.
pub fn gather_rank_streams(pg: &mut dyn ProcessGroup, step: u64, rank_seed: u64) -> Result<Vec<RankState>> {
    let halves = |v: u64| [(v >> 32) as f64, (v & 0xFFFF_FFFF) as f64]; // exact in f64
    let next = step_seed(rank_seed, step);
    let mine: Vec<f64> = [vec![step as f64], halves(rank_seed).to_vec(), halves(next).to_vec()].concat();
    let mut all = vec![0.0; mine.len() * pg.world_size() as usize];
    pg.all_gather_f64(&mine, &mut all)?;
    let join = |hi: f64, lo: f64| ((hi as u64) << 32) | lo as u64;
    all.chunks(mine.len())
        .enumerate()
        .map(|(rank, v)| {
            if v[0] as u64 != step {
                return Err(Error::Collective(format!(
                    "rank {rank} checkpoints step {} while this rank is at step {step}",
                    v[0] as u64
                )));
            }
            Ok(RankState {
                rank: rank as u32,
                seed: join(v[1], v[2]),
                next_step_torch_seed: join(v[3], v[4]),
            })
        })
        .collect()
}

/// A committed checkpoint and what writing it cost.
struct Written {
    dir: PathBuf,
    bytes: u64,
    secs: f64,
}

pub struct CheckpointWriter {
    checkpoints: Checkpoints,
    retention: Retention,
    background: bool,
    in_flight: Option<(u64, JoinHandle<Result<()>>)>,
    /// Why the newest checkpoint written in the foreground failed, for `finish` to return: the
    /// run must not end as if its last checkpoint were there.
    newest_failed: Option<Error>,
    metrics: Option<CheckpointMetrics>,
}

impl CheckpointWriter {
    pub fn new(
        checkpoints: Checkpoints,
        retention: Retention,
        background: bool,
        metrics: Option<CheckpointMetrics>,
    ) -> Self {
        CheckpointWriter { checkpoints, retention, background, in_flight: None, newest_failed: None, metrics }
    }

    /// Writes `snapshot` (in the background unless configured otherwise). A write that failed
    /// is reported (a background one here, at the next checkpoint) and training goes on: the next
    /// checkpoint may succeed, and the previous committed one is intact.
    pub fn submit(&mut self, snapshot: Snapshot) -> Result<()> {
        if let Err(err) = self.wait() {
            report_failure(&err);
        }
        if !self.background {
            let written = write(&self.checkpoints, self.retention, snapshot, self.metrics.as_ref());
            self.newest_failed = self.counted(written).err();
            if let Some(err) = &self.newest_failed {
                report_failure(err);
            }
            return Ok(());
        }
        let (checkpoints, retention) = (self.checkpoints.clone(), self.retention);
        let step = snapshot.manifest.step;
        let metrics = self.metrics.clone();
        let thread = std::thread::Builder::new()
            .name("checkpoint-writer".into())
            .spawn(move || write(&checkpoints, retention, snapshot, metrics.as_ref()))
            .map_err(Error::io("spawn checkpoint writer for", self.checkpoints.root.clone()))?;
        self.in_flight = Some((step, thread));
        Ok(())
    }

    /// Keeps the checkpoint of `step` through retention until its evaluation reports (a
    /// background evaluation takes several checkpoints' time); None releases it.
    pub fn hold(&mut self, step: Option<u64>) {
        self.retention.hold = step;
    }

    /// A background evaluation's results for `step`: recorded beside that checkpoint, if one was
    /// taken there (after the write in flight is done), the hold released and retention applied
    /// again, now that the score can rank it.
    pub fn record_metrics(&mut self, step: u64, metrics: &BTreeMap<String, f64>) -> Result<()> {
        if let Err(err) = self.wait() {
            tracing::error!("checkpoint write failed: {err}; the previous checkpoint is intact");
        }
        self.retention.hold = None;
        if self.checkpoints.record_metrics(step, metrics)? {
            tracing::debug!(step, "recorded the evaluation beside the checkpoint");
        }
        let Some(&(newest, _)) = self.checkpoints.list()?.last() else { return Ok(()) };
        for removed in self.checkpoints.retain(self.retention, newest)? {
            tracing::info!(path = %removed.display(), "removed an old checkpoint (not among the best)");
        }
        Ok(())
    }

    /// Waits for the checkpoint in flight and returns its result (or the newest foreground
    /// write's failure).
    pub fn finish(&mut self) -> Result<()> {
        self.wait()?;
        self.newest_failed.take().map_or(Ok(()), Err)
    }

    fn wait(&mut self) -> Result<()> {
        let Some((step, thread)) = self.in_flight.take() else { return Ok(()) };
        let result = thread
            .join()
            .unwrap_or_else(|_| Err(Error::Tensor(format!("the writer of checkpoint step {step} panicked"))));
        self.counted(result)
    }

    /// Counts a failed write for the `GanCheckpointFailing` alert, and passes the result on.
    fn counted(&self, result: Result<()>) -> Result<()> {
        if let (Err(_), Some(m)) = (&result, &self.metrics) {
            m.failures_total.inc();
        }
        result
    }
}

fn report_failure(err: &Error) {
    tracing::error!("checkpoint write failed: {err}; the previous checkpoint is intact, training continues");
}

fn report(w: &Written) {
    let mb = w.bytes as f64 / 1e6;
    tracing::info!(
        path = %w.dir.display(),
        "checkpoint committed: {mb:.1} MB in {:.2} s ({:.0} MB/s)",
        w.secs,
        mb / w.secs.max(1e-9)
    );
}

fn write(
    checkpoints: &Checkpoints,
    retention: Retention,
    snapshot: Snapshot,
    metrics: Option<&CheckpointMetrics>,
) -> Result<()> {
    let started = Instant::now();
    let bytes = snapshot.bytes();
    let mut pending = checkpoints.begin(snapshot.manifest.step)?;
    let metadata = [
        ("format".to_string(), "gan-launch".to_string()),
        ("arch".to_string(), snapshot.manifest.arch.clone()),
    ]
    .into_iter()
    .collect();
    let mut files = || -> Result<()> {
        for (name, tensors) in &snapshot.tensor_files {
            pending.write_tensors(name, tensors, &metadata)?;
        }
        pending.write_json(STATE_FILE, &snapshot.state)?;
        for (name, content) in &snapshot.extra_files {
            pending.write_bytes(name, content)?;
        }
        Ok(())
    };
    if let Err(err) = files() {
        pending.abandon();
        return Err(err);
    }
    let step = snapshot.manifest.step;
    let dir = pending.commit(snapshot.manifest, retention)?;
    let secs = started.elapsed().as_secs_f64();
    if let Some(m) = metrics {
        m.duration_seconds.observe(secs);
        m.size_bytes.set(bytes as f64);
        m.step.set(step as f64);
        m.last_success_timestamp_seconds.set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
    }
    report(&Written { dir, bytes, secs });
    Ok(())
}
