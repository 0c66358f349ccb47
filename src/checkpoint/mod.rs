//! Checkpoints on disk, torch-free: the safetensors files tensors are written to and read from,
//! the manifest with per-file checksums, the commit protocol (write to `step-NNNNNNNN.tmp/`,
//! fsync files and directory, rename, then update `latest`), verification, selection of the
//! checkpoint to resume from, whether it fits the config that starts from it, and retention. The trainer turns its tensors into [`RawTensor`]s
//! and back; everything about files lives here, so the launcher's `ckpt` commands share it.
//!
//! Layout of `<run dir>/checkpoints/`:
//! ```text
//! step-00001234/        a committed checkpoint (the rename is the commit point)
//!   g.safetensors d.safetensors g_ema.safetensors g_opt.safetensors d_opt.safetensors
//!   state.json          counters, data cursor, per-rank RNG streams, augmentation, metrics
//!   config.yaml         the resolved config that wrote it
//!   stats.jsonl         the run's tick statistics up to this step
//!   manifest.json       versions, and every file above with its size and BLAKE3
//!   manifest.blake3     BLAKE3 of manifest.json (a flipped byte there is caught too)
//!   eval.json           (optional) a background evaluation's results, written after the commit
//! step-00001300.tmp/    being written, or left by a crash: never loaded, removed at start
//! latest                name of the newest committed checkpoint (replaced atomically)
//! ```
mod compat;
mod fault;
mod g_ema_file;
mod layout;
mod manifest;
mod safetensors;
mod scores;
mod start;
mod verify;
mod write;

#[cfg(test)]
mod tests;

pub use compat::{
    check_arch, check_dataset, check_shapes, compare as compare_shapes, shapes_depend_on, shapes_may_differ,
    NetShapes, Shapes,
};
pub use fault::FAULT_ENV;
pub use g_ema_file::{GEmaInfo, G_EMA_FORMAT};
pub use layout::{
    check_start_paths, resolve_init_path, resolve_user_path, step_dir_name, Checkpoints, Retention, SetAside,
    LATEST_FILE,
};
pub use manifest::{FileEntry, InitSource, Manifest, RankState, TrainState, FORMAT, FORMAT_VERSION};
pub use safetensors::{read_tensors, write_tensors, Dtype, RawTensor, TensorFile, TensorView};
pub use scores::{metric_of, sample_diversity_of, EVAL_FILE};
pub use start::{plan_start, Aside, MovedAside, StartPlan};
pub use verify::{open_verified_by_peer, verify, Verified};
pub use write::PendingCheckpoint;

/// Name of the manifest inside a checkpoint directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// BLAKE3 of the manifest, beside it.
pub const MANIFEST_HASH_FILE: &str = "manifest.blake3";
/// Counters and per-rank state.
pub const STATE_FILE: &str = "state.json";
