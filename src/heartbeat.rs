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

    /// Records progress at `step`; cheap to call every step.
    pub fn beat(&mut self, step: u64) -> Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        if self.last_write.is_some_and(|t| t.elapsed() < MIN_INTERVAL) {
            return Ok(());
        }
        fsutil::write_atomic(path, step.to_string().as_bytes())?;
        self.last_write = Some(Instant::now());
        Ok(())
    }
}

/// The launcher side: the step last reported and how long ago, or None before the first beat.
pub fn read(path: &Path) -> Option<(u64, Duration)> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let age = SystemTime::now().duration_since(modified).unwrap_or_default();
    let step = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    Some((step, age))
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
        hb.beat(3).unwrap();
        hb.beat(4).unwrap(); // within a second: not written
        let (step, age) = read(&path).unwrap();
        assert_eq!(step, 3);
        assert!(age < Duration::from_secs(5));
        Heartbeat { path: None, last_write: None }.beat(1).unwrap();
    }
}
