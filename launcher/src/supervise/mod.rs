//! Starting and supervising the ranks of this node. All-or-nothing: when one rank fails the others
//! are stopped within seconds (SIGTERM, then SIGKILL after a grace period) and the failing rank's
//! exit code is passed on. Signals the launcher receives (INT, TERM, USR1, USR2, HUP) are forwarded to
//! every rank, which finish their step and shut down cleanly.
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use gan_core::config::RankPlan;
use gan_core::error::EXIT_REQUEUE;
use gan_core::host_malloc::Arenas;
use gan_core::launch_env::RankEnv;
use gan_core::{flight, heartbeat};

mod stuck;
mod trainer;

use crate::console::Console;
use crate::nodes::RemoteEvent;
use crate::rank_logs::RankLog;
use gan_core::metrics::{JobState, LauncherMetrics};
use signal_hook::consts::{SIGHUP, SIGINT, SIGKILL, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

/// How often the launcher looks at its ranks.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How often heartbeats are checked.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// How long to wait, after a rank fails, for the others that fail because of it.
const FAILURE_SETTLE: Duration = Duration::from_secs(1);
/// How long ranks get to exit after SIGTERM before SIGKILL.
const GRACE_PERIOD: Duration = Duration::from_secs(10);

pub use stuck::Watchdog;
use stuck::{fail_stuck, most_stuck};
pub use trainer::{trainer_command, trainer_path, trainer_report};

/// What to start for one rank.
pub struct RankSpec {
    pub plan: RankPlan,
    pub env: RankEnv,
    /// Variables besides torchrun's, e.g. the store token.
    pub extra_env: Vec<(String, String)>,
    /// The rank's log file.
    pub log_path: PathBuf,
    /// The console, when it shows this rank's lines.
    pub echo: Option<Console>,
    /// Where the rank beats its heartbeat.
    pub heartbeat_path: PathBuf,
}

/// How a group of ranks ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupExit {
    /// Every rank finished training.
    Finished,
    /// Every rank stopped cleanly after a checkpoint: preempted (the requeue code 75), or on
    /// another signal the launcher forwarded (128 + signal).
    Stopped(u8),
    /// A rank failed or got stuck (or another node failed); the group was torn down. The code
    /// to pass on and what happened.
    Failed { code: u8, reason: String },
}

/// A running rank.
struct Rank {
    rank: u32,
    world_size: u32,
    child: Child,
    log: RankLog,
    exited: Option<ExitStatus>,
    started: Instant,
    heartbeat_path: PathBuf,
    console: Option<Console>,
}

impl Rank {
    /// Polls the process once; true when it has exited (now or before).
    fn poll(&mut self) -> bool {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited.is_some()
    }

    fn failed(&self) -> bool {
        self.exited.is_some_and(|s| exit_code(s) != 0)
    }
}

/// The signals a launcher forwards to its ranks; create once, before the first rank starts.
/// SIGHUP (the terminal's session ended) is one: by default it would kill the launcher, and its
/// ranks with it, without a checkpoint.
pub fn forwarded_signals() -> anyhow::Result<Signals> {
    Signals::new([SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGHUP]).context("installing signal handlers")
}

/// The launchers of other nodes, as supervision sees them.
pub trait Peers {
    /// What other nodes reported since the last call (a failure, or a signal to pass on).
    fn poll(&mut self) -> Option<RemoteEvent>;
    /// This launcher received `signal`; the other nodes should pass it to their ranks too.
    fn signalled(&mut self, signal: i32);
    /// This node's ranks failed for `reason`; told before they are stopped, so the other nodes,
    /// whose ranks fail in turn when their peers go, learn the cause before their own failure.
    fn failed(&mut self, reason: &str);
}

/// Starts every rank, supervises them, and says how the group ended.
pub fn run_ranks(
    trainer: &Path,
    config: &Path,
    specs: Vec<RankSpec>,
    signals: &mut Signals,
    watchdog: Watchdog,
    peers: &mut dyn Peers,
    metrics: Option<&LauncherMetrics>,
) -> anyhow::Result<GroupExit> {
    let mut ranks: Vec<Rank> = Vec::new();
    for spec in &specs {
        match spawn(trainer, config, spec) {
            Ok(rank) => ranks.push(rank),
            Err(err) => {
                stop_all(&mut ranks, SIGTERM);
                return Err(err);
            }
        }
    }
    if let Some(m) = metrics {
        m.set_state(JobState::Running);
    }
    let exit = supervise(&mut ranks, signals, watchdog, peers, metrics)?;
    if let Some(m) = metrics {
        update_metrics(m, &mut ranks);
        m.set_state(match exit {
            GroupExit::Finished => JobState::Finished,
            GroupExit::Stopped(_) => JobState::Stopping,
            GroupExit::Failed { .. } => JobState::Failed,
        });
    }
    ranks.iter_mut().for_each(|r| r.log.finish());
    if let Some(console) = ranks.iter().find_map(|r| r.console.as_ref()) {
        console.finish();
    }
    Ok(exit)
}

fn supervise(
    ranks: &mut [Rank],
    signals: &mut Signals,
    watchdog: Watchdog,
    peers: &mut dyn Peers,
    metrics: Option<&LauncherMetrics>,
) -> anyhow::Result<GroupExit> {
    let mut forwarded: Option<i32> = None;
    let mut final_code = 0u8;
    let mut last_watch = Instant::now();
    loop {
        for signal in signals.pending() {
            if signal == SIGHUP {
                crate::console::detach_from_terminal();
            }
            forward(ranks, signal);
            peers.signalled(signal);
            forwarded = Some(signal);
        }
        for i in 0..ranks.len() {
            if ranks[i].exited.is_some() || !ranks[i].poll() {
                continue;
            }
            let (rank, status) = (ranks[i].rank, ranks[i].exited.expect("polled"));
            let code = exit_code(status);
            if code == 0 {
                tracing::info!(rank, "rank {rank} finished");
            } else if i32::from(code) == EXIT_REQUEUE {
                // Preempted (by our forwarded signal or one sent to a rank): it checkpointed at the
                // step all ranks agreed on, and the others are doing the same.
                tracing::info!(rank, code, "rank {rank} stopped for a preemption and asks to be requeued");
                final_code = code;
            } else if forwarded.is_some_and(|signal| i32::from(code) == 128 + signal) {
                // A clean stop on the signal we passed on; the other ranks are stopping too.
                tracing::info!(rank, code, "rank {rank} stopped on the forwarded signal");
                final_code = code;
            } else {
                let (code, reason) = fail_job(ranks, i);
                // A rank whose peer on another node was stopped fails too; when that node told its
                // failure first, that is the cause.
                if let Some(RemoteEvent::Failed(why)) = peers.poll() {
                    tracing::error!("another node failed first: {why}");
                    return Ok(GroupExit::Failed { code, reason: why });
                }
                peers.failed(&reason);
                return Ok(GroupExit::Failed { code, reason });
            }
        }
        if ranks.iter().all(|r| r.exited.is_some()) {
            return Ok(if final_code == 0 { GroupExit::Finished } else { GroupExit::Stopped(final_code) });
        }
        let watch_due = last_watch.elapsed() >= WATCH_INTERVAL;
        if let (true, Some(m)) = (watch_due, metrics) {
            update_metrics(m, ranks);
            if forwarded.is_some() || final_code != 0 {
                m.set_state(JobState::Stopping);
            }
        }
        if watch_due {
            // The bar follows the first echoed rank's heartbeat (rank 0 on node 0).
            if let Some(rank) = ranks.iter().find(|r| r.console.is_some()) {
                rank.console.as_ref().expect("checked").update(&rank.heartbeat_path);
            }
        }
        // Once the ranks are stopping on a signal, other nodes (and node 0's store, which may go
        // away first) have nothing more to tell this node.
        let stopping = forwarded.is_some() || final_code != 0;
        if watch_due && !stopping {
            last_watch = Instant::now();
            match peers.poll() {
                Some(RemoteEvent::Failed(why)) => {
                    tracing::error!("another node failed ({why}); stopping this node's ranks");
                    stop_all(ranks, SIGTERM);
                    return Ok(GroupExit::Failed { code: 1, reason: why });
                }
                Some(RemoteEvent::Signal(signal)) => {
                    forward(ranks, signal);
                    forwarded = Some(signal);
                }
                _ => {}
            }
        }
        // Heartbeats are not judged while ranks shut down on a signal (writing a checkpoint).
        if watch_due && !stopping {
            if let Some((i, why)) = most_stuck(ranks, watchdog) {
                return Ok(GroupExit::Failed { code: 1, reason: fail_stuck(ranks, i, why, watchdog, peers) });
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Ranks alive; each rank's progress (what the watchdog judges), and from its flight record how
/// long it has been inside a collective of each process group.
fn update_metrics(m: &LauncherMetrics, ranks: &mut [Rank]) {
    let alive = ranks.iter_mut().map(|r| !r.poll()).filter(|&running| running).count();
    m.ranks_alive.set(alive as f64);
    for rank in ranks.iter() {
        let label = rank.rank.to_string();
        let record = flight::read(&flight::path_beside(&rank.heartbeat_path));
        if let Some((step, age)) = stuck::progress(heartbeat::read(&rank.heartbeat_path), record.as_ref()) {
            m.heartbeat_age_seconds.with_label_values(&[&label]).set(age.as_secs_f64());
            m.rank_step.with_label_values(&[&label]).set(step as f64);
        }
        if let Some((record, age)) = record.filter(|(r, age)| !r.is_stale(*age)) {
            for track in &record.tracks {
                let waiting = match &track.last {
                    Some(call) if track.in_flight() => call.secs_since_start + age.as_secs_f64(),
                    _ => 0.0,
                };
                m.collective_wait_seconds.with_label_values(&[&label, &track.name]).set(waiting);
            }
        }
    }
}

/// Stops the job after rank `first` failed and returns the exit code to pass on. Peers of a dead
/// rank fail soon after it (their collectives lose the connection), so the ranks that end within
/// a moment are collected and the root cause named: a rank killed by a signal over one that exited
/// with an error, else the first seen. Its last log lines are shown.
fn fail_job(ranks: &mut [Rank], first: usize) -> (u8, String) {
    let settle_until = Instant::now() + FAILURE_SETTLE;
    while Instant::now() < settle_until && ranks.iter().any(|r| r.exited.is_none()) {
        ranks.iter_mut().for_each(|r| {
            r.poll();
        });
        std::thread::sleep(POLL_INTERVAL);
    }
    let failed: Vec<usize> = (0..ranks.len()).filter(|&i| ranks[i].failed()).collect();
    let killed = |i: &usize| ranks[*i].exited.is_some_and(|s| s.signal().is_some());
    let root = failed.iter().copied().find(killed).unwrap_or(first);
    let status = ranks[root].exited.expect("the root rank has exited");
    let host = stuck::hostname();
    let rank = ranks[root].rank;
    let others: Vec<u32> = failed.iter().filter(|&&i| i != root).map(|&i| ranks[i].rank).collect();
    stop_all(ranks, SIGTERM);
    ranks[root].log.finish();
    let last_lines = ranks[root].log.tail();
    let reason = format!("rank {rank} on {host} failed ({status})");
    tracing::error!(
        rank,
        host = %host,
        "{reason}; stopping the job{}. Its last log lines:\n{}",
        if others.is_empty() { String::new() } else { format!(" (ranks {others:?} failed after it)") },
        if last_lines.is_empty() { "  (none)".to_string() } else { last_lines.join("\n") }
    );
    (exit_code(status), reason)
}

fn forward(ranks: &[Rank], signal: i32) {
    tracing::warn!(signal, "forwarding signal to {} rank(s)", ranks.len());
    for rank in ranks.iter().filter(|r| r.exited.is_none()) {
        send(&rank.child, signal);
    }
}

fn spawn(trainer: &Path, config: &Path, spec: &RankSpec) -> anyhow::Result<Rank> {
    let mut command = trainer_command(trainer, Arenas::for_device(&spec.plan.device));
    command.arg(config).arg("--resolved").envs(spec.env.to_vars()).envs(spec.extra_env.iter().cloned());
    // One libtorch thread pool per rank, sized to its share of the cores (no oversubscription).
    command.env("OMP_NUM_THREADS", spec.plan.threads.to_string());
    command.env(heartbeat::HEARTBEAT_ENV, &spec.heartbeat_path);
    // A heartbeat (or flight record) left by an earlier attempt must not count for this one.
    let _ = std::fs::remove_file(&spec.heartbeat_path);
    let _ = std::fs::remove_file(flight::path_beside(&spec.heartbeat_path));
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
    command.stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("starting rank {} ({})", spec.plan.rank, trainer.display()))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let log = RankLog::capture(stderr, &spec.log_path, spec.echo.clone())?;
    Ok(Rank {
        rank: spec.plan.rank,
        world_size: spec.env.world_size,
        child,
        log,
        exited: None,
        started: Instant::now(),
        heartbeat_path: spec.heartbeat_path.clone(),
        console: spec.echo.clone(),
    })
}

fn send(child: &Child, signal: i32) {
    // The child may have exited already; ESRCH is fine.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
}

/// Sends `signal` to every rank still running, waits up to the grace period, then kills the rest.
fn stop_all(ranks: &mut [Rank], signal: i32) {
    // Never signal a reaped child: its pid may belong to another process by now.
    for rank in ranks.iter_mut() {
        if !rank.poll() {
            send(&rank.child, signal);
        }
    }
    let deadline = Instant::now() + GRACE_PERIOD;
    for rank in ranks.iter_mut() {
        while !rank.poll() {
            if Instant::now() >= deadline {
                tracing::warn!(
                    rank = rank.rank,
                    "rank {} ignored SIGTERM for {GRACE_PERIOD:?}; killing it",
                    rank.rank
                );
                let _ = rank.child.kill();
                rank.exited = rank.child.wait().ok();
                break;
            }
            std::thread::sleep(POLL_INTERVAL);
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
