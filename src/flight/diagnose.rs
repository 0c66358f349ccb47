//! The launcher side: when a rank stops making progress, the flight records of the ranks it can
//! read say who holds up whom. Ranks make the same collectives in the same order within a
//! process group, so a rank waiting in collective #k is waiting for one that has not started #k;
//! that rank, and what it is doing instead, is the finding (the training group is looked at
//! first, then background evaluation's). Ranks waiting in #k with different calls disagree on the
//! order of collectives, which is a bug worth its own message.
use std::time::Duration;

use super::record::{FlightRecord, TrackRecord, TRAIN_TRACK};

/// What the launcher knows about one of its ranks.
#[derive(Clone, Debug)]
pub struct RankView {
    pub rank: u32,
    /// The last flight record and its age; None before the rank wrote one.
    pub record: Option<(FlightRecord, Duration)>,
    pub process: Process,
}

/// What the launcher can see of a rank's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Process {
    /// Running, or not visible from here (another node's rank): its record's age decides.
    Live,
    /// Stopped by a signal (SIGSTOP, a debugger).
    Stopped,
    /// Exited (a rank that finished, say): its record is old, and rightly so.
    Exited,
}

impl RankView {
    fn fresh(&self) -> Option<&FlightRecord> {
        let live = self.process == Process::Live && self.ended().is_none();
        self.record.as_ref().filter(|(r, age)| !r.is_stale(*age) && live).map(|(r, _)| r)
    }

    /// How the rank ended, when its last record says it did ("finished at step 47", ...).
    pub fn ended(&self) -> Option<&str> {
        self.record.as_ref().and_then(|(r, _)| r.exit.as_deref())
    }

    /// The rank no longer runs: it ended, its process is gone, or its record stopped changing.
    pub fn is_gone(&self) -> bool {
        self.ended().is_some()
            || self.process == Process::Exited
            || self.record.as_ref().is_some_and(|(r, age)| r.is_stale(*age))
    }

    fn track(&self, name: &str) -> Option<&TrackRecord> {
        self.fresh()?.tracks.iter().find(|t| t.name == name)
    }
}

/// The verdict on a stuck node.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnosis {
    /// Index (into the views) of the rank that holds up the others, when the records show one.
    pub culprit: Option<usize>,
    /// What the records show, as one sentence.
    pub finding: String,
    /// One line per rank: where it is.
    pub table: Vec<String>,
}

/// Reads the records of a node's ranks.
pub fn diagnose(views: &[RankView]) -> Diagnosis {
    let (culprit, finding) = find_culprit(views);
    Diagnosis { culprit, finding, table: views.iter().map(describe).collect() }
}

fn find_culprit(views: &[RankView]) -> (Option<usize>, String) {
    if let Some(i) = views.iter().position(|v| v.process == Process::Stopped) {
        return (Some(i), format!("rank {} is stopped (SIGSTOP?); the others wait for it", views[i].rank));
    }
    if views.iter().all(|v| v.ended().is_some()) && !views.is_empty() {
        return (None, format!("every rank has ended: {}", ends(views)));
    }
    // Ranks that are gone: ended (the last record says how), exited without a last record
    // (killed), or silent (the record stopped changing: frozen). The one gone first is the cause;
    // the others failed or were stopped after it (a rank killed mid-collective leaves its peers
    // failing on the broken connection).
    let gone = views.iter().enumerate().filter(|(_, v)| v.process != Process::Stopped && v.is_gone());
    if let Some((i, v, age)) =
        gone.filter_map(|(i, v)| Some((i, v, v.record.as_ref()?.1))).max_by_key(|g| g.2)
    {
        let finding = match v.ended() {
            Some(how) => format!("rank {} has ended ({how}); the others wait for it", v.rank),
            None if v.process == Process::Exited => {
                format!("rank {}'s process exited without a last record (killed?)", v.rank)
            }
            None => format!(
                "rank {}'s whole process has not run for {age:.0?} (its flight record stopped; frozen, or \
                 swapping)",
                v.rank
            ),
        };
        return (Some(i), finding);
    }
    // The training group first: every step uses it. Then the others (background evaluation's),
    // whose threads can hold up the training thread where it waits for them.
    let mut names: Vec<&str> = views
        .iter()
        .filter_map(|v| v.fresh())
        .flat_map(|r| r.tracks.iter())
        .map(|t| t.name.as_str())
        .collect();
    names.sort_by_key(|name| (*name != TRAIN_TRACK, *name));
    names.dedup();
    names
        .iter()
        .find_map(|name| waiting_in(views, name))
        .unwrap_or_else(|| no_rank_waits(views, &members(views, TRAIN_TRACK)))
}

/// Each rank with a fresh record of group `name`, with that record.
fn members<'a>(views: &'a [RankView], name: &str) -> Vec<(usize, &'a TrackRecord)> {
    views.iter().enumerate().filter_map(|(i, v)| v.track(name).map(|t| (i, t))).collect()
}

/// The finding when some rank waits inside a collective of group `name`: the rank that has not
/// reached it, or a mismatch, or that the rank holding them up has no record here. None when no
/// rank waits in this group.
fn waiting_in(views: &[RankView], name: &str) -> Option<(Option<usize>, String)> {
    let members = members(views, name);
    let waiting: Vec<(usize, &TrackRecord)> =
        members.iter().copied().filter(|(_, t)| t.in_flight()).collect();
    let seq = waiting.iter().map(|(_, t)| t.started).max()?;
    let waiters: Vec<u32> =
        waiting.iter().filter(|(_, t)| t.started == seq).map(|(i, _)| views[*i].rank).collect();
    if let Some(mismatch) = mismatch(views, &waiting, name, seq) {
        return Some((None, mismatch));
    }
    let behind =
        members.iter().filter(|(_, t)| t.started < seq).min_by_key(|(_, t)| (t.in_flight(), t.started));
    Some(match behind {
        Some(&(i, t)) => {
            let state = if t.in_flight() {
                format!("waits in {name} collective #{} instead", t.started)
            } else {
                format!("is {}", doing(&views[i]))
            };
            let rank = views[i].rank;
            let waiters = list(&waiters);
            (Some(i), format!("rank {rank} has not reached {name} collective #{seq}, which rank(s) {waiters} wait in; it {state}"))
        }
        None => {
            let call = waiting[0].1.last.as_ref().map_or_else(String::new, |c| format!(" ({})", c.call()));
            (
                None,
                format!(
                    "every rank with a fresh record waits in {name} collective #{seq}{call}: the rank holding \
                     them up is one without (on another node), or the connection between ranks is stuck"
                ),
            )
        }
    })
}

/// Ranks waiting in the same collective with different calls: they disagree on the order of
/// collectives.
fn mismatch(views: &[RankView], waiting: &[(usize, &TrackRecord)], name: &str, seq: u64) -> Option<String> {
    let calls: Vec<(u32, String)> = waiting
        .iter()
        .filter(|(_, t)| t.started == seq)
        .filter_map(|(i, t)| t.last.as_ref().map(|c| (views[*i].rank, c.call())))
        .collect();
    if calls.iter().all(|(_, c)| *c == calls[0].1) {
        return None;
    }
    let each: Vec<String> = calls.iter().map(|(rank, call)| format!("rank {rank} {call}")).collect();
    Some(format!(
        "the ranks called different collectives as {name} collective #{seq} ({}): they disagree on the order \
         of collectives, which is a bug in gan-launch; please report it with these lines",
        each.join(", ")
    ))
}

/// No rank is inside a host collective. With NCCL a collective only queues work on the GPU, and
/// a rank waiting for a peer blocks later, in whatever synchronises with the GPU: then the rank
/// that has started fewer collectives than the others is the one they wait for. With equal
/// counts each rank is stuck in its own work.
fn no_rank_waits(views: &[RankView], trains: &[(usize, &TrackRecord)]) -> (Option<usize>, String) {
    let most = trains.iter().map(|(_, t)| t.started).max().unwrap_or(0);
    if let Some(&(i, t)) = trains.iter().min_by_key(|(_, t)| t.started).filter(|(_, t)| t.started < most) {
        let ahead: Vec<u32> =
            trains.iter().filter(|(_, t)| t.started == most).map(|(j, _)| views[*j].rank).collect();
        let finding = format!(
            "no rank waits in a host collective, but rank {} has started {} train collectives and rank(s) {} \
             {most}: those queued #{most} (with NCCL, on the GPU) and wait for it wherever they next synchronise; \
             rank {} is {}",
            views[i].rank,
            t.started,
            list(&ahead),
            views[i].rank,
            doing(&views[i])
        );
        return (Some(i), finding);
    }
    let finding = if views.iter().all(|v| v.record.is_none()) {
        "no rank has written a flight record yet"
    } else {
        "no rank waits in a collective, and all have started as many: the stuck rank is stuck in its own work \
         (see its activity below)"
    };
    (None, finding.into())
}

/// What a rank's training thread is doing, e.g. "in G main for 3.2 s".
fn doing(v: &RankView) -> String {
    v.fresh().map_or_else(String::new, |r| format!("{} for {:.1} s", r.activity.describe(), r.activity_secs))
}

/// One rank's line of the table.
fn describe(v: &RankView) -> String {
    let Some((r, age)) = &v.record else {
        return format!("rank {}: no flight record (it had not started yet)", v.rank);
    };
    if let Some(how) = &r.exit {
        return format!("rank {} (pid {} on {}): {how}; the process has exited", r.rank, r.pid, r.host);
    }
    let mut line = format!(
        "rank {} (pid {} on {}): step {}, {} for {:.1} s",
        r.rank,
        r.pid,
        r.host,
        r.step,
        r.activity.describe(),
        r.activity_secs
    );
    for t in &r.tracks {
        line.push_str(&format!("; {}: ", t.name));
        match (&t.last, t.in_flight()) {
            (Some(c), true) => line.push_str(&format!(
                "in collective #{} ({}) for {:.1} s",
                t.started,
                c.call(),
                c.secs_since_start
            )),
            _ => line.push_str(&format!("{} collectives done", t.finished)),
        }
        if t.finished > 0 {
            line.push_str(&format!(" ({:.1} s inside finished ones)", t.secs_inside));
        }
    }
    if v.process == Process::Stopped {
        line.push_str(" [process stopped]");
    } else if v.process == Process::Exited {
        line.push_str(" [exited]");
    } else if r.is_stale(*age) {
        line.push_str(&format!(" [record {age:.0?} old: the process is not running]"));
    }
    line
}

/// How ranks that have all ended did, each way once with its ranks: "finished at step 47" when
/// every rank ended alike.
pub(crate) fn ends(views: &[RankView]) -> String {
    let mut ways: Vec<(&str, Vec<u32>)> = Vec::new();
    for v in views {
        let how = v.ended().unwrap_or("no last record");
        match ways.iter_mut().find(|(w, _)| *w == how) {
            Some((_, ranks)) => ranks.push(v.rank),
            None => ways.push((how, vec![v.rank])),
        }
    }
    if let [(how, _)] = ways.as_slice() {
        return how.to_string();
    }
    ways.iter().map(|(how, ranks)| format!("rank(s) {}: {how}", list(ranks))).collect::<Vec<_>>().join("; ")
}

fn list(ranks: &[u32]) -> String {
    ranks.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}
