//! Telling a stuck rank from the ranks that wait for it. A rank is stuck when its heartbeat ages
//! past the watchdog's limit; as its peers stall with it in a collective, the node's flight
//! records decide which one to blame: a stopped process, else the rank that has not reached the
//! collective the others wait in, else the rank furthest behind.
use std::time::Duration;

use gan_core::{flight, heartbeat};
use signal_hook::consts::SIGTERM;

use super::{stop_all, Peers, Rank};

/// How long a rank may go without progress before it counts as stuck.
#[derive(Clone, Copy, Debug)]
pub struct Watchdog {
    /// Between heartbeats once training runs.
    pub heartbeat_timeout: Duration,
    /// Until the first heartbeat (libtorch start-up, rendezvous, model building).
    pub startup_timeout: Duration,
}

impl Rank {
    /// See [`progress`].
    fn progress(&self) -> Option<(u64, Duration)> {
        let record = flight::read(&flight::path_beside(&self.heartbeat_path));
        progress(heartbeat::read(&self.heartbeat_path), record.as_ref())
    }

    /// Why this rank counts as stuck, if it does, with its last step (for picking the culprit).
    fn stuck(&self, watchdog: Watchdog) -> Option<(String, u64)> {
        match self.progress() {
            Some((step, age)) if age > watchdog.heartbeat_timeout => {
                // A large model on a CPU can legitimately take longer than the timeout per step.
                let state = if self.is_stopped() {
                    "stopped (SIGSTOP?)"
                } else {
                    "hung, or waiting in a collective (if one step really takes this long, raise dist.heartbeat_timeout_secs)"
                };
                Some((format!("made no progress for {age:.0?} (at step {step}): {state}"), step))
            }
            None if self.started.elapsed() > watchdog.startup_timeout => {
                Some((format!("did not start training within {:.0?}", watchdog.startup_timeout), 0))
            }
            _ => None,
        }
    }

    /// Whether the process is stopped by a signal (state T in /proc/<pid>/stat).
    fn is_stopped(&self) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The state follows the parenthesised command name, which may itself contain spaces.
        stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
    }
}

/// The step a rank is at and how long ago it last moved on, once it has beaten its first
/// heartbeat. Beats come at step ends, at most one a second, so they lag; its flight record (and
/// how old the record is) has the step it is at and when it last changed activity or started a
/// training collective.
pub(super) fn progress(
    beat: Option<heartbeat::Beat>,
    record: Option<&(flight::FlightRecord, Duration)>,
) -> Option<(u64, Duration)> {
    let beat = beat?;
    Some(record.map_or((beat.step, beat.age), |(r, record_age)| {
        (r.step, r.since_progress(*record_age).min(beat.age))
    }))
}

/// The stuck rank to blame. When one rank stalls its peers stall too, waiting for it in a
/// collective; the culprit is a stopped process if there is one, else the rank furthest behind.
pub(super) fn most_stuck(ranks: &[Rank], watchdog: Watchdog) -> Option<(usize, String)> {
    let stuck: Vec<(usize, String, u64)> = ranks
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.stuck(watchdog).map(|(why, step)| (i, why, step)))
        .collect();
    stuck.into_iter().min_by_key(|(i, _, step)| (!ranks[*i].is_stopped(), *step)).map(|(i, why, _)| (i, why))
}

/// Stops the job because rank `i` is stuck. The flight records may show that another rank holds
/// it up (it waits in a collective that rank has not reached); then that one is blamed, also when
/// it runs on another node (that node's launcher stops it when this failure reaches it). The
/// blamed local rank is killed outright (a stopped or hung process would not act on SIGTERM), the
/// others are stopped as usual; where each rank was, and the blamed rank's last log lines, are
/// logged.
pub(super) fn fail_stuck(
    ranks: &mut [Rank],
    i: usize,
    why: String,
    watchdog: Watchdog,
    peers: &mut dyn Peers,
) -> String {
    let views = flight_views(ranks);
    let diagnosis = flight::diagnose(&views);
    let blamed = diagnosis.culprit.map(|c| views[c].rank).filter(|&r| r != ranks[i].rank);
    let (i, why) = match blamed.map(|r| ranks.iter().position(|local| local.rank == r)) {
        Some(Some(c)) => {
            (c, ranks[c].stuck(watchdog).map_or_else(|| "holds up the other ranks".to_string(), |s| s.0))
        }
        Some(None) => return fail_remote(ranks, blamed.expect("matched"), &diagnosis, peers),
        None => (i, why),
    };
    let (rank, host) = (ranks[i].rank, hostname());
    let reason = format!("rank {rank} on {host} {why}; {}", diagnosis.finding);
    peers.failed(&reason);
    let threads = thread_states(ranks[i].child.id());
    let _ = ranks[i].child.kill();
    ranks[i].exited = ranks[i].child.wait().ok();
    ranks[i].log.finish();
    let last_lines = ranks[i].log.tail();
    tracing::error!(
        rank,
        host = %host,
        "{reason}; stopping the job. Where each rank was:\n  {}\n\
         Rank {rank}'s threads (state, kernel wait): {threads}\nRank {rank}'s last log lines:\n{}",
        diagnosis.table.join("\n  "),
        if last_lines.is_empty() { "  (none)".to_string() } else { last_lines.join("\n") }
    );
    stop_all(ranks, SIGTERM);
    reason
}

/// The rank holding this node's ranks up runs on another node: this node stops its own ranks and
/// tells the others why; that node's launcher stops the blamed rank.
fn fail_remote(
    ranks: &mut [Rank],
    remote: u32,
    diagnosis: &flight::Diagnosis,
    peers: &mut dyn Peers,
) -> String {
    let host = hostname();
    let reason = format!("rank {remote} on another node holds up the ranks of {host}; {}", diagnosis.finding);
    tracing::error!(host = %host, "{reason}; stopping the job. Where each rank was:\n  {}", diagnosis.table.join("\n  "));
    peers.failed(&reason);
    stop_all(ranks, SIGTERM);
    reason
}

pub(super) fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// What the launcher knows of each rank's whereabouts: its own ranks' records, and those of the
/// other nodes' ranks that it can read fresh. (Multi-node runs share the run directory. A record
/// of another node that is missing or old says nothing here: that node may not share the
/// directory, or its clock may differ; its own launcher judges its ranks.)
fn flight_views(ranks: &[Rank]) -> Vec<flight::RankView> {
    let mut views: Vec<flight::RankView> = ranks
        .iter()
        .map(|r| flight::RankView {
            rank: r.rank,
            record: flight::read(&flight::path_beside(&r.heartbeat_path)),
            process: match r.exited {
                Some(_) => flight::Process::Exited,
                None if r.is_stopped() => flight::Process::Stopped,
                None => flight::Process::Live,
            },
        })
        .collect();
    let Some((first, dir)) = ranks.first().and_then(|r| Some((r, r.heartbeat_path.parent()?))) else {
        return views;
    };
    for rank in (0..first.world_size).filter(|r| ranks.iter().all(|local| local.rank != *r)) {
        let path = flight::path_beside(&heartbeat::rank_file(dir, rank));
        if let Some(record) = flight::read(&path).filter(|(r, age)| !r.is_stale(*age)) {
            views.push(flight::RankView { rank, record: Some(record), process: flight::Process::Live });
        }
    }
    views.sort_by_key(|v| v.rank);
    views
}

/// The kernel's view of a process's threads, grouped: name, state and wait channel, e.g.
/// "gan-train S hrtimer_nanosleep, 2x gan-train S futex_wait_queue". The wait channel is the
/// innermost kernel frame, which tells a thread blocked on a socket, a lock, a disk or a driver
/// call apart when no user-space stack can be had.
fn thread_states(pid: u32) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return "(unreadable)".into() };
    let mut groups: Vec<(String, usize)> = Vec::new();
    for task in tasks.filter_map(|t| t.ok()) {
        let read = |name: &str| std::fs::read_to_string(task.path().join(name)).unwrap_or_default();
        let stat = read("stat");
        let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.get(..1)).unwrap_or("?").to_string();
        let wchan = match read("wchan").trim() {
            "" | "0" => "-".to_string(),
            w => w.to_string(),
        };
        let key = format!("{} {state} {wchan}", read("comm").trim());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => groups.push((key, 1)),
        }
    }
    let each: Vec<String> =
        groups.into_iter().map(|(k, n)| if n == 1 { k } else { format!("{n}x {k}") }).collect();
    each.join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn threads_show_their_state_and_kernel_wait() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let states = loop {
            let states = super::thread_states(child.id());
            if states.starts_with("sleep S") || std::time::Instant::now() > deadline {
                break states;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(states.starts_with("sleep S "), "one sleeping thread: {states}");
        assert_eq!(super::thread_states(u32::MAX), "(unreadable)");
    }
}
