//! Crash injection for tests of the commit protocol: when `GANLAUNCH_CKPT_FAULT` names a point,
//! the process SIGKILLs itself there, exactly as a node failure or the OOM killer would stop it
//! (no destructors, no buffered writes flushed). Unset in normal runs, where this is a no-op.

/// Environment variable naming the point to die at: `mid-file`, `before-manifest`,
/// `before-rename`, `before-latest` or `before-retention`.
pub const FAULT_ENV: &str = "GANLAUNCH_CKPT_FAULT";

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
