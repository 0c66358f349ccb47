//! Checkpoints from the trainer's side: turning the training state (G, D, G_ema, both Adams,
//! counters, every rank's random streams) into files through `gan_core::checkpoint`, writing
//! them off the training thread, restoring a rank from the checkpoint its start resolves to,
//! initialising a new run from another run's networks (`checkpoint.init_from`), reading a trained
//! G_ema (from a checkpoint or a G_ema file) for `sample` and `eval`, and telling the launcher the
//! networks' shapes, which it checks a checkpoint against before any rank starts.
//! The file format, commit protocol and verification live in the library.
mod generator;
mod init;
mod restore;
mod save;
pub mod shapes;
mod tensors;

pub use generator::GeneratorSource;
pub use init::{init_networks, init_source, resolve_init};
pub use restore::{check_dataset, resolve_start, restore_into, NetTargets, RestoreTargets, Resumed};
pub use save::{gather_rank_streams, CheckpointWriter, Snapshot};
pub use tensors::{named_raw, varstore_raw};
