//! Training: setup of a rank's state, the step loop with its phases, and what the loop is built
//! from (Adam with saveable state, G_ema, losses, gradient sync, tick statistics, sample grids,
//! progress, evaluation). The only module that knows about all the others.
pub mod checkpointing;
pub mod data;
pub mod ema;
pub mod evaluation;
pub mod labels;
pub mod losses;
pub mod optim;
pub mod outputs;
pub mod progress;
pub mod rollback;
pub mod samples;
pub mod setup;
pub mod stats;
pub mod step;
pub mod sync;
pub mod telemetry;
pub mod trainer;

#[cfg(test)]
mod tests;

/// Serialises tests that use libtorch's global generator (model tests elsewhere take it too).
#[cfg(test)]
pub fn tests_lock() -> std::sync::MutexGuard<'static, ()> {
    tests::TORCH_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub use rollback::train_with_rollbacks;
pub use setup::Setup;
