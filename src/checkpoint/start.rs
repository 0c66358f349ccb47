//! Where a start of a run takes its state from, decided before anything changes: which
//! checkpoint it resumes (if any), and which of the run's checkpoints leave its line because the
//! start does not go on from them. The trainer's rank 0 carries the decision out; `gan-launch
//! plan` prints it, so a user sees what a launch would do first.
use std::path::{Path, PathBuf};

use super::layout::{resolve_user_path, Checkpoints, SetAside};
use super::verify::{verify, Verified};
use crate::config::ResumeFrom;
use crate::error::{Error, Result};
use crate::rundir::RunDir;

/// What a start does with a run's checkpoints.
pub struct StartPlan {
    /// The checkpoint it resumes; None for a fresh start.
    pub from: Option<Verified>,
    /// The run's checkpoints that leave its line (moved to `replaced-<time>/`, never deleted).
    pub aside: Aside,
    /// Newer checkpoints of the run passed over, with why (corrupt, partial).
    pub skipped: Vec<(PathBuf, String)>,
}

/// Which of the run's checkpoints a start moves aside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Aside {
    Nothing,
    /// Those after this step: the start goes back to an earlier checkpoint of the run (say the
    /// one before a collapse), and left in place they would be newer than the new line's, so
    /// `latest` after a restart, and retention, would pick the abandoned line.
    After(u64),
    /// All of them, with the statistics that go with them: `resume: none`, or another run's
    /// checkpoint. The text says which.
    All(&'static str),
}

/// Decides the start of the run in `run_dir`. `restarted`: the job ran before (a launcher
/// restart, a scheduler's requeue or recreated pod), so the run's own newest checkpoint wins over
/// `resume`, and progress made since the job began is never thrown away.
pub fn plan_start(resume: &ResumeFrom, run_dir: &Path, restarted: bool) -> Result<StartPlan> {
    let own = Checkpoints::of_run(run_dir);
    let has_own = !own.list()?.is_empty();
    let mut skipped = Vec::new();
    let mut newest_own = || own.newest_valid(|dir, why| skipped.push((dir.to_path_buf(), why.to_string())));
    let (from, aside) = match (resume, restarted) {
        (ResumeFrom::Latest, _) | (ResumeFrom::Fresh, true) => (newest_own()?, Aside::Nothing),
        (ResumeFrom::Path(path), true) => match newest_own()? {
            Some(newest) => (Some(newest), Aside::Nothing),
            None => (Some(named(path)?), Aside::Nothing),
        },
        (ResumeFrom::Path(path), false) => {
            let from = named(path)?;
            let aside = match (is_in(&from, &own), has_own) {
                (true, _) => Aside::After(from.state.step),
                (false, true) => Aside::All("checkpoint.resume names another run's checkpoint"),
                (false, false) => Aside::Nothing,
            };
            (Some(from), aside)
        }
        (ResumeFrom::Fresh, false) if has_own => (None, Aside::All("checkpoint.resume is none")),
        (ResumeFrom::Fresh, false) => (None, Aside::Nothing),
    };
    Ok(StartPlan { from, aside, skipped })
}

/// A checkpoint the user named: it must verify (a corrupt one here is an error, not a skip).
fn named(path: &Path) -> Result<Verified> {
    let dir = resolve_user_path(path)?;
    verify(&dir).map_err(|message| Error::Checkpoint { path: dir, message })
}

fn is_in(checkpoint: &Verified, own: &Checkpoints) -> bool {
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    canonical(&own.root).is_some_and(|root| checkpoint.dir.parent().and_then(canonical) == Some(root))
}

/// Renames `from` to `to` when `from` exists; says whether it did.
fn move_if_there(from: &Path, to: &Path) -> Result<bool> {
    if !from.exists() {
        return Ok(false);
    }
    std::fs::rename(from, to).map_err(Error::io("move aside", from))?;
    Ok(true)
}

/// What a start moved aside, and where.
#[derive(Debug)]
pub struct MovedAside {
    /// The `replaced-<time>/` directory they went to.
    pub dir: PathBuf,
    /// The checkpoints, at their new paths.
    pub checkpoints: Vec<PathBuf>,
    /// The statistics, sample grids and final G_ema of the line left, at their new paths.
    pub outputs: Vec<PathBuf>,
}

impl StartPlan {
    /// Moves aside what the plan says, in `run_dir`, with the grids and final G_ema of the line
    /// left; None when nothing moved.
    pub fn carry_out(&self, run_dir: &Path) -> Result<Option<MovedAside>> {
        let run = RunDir::new(run_dir);
        let own = Checkpoints::of_run(run_dir);
        let dir = SetAside::Replaced.new_dir(run_dir);
        let moved = match self.aside {
            Aside::Nothing => return Ok(None),
            Aside::After(step) => {
                let checkpoints = own.set_aside_after(step, &dir.join("checkpoints"))?;
                if checkpoints.is_empty() {
                    return Ok(None);
                }
                let nimg = self.from.as_ref().map(|v| v.state.cur_nimg);
                MovedAside { outputs: run.set_aside_outputs_after(nimg, &dir)?, checkpoints, dir }
            }
            Aside::All(_) => {
                crate::fsutil::create_dir_all(&dir)?;
                // The checkpoints move as one directory, and are listed where they went.
                let moved_to = Checkpoints::new(dir.join("checkpoints"));
                move_if_there(&own.root, &moved_to.root)?;
                let mut outputs = Vec::new();
                for name in ["stats.jsonl", "eval.jsonl"] {
                    if move_if_there(&run_dir.join(name), &dir.join(name))? {
                        outputs.push(dir.join(name));
                    }
                }
                outputs.extend(run.set_aside_outputs_after(None, &dir)?);
                let checkpoints = moved_to.list()?.into_iter().map(|(_, path)| path).collect();
                MovedAside { checkpoints, outputs, dir }
            }
        };
        Ok(Some(moved))
    }

    /// One line for `gan-launch plan`: what the start resumes and what it moves aside.
    pub fn describe(&self, run_dir: &Path) -> String {
        let from = match &self.from {
            Some(v) => format!(
                "resumes {} (step {}, {:.3} kimg)",
                v.dir.display(),
                v.state.step,
                v.state.cur_nimg as f64 / 1000.0
            ),
            None => "starts fresh".to_string(),
        };
        let later = |step: u64| -> Vec<String> {
            let list = Checkpoints::of_run(run_dir).list().unwrap_or_default();
            list.into_iter().filter(|(s, _)| *s > step).map(|(s, _)| s.to_string()).collect()
        };
        let aside = match &self.aside {
            Aside::Nothing => String::new(),
            Aside::After(step) => match later(*step) {
                steps if steps.is_empty() => String::new(),
                steps => format!(
                    "; moves the run's later checkpoints (step {}) to replaced-<time>/",
                    steps.join(", ")
                ),
            },
            Aside::All(why) => format!("; {why}: moves the run's checkpoints to replaced-<time>/"),
        };
        let skipped: String =
            self.skipped.iter().map(|(dir, why)| format!("; skips {} ({why})", dir.display())).collect();
        format!("{from}{aside}{skipped}")
    }
}
