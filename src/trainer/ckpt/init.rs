//! Starting a new run from another run's networks (`checkpoint.init_from`): fine-tuning or
//! transfer learning, as StyleGAN2-ADA's `--resume` does. Only G's, D's and G_ema's weights carry
//! over; everything that describes the old run's progress (optimizer moments, image count, ADA's
//! p, the path-length mean, random streams, best metrics) starts fresh, since the new run trains
//! on its own schedule, usually on another dataset.
use std::path::Path;

use super::restore::{agree_on_checkpoint, load_networks, NetTargets};
use gan_core::checkpoint::{self, InitSource, Verified};
use gan_core::comm::ProcessGroup;
use gan_core::config::{Augment, RunConfig};
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

/// What the run's checkpoints record of the checkpoint it started from.
pub fn init_source(from: &Verified) -> InitSource {
    InitSource {
        path: from.dir.display().to_string(),
        step: from.state.step,
        cur_nimg: from.state.cur_nimg,
        dataset: from.state.dataset.clone(),
    }
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
    for hint in schedule_hints(cfg) {
        tracing::info!("checkpoint.init_from: {hint}");
    }
    Ok(())
}

/// Schedules that count from image 0 and suit a network trained from scratch, which
/// StyleGAN2-ADA changes when it fine-tunes (`--resume`: no EMA ramp-up, `ada_kimg` 100). They
/// are the config's to set; the log says what they do here.
fn schedule_hints(cfg: &RunConfig) -> Vec<String> {
    let t = &cfg.train;
    let mut hints = Vec::new();
    if let Some(rampup) = t.ema_rampup {
        hints.push(format!(
            "train.ema_rampup {rampup} shortens G_ema's half-life to cur_nimg x {rampup} at first, so G_ema \
             starts out close to G (StyleGAN2-ADA fine-tunes with ema_rampup: null)"
        ));
    }
    if t.ema_start_kimg > 0.0 {
        hints.push(format!(
            "G_ema copies G for the first {} kimg (train.ema_start_kimg), as for a run from scratch",
            t.ema_start_kimg
        ));
    }
    if t.augment == Augment::Ada && t.ada_kimg > 100.0 {
        hints.push(format!(
            "ADA's p moves at most 1 per {} kimg (train.ada_kimg); StyleGAN2-ADA fine-tunes with 100, to adapt \
             faster to the new dataset",
            t.ada_kimg
        ));
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(file: &str, sets: &[&str]) -> RunConfig {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs").join(file);
        let sets: Vec<_> = sets.iter().map(|s| s.parse().unwrap()).collect();
        gan_core::config::load_with_env(&path, &sets, std::iter::empty()).unwrap()
    }

    /// The recipes' from-scratch schedules are named; StyleGAN2-ADA's fine-tuning settings leave
    /// nothing to say.
    #[test]
    fn schedules_made_for_a_run_from_scratch_are_named() {
        let hints = schedule_hints(&recipe("stylegan2-cifar.yaml", &[]));
        assert_eq!(hints.len(), 2, "{hints:?}");
        assert!(hints[0].contains("train.ema_rampup 0.05") && hints[1].contains("per 500 kimg"), "{hints:?}");
        let ada_fine_tune = ["train.ema_rampup=null", "train.ada_kimg=100"];
        assert!(schedule_hints(&recipe("stylegan2-cifar.yaml", &ada_fine_tune)).is_empty());
        let hints = schedule_hints(&recipe("biggan.yaml", &[]));
        assert_eq!(hints.len(), 1, "{hints:?}");
        assert!(hints[0].contains("first 40960 kimg (train.ema_start_kimg)"), "{hints:?}");
    }
}
