//! Fault injection for tests of the commit protocol: when `GANLAUNCH_CKPT_FAULT` names a point,
//! the process SIGKILLs itself there, exactly as a node failure or the OOM killer would stop it
//! (no destructors, no buffered writes flushed); `disk-full` makes every checkpoint file write
//! fail as a full disk does. Unset in normal runs, where this is a no-op.
use std::path::Path;

use crate::error::{Error, Result};

/// Environment variable naming the point to die at (`mid-file`, `before-manifest`,
/// `before-rename`, `before-latest` or `before-retention`), or `disk-full`.
pub const FAULT_ENV: &str = "GANLAUNCH_CKPT_FAULT";

/// Fails as a full disk would, if the environment asks for it, for the checkpoint file `path`.
pub(crate) fn disk_full(path: &Path) -> Result<()> {
    if std::env::var(FAULT_ENV).is_ok_and(|v| v == "disk-full") {
        let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
        return Err(Error::io("write", path)(enospc));
    }
    Ok(())
}

/// Dies here if the environment asks for it.
pub(crate) fn point(name: &str) {
    if std::env::var(FAULT_ENV).is_ok_and(|v| v == name) {
        tracing::warn!("{FAULT_ENV}={name}: killing this process inside the checkpoint write");
        // SAFETY: sending a signal to ourselves has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
