//! Starting and supervising the ranks of this node. All-or-nothing: when one rank fails the others
//! are stopped within seconds (SIGTERM, then SIGKILL after a grace period) and the failing rank's
//! exit code is passed on. Signals the launcher receives (INT, TERM, USR1, USR2) are forwarded to
//! every rank, which finish their step and shut down cleanly.
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::Context;
use gan_core::config::RankPlan;
use gan_core::launch_env::RankEnv;
use gan_core::Error;
use signal_hook::consts::{SIGINT, SIGKILL, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

/// How often the launcher looks at its ranks.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long to wait, after a rank fails, for the others that fail because of it.
const FAILURE_SETTLE: Duration = Duration::from_secs(1);
/// How long ranks get to exit after SIGTERM before SIGKILL.
const GRACE_PERIOD: Duration = Duration::from_secs(10);
/// Name of the trainer binary installed beside `gan-launch`.
const TRAINER_NAME: &str = "gan-train";

/// What to start for one rank.
pub struct RankSpec {
    pub plan: RankPlan,
    pub env: RankEnv,
    /// Variables besides torchrun's, e.g. the store token.
    pub extra_env: Vec<(String, String)>,
}

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

/// Starts every rank, supervises them, and returns the exit code the launcher should exit with.
pub fn run_ranks(trainer: &Path, config: &Path, ranks: Vec<RankSpec>) -> anyhow::Result<u8> {
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGUSR1, SIGUSR2]).context("installing signal handlers")?;
    let mut children: Vec<(u32, Child)> = Vec::new();
    for spec in &ranks {
        match spawn(trainer, config, spec) {
            Ok(child) => children.push((spec.plan.rank, child)),
            Err(err) => {
                stop_all(&mut children, SIGTERM);
                return Err(err);
            }
        }
    }
    let mut exited: Vec<Option<ExitStatus>> = vec![None; children.len()];
    let mut forwarded: Option<i32> = None;
    let mut final_code = 0u8;
    loop {
        for signal in signals.pending() {
            tracing::warn!(signal, "forwarding signal to {} rank(s)", children.len());
            for (i, (_, child)) in children.iter().enumerate() {
                if exited[i].is_none() {
                    send(child, signal);
                }
            }
            forwarded = Some(signal);
        }
        for (i, (rank, child)) in children.iter_mut().enumerate() {
            if exited[i].is_some() {
                continue;
            }
            let Some(status) = child.try_wait().context("waiting for a rank")? else { continue };
            exited[i] = Some(status);
            let code = exit_code(status);
            if code == 0 {
                tracing::info!(rank = *rank, "rank {rank} finished");
            } else if forwarded.is_some_and(|signal| i32::from(code) == 128 + signal) {
                // A clean stop on the signal we passed on; the other ranks are stopping too.
                tracing::info!(rank = *rank, code, "rank {rank} stopped on the forwarded signal");
                final_code = code;
            } else {
                return Ok(fail_job(&mut children, &mut exited, i));
            }
        }
        if exited.iter().all(Option::is_some) {
            return Ok(final_code);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Stops the job after rank `first` failed and returns the exit code to pass on. Peers of a dead
/// rank fail soon after it (their collectives lose the connection), so the ranks that end within
/// a moment are collected and the root cause named: a rank killed by a signal over one that exited
/// with an error, else the first seen.
fn fail_job(children: &mut [(u32, Child)], exited: &mut [Option<ExitStatus>], first: usize) -> u8 {
    let settle_until = Instant::now() + FAILURE_SETTLE;
    while Instant::now() < settle_until && exited.iter().any(Option::is_none) {
        for (i, (_, child)) in children.iter_mut().enumerate() {
            if exited[i].is_none() {
                exited[i] = child.try_wait().ok().flatten();
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    let failed: Vec<usize> =
        (0..children.len()).filter(|&i| exited[i].is_some_and(|s| exit_code(s) != 0)).collect();
    let root =
        failed.iter().copied().find(|&i| exited[i].is_some_and(|s| s.signal().is_some())).unwrap_or(first);
    let status = exited[root].expect("the root rank has exited");
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let rank = children[root].0;
    let others: Vec<u32> = failed.iter().filter(|&&i| i != root).map(|&i| children[i].0).collect();
    tracing::error!(
        rank,
        host = %host,
        "rank {rank} on {host} failed ({status}); stopping the job{}",
        if others.is_empty() { String::new() } else { format!(" (ranks {others:?} failed after it)") }
    );
    stop_all(children, SIGTERM);
    exit_code(status)
}

fn spawn(trainer: &Path, config: &Path, spec: &RankSpec) -> anyhow::Result<Child> {
    let mut command = Command::new(trainer);
    command.arg(config).arg("--resolved").envs(spec.env.to_vars()).envs(spec.extra_env.iter().cloned());
    // One libtorch thread pool per rank, sized to its share of the cores (no oversubscription).
    command.env("OMP_NUM_THREADS", spec.plan.threads.to_string());
    // Ranks get their own process group, so a terminal's Ctrl-C reaches only the launcher, which
    // forwards it once; and they die with the launcher rather than outlive it as orphans.
    command.process_group(0);
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().with_context(|| format!("starting rank {} ({})", spec.plan.rank, trainer.display()))
}

fn send(child: &Child, signal: i32) {
    // The child may have exited already; ESRCH is fine.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
}

/// Sends `signal` to every rank still running, waits up to the grace period, then kills the rest.
fn stop_all(children: &mut [(u32, Child)], signal: i32) {
    for (_, child) in children.iter_mut() {
        // Never signal a reaped child: its pid may belong to another process by now.
        if let Ok(None) = child.try_wait() {
            send(child, signal);
        }
    }
    let deadline = Instant::now() + GRACE_PERIOD;
    for (rank, child) in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    tracing::warn!(
                        rank = *rank,
                        "rank {rank} ignored SIGTERM for {GRACE_PERIOD:?}; killing it"
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(POLL_INTERVAL),
            }
        }
    }
}

/// A process's exit code, with death by signal N reported as 128 + N like a shell does.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.saturating_add(signal as u8),
        (None, None) => 1,
    }
}
