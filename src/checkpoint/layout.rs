//! The checkpoints directory of a run: naming, listing, the `latest` pointer, clean-up of
//! partial writes, retention, and selecting the checkpoint to resume from.
use std::path::{Path, PathBuf};

use super::verify::{verify, Verified};
use crate::error::{Error, Result};
use crate::fsutil;

/// File naming the newest committed checkpoint.
pub const LATEST_FILE: &str = "latest";
/// Suffix of a checkpoint being written; such a directory is never loaded.
const TMP_SUFFIX: &str = ".tmp";
/// Suffix of a committed checkpoint moved aside while the same step is committed again.
const OLD_SUFFIX: &str = ".old";

/// `step-00001234`: zero-padded so names sort like steps.
pub fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

fn parse_step_dir(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step-")?;
    (digits.len() >= 8 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

/// `<run dir>/checkpoints`.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    pub root: PathBuf,
}

impl Checkpoints {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Checkpoints { root: root.into() }
    }

    /// The checkpoints of a run directory.
    pub fn of_run(run_dir: &Path) -> Self {
        Checkpoints::new(run_dir.join("checkpoints"))
    }

    /// A run's `checkpoints` directory given either it or the run directory.
    pub fn of_user_path(path: &Path) -> Self {
        if path.join(LATEST_FILE).exists() || path.file_name().is_some_and(|n| n == "checkpoints") {
            Checkpoints::new(path)
        } else {
            Checkpoints::of_run(path)
        }
    }

    pub fn step_dir(&self, step: u64) -> PathBuf {
        self.root.join(step_dir_name(step))
    }

    pub(crate) fn tmp_dir(&self, step: u64) -> PathBuf {
        self.root.join(format!("{}{TMP_SUFFIX}", step_dir_name(step)))
    }

    pub(crate) fn old_dir(&self, step: u64) -> PathBuf {
        self.root.join(format!("{}{OLD_SUFFIX}", step_dir_name(step)))
    }

    /// Committed checkpoints (valid or not), oldest first.
    pub fn list(&self) -> Result<Vec<(u64, PathBuf)>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", &self.root)(e)),
        };
        let mut found: Vec<(u64, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| parse_step_dir(&e.file_name().to_string_lossy()).map(|s| (s, e.path())))
            .collect();
        found.sort();
        Ok(found)
    }

    /// What `latest` names, if it exists.
    pub fn latest_name(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.root.join(LATEST_FILE)).ok()?;
        Some(text.trim().to_string()).filter(|s| !s.is_empty())
    }

    /// Points `latest` at `step` (a temporary file fsynced and renamed over the old pointer).
    pub(crate) fn set_latest(&self, step: u64) -> Result<()> {
        fsutil::write_atomic(&self.root.join(LATEST_FILE), format!("{}\n", step_dir_name(step)).as_bytes())?;
        fsutil::sync_dir(&self.root)
    }

    /// Removes what crashed writers left behind (`*.tmp`, `*.old`). Only one process of a job
    /// may call this, before anyone writes (rank 0 at start).
    pub fn remove_partial(&self) -> Result<Vec<PathBuf>> {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return Ok(Vec::new()) };
        let mut removed = Vec::new();
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let partial = [TMP_SUFFIX, OLD_SUFFIX]
                .iter()
                .any(|s| name.strip_suffix(s).is_some_and(|stem| parse_step_dir(stem).is_some()));
            if partial && entry.path().is_dir() {
                std::fs::remove_dir_all(entry.path()).map_err(Error::io("remove", entry.path()))?;
                removed.push(entry.path());
            }
        }
        Ok(removed)
    }

    /// The newest committed checkpoint whose manifest and files verify. Each one skipped on the
    /// way is reported with the reason, so a user sees that (and why) a newer one was not used.
    pub fn newest_valid(&self, mut skipped: impl FnMut(&Path, &str)) -> Result<Option<Verified>> {
        for (_, dir) in self.list()?.into_iter().rev() {
            match verify(&dir) {
                Ok(verified) => return Ok(Some(verified)),
                Err(problem) => skipped(&dir, &problem),
            }
        }
        Ok(None)
    }

    /// Moves every committed checkpoint newer than `step` into `dest` and points `latest` at
    /// `step`, so that its checkpoint is the newest again; returns where they went. Nothing is
    /// deleted.
    pub fn set_aside_after(&self, step: u64, dest: &Path) -> Result<Vec<PathBuf>> {
        let newer: Vec<PathBuf> =
            self.list()?.into_iter().filter(|(s, _)| *s > step).map(|(_, dir)| dir).collect();
        let mut moved = Vec::new();
        for dir in newer {
            crate::fsutil::create_dir_all(dest)?;
            let to = dest.join(dir.file_name().expect("a step directory has a name"));
            std::fs::rename(&dir, &to).map_err(Error::io("move", &dir))?;
            moved.push(to);
        }
        if !moved.is_empty() {
            self.set_latest(step)?;
        }
        Ok(moved)
    }

    /// Deletes committed checkpoints that are neither among the newest `keep_last` sound ones
    /// nor among the `keep_best` with the lowest FID (manifest or `eval.json`); never `protect`
    /// (the one just committed) nor `retention.hold`. A checkpoint that no longer looks sound
    /// (truncated, files missing, another format) does not count toward `keep_last`, so it never
    /// pushes out a good one, and is not deleted either: what cannot be read is left for the
    /// user to inspect (`ckpt ls` marks it). Called only after a commit, so a crash here never
    /// leaves fewer than k.
    pub fn retain(&self, retention: Retention, protect: u64) -> Result<Vec<PathBuf>> {
        let all = self.list()?;
        let (sound, unsound): (Vec<_>, Vec<_>) =
            all.iter().partition(|(_, dir)| super::verify::looks_sound(dir));
        let mut keep: Vec<u64> =
            sound.iter().rev().take(retention.keep_last.max(1)).map(|(step, _)| *step).collect();
        keep.extend(unsound.iter().map(|(step, _)| *step));
        keep.push(protect);
        keep.extend(retention.hold);
        if retention.keep_best > 0 {
            let mut scored: Vec<(f64, u64)> = all
                .iter()
                .filter(|(_, dir)| super::verify::looks_sound(dir))
                .filter_map(|(step, dir)| Some((super::scores::metric_of(dir, "fid")?, *step)))
                .filter(|(fid, _)| fid.is_finite())
                .collect();
            scored.sort_by(|a, b| a.0.total_cmp(&b.0));
            keep.extend(scored.iter().take(retention.keep_best).map(|(_, step)| *step));
        }
        let mut removed = Vec::new();
        for (step, dir) in all {
            if !keep.contains(&step) {
                std::fs::remove_dir_all(&dir).map_err(Error::io("remove", &dir))?;
                removed.push(dir);
            }
        }
        Ok(removed)
    }
}

/// Why checkpoints left a run's line: moved to `<run dir>/<reason>-<UTC time>/checkpoints/`,
/// never deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetAside {
    /// A start that does not go on from them (`resume: none`, or a named checkpoint).
    Replaced,
    /// A rollback after G dropped modes: those taken after the checkpoint it went back to.
    Collapsed,
}

impl SetAside {
    const ALL: [SetAside; 2] = [SetAside::Replaced, SetAside::Collapsed];

    fn prefix(self) -> &'static str {
        match self {
            SetAside::Replaced => "replaced-",
            SetAside::Collapsed => "collapsed-",
        }
    }

    /// A directory of `run_dir` for checkpoints set aside now, for this reason: named by the
    /// second, with `-2`, `-3`... when one of that second exists (two set-asides in a second
    /// would otherwise meet in one directory, and the second's move fail on the first's files).
    pub fn new_dir(self, run_dir: &Path) -> PathBuf {
        let base = format!("{}{}", self.prefix(), chrono::Utc::now().format("%Y%m%dT%H%M%SZ"));
        (1..)
            .map(|n| run_dir.join(if n == 1 { base.clone() } else { format!("{base}-{n}") }))
            .find(|dir| !dir.exists())
            .expect("a free name")
    }

    /// The checkpoints directories set aside in `run_dir`, in name order (by reason, then
    /// time), each with the steps it holds.
    pub fn list(run_dir: &Path) -> Result<Vec<(PathBuf, Vec<u64>)>> {
        let Ok(entries) = std::fs::read_dir(run_dir) else { return Ok(Vec::new()) };
        let mut found = Vec::new();
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let checkpoints = entry.path().join("checkpoints");
            if SetAside::ALL.iter().any(|r| name.starts_with(r.prefix())) && checkpoints.is_dir() {
                let steps =
                    Checkpoints::new(&checkpoints).list()?.into_iter().map(|(step, _)| step).collect();
                found.push((checkpoints, steps));
            }
        }
        found.sort();
        Ok(found)
    }
}

/// Which committed checkpoints survive a new commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// The newest this many.
    pub keep_last: usize,
    /// And the this many with the lowest FID in their manifests (0 = none by score).
    pub keep_best: usize,
    /// Kept whatever the above say: the checkpoint whose evaluation is still running in the
    /// background (its score decides once it arrives).
    pub hold: Option<u64>,
}

impl From<usize> for Retention {
    /// The newest `keep_last` only.
    fn from(keep_last: usize) -> Self {
        Retention { keep_last, keep_best: 0, hold: None }
    }
}

/// Resolves `checkpoint.init_from`: like [`resolve_user_path`], but a file gets its own
/// refusal, since the file a user most likely names is a G_ema file, which lacks D.
pub fn resolve_init_path(path: &Path) -> Result<PathBuf> {
    if path.is_file() {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            message: "is a file; checkpoint.init_from needs a checkpoint directory, a run directory or its \
                      checkpoints directory: a new run starts from G, D and G_ema, and a G_ema file holds no D"
                .into(),
        });
    }
    resolve_user_path(path)
}

/// What the launcher checks before any rank starts (and `sbatch` on the login node): the
/// checkpoints a start takes its state from are there. A named `resume` path must be, unless the
/// scheduler started the job again (`restarted`: it goes on from the run's own checkpoints
/// anyway); `init_from` only
/// while the run has none of its own to resume, since it is taken only then (a restart after the
/// source was deleted must still start).
pub fn check_start_paths(
    resume: &crate::config::ResumeFrom,
    init_from: Option<&Path>,
    run_dir: &Path,
    restarted: bool,
) -> Result<()> {
    use crate::config::ResumeFrom;
    if let (ResumeFrom::Path(path), false) = (resume, restarted) {
        resolve_user_path(path).map_err(named_by("checkpoint.resume"))?;
    }
    if let Some(init) = init_from {
        let resumes_own = *resume == ResumeFrom::Latest && !Checkpoints::of_run(run_dir).list()?.is_empty();
        if !resumes_own {
            resolve_init_path(init).map_err(named_by("checkpoint.init_from"))?;
        }
    }
    Ok(())
}

/// Adds the config key that named a checkpoint to the error about it.
fn named_by(key: &'static str) -> impl Fn(Error) -> Error {
    move |e| match e {
        Error::Checkpoint { path, message } => {
            Error::Checkpoint { path, message: format!("{message} (named by {key})") }
        }
        other => other,
    }
}

/// Resolves what a user names as a checkpoint: a checkpoint directory, a run's `checkpoints`
/// directory or a run directory (both meaning their newest valid checkpoint).
pub fn resolve_user_path(path: &Path) -> Result<PathBuf> {
    if path.join(super::MANIFEST_FILE).is_file() {
        return Ok(path.to_path_buf());
    }
    if path.is_file() {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            message:
                "is a file; expected a checkpoint directory (step-NNNNNNNN with a manifest.json), a run \
                      directory, or its checkpoints directory"
                    .into(),
        });
    }
    let checkpoints = Checkpoints::of_user_path(path);
    let mut reasons = Vec::new();
    match checkpoints.newest_valid(|dir, why| reasons.push(format!("{}: {why}", dir.display())))? {
        Some(v) => Ok(v.dir),
        None => Err(Error::Checkpoint {
            path: path.to_path_buf(),
            message: if reasons.is_empty() {
                "no checkpoint there (expected a step-NNNNNNNN directory with a manifest.json, a run \
                 directory, or its checkpoints directory)"
                    .into()
            } else {
                format!("no valid checkpoint there: {}", reasons.join("; "))
            },
        }),
    }
}
