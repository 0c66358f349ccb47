//! Progress heartbeats between a rank and the launcher on its node. The rank rewrites a small
//! file whenever it makes progress (at most once a second); the launcher reads the file's age. A
//! rank that is stopped (SIGSTOP), deadlocked or stuck in a collective stops rewriting it, so its
//! heartbeat ages and the launcher names it. Files rather than the store: a node's launcher only
//! watches its own ranks, and a file needs no connection that could itself be the thing stuck.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::error::Result;
use crate::fsutil;

/// Environment variable through which the launcher tells a rank where to beat.
pub const HEARTBEAT_ENV: &str = "GANLAUNCH_HEARTBEAT_FILE";

/// Rank `rank`'s heartbeat file in the run's heartbeat directory (its flight record sits beside).
pub fn rank_file(dir: &Path, rank: u32) -> PathBuf {
    dir.join(format!("rank-{rank}"))
}

/// Shortest time between two writes.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The rank side.
pub struct Heartbeat {
    path: Option<PathBuf>,
    last_write: Option<Instant>,
}

impl Heartbeat {
    /// Beats to the file the launcher named, or nowhere when started without a launcher.
    pub fn from_env() -> Self {
        Heartbeat { path: std::env::var_os(HEARTBEAT_ENV).map(PathBuf::from), last_write: None }
    }

    pub fn to_file(path: PathBuf) -> Self {
        Heartbeat { path: Some(path), last_write: None }
    }

    /// Records progress at `step` with `cur_nimg` images seen; cheap to call every step.
    pub fn beat(&mut self, step: u64, cur_nimg: u64) -> Result<()> {
        if self.last_write.is_some_and(|t| t.elapsed() < MIN_INTERVAL) {
            return Ok(());
        }
        self.beat_now(step, cur_nimg)
    }

    /// Writes at once, however recent the last beat: the last one, at the end of training, so
    /// the file shows the step the rank ended at.
    pub fn beat_now(&mut self, step: u64, cur_nimg: u64) -> Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        fsutil::write_replace(path, format!("{step} {cur_nimg}").as_bytes())?;
        self.last_write = Some(Instant::now());
        Ok(())
    }
}

/// The last beat a rank wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Beat {
    pub step: u64,
    pub cur_nimg: u64,
    /// How long ago it was written.
    pub age: Duration,
}

/// The launcher side: the last beat, or None before the first one.
pub fn read(path: &Path) -> Option<Beat> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let age = SystemTime::now().duration_since(modified).unwrap_or_default();
    let text = std::fs::read_to_string(path).ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some(Beat { step: fields.next()??, cur_nimg: fields.next()??, age })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_are_throttled_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hb/rank-0");
        assert_eq!(read(&path), None);
        let mut hb = Heartbeat::to_file(path.clone());
        hb.beat(3, 192).unwrap();
        hb.beat(4, 256).unwrap(); // within a second: not written
        let beat = read(&path).unwrap();
        assert_eq!((beat.step, beat.cur_nimg), (3, 192));
        assert!(beat.age < Duration::from_secs(5));
        Heartbeat { path: None, last_write: None }.beat(1, 64).unwrap();
    }
}
