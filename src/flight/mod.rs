//! Flight records: where each rank is, for naming the rank that holds up a stuck job and saying
//! what it is doing. This module owns the rank's in-memory recorder (the training thread's
//! activity and every collective each process group starts and finishes), the record file a
//! thread rewrites beside the heartbeat every second, and the launcher's reading of all records
//! of its node once a heartbeat goes stale.
//!
//! Why not just the heartbeat: a rank stuck in a collective looks exactly like the rank it waits
//! for; only the collective sequence numbers tell the waiting from the waited-for (torch's Flight
//! Recorder answers the same question for NCCL after the fact; this answers it while the job is
//! being stopped).
mod diagnose;
mod record;
mod recorder;

#[cfg(test)]
mod tests;

#[cfg(test)]
use diagnose::ends;
pub use diagnose::{diagnose, Diagnosis, Process, RankView};
pub use record::{
    path_beside, read, start_writer, CollectiveRecord, FlightRecord, RecordFile, TrackRecord, TRAIN_TRACK,
};
pub use recorder::{Activity, Collective, CollectiveOp, Recorder, Track, HANG_ENV};
