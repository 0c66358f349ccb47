//! gan-core: the library behind `gan-launch` and its per-rank trainer `gan-train`.
//!
//! # Layout
//! - [`config`]: typed YAML config, layered overrides, validation, per-rank plan.
//! - [`launch_env`]: torchrun's environment contract between launcher and ranks.
//! - [`data`]: image sources (the built-in generated shapes), per-rank sampling, batches.
//! - [`rendezvous`]: the TCP key-value store ranks meet through (hosted by the node-0 launcher).
//! - [`comm`]: the `ProcessGroup` collectives the trainer reduces gradients and stats through.
//! - [`checkpoint`]: checkpoint files, manifests, the commit protocol, verification, retention.
//! - [`heartbeat`], [`flight`]: a rank's progress and whereabouts, for the launcher's watchdog.
//! - [`metrics`]: Prometheus series of ranks and launchers, the `/metrics` server, Pushgateway.
//! - [`rundir`], [`images`], [`logging`], [`devices`]: run directory and manifest, PNG grids,
//!   rank-tagged logs, torch-free device discovery.
//! - [`host_malloc`]: glibc malloc settings that keep the trainer's freed host memory for reuse.
//! - [`cache`]: where the FID weights and real statistics shared between runs live.
//! - [`diversity`]: how varied G's sample grid is next to the reals (a per-grid collapse signal).
//!
//! The torch side (networks, losses, optimizer, EMA, the training loop) is the `gan-train` binary
//! under `src/trainer/`. This library never uses libtorch, so the launcher that links it does
//! not load libtorch either.
//!
//! # Data flow (single rank today)
//! config -> plan -> rank env -> data source + sampler -> batches -> phases (D main, D reg, G main,
//! G reg) -> gradient sync -> Adam -> G_ema -> per-tick stats, sample grids.
//!
pub mod cache;
pub mod checkpoint;
pub mod cluster;
pub mod comm;
pub mod config;
pub mod data;
pub mod devices;
pub mod diversity;
pub mod error;
pub mod eval_options;
pub mod flight;
pub mod fsutil;
pub mod heartbeat;
pub mod host_malloc;
pub mod images;
pub mod launch_env;
pub mod logging;
pub mod metrics;
pub mod rendezvous;
pub mod rng;
pub mod run_lock;
pub mod rundir;
pub mod sample_options;

pub use error::{Error, Result};
