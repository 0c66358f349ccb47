//! Starting a new run from another run's networks (`checkpoint.init_from`): fine-tuning or
//! transfer learning, as StyleGAN2-ADA's `--resume` does. Only G's, D's and G_ema's weights carry
//! over; everything that describes the old run's progress (optimizer moments, image count, ADA's
//! p, the path-length mean, random streams, best metrics) starts fresh, since the new run trains
//! on its own schedule, usually on another dataset.
use std::path::Path;

use super::restore::{agree_on_checkpoint, load_networks, NetTargets};
use gan_core::checkpoint::{self, Verified};
use gan_core::comm::ProcessGroup;
use gan_core::config::RunConfig;
use gan_core::data::identity::DatasetIdentity;
use gan_core::error::{Error, Result};

/// The checkpoint `checkpoint.init_from` names, verified by rank 0 and handed to every rank.
pub fn resolve_init(pg: &mut dyn ProcessGroup, path: &Path) -> Result<Verified> {
    let chosen = agree_on_checkpoint(pg, || {
        let dir = checkpoint::resolve_init_path(path)?;
        checkpoint::verify(&dir).map(Some).map_err(|message| Error::Checkpoint { path: dir, message })
    })?;
    Ok(chosen.expect("rank 0 chose a checkpoint or failed"))
}

/// Loads `from`'s networks (refusing another model, naming what differs) and says on rank 0 what
/// the new run starts from.
pub fn init_networks(
    from: &Verified,
    cfg: &RunConfig,
    dataset: &DatasetIdentity,
    nets: &NetTargets<'_>,
    rank: u32,
) -> Result<()> {
    load_networks(from, cfg, nets)?;
    if rank != 0 {
        return Ok(());
    }
    let state = &from.state;
    let data = match state.dataset.as_ref().and_then(|saved| saved.differs_from(dataset)) {
        Some(why) => format!("; fine-tuning on another dataset: {why}"),
        None => String::new(),
    };
    tracing::info!(
        path = %from.dir.display(),
        "initialised G, D and G_ema from step {} ({:.1} kimg) of {} (checkpoint.init_from); optimizer state, \
         image count, augmentation and random streams start fresh{data}",
        state.step,
        state.cur_nimg as f64 / 1000.0,
        from.dir.display()
    );
    Ok(())
}
