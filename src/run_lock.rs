//! One job at a time per run directory. Two jobs on one run (a job submitted twice, a requeue
//! while the old job still runs, a second terminal) would resume from each other's checkpoints,
//! interleave their statistics and delete each other's checkpoints through retention. The launcher
//! of node 0 (or a trainer started on its own) holds an exclusive `flock` on `<run>/.lock` for the
//! job's life; the kernel drops it when the process dies, however it dies, so a lock is never
//! stale on a local disk. On a network file system a node that died keeps its lock until the
//! server's lease runs out (NFSv4: 90 s), so a lock held from another host is waited for.
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The lock file inside the run directory.
pub const LOCK_FILE: &str = ".lock";

/// How long a lock held from another host is waited for: a little over NFSv4's default lease.
pub const REMOTE_WAIT: Duration = Duration::from_secs(120);

/// How long a lock held on this host is retried before it counts as another job's.
const LOCAL_WAIT: Duration = Duration::from_secs(1);

/// Who holds the lock, written into the lock file by the holder.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// RFC 3339, UTC.
    pub since: String,
}

impl Holder {
    fn this_process() -> Self {
        Holder {
            pid: std::process::id(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }
}

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: Option<File>,
}

/// What one attempt at the lock found.
enum Attempt {
    Held,
    Busy,
    /// The file system takes no locks (a Lustre mount without `flock`, some FUSE file systems).
    Unsupported(std::io::Error),
}

fn try_flock(file: &File, mode: libc::c_int) -> Attempt {
    // SAFETY: flock on a descriptor this function's caller owns; no memory is shared.
    if unsafe { libc::flock(file.as_raw_fd(), mode | libc::LOCK_NB) } == 0 {
        return Attempt::Held;
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Attempt::Busy,
        Some(libc::EINTR) => Attempt::Busy,
        _ => Attempt::Unsupported(err),
    }
}

impl RunLock {
    /// Takes the lock of `run_dir` (created if missing). A job on this host holding it is an
    /// error at once; one on another host is waited for up to `remote_wait`.
    pub fn acquire(run_dir: &Path, remote_wait: Duration) -> Result<Self> {
        // The first thing a job writes: a run.dir that cannot take files is the user's to fix.
        let unusable = |e: std::io::Error| Error::RunDir {
            path: run_dir.to_path_buf(),
            message: format!("cannot write there ({e}); check run.dir and run.name"),
        };
        std::fs::create_dir_all(run_dir).map_err(unusable)?;
        let path = run_dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(unusable)?;
        let me = Holder::this_process();
        let started = Instant::now();
        let deadline = started + remote_wait;
        let mut told = false;
        loop {
            match try_flock(&file, libc::LOCK_EX) {
                Attempt::Held => {
                    write_holder(&mut file, &me).map_err(Error::io("write", &path))?;
                    return Ok(RunLock { _file: Some(file) });
                }
                Attempt::Unsupported(e) => {
                    tracing::warn!(
                        "cannot lock {}: {e}; this file system takes no locks, so a second job on this \
                         run would not be stopped",
                        path.display()
                    );
                    return Ok(RunLock { _file: None });
                }
                Attempt::Busy => {}
            }
            let holder = read_holder(&path);
            let remote = holder.as_ref().is_some_and(|h| h.host != me.host);
            // A holder on this host is a job, unless within a moment: `gan-launch plan` and
            // `status` take the lock shared for an instant to see whether it is held.
            let patience = if remote { deadline } else { started + LOCAL_WAIT };
            if Instant::now() >= patience {
                return Err(in_use(run_dir, holder.as_ref()));
            }
            if !remote {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            if !told {
                told = true;
                tracing::warn!(
                    "{}; waiting up to {} s for it (a node that died keeps its lock on a network file \
                     system until the server's lease runs out)",
                    describe(holder.as_ref()),
                    remote_wait.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// The job holding the run in `run_dir` now, if one does (as far as this host can tell: a lock
/// held on a network file system by a node that died still counts until its lease runs out).
pub fn holder(run_dir: &Path) -> Option<Holder> {
    let path = run_dir.join(LOCK_FILE);
    let file = File::open(&path).ok()?;
    match try_flock(&file, libc::LOCK_SH) {
        // Held shared for an instant, released as `file` closes.
        Attempt::Held | Attempt::Unsupported(_) => None,
        Attempt::Busy => Some(read_holder(&path).unwrap_or(Holder {
            pid: 0,
            host: "an unknown host".into(),
            since: "an unknown time".into(),
        })),
    }
}

/// The error a launch would meet now when a job holds the run (for `gan-launch plan`).
pub fn check_free(run_dir: &Path) -> Result<()> {
    match holder(run_dir) {
        Some(h) => Err(in_use(run_dir, Some(&h))),
        None => Ok(()),
    }
}

fn write_holder(file: &mut File, holder: &Holder) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    let text = serde_json::to_string(holder).expect("a holder serialises");
    file.write_all(format!("{text}\n").as_bytes())
}

/// Who holds the lock of the run at `lock_path`, as the holder wrote it.
pub fn read_holder(lock_path: &Path) -> Option<Holder> {
    let mut text = String::new();
    File::open(lock_path).ok()?.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

fn describe(holder: Option<&Holder>) -> String {
    match holder {
        Some(h) => format!("another job holds the run: pid {} on {} since {}", h.pid, h.host, h.since),
        None => "another job holds the run".to_string(),
    }
}

fn in_use(run_dir: &Path, holder: Option<&Holder>) -> Error {
    Error::RunDir {
        path: PathBuf::from(run_dir),
        message: format!(
            "{}; two jobs on one run would resume from and delete each other's checkpoints: wait for \
             it to end, stop it, or set another run.name (`gan-launch status {}` shows it)",
            describe(holder),
            run_dir.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_the_lock_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let held = RunLock::acquire(&run, Duration::ZERO).unwrap();
        let holder_now = read_holder(&run.join(LOCK_FILE)).unwrap();
        assert_eq!(holder_now.pid, std::process::id());
        // flock locks belong to an open file: a second open in this process is a second job.
        let err = RunLock::acquire(&run, Duration::from_secs(60)).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "another job holds the run: pid {} on {}",
                holder_now.pid, holder_now.host
            )) && err.contains("set another run.name"),
            "{err}"
        );
        assert_eq!(holder(&run), Some(holder_now.clone()), "seen as held");
        drop(held);
        assert_eq!(holder(&run), None, "seen as free");
        RunLock::acquire(&run, Duration::ZERO).expect("free once the holder let go");
        let err = RunLock::acquire(Path::new("/proc/no-such-run"), Duration::ZERO).unwrap_err();
        assert!(err.is_user_error() && err.to_string().contains("check run.dir"), "{err}");
    }
}
