//! Run configuration: the typed schema, layered loading (file -> `GAN_*` environment -> `--set`),
//! cross-section validation, and the per-rank plan derived from it. Torch-free, so the launcher
//! validates a config in milliseconds before any rank starts.
pub mod diff;
mod enums;
mod load;
pub mod memory;
mod model;
mod operations;
mod plan;
mod required;
mod schema;
mod train;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

use enums::config_enum;
pub use load::{load, load_resolved, load_with_env, parse_resolved, SetOverride, ENV_PREFIX};
pub use model::*;
pub use operations::*;
pub use plan::{
    batch_of_rank, batch_per_rank, device_for, format_plan, per_rank_batches, plan, rank_seed, rank_share,
    world_size, HostFacts, RankPlan,
};
pub use schema::*;
pub use train::*;
pub use validate::{unused_settings, validate};

use crate::error::Result;

/// The config as YAML, with every default filled in: what a run actually used.
pub fn to_yaml(cfg: &RunConfig) -> String {
    serde_norway::to_string(cfg).expect("a RunConfig always serialises")
}

/// Writes the resolved config to `path` (written to a temporary file and renamed into place, so a
/// reader never sees half a file).
pub fn save_resolved(cfg: &RunConfig, path: &Path) -> Result<()> {
    crate::fsutil::write_atomic(path, to_yaml(cfg).as_bytes())
}

impl RunConfig {
    /// Run name (always set after loading).
    pub fn name(&self) -> &str {
        self.run.name.as_deref().unwrap_or("run")
    }

    /// `run.dir/run.name`.
    pub fn run_dir(&self) -> std::path::PathBuf {
        self.run.dir.join(self.name())
    }
}
