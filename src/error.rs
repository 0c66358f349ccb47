//! The library's error type. User errors (bad config, bad dataset, bad checkpoint) are kept apart
//! from failures of the machine or of our code, because they map to exit code 2.
use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit code for bad input: config, dataset or checkpoint (DESIGN.md, "Exit codes mean something").
pub const EXIT_USER_ERROR: i32 = 2;

/// Exit code of a run that diverged (a non-finite loss) with no rollbacks left. A rank's
/// randomness is a function of its seed and the step, so a restart from the same checkpoint
/// would only replay the divergence: the launcher, the sbatch script and the Kubernetes failure
/// policy do not retry it.
pub const EXIT_DIVERGED: i32 = 3;

/// Exit code of a run that stopped on a preemption signal after checkpointing: "requeue me".
/// 75 is EX_TEMPFAIL of sysexits.h (temporary failure, try again later); the sbatch script
/// requeues on it and the Kubernetes pod failure policy retries on it.
pub const EXIT_REQUEUE: i32 = 75;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config value is wrong: names the key path, the value and what would be accepted.
    #[error("config error at `{key}`: {message}{origin}")]
    Config {
        key: String,
        message: String,
        /// Which layer supplied the value, e.g. " (set by --set train.batch_size=3)"; empty for the file.
        origin: String,
    },
    /// The config could not be read or parsed at all.
    #[error("cannot load config {path}: {message}")]
    ConfigFile { path: PathBuf, message: String },

    /// A file or directory could not be read or written. The OS error is part of the message,
    /// not a `source`: binaries print the whole chain (`{:#}`), which would say it twice.
    #[error("{action} {path}: {cause}")]
    Io { action: &'static str, path: PathBuf, cause: std::io::Error },

    /// A dataset (image, shard, index) is unusable; names the file.
    #[error("dataset {path}: {message}")]
    Dataset { path: PathBuf, message: String },

    /// A checkpoint is unusable for this run (corrupt, or from another model); names it.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },

    /// A path given as a run directory (runs/<name>) is not one.
    #[error("run directory {path}: {message}")]
    RunDir { path: PathBuf, message: String },

    /// The launch environment (RANK, WORLD_SIZE, ...) is missing or inconsistent.
    #[error("launch environment: {0}")]
    Env(String),

    /// The rendezvous store could not be reached, refused us, or a wait timed out.
    #[error("rendezvous: {0}")]
    Rendezvous(String),

    /// A collective failed or timed out.
    #[error("collective: {0}")]
    Collective(String),

    /// An image could not be encoded or decoded.
    #[error("image {path}: {message}")]
    Image { path: PathBuf, message: String },

    /// A tensor library call failed (the trainer converts libtorch's errors into this).
    #[error("libtorch: {0}")]
    Tensor(String),

    /// Training produced a non-finite loss; continuing would only spread NaNs into G_ema.
    #[error("non-finite {what} at step {step}")]
    NonFinite { what: String, step: u64 },

    /// An evaluation found G dropping modes of the data (`eval.rollback_on_mode_dropping`); the
    /// ranks agreed to go back to the checkpoint of `to_step`, the one with the best FID.
    #[error("mode dropping found at step {step}: rolling back to the best-FID checkpoint of step {to_step}")]
    ModeDropping { step: u64, to_step: u64 },
}

impl Error {
    /// Shorthand for a config error without an origin (the value came from the file or defaults).
    pub fn config(key: impl Into<String>, value: impl ToString, allowed: impl Into<String>) -> Self {
        let message = format!("got {}, allowed: {}", value.to_string(), allowed.into());
        Error::Config { key: key.into(), message, origin: String::new() }
    }

    /// Wraps an `std::io::Error` with what we were doing and to which path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |cause| Error::Io { action, path, cause }
    }

    /// True for errors the user fixes by changing their input, not by retrying.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::Config { .. }
                | Error::ConfigFile { .. }
                | Error::Env(_)
                | Error::Dataset { .. }
                | Error::Checkpoint { .. }
                | Error::RunDir { .. }
        )
    }

    /// The process exit code this error should produce.
    pub fn exit_code(&self) -> i32 {
        match self {
            _ if self.is_user_error() => EXIT_USER_ERROR,
            Error::NonFinite { .. } => EXIT_DIVERGED,
            _ => 1,
        }
    }
}
