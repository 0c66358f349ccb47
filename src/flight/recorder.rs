//! The rank side: what the training thread is doing and every collective each process group
//! starts and finishes, kept in memory (a lock per update, no I/O), so recording costs nothing a
//! step would notice. [`Recorder::snapshot`] turns it into a [`FlightRecord`].
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::record::{CollectiveRecord, FlightRecord, TrackRecord};

/// What the training thread is doing, coarse enough to name in one word and fine enough to point
/// at the part of a step a rank got stuck in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// Loading libtorch, joining the group, building the networks, resuming.
    Starting,
    /// Agreeing with the other ranks on stopping, and ADA's per-step sums.
    StepBoundary,
    /// Waiting for the loader's next batch and moving it to the device.
    Data,
    /// The training phases, their gradient averaging and optimizer steps included.
    DMain,
    DReg,
    GMain,
    GReg,
    /// Reducing the tick's statistics, checking parameters agree, writing sample grids.
    Tick,
    /// An evaluation on the training thread (inline, or a snapshot for the background one).
    Evaluating,
    /// Agreeing on a checkpoint step and handing the state to the writer.
    Checkpointing,
    /// Going back to a checkpoint after a divergence or mode dropping.
    RollingBack,
    /// Waiting for the last checkpoint write and writing the final files.
    Finishing,
}

impl Activity {
    pub fn describe(self) -> &'static str {
        match self {
            Activity::Starting => "starting up",
            Activity::StepBoundary => "at a step boundary",
            Activity::Data => "waiting for data",
            Activity::DMain => "in D main",
            Activity::DReg => "in D reg",
            Activity::GMain => "in G main",
            Activity::GReg => "in G reg",
            Activity::Tick => "in tick maintenance",
            Activity::Evaluating => "evaluating",
            Activity::Checkpointing => "checkpointing",
            Activity::RollingBack => "rolling back",
            Activity::Finishing => "finishing",
        }
    }
}

/// The kind of a collective, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectiveOp {
    AllReduce,
    Broadcast,
    AllGather,
    Barrier,
}

/// A collective as it was called: kind, element type and count. Every rank must make the same
/// calls in the same order, so two ranks' collectives with the same sequence number must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Collective {
    pub op: CollectiveOp,
    /// "f32" or "f64" ("" for a barrier).
    pub dtype: &'static str,
    pub elems: u64,
    /// Whether the data stays in device memory (NCCL), where the call only queues the work.
    pub on_device: bool,
}

/// The collectives of one process group.
pub struct Track {
    name: String,
    epoch: Instant,
    state: Mutex<TrackState>,
}

#[derive(Default)]
struct TrackState {
    started: u64,
    finished: u64,
    last: Option<(Collective, Duration)>,
    /// Time spent inside collectives so far: a straggler's peers wait for it, so it spends the least.
    inside: Duration,
}

impl Track {
    /// Records that a collective starts; its sequence number is the count started so far.
    pub fn begin(&self, collective: Collective) {
        let mut st = lock(&self.state);
        st.started += 1;
        st.last = Some((collective, self.epoch.elapsed()));
    }

    /// Records that the collective begun last returned (with a result or an error).
    pub fn end(&self) {
        let now = self.epoch.elapsed();
        let mut st = lock(&self.state);
        st.finished = st.started;
        if let Some((_, started_at)) = st.last {
            st.inside += now.saturating_sub(started_at);
        }
    }

    fn snapshot(&self, now: Duration) -> TrackRecord {
        let st = lock(&self.state);
        TrackRecord {
            name: self.name.clone(),
            started: st.started,
            finished: st.finished,
            last: st.last.map(|(c, at)| CollectiveRecord::new(c, secs_between(at, now))),
            secs_inside: st.inside.as_secs_f64(),
        }
    }
}

/// Where a test wants a rank to hang: `GANLAUNCH_HANG=<rank>:<activity>:<step>` makes that rank
/// stop for good the first time it enters the activity at or after the step, with its other
/// threads (the record writer among them) running on, as a rank stuck in a driver call or on a
/// dead file system would. Unset in normal runs, where it costs one comparison per activity.
pub const HANG_ENV: &str = "GANLAUNCH_HANG";

#[derive(Clone, Copy, Debug, PartialEq)]
struct HangAt {
    activity: Activity,
    step: u64,
}

/// One rank's recorder; shared by the training thread, its process groups and the writer.
pub struct Recorder {
    rank: u32,
    host: String,
    epoch: Instant,
    state: Mutex<RankState>,
    tracks: Mutex<Vec<Arc<Track>>>,
    hang: Option<HangAt>,
    /// How the rank ended, once it has (see [`Recorder::exit`]).
    exit: Mutex<Option<String>>,
}

struct RankState {
    step: u64,
    activity: Activity,
    since: Duration,
}

impl Recorder {
    pub fn new(rank: u32) -> Self {
        Recorder {
            rank,
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            epoch: Instant::now(),
            state: Mutex::new(RankState { step: 0, activity: Activity::Starting, since: Duration::ZERO }),
            tracks: Mutex::new(Vec::new()),
            hang: None,
            exit: Mutex::new(None),
        }
    }

    /// A recorder that also honours [`HANG_ENV`] when it names this rank (a malformed value is
    /// an error, so a test that sets it cannot silently test nothing).
    pub fn from_env(rank: u32) -> crate::Result<Self> {
        let mut recorder = Recorder::new(rank);
        if let Ok(value) = std::env::var(HANG_ENV) {
            recorder.hang = parse_hang(&value, rank)?;
        }
        Ok(recorder)
    }

    /// The collectives of the process group called `name` ("train", "eval"); a group joined
    /// again under the same name (after a rollback) replaces the old one's track.
    pub fn track(&self, name: &str) -> Arc<Track> {
        let track = Arc::new(Track { name: name.to_string(), epoch: self.epoch, state: Mutex::default() });
        let mut tracks = lock(&self.tracks);
        tracks.retain(|t| t.name != name);
        tracks.push(Arc::clone(&track));
        track
    }

    /// The training thread starts `activity` at `step`.
    pub fn enter(&self, activity: Activity, step: u64) {
        {
            let mut st = lock(&self.state);
            if st.activity != activity || st.step != step {
                *st = RankState { step, activity, since: self.epoch.elapsed() };
            }
        }
        if self.hang.is_some_and(|h| h.activity == activity && step >= h.step) {
            tracing::warn!("{HANG_ENV}: rank {} hangs {} at step {step}", self.rank, activity.describe());
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }

    /// The training thread moves on to `activity` at the step it was at.
    pub fn continue_with(&self, activity: Activity) {
        let step = lock(&self.state).step;
        self.enter(activity, step);
    }

    /// The rank is about to exit, as `how` says ("finished at step 47", "failed: ..."): the
    /// record says so from now on, and `status` shows an ended rank rather than a stuck one.
    pub fn exit(&self, how: impl Into<String>) {
        *lock(&self.exit) = Some(how.into());
    }

    pub fn has_exited(&self) -> bool {
        lock(&self.exit).is_some()
    }

    /// Everything recorded, as of now.
    pub fn snapshot(&self) -> FlightRecord {
        let now = self.epoch.elapsed();
        let (step, activity, since) = {
            let st = lock(&self.state);
            (st.step, st.activity, st.since)
        };
        let tracks = lock(&self.tracks).iter().map(|t| t.snapshot(now)).collect();
        FlightRecord {
            rank: self.rank,
            host: self.host.clone(),
            pid: std::process::id(),
            interval_secs: 1.0,
            step,
            activity,
            activity_secs: secs_between(since, now),
            tracks,
            exit: lock(&self.exit).clone(),
        }
    }
}

fn parse_hang(value: &str, rank: u32) -> crate::Result<Option<HangAt>> {
    let bad = || {
        crate::Error::Env(format!("{HANG_ENV}={value}: expected <rank>:<activity>:<step>, e.g. 1:g_main:5"))
    };
    let parts: Vec<&str> = value.split(':').collect();
    let [r, activity, step] = parts[..] else { return Err(bad()) };
    let activity: Activity =
        serde_json::from_value(serde_json::Value::String(activity.into())).map_err(|_| bad())?;
    let (r, step): (u32, u64) = (r.parse().map_err(|_| bad())?, step.parse().map_err(|_| bad())?);
    Ok((r == rank).then_some(HangAt { activity, step }))
}

fn secs_between(earlier: Duration, later: Duration) -> f64 {
    later.saturating_sub(earlier).as_secs_f64()
}

/// A poisoned lock only means another thread panicked while recording; the record is still
/// worth reading.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRADS: Collective =
        Collective { op: CollectiveOp::AllReduce, dtype: "f32", elems: 10, on_device: false };

    #[test]
    fn a_snapshot_shows_the_activity_and_the_collective_in_flight() {
        let rec = Recorder::new(3);
        let train = rec.track("train");
        rec.enter(Activity::DMain, 7);
        train.begin(GRADS);
        train.end();
        train.begin(Collective { elems: 2, dtype: "f64", ..GRADS });
        let snap = rec.snapshot();
        assert_eq!((snap.rank, snap.step, snap.activity), (3, 7, Activity::DMain));
        let t = &snap.tracks[0];
        assert_eq!((t.name.as_str(), t.started, t.finished), ("train", 2, 1));
        let last = t.last.as_ref().unwrap();
        assert_eq!((last.op, last.elems, last.dtype.as_str()), (CollectiveOp::AllReduce, 2, "f64"));
        assert!(t.in_flight());
    }

    #[test]
    fn the_time_inside_finished_collectives_adds_up() {
        let rec = Recorder::new(0);
        let train = rec.track("train");
        let started = Instant::now();
        for _ in 0..2 {
            train.begin(GRADS);
            std::thread::sleep(Duration::from_millis(60));
            train.end();
        }
        std::thread::sleep(Duration::from_millis(60));
        let inside = rec.snapshot().tracks[0].secs_inside;
        assert!(inside >= 0.12, "two collectives of 60 ms: {inside}");
        let outside_after = 0.06;
        assert!(
            inside <= started.elapsed().as_secs_f64() - outside_after,
            "only the time inside counts: {inside}"
        );
    }

    #[test]
    fn a_group_joined_again_replaces_its_track() {
        let rec = Recorder::new(0);
        rec.track("eval").begin(GRADS);
        rec.track("train");
        let again = rec.track("eval");
        assert_eq!(rec.snapshot().tracks.len(), 2);
        again.begin(GRADS);
        let eval = rec.snapshot().tracks.into_iter().find(|t| t.name == "eval").unwrap();
        assert_eq!(eval.started, 1, "the new group counts from 1");
    }

    #[test]
    fn the_hang_setting_is_parsed_for_its_rank_only() {
        assert_eq!(parse_hang("1:g_main:5", 1).unwrap(), Some(HangAt { activity: Activity::GMain, step: 5 }));
        assert_eq!(parse_hang("1:g_main:5", 0).unwrap(), None);
        for bad in ["1:g_main", "x:g_main:5", "1:lunch:5", "1:g_main:-1"] {
            let err = parse_hang(bad, 1).unwrap_err().to_string();
            assert!(err.contains("<rank>:<activity>:<step>"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_time_in_an_activity_counts_from_entering_it() {
        let rec = Recorder::new(0);
        rec.enter(Activity::Data, 1);
        std::thread::sleep(Duration::from_millis(300));
        rec.enter(Activity::Data, 1); // the same activity again: still the same stretch
        assert!(rec.snapshot().activity_secs >= 0.3);
        rec.enter(Activity::DMain, 1);
        assert!(rec.snapshot().activity_secs < 0.3, "a new activity starts a new stretch");
    }
}
