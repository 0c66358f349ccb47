//! `gan-launch status RUN_DIR|CONFIG`: where each rank of a job is right now, from the heartbeats and
//! flight records the ranks keep under the run directory. Every node's ranks write there (the run
//! directory is shared), so one command on any machine sees the whole job, which the watchdog of
//! one node cannot: for a job that is slow rather than stopped, or stuck on another node.
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use gan_core::{flight, heartbeat, Error};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The run directory, runs/<name>, or the job's config file (its run.dir/run.name, with the
    /// GAN_* environment applied; a job started with other `--set`s is named by its directory).
    #[arg(value_name = "RUN_DIR|CONFIG")]
    pub run_dir: PathBuf,
    /// Say who holds the others up once a rank has waited in a collective this long.
    #[arg(long, default_value_t = 10.0)]
    pub waiting_secs: f64,
}

pub fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let waiting = Duration::try_from_secs_f64(args.waiting_secs)
        .map_err(|_| Error::config("--waiting-secs", args.waiting_secs, "seconds >= 0"))?;
    let run_dir = crate::run_path::resolve(&args.run_dir)?;
    let dir = run_dir.join("heartbeat");
    let ranks = rank_numbers(&dir)?;
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let views: Vec<flight::RankView> = ranks
        .iter()
        .map(|&rank| {
            let record = flight::read(&flight::path_beside(&heartbeat::rank_file(&dir, rank)));
            let process = match &record {
                // A rank of this machine can be looked up at once; another node's only ages.
                Some((r, _)) if r.host == host && !pid_alive(r.pid) => flight::Process::Exited,
                _ => flight::Process::Live,
            };
            flight::RankView { rank, record, process }
        })
        .collect();
    let diagnosis = flight::diagnose(&views);
    println!("{}: {} rank(s)", run_dir.display(), ranks.len());
    if let Some(h) = gan_core::run_lock::holder(&run_dir) {
        println!("  held by the job of pid {} on {} since {}", h.pid, h.host, h.since);
    }
    for (rank, line) in ranks.iter().zip(&diagnosis.table) {
        let beat = heartbeat::read(&heartbeat::rank_file(&dir, *rank)).map_or_else(
            || "no heartbeat yet".to_string(),
            |b| format!("heartbeat {:.1} s ago", b.age.as_secs_f64()),
        );
        println!("  {line}; {beat}");
    }
    println!("{}", verdict(&views, &diagnosis, waiting));
    Ok(ExitCode::SUCCESS)
}

/// The one-line summary: not running, someone held up, or all moving.
fn verdict(views: &[flight::RankView], diagnosis: &flight::Diagnosis, waiting: Duration) -> String {
    let records: Vec<&(flight::FlightRecord, Duration)> =
        views.iter().filter_map(|v| v.record.as_ref()).collect();
    if records.is_empty() {
        return "no rank has written a flight record yet (starting, records off, or a job from before them)"
            .into();
    }
    if views.iter().all(flight::RankView::is_gone) {
        // Every rank ended, or the first to go is named (the others failed or were stopped after it).
        return format!("the job is not running: {}", diagnosis.finding);
    }
    let longest_wait = views
        .iter()
        .filter_map(|v| v.record.as_ref())
        .flat_map(|(r, _)| r.tracks.iter())
        .filter(|t| t.in_flight())
        .filter_map(|t| t.last.as_ref().map(|c| c.secs_since_start))
        .fold(0.0f64, f64::max);
    let stale = records.iter().any(|(r, age)| r.is_stale(*age));
    if stale || longest_wait >= waiting.as_secs_f64() {
        return format!("held up: {}", diagnosis.finding);
    }
    format!(
        "moving: no rank has waited in a collective for {:.0} s or more{}",
        waiting.as_secs_f64(),
        straggler(views)
    )
}

/// Whether process `pid` of this machine is running (or exists but is not ours to signal).
fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let exists = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    exists || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The rank that has spent the least time inside training collectives, next to the one that has
/// spent the most: every rank waits there for the slowest, so the slowest spends the least.
fn straggler(views: &[flight::RankView]) -> String {
    let inside: Vec<(u32, f64)> = views
        .iter()
        .filter_map(|v| {
            let train = v.record.as_ref()?.0.tracks.iter().find(|t| t.name == "train")?;
            Some((v.rank, train.secs_inside))
        })
        .collect();
    let least = inside.iter().min_by(|a, b| a.1.total_cmp(&b.1));
    let most = inside.iter().max_by(|a, b| a.1.total_cmp(&b.1));
    match (least, most) {
        (Some(least), Some(most)) if inside.len() > 1 => format!(
            "; least time inside training collectives: rank {} ({:.1} s; the most: rank {}, {:.1} s): the others \
             wait there for the slowest rank, so the slowest spends the least",
            least.0, least.1, most.0, most.1
        ),
        _ => String::new(),
    }
}

/// The ranks with a heartbeat or a flight record under `dir`, in order.
fn rank_numbers(dir: &Path) -> anyhow::Result<Vec<u32>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::RunDir {
        path: dir.parent().unwrap_or(dir).to_path_buf(),
        message: format!(
            "no heartbeat/ inside ({e}): status needs runs/<name> of a job gan-launch started, or its config"
        ),
    })?;
    let mut ranks: Vec<u32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("rank-")?.split('.').next()?.parse().ok())
        .collect();
    ranks.sort_unstable();
    ranks.dedup();
    Ok(ranks)
}
