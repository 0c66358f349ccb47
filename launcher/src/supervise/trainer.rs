//! The trainer binary (`gan-train`, installed beside `gan-launch`): where it is, the command that
//! starts it with the host memory settings its tensors want, and its reports on a config (what
//! only a binary that builds the networks can tell).
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use gan_core::config::{self, RunConfig};
use gan_core::host_malloc::Arenas;
use gan_core::Error;

/// Name of the trainer binary installed beside `gan-launch`.
const TRAINER_NAME: &str = "gan-train";

/// The trainer binary: an explicit path, or `gan-train` next to this executable.
pub fn trainer_path(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe().context("locating gan-launch")?.with_file_name(TRAINER_NAME),
    };
    if !path.is_file() {
        return Err(Error::Env(format!(
            "trainer binary {} not found; build it with `cargo build` (it is installed beside gan-launch)",
            path.display()
        ))
        .into());
    }
    Ok(path)
}

/// A command that runs the trainer, with the malloc settings its tensors want (glibc tunables
/// that keep freed host memory for the next step, and for `Arenas::One` on every thread:
/// `gan_core::host_malloc`). The tools (`sample`, `eval`) compute on their main thread.
pub fn trainer_command(trainer: &Path, arenas: Arenas) -> Command {
    let mut command = Command::new(trainer);
    command.envs(gan_core::host_malloc::trainer_env_here(arenas));
    command
}

/// Runs `gan-train <tool> CONFIG --resolved` on `cfg` as resolved here, and reads the JSON report
/// it prints; its error output is the error.
pub fn trainer_report<T: serde::de::DeserializeOwned>(
    trainer: &Path,
    tool: &str,
    cfg: &RunConfig,
) -> anyhow::Result<T> {
    let resolved = std::env::temp_dir().join(format!("gan-launch-{tool}-{}.yaml", std::process::id()));
    config::save_resolved(cfg, &resolved)?;
    let out = Command::new(trainer).arg(tool).arg(&resolved).arg("--resolved").output();
    let _ = std::fs::remove_file(&resolved);
    let out = out.with_context(|| format!("running {}", trainer.display()))?;
    if !out.status.success() {
        anyhow::bail!("gan-train {tool} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("reading gan-train {tool}'s report"))
}
