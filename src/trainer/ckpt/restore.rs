//! Where a start takes its state from, and loading it. Rank 0 decides (it verifies checksums
//! once for the job) and tells the others the directory; every rank then loads the same files.
//! Multi-node runs therefore need the run directory on storage all nodes share.
use std::path::PathBuf;

use tch::nn;

use super::tensors::{load_varstore, read_named};
use crate::train::optim::Adam;
use gan_core::checkpoint::{self, Aside, Checkpoints, Verified};
use gan_core::comm::{broadcast_bytes, ProcessGroup};
use gan_core::config::RunConfig;
use gan_core::data::identity::DatasetIdentity;
use gan_core::error::{Error, Result};

/// The checkpoint a rank starts from.
pub type Resumed = Verified;

/// Decides, on rank 0, which checkpoint this start resumes from, and tells every rank.
/// `restarted` is true when this job already ran before (a launcher restart or a scheduler
/// requeue): then the run's own newest checkpoint wins over `checkpoint.resume`, so progress made
/// since the job began is never thrown away.
pub fn resolve_start(pg: &mut dyn ProcessGroup, cfg: &RunConfig, restarted: bool) -> Result<Option<Resumed>> {
    agree_on_checkpoint(pg, || choose(cfg, restarted))
}

/// Runs `choose` on rank 0 (which verifies the checkpoint's files once for the job) and hands
/// every rank the checkpoint it chose, if any.
pub(super) fn agree_on_checkpoint(
    pg: &mut dyn ProcessGroup,
    choose: impl FnOnce() -> Result<Option<Verified>>,
) -> Result<Option<Verified>> {
    let mut chosen = Vec::new();
    let mut verified = None;
    if pg.rank() == 0 {
        verified = choose()?;
        if let Some(v) = &verified {
            chosen = v.dir.to_string_lossy().into_owned().into_bytes();
        }
    }
    broadcast_bytes(pg, &mut chosen, 0)?;
    if verified.is_some() || chosen.is_empty() {
        return Ok(verified);
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&chosen).into_owned());
    checkpoint::open_verified_by_peer(&dir)
        .map(Some)
        .map_err(|message| Error::Checkpoint { path: dir, message })
}

fn choose(cfg: &RunConfig, restarted: bool) -> Result<Option<Verified>> {
    let run_dir = cfg.run_dir();
    for path in Checkpoints::of_run(&run_dir).remove_partial()? {
        tracing::warn!(path = %path.display(), "removed a partial checkpoint left by an interrupted write");
    }
    let plan = checkpoint::plan_start(&cfg.checkpoint.resume_from(), &run_dir, restarted)?;
    for (dir, why) in &plan.skipped {
        tracing::warn!(path = %dir.display(), "skipping checkpoint {}: {why}", dir.display());
    }
    if let Some(moved) = plan.carry_out(&run_dir)? {
        match &plan.aside {
            Aside::After(step) => tracing::warn!(
                path = %moved.dir.display(),
                "resuming from step {step} of this run: moved its {} later checkpoint(s) aside, so that restarts \
                 go on from the new line (with the grids drawn after it and the final G_ema)",
                moved.checkpoints.len()
            ),
            Aside::All(why) => tracing::warn!(
                path = %moved.dir.display(),
                "{why}: moved the run's {} checkpoint(s), statistics, grids and final G_ema aside",
                moved.checkpoints.len()
            ),
            Aside::Nothing => {}
        }
    }
    Ok(plan.from)
}

/// The networks a checkpoint's weights are loaded into.
pub struct NetTargets<'a> {
    pub g: &'a nn::VarStore,
    pub d: &'a nn::VarStore,
    pub g_ema: &'a nn::VarStore,
}

/// The networks and optimizers a checkpoint is loaded into.
pub struct RestoreTargets<'a> {
    pub nets: NetTargets<'a>,
    pub g_opt: &'a mut Adam,
    pub d_opt: &'a mut Adam,
}

/// Refuses a checkpoint trained on another dataset than the one the config names, unless
/// `checkpoint.allow_dataset_change` (then it warns): `checkpoint::check_dataset`.
pub fn check_dataset(resumed: &Resumed, cfg: &RunConfig, now: &DatasetIdentity) -> Result<()> {
    if let Some(warning) = checkpoint::check_dataset(resumed, cfg, now)? {
        tracing::warn!("{warning}");
    }
    Ok(())
}

/// Loads weights and optimizer state; refuses a checkpoint of another model, naming what differs.
pub fn restore_into(resumed: &Resumed, cfg: &RunConfig, targets: RestoreTargets<'_>) -> Result<()> {
    load_networks(resumed, cfg, &targets.nets)?;
    for (opt, net, file) in
        [(targets.g_opt, "G", "g_opt.safetensors"), (targets.d_opt, "D", "d_opt.safetensors")]
    {
        let path = resumed.dir.join(file);
        let state: Vec<_> = read_named(&path)?.into_iter().collect();
        let fresh = opt.load_state(&state).map_err(|message| Error::Checkpoint { path, message })?;
        if !fresh.is_empty() {
            tracing::warn!(
                "{net}'s optimizer state has no moments for {} parameter(s) that were frozen when it was saved \
                 (train.freeze_d changed): they start from zero moments ({})",
                fresh.len(),
                fresh.join(", ")
            );
        }
    }
    Ok(())
}

/// Loads G's, D's and G_ema's weights; refuses a checkpoint of another model, naming what differs.
pub(super) fn load_networks(from: &Verified, cfg: &RunConfig, nets: &NetTargets<'_>) -> Result<()> {
    let dir = &from.dir;
    checkpoint::check_arch(from, cfg)?;
    load_varstore(nets.g, &dir.join("g.safetensors"), "G")?;
    load_varstore(nets.d, &dir.join("d.safetensors"), "D")?;
    load_varstore(nets.g_ema, &dir.join("g_ema.safetensors"), "G_ema")
}
