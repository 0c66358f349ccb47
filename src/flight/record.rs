//! The flight record file: one JSON object per rank, beside its heartbeat, rewritten every second
//! by a thread of its own. That thread keeps writing while the training thread is stuck, so the
//! record says where it is stuck; a record that stops changing means the whole process stopped.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::recorder::{Activity, Collective, CollectiveOp, Recorder};
use crate::fsutil;

/// A record not rewritten for this many write intervals (and at least [`MIN_STALE`]) means the
/// writer thread, and so the whole process, is not running.
const STALE_INTERVALS: u32 = 5;
const MIN_STALE: Duration = Duration::from_secs(5);

/// A rank's state as of one write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlightRecord {
    pub rank: u32,
    pub host: String,
    pub pid: u32,
    /// How often the writer rewrites the record (`dist.flight_record_secs`).
    #[serde(default = "one_second")]
    pub interval_secs: f64,
    /// The step the training thread works on (the next one to complete).
    pub step: u64,
    pub activity: Activity,
    /// How long it has been in that activity.
    pub activity_secs: f64,
    /// One per process group ("train", and "eval" for background evaluation).
    pub tracks: Vec<TrackRecord>,
    /// How the rank ended, in its last record: "finished at step 47", "failed: ...".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
}

impl FlightRecord {
    /// Whether a record this old means its writer, and so its whole process, has stopped.
    pub fn is_stale(&self, age: Duration) -> bool {
        age > stale_after(self.interval_secs)
    }

    /// How long before now (the record being `age` old) the training thread last moved on: it
    /// changed activity or started a training collective. Finer than the heartbeat, which is
    /// written at the end of a step and at most once a second, so a slow step that still moves
    /// is not taken for a hang. The evaluation group does not count: its collectives run on
    /// another thread and say nothing of the training thread.
    pub fn since_progress(&self, age: Duration) -> Duration {
        let collective = self
            .tracks
            .iter()
            .filter(|t| t.name == TRAIN_TRACK)
            .filter_map(|t| t.last.as_ref().map(|c| c.secs_since_start));
        let secs = collective.fold(self.activity_secs, f64::min).max(0.0);
        age + Duration::from_secs_f64(secs)
    }
}

/// The track of the training thread's process group, whose collectives every step makes.
pub const TRAIN_TRACK: &str = "train";

/// How old a record written every `interval_secs` may get while its process runs.
pub fn stale_after(interval_secs: f64) -> Duration {
    Duration::from_secs_f64(interval_secs.max(0.0) * f64::from(STALE_INTERVALS)).max(MIN_STALE)
}

fn one_second() -> f64 {
    1.0
}

/// The collectives of one process group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrackRecord {
    pub name: String,
    /// Collectives started; the one in flight (if any) has this sequence number.
    pub started: u64,
    pub finished: u64,
    /// The collective started last, and how long ago.
    pub last: Option<CollectiveRecord>,
    /// Seconds spent inside this group's finished collectives: waiting for the slowest rank
    /// included, so the slowest rank has the least.
    #[serde(default)]
    pub secs_inside: f64,
}

impl TrackRecord {
    /// Whether the rank is inside a collective call of this group.
    pub fn in_flight(&self) -> bool {
        self.started > self.finished
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollectiveRecord {
    pub op: CollectiveOp,
    pub dtype: String,
    pub elems: u64,
    pub on_device: bool,
    pub secs_since_start: f64,
}

impl CollectiveRecord {
    pub fn new(c: Collective, secs_since_start: f64) -> Self {
        CollectiveRecord {
            op: c.op,
            dtype: c.dtype.to_string(),
            elems: c.elems,
            on_device: c.on_device,
            secs_since_start,
        }
    }

    /// What was called, e.g. "all_reduce of 1024 f32"; two ranks' calls with the same sequence
    /// number must describe the same.
    pub fn call(&self) -> String {
        let op = match self.op {
            CollectiveOp::AllReduce => "all_reduce",
            CollectiveOp::Broadcast => "broadcast",
            CollectiveOp::AllGather => "all_gather",
            CollectiveOp::Barrier => return "barrier".into(),
        };
        let place = if self.on_device { " on the device" } else { "" };
        format!("{op} of {} {}{place}", self.elems, self.dtype)
    }
}

/// Where a rank whose heartbeat is `heartbeat` keeps its flight record.
pub fn path_beside(heartbeat: &Path) -> PathBuf {
    let mut name = heartbeat.file_name().unwrap_or_default().to_os_string();
    name.push(".flight.json");
    heartbeat.with_file_name(name)
}

/// A rank's record file, written by its writer thread and once more as the rank exits.
pub struct RecordFile {
    recorder: Arc<Recorder>,
    path: PathBuf,
    interval: Duration,
    /// Held from snapshot to rename, so an older snapshot never replaces a newer one.
    writing: Mutex<()>,
}

impl RecordFile {
    fn write(&self) -> crate::Result<()> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        self.write_locked()
    }

    /// The writer thread's write: none once the rank has exited, so nothing is written after
    /// `exit` returns (its record is the last; the run directory may be gone by then).
    fn write_while_running(&self) -> crate::Result<()> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        if self.recorder.has_exited() {
            return Ok(());
        }
        self.write_locked()
    }

    fn write_locked(&self) -> crate::Result<()> {
        let mut record = self.recorder.snapshot();
        record.interval_secs = self.interval.as_secs_f64();
        let json = serde_json::to_vec(&record).expect("a record serialises");
        fsutil::write_replace(&self.path, &json)
    }

    /// The rank ends as `how` says: written at once, and the writer thread writes no more.
    pub fn exit(&self, how: impl Into<String>) {
        self.recorder.exit(how);
        if let Err(e) = self.write() {
            tracing::warn!("cannot write the last flight record: {e}");
        }
    }
}

/// Starts the thread that rewrites `path` from `recorder` every `interval` until the rank exits
/// ([`RecordFile::exit`]). A failed write is logged once and retried.
pub fn start_writer(recorder: Arc<Recorder>, path: PathBuf, interval: Duration) -> Arc<RecordFile> {
    let file = Arc::new(RecordFile { recorder, path, interval, writing: Mutex::new(()) });
    let writer = Arc::clone(&file);
    let spawned = std::thread::Builder::new().name("flight-record".into()).spawn(move || {
        let mut warned = false;
        // The exit is set before its own write takes the lock, so once it is seen here the
        // last record is (or is about to be) written with it.
        while !writer.recorder.has_exited() {
            if let Err(e) = writer.write_while_running() {
                if !std::mem::replace(&mut warned, true) {
                    tracing::warn!("cannot write the flight record: {e}");
                }
            }
            std::thread::sleep(writer.interval);
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the flight record writer: {e}");
    }
    file
}

/// A rank's last record and how long ago it was written; None before the first write or when the
/// file cannot be read.
pub fn read(path: &Path) -> Option<(FlightRecord, Duration)> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let age = SystemTime::now().duration_since(modified).unwrap_or_default();
    let record = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some((record, age))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_keeps_rewriting_while_the_activity_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_beside(&dir.path().join("heartbeat/rank-2"));
        assert!(path.ends_with("heartbeat/rank-2.flight.json"));
        let recorder = Arc::new(Recorder::new(2));
        recorder.enter(Activity::Checkpointing, 40);
        let file = start_writer(Arc::clone(&recorder), path.clone(), Duration::from_secs(1));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let record = loop {
            match read(&path) {
                Some((record, _)) if record.activity_secs >= 1.0 => break record,
                _ if std::time::Instant::now() > deadline => panic!("no second write within 20 s"),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        assert_eq!((record.rank, record.step, record.activity), (2, 40, Activity::Checkpointing));
        assert_eq!(record.pid, std::process::id());
        assert!(!record.is_stale(Duration::from_secs(5)) && record.is_stale(Duration::from_secs(6)));
        // After the exit the writer writes no more: the directory stays gone once removed.
        file.exit("finished");
        std::fs::remove_dir_all(dir.path().join("heartbeat")).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert!(!dir.path().join("heartbeat").exists(), "the writer wrote after the exit");
    }

    #[test]
    fn a_slow_writer_gets_a_longer_grace() {
        assert_eq!(stale_after(1.0), Duration::from_secs(5), "at least 5 s");
        assert_eq!(stale_after(0.2), Duration::from_secs(5));
        assert_eq!(stale_after(30.0), Duration::from_secs(150), "5 intervals");
    }

    #[test]
    fn a_call_is_described_for_comparison() {
        let c = Collective { op: CollectiveOp::Broadcast, dtype: "f64", elems: 3, on_device: false };
        assert_eq!(CollectiveRecord::new(c, 0.0).call(), "broadcast of 3 f64");
        let c = Collective { op: CollectiveOp::AllReduce, dtype: "f32", elems: 9, on_device: true };
        assert_eq!(CollectiveRecord::new(c, 0.0).call(), "all_reduce of 9 f32 on the device");
    }
}
