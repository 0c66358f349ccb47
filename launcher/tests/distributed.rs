//! Several ranks on one node as real processes over TCP on 127.0.0.1: data-parallel training
//! keeps parameters identical, and a dead rank brings the job down fast, named.
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use gan_core::host_malloc::{KEEP_FREED, MARKER_VALUE, MARKER_VAR, ONE_ARENA};

fn launch_args(dir: &Path, gpus: u32) -> Vec<String> {
    let mut args: Vec<String> = vec!["--gpus".into(), gpus.to_string(), "--master-port".into(), "0".into()];
    args.push(shipped_config("ci-tiny.yaml").display().to_string());
    args.extend(["--set".into(), format!("run.dir={}", dir.display())]);
    args
}

/// Every "parameters identical" debug line as (rank, step, hash).
fn parameter_hashes(log: &str) -> Vec<(u32, u64, String)> {
    log.lines()
        .filter(|l| l.contains("parameters identical on all ranks"))
        .map(|l| {
            let rank = l.split("[rank=").nth(1).unwrap().split(']').next().unwrap().parse().unwrap();
            let step = l.split("step=").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
            let hash = l.split("hash=").nth(1).unwrap().trim_matches('"').to_string();
            (rank, step, hash)
        })
        .collect()
}

/// A narrow StyleGAN2 with path length and style mixing: every rank updates w_avg and the
/// path-length mean from its own fakes, and the step's averaging must keep them identical.
const STYLEGAN2: &[&str] = &[
    "model.arch=stylegan2",
    "model.w_dim=32",
    "model.mapping_layers=2",
    "model.mbstd_group_size=4",
    "train.pl_weight=2",
    "train.style_mixing_prob=0.9",
];

#[test]
fn two_and_four_ranks_keep_identical_parameters() {
    gan_train_path();
    // 3 ranks: the batch of 32 splits 11, 11, 10 (gradients weighted by share).
    for (gpus, model) in [(2u32, &[][..]), (4, &[]), (3, &[]), (2, STYLEGAN2)] {
        let dir = tempfile::tempdir().unwrap();
        let sets = model.iter().flat_map(|s| ["--set", s]);
        let out = gan_launch()
            .args(launch_args(dir.path(), gpus))
            .args(["--set", "log.level=debug"])
            .args(sets)
            .output()
            .unwrap();
        assert!(out.status.success(), "{gpus} ranks {model:?}: {}", stderr(&out));
        // The console shows rank 0; every rank's lines are in its log file.
        let logs: Vec<String> = (0..gpus)
            .map(|r| std::fs::read_to_string(dir.path().join(format!("ci-tiny/logs/rank-{r}.log"))).unwrap())
            .collect();
        assert!(!stderr(&out).contains("[rank=1]"), "rank 1 is not on the console by default");
        let err = logs.join("\n");
        let hashes = parameter_hashes(&err);
        let mut by_step: HashMap<u64, Vec<(u32, String)>> = HashMap::new();
        for (rank, step, hash) in hashes {
            by_step.entry(step).or_default().push((rank, hash));
        }
        // 0.5 kimg of batch 32 = 16 steps, checked at every tick (steps 8 and 16).
        let last = by_step.get(&16).unwrap_or_else(|| panic!("no check at step 16: {err}"));
        assert_eq!(last.len(), gpus as usize, "every rank checked: {last:?}");
        assert!(last.iter().all(|(_, h)| h == &last[0].1), "{last:?}");
        // Each rank trained on its own share of the batch: rank-tagged ticks in every rank's log.
        for rank in 0..gpus {
            assert!(err.contains(&format!("[rank={rank}] tick 1")), "rank {rank} did not tick: {err}");
        }
    }
}

/// Starts a long 2-rank job and waits until both ranks train; returns the launcher.
fn start_long_job(dir: &Path, extra: &[&str]) -> std::process::Child {
    let child = gan_launch()
        .args(launch_args(dir, 2))
        .args(["--set", "train.total_kimg=1000"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_ranks(child.id(), None);
    child
}

#[test]
fn kill_9_of_one_rank_stops_the_job_and_names_it() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let child = start_long_job(dir.path(), &[]);
    let rank1 = pid_of_rank(&children_of(child.id()), 1);
    // Ranks start with the glibc tunables that keep freed host memory for the next step, on
    // every thread of these CPU ranks, and the marker. (glibc parses the tunables by cutting the
    // process's first copy of its environment at the colons, which /proc shows as lines; the
    // process's own environment keeps them whole.)
    let env = env_of(rank1);
    let tunables = format!("{KEEP_FREED}:{ONE_ARENA}").replace(':', "\n");
    assert!(env.contains(&format!("GLIBC_TUNABLES={tunables}")), "{env}");
    assert!(env.lines().any(|l| l == format!("{MARKER_VAR}={MARKER_VALUE}")), "{env}");
    let killed_at = Instant::now();
    unsafe { libc::kill(rank1 as i32, libc::SIGKILL) };
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(killed_at.elapsed() < Duration::from_secs(10), "job took {:?} to stop", killed_at.elapsed());
    assert_eq!(out.status.code(), Some(128 + 9), "{err}");
    assert!(err.contains("rank 1 on") && err.contains("signal: 9"), "the dead rank is named: {err}");
    assert!(
        err.contains("Its last log lines:\n") && err.contains("[rank=1]"),
        "its last lines are shown: {err}"
    );
    // Afterwards `status` names the killed rank (gone without a last record) as the cause; rank
    // 0's last record says how it ended.
    let status = gan_launch().arg("status").arg(dir.path().join("ci-tiny")).output().unwrap();
    let text = stdout(&status);
    assert!(
        text.contains("the job is not running: rank 1's process exited without a last record (killed?)"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("  rank 0 (pid ") && l.contains("; the process has exited")),
        "{text}"
    );
}

#[test]
fn a_stopped_rank_is_detected_and_named() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let child = start_long_job(dir.path(), &["--set", "dist.heartbeat_timeout_secs=5"]);
    let rank1 = pid_of_rank(&children_of(child.id()), 1);
    let stopped_at = Instant::now();
    unsafe { libc::kill(rank1 as i32, libc::SIGSTOP) };
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(stopped_at.elapsed() < Duration::from_secs(20), "took {:?}", stopped_at.elapsed());
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("rank 1 on") && err.contains("made no progress"), "{err}");
    assert!(err.contains("rank 1 is stopped (SIGSTOP?); the others wait for it"), "{err}");
    // Where each rank was: rank 0 inside a collective of the training group, rank 1 stopped.
    assert!(err.contains("Where each rank was:\n  rank 0 (pid "), "{err}");
    assert!(err.contains("train: in collective #"), "rank 0 waits in a collective: {err}");
    assert!(err.contains("[process stopped]"), "{err}");
}

/// A rank whose training thread hangs inside a step (the test hook stops it as it enters G main,
/// its other threads running on, as a rank stuck in a driver call would) is the one named, not
/// rank 0, which waits for it in G's gradient all-reduce with the same heartbeat step, and the
/// message says what each was doing.
#[test]
fn a_rank_hung_inside_a_step_is_named_with_what_it_was_doing() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let out = gan_launch()
        .args(launch_args(dir.path(), 2))
        .args(["--set", "train.total_kimg=1000", "--set", "dist.heartbeat_timeout_secs=5"])
        .env("GANLAUNCH_HANG", "1:g_main:3")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("rank 1 on") && err.contains("made no progress"), "rank 1 is blamed: {err}");
    assert!(
        err.contains("rank 1 has not reached train collective #")
            && err.contains(", which rank(s) 0 wait in; it is in G main for "),
        "{err}"
    );
    let table = err.split("Where each rank was:\n").nth(1).unwrap_or_else(|| panic!("{err}"));
    let row = |rank: u32| table.lines().find(|l| l.starts_with(&format!("  rank {rank} (pid "))).unwrap();
    assert!(row(0).contains(": step 3, in G main for ") && row(0).contains("(all_reduce of "), "{table}");
    assert!(row(1).contains(": step 3, in G main for ") && row(1).contains(" collectives done"), "{table}");
    assert!(err.contains("GANLAUNCH_HANG: rank 1 hangs in G main at step 3"), "its last log lines: {err}");
    // The kernel's view of its threads: the record writer runs on (asleep between writes).
    let threads =
        err.split("Rank 1's threads (state, kernel wait): ").nth(1).unwrap_or_else(|| panic!("{err}"));
    assert!(threads.lines().next().unwrap().contains("flight-record S "), "{threads}");
}

/// `gan-launch status` while a job trains (moving, with the time each rank spent inside
/// collectives), then while it is held up, long before its watchdog would act: where each rank is
/// and which one holds the other up; once the job is gone, that it is not running; and a
/// directory that is no run directory is a user error.
#[test]
fn status_shows_where_each_rank_is_and_who_holds_the_others_up() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let mut job = gan_launch()
        .args(launch_args(dir.path(), 2))
        .args(["--set", "train.total_kimg=1000"])
        .env("GANLAUNCH_HANG", "1:g_main:100")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run_dir = dir.path().join("ci-tiny");
    let status_until = |wanted: &str| {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out =
                gan_launch().arg("status").arg(&run_dir).args(["--waiting-secs", "1"]).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && text.contains(wanted) {
                return text;
            }
            assert!(Instant::now() < deadline, "no {wanted:?} within 120 s: {text}{}", stderr(&out));
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    // Once both ranks have joined the group and run collectives.
    let text = status_until("; least time inside training collectives: rank ");
    assert!(text.contains("moving: no rank has waited in a collective for 1 s or more"), "{text}");
    assert!(text.contains(" s inside finished ones)"), "{text}");
    let text = status_until("held up:");
    assert!(text.contains(": 2 rank(s)\n"), "{text}");
    assert!(
        text.contains("held up: rank 1 has not reached train collective #")
            && text.contains("which rank(s) 0 wait in; it is in G main for"),
        "{text}"
    );
    let row = |text: &str, rank: u32| {
        text.lines().find(|l| l.starts_with(&format!("  rank {rank} (pid "))).unwrap().to_string()
    };
    assert!(
        row(&text, 0).contains("train: in collective #") && row(&text, 0).contains("; heartbeat "),
        "{text}"
    );
    assert!(row(&text, 1).contains("in G main for") && row(&text, 1).contains("collectives done"), "{text}");
    // The launcher's gauges say the same: rank 0 inside a training collective, rank 1 not. They
    // are read from the flight records as the launcher refreshes them, which may be a moment
    // behind what `status` just read: rank 0's wait reaches 1 s there too.
    let scrape = || {
        let (code, metrics) = http_get(&endpoint(&run_dir, "launcher-node-0"), "/metrics");
        assert_eq!(code, 200);
        metrics
    };
    let wait = |metrics: &str, rank: u32| -> f64 {
        let series = format!("rank=\"{rank}\"");
        metrics
            .lines()
            .find(|l| {
                l.starts_with("gan_launcher_rank_collective_wait_seconds{")
                    && l.contains(&series)
                    && l.contains("group=\"train\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("rank {rank}: {metrics}"))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut metrics = scrape();
    while wait(&metrics, 0) < 1.0 {
        assert!(Instant::now() < deadline, "rank 0's wait never reached 1 s: {metrics}");
        std::thread::sleep(Duration::from_millis(200));
        metrics = scrape();
    }
    assert_eq!(wait(&metrics, 1), 0.0, "{metrics}");
    job.kill().unwrap(); // the ranks die with their launcher
    job.wait().unwrap();
    let text = status_until("the job is not running");
    assert!(row(&text, 0).contains("train: in collective #"), "the last records stay readable: {text}");
    let out = gan_launch().arg("status").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no heartbeat/ inside"), "{}", stderr(&out));
    // The job's config names the same run (here with its run.dir from the environment).
    let by_config = gan_launch()
        .arg("status")
        .arg(shipped_config("ci-tiny.yaml"))
        .env("GAN_RUN__DIR", dir.path())
        .output()
        .unwrap();
    let by_config = stdout(&by_config);
    assert_eq!(by_config.lines().next(), Some(format!("{}: 2 rank(s)", run_dir.display()).as_str()));
    let place = |text: &str| row(text, 0).split("; heartbeat").next().unwrap().to_string();
    assert!(by_config.contains("the job is not running") && place(&by_config) == place(&text), "{by_config}");
}

#[test]
fn max_restarts_restarts_once_then_gives_up() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let child = start_long_job(dir.path(), &["--max-restarts", "1"]);
    let first = children_of(child.id());
    unsafe { libc::kill(pid_of_rank(&first, 1) as i32, libc::SIGKILL) };
    let second = wait_for_ranks(child.id(), Some(1));
    assert!(second.iter().all(|p| !first.contains(p)), "new processes after the restart");
    unsafe { libc::kill(pid_of_rank(&second, 1) as i32, libc::SIGKILL) };
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(128 + 9), "{err}");
    assert!(err.contains("restarting every rank (1 of 1 restarts)"), "{err}");
    assert!(err.contains("giving up: the job failed again after 1 restart(s)"), "{err}");
}

#[test]
fn mismatched_world_size_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(gan_train_path())
        .arg(shipped_config("ci-tiny.yaml"))
        .args(["--set", &format!("run.dir={}", dir.path().display())])
        .envs([("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "3"), ("LOCAL_WORLD_SIZE", "3")])
        .envs([("GROUP_RANK", "0"), ("MASTER_PORT", "1")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("WORLD_SIZE=3 but the config plans 1 ranks"), "{}", stderr(&out));
}

/// A recipe that diverges for real (Adam at lr 1e6 overflows within a few steps): every rank
/// sees the non-finite loss at the same tick, all roll back together on the same ring (and join
/// a new background-evaluation ring), diverge again on the fresh streams, and with the one
/// rollback allowed spent the job stops with exit code 3, named, and is not restarted although
/// restarts are allowed.
#[test]
fn a_diverging_run_rolls_back_on_every_rank_then_stops() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let weights = random_inception_weights(dir.path());
    let huge_lr = "{lr: 1000000, betas: [0.0, 0.99]}";
    let out = gan_launch()
        .args(launch_args(dir.path(), 2))
        .args(["--set", &format!("train.g_opt={huge_lr}"), "--set", &format!("train.d_opt={huge_lr}")])
        .args(["--set", "train.max_rollbacks=1", "--set", "checkpoint.every_ticks=1"])
        .args(["--set", "eval.every_kimg=0.25", "--set", &format!("eval.weights={}", weights.display())])
        .args(["--max-restarts", "2"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("failed (exit status: 3)"), "{err}");
    assert!(
        err.contains("not restarting: the run diverged") && !err.contains("restarting every rank"),
        "{err}"
    );
    for rank in 0..2 {
        let log = std::fs::read_to_string(dir.path().join(format!("ci-tiny/logs/rank-{rank}.log"))).unwrap();
        let rollbacks =
            log.matches("rolling back to the latest checkpoint with fresh random streams").count();
        assert_eq!(rollbacks, 1, "rank {rank}: {log}");
        assert_eq!(log.matches("training 0.5 kimg").count(), 2, "rank {rank} trained again: {log}");
        assert!(log.lines().last().is_some_and(|l| l.contains("non-finite Loss/")), "rank {rank}: {log}");
    }
}

/// The recording benchmark runs and prints its figures (no timing is asserted).
#[test]
fn bench_flight_prints_the_recording_cost() {
    let out = gan_launch().args(["bench", "flight", "--iters", "1000"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for row in ["recording cost per collective", "change of activity", "snapshot + JSON of the record"] {
        assert!(
            text.lines().any(|l| l.starts_with(row) && (l.contains(" ns") || l.contains(" us"))),
            "{row}: {text}"
        );
    }
}

/// A second job on a run that a job is training (submitted twice, or a requeue while the old job
/// still runs) is refused before it touches anything, naming the job that holds the run, whether
/// it is started by the launcher or the trainer on its own; once the first ends, the run goes on.
#[test]
fn a_second_job_on_a_running_run_is_refused() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let first = gan_launch()
        .args(launch_args(dir.path(), 2))
        .args(["--set", "train.total_kimg=1000", "--set", "checkpoint.every_ticks=1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run_dir = dir.path().join("ci-tiny");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !run_dir.join("checkpoints/latest").exists() {
        assert!(Instant::now() < deadline, "the first job never checkpointed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let holder = format!("another job holds the run: pid {} on ", first.id());
    let second = gan_launch().args(launch_args(dir.path(), 1)).output().unwrap();
    assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
    assert!(stderr(&second).contains(&holder), "{}", stderr(&second));
    let alone = std::process::Command::new(gan_train_path())
        .arg(shipped_config("ci-tiny.yaml"))
        .args(["--set", &format!("run.dir={}", dir.path().display())])
        .output()
        .unwrap();
    assert_eq!(alone.status.code(), Some(2), "{}", stderr(&alone));
    assert!(stderr(&alone).contains(&holder), "{}", stderr(&alone));
    assert!(!stderr(&second).contains("rank 0"), "no rank of the second job started");
    // `plan` says a launch would be refused, and `status` names the job that holds the run.
    let plan = gan_launch().arg("plan").args(launch_args(dir.path(), 1)).output().unwrap();
    assert_eq!(plan.status.code(), Some(2), "{}", stderr(&plan));
    assert!(stderr(&plan).contains(&holder), "{}", stderr(&plan));
    let status = gan_launch().arg("status").arg(&run_dir).output().unwrap();
    let held = format!("held by the job of pid {} on ", first.id());
    assert!(stdout(&status).contains(&held), "{}", stdout(&status));

    unsafe { libc::kill(first.id() as i32, libc::SIGINT) };
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let third =
        gan_launch().args(launch_args(dir.path(), 1)).args(["--set", "train.total_kimg=0.032"]).output();
    let third = third.unwrap();
    let err = stderr(&third);
    assert!(err.contains("resumed at step"), "the run goes on once the first job has ended: {err}");
}

/// Two single-node jobs on one machine, both on the default port: the second one's store takes
/// a free port (its ranks are told it) instead of failing, and the log says so.
#[test]
fn a_single_node_job_whose_port_is_taken_listens_on_a_free_one() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = gan_launch()
        .args(["--gpus", "2", "--master-port", &port.to_string()])
        .arg(shipped_config("ci-tiny.yaml"))
        .args(["--set", &format!("run.dir={}", dir.path().display()), "--set", "train.total_kimg=0.064"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("port {port} is in use (another job on this machine?)")), "{err}");
    assert!(err.contains("[rank=0] training finished"), "{err}");
}
