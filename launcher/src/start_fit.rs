//! Whether the checkpoint a start would load fits its config, checked where finding out late is
//! costly: `plan`, and `sbatch` before a job waits in the queue for its GPUs. The ranks check the
//! same (`gan_core::checkpoint::compat`) when they load it; without this, a resume with an edited
//! `model.*`, or a config that now names another dataset, is accepted at submission and refused
//! seconds after the nodes are finally allocated.
//!
//! The architecture and the dataset are read from the checkpoint. Shapes need the networks, which
//! only the trainer builds (seconds; BigGAN-128's orthogonal init takes about 7 s on 2 cores), so
//! they are compared only when a setting they are built from changed since the checkpoint.
use std::path::Path;

use gan_core::checkpoint::{self, NetShapes, StartPlan, Verified};
use gan_core::config::{diff, RunConfig};
use gan_core::data::identity::DatasetIdentity;
use gan_core::Error;

/// Checks the checkpoint `start` resumes (or, starting fresh, the one `checkpoint.init_from`
/// names) against `cfg`; `dataset`: whether the config's dataset can be read here, to compare
/// with the one the checkpoint was trained on; `trainer`: an explicit trainer binary (else the one
/// beside gan-launch). Returns warnings: a start that goes on despite a difference
/// (`checkpoint.allow_dataset_change`), or shapes that could not be compared here (a trainer that
/// does not run on this login node: the ranks still compare them).
pub fn check(
    cfg: &RunConfig,
    start: &StartPlan,
    trainer: Option<&Path>,
    dataset: bool,
) -> anyhow::Result<Vec<String>> {
    let (from, resumes) = match (&start.from, &cfg.checkpoint.init_from) {
        (Some(from), _) => (from.clone(), true),
        (None, Some(path)) => (verified_init(path)?, false),
        (None, None) => return Ok(Vec::new()),
    };
    checkpoint::check_arch(&from, cfg)?;
    let mut warnings = Vec::new();
    // Fine-tuning from another run's networks on another dataset is what init_from is for.
    if resumes && dataset {
        let now = DatasetIdentity::of(&cfg.data, cfg.run.seed)?;
        warnings.extend(checkpoint::check_dataset(&from, cfg, &now)?);
    }
    let changes = diff::since_checkpoint(&from.dir, cfg).ok();
    if checkpoint::shapes_may_differ(changes.as_deref()) {
        let built = crate::supervise::trainer_path(trainer)
            .and_then(|trainer| crate::supervise::trainer_report::<NetShapes>(&trainer, "shapes", cfg));
        match built {
            Ok(ours) => checkpoint::check_shapes(&from.dir, &ours)
                .map_err(|e| explained(e, resumes, changes.as_deref()))?,
            Err(e) => warnings.push(format!(
                "the networks' shapes were not compared with {}'s here ({e:#}); the ranks compare them when \
                 they load it",
                from.dir.display()
            )),
        }
    }
    Ok(warnings)
}

/// The checkpoint `checkpoint.init_from` names, verified as the ranks will.
fn verified_init(path: &Path) -> gan_core::Result<Verified> {
    let dir = checkpoint::resolve_init_path(path)?;
    checkpoint::verify(&dir).map_err(|message| Error::Checkpoint { path: dir, message })
}

/// Adds to a shape mismatch what set the networks apart and what to do about it.
fn explained(e: Error, resumes: bool, changes: Option<&[diff::Change]>) -> Error {
    let Error::Checkpoint { path, message } = e else { return e };
    let changed: Vec<diff::Change> = changes
        .unwrap_or_default()
        .iter()
        .filter(|c| checkpoint::shapes_depend_on(&c.key))
        .cloned()
        .collect();
    let changed = match changed.is_empty() {
        true => String::new(),
        false => format!("; changed since the checkpoint: {}", diff::describe(&changed)),
    };
    let remedy = match resumes {
        true => {
            "a resume needs the networks it was trained with: set them back, or start over with --resume none"
        }
        false => "checkpoint.init_from needs networks of the same shapes: build them as the source run did",
    };
    Error::Checkpoint { path, message: format!("{message}{changed}; {remedy}") }
}
