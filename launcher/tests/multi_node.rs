//! Several "nodes" as separate launcher processes on 127.0.0.1: static flags, one shared store
//! on node 0, failures reaching every node, and clear errors for a bad layout.
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the launcher of `node` of `nodes`, each with `gpus` ranks, in the run directory they
/// share (`dir/shared`), as multi-node runs need.
fn start_node(dir: &Path, node: u32, nodes: u32, gpus: u32, port: u16, extra: &[&str]) -> Child {
    node_command(dir, node, nodes, gpus, port, extra).spawn().unwrap()
}

/// The command [`start_node`] runs.
fn node_command(dir: &Path, node: u32, nodes: u32, gpus: u32, port: u16, extra: &[&str]) -> Command {
    let mut command = gan_launch();
    command
        .env("GANLAUNCH_STORE_TOKEN", "shared-secret")
        .args(["--nodes", &nodes.to_string(), "--node-rank", &node.to_string(), "--gpus", &gpus.to_string()])
        .args(["--master-addr", "127.0.0.1", "--master-port", &port.to_string()])
        .arg(shipped_config("ci-tiny.yaml"))
        .args(["--set", &format!("run.dir={}", dir.join("shared").display())])
        .args(extra)
        .stderr(Stdio::piped());
    command
}

/// Waits until a rank's heartbeat file exists (it trains).
fn wait_for_heartbeat(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn four_nodes_of_two_ranks_train_as_one_job() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let nodes: Vec<Child> =
        (0..4).map(|n| start_node(dir.path(), n, 4, 2, port, &["--set", "log.level=debug"])).collect();
    let outputs: Vec<_> = nodes.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for (node, out) in outputs.iter().enumerate() {
        assert!(out.status.success(), "node {node}: {}", stderr(out));
    }
    // Every one of the 8 ranks checked the same parameter hash at the last step.
    let mut last_hashes = Vec::new();
    for node in 0..4 {
        for local in 0..2 {
            let rank = node * 2 + local;
            let log =
                std::fs::read_to_string(dir.path().join(format!("shared/ci-tiny/logs/rank-{rank}.log")))
                    .unwrap();
            let line = log
                .lines()
                .rfind(|l| l.contains("parameters identical"))
                .unwrap_or_else(|| panic!("rank {rank}: {log}"));
            assert!(line.contains("step=16"), "{line}");
            last_hashes.push(line.split("hash=").nth(1).unwrap().to_string());
        }
    }
    assert!(last_hashes.iter().all(|h| h == &last_hashes[0]), "{last_hashes:?}");
    assert!(std::fs::read_to_string(dir.path().join("shared/ci-tiny/logs/rank-0.log"))
        .unwrap()
        .contains("world=8"));
}

#[test]
fn a_rank_killed_on_one_node_stops_every_node() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let long = ["--set", "train.total_kimg=1000"];
    let nodes: Vec<Child> = (0..2).map(|n| start_node(dir.path(), n, 2, 1, port, &long)).collect();
    // Wait until node 1's rank (rank 1) trains, then kill it.
    wait_for_heartbeat(&dir.path().join("shared/ci-tiny/heartbeat/rank-1"));
    let rank1 =
        std::fs::read_to_string(format!("/proc/{}/task/{}/children", nodes[1].id(), nodes[1].id())).unwrap();
    let killed_at = Instant::now();
    unsafe { libc::kill(rank1.trim().parse().unwrap(), libc::SIGKILL) };
    let outputs: Vec<_> = nodes.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    assert!(killed_at.elapsed() < Duration::from_secs(10), "took {:?}", killed_at.elapsed());
    for (node, out) in outputs.iter().enumerate() {
        assert_ne!(out.status.code(), Some(0), "node {node} must fail: {}", stderr(out));
    }
    assert!(stderr(&outputs[1]).contains("rank 1 on"), "{}", stderr(&outputs[1]));
}

/// Rank 1, node 1's only rank, hangs inside a step; rank 0 on node 0 waits for it in a
/// collective. The run directory is shared, so whichever launcher's watchdog fires first reads
/// both records and blames rank 1 with what it is doing, and every node stops.
#[test]
fn a_rank_hung_on_another_node_is_named_by_every_node() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = ["--set", "train.total_kimg=1000", "--set", "dist.heartbeat_timeout_secs=5"];
    let nodes: Vec<Child> = (0..2)
        .map(|n| {
            node_command(dir.path(), n, 2, 1, port, &extra)
                .env("GANLAUNCH_HANG", "1:g_main:3")
                .spawn()
                .unwrap()
        })
        .collect();
    for (node, out) in nodes.into_iter().map(|c| c.wait_with_output().unwrap()).enumerate() {
        let err = stderr(&out);
        assert_ne!(out.status.code(), Some(0), "node {node}: {err}");
        assert!(
            err.contains("rank 1 has not reached train collective #")
                && err.contains("which rank(s) 0 wait in"),
            "node {node} names rank 1 and why: {err}"
        );
    }
}

#[test]
fn layout_errors_are_clear_and_do_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    // No shared token.
    let out = gan_launch()
        .env_remove("GANLAUNCH_STORE_TOKEN")
        .args(["--nodes", "2", "--node-rank", "1", "--master-addr", "127.0.0.1"])
        .arg(shipped_config("ci-tiny.yaml"))
        .args(["--set", &format!("run.dir={}", dir.path().display())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("GANLAUNCH_STORE_TOKEN"), "{}", stderr(&out));
    // No master address for several nodes.
    let out = gan_launch()
        .env_remove("MASTER_ADDR")
        .args(["--nodes", "2", "--node-rank", "1"])
        .arg(shipped_config("ci-tiny.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--master-addr"), "{}", stderr(&out));
    // Node 0's port taken: every node connects there, so it stops (a single-node job moves).
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = node_command(dir.path(), 0, 2, 1, port, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("cannot listen on 0.0.0.0:{port}")), "{}", stderr(&out));
    assert!(stderr(&out).contains("start every node with another --master-port"), "{}", stderr(&out));
    drop(taken);
    // Nodes that disagree on --gpus.
    let port = free_port();
    let started = Instant::now();
    let a = start_node(dir.path(), 0, 2, 2, port, &["--set", "dist.connect_timeout_secs=20"]);
    let b = start_node(
        dir.path(),
        1,
        2,
        1,
        port,
        &["--set", "dist.connect_timeout_secs=20", "--set", "train.batch_size=32"],
    );
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(started.elapsed() < Duration::from_secs(30), "no hang");
    let both = format!("{}{}", stderr(&a), stderr(&b));
    assert!(both.contains("--gpus must be the same on every node"), "{both}");
    // Node 0 alone: it waits dist.join_timeout_secs for node 1, then says who is missing and
    // which key waits.
    let started = Instant::now();
    let alone = start_node(dir.path(), 0, 2, 1, free_port(), &["--set", "dist.join_timeout_secs=2"]);
    let err = stderr(&alone.wait_with_output().unwrap());
    assert!(started.elapsed() < Duration::from_secs(20), "no hang");
    assert!(
        err.contains(
            "at barrier `nodes-up`: 1 of 2 arrived; missing node(s): 1 (dist.join_timeout_secs is 2;"
        ),
        "{err}"
    );
    // An unreachable master, with a short join timeout.
    let out = gan_launch()
        .env("GANLAUNCH_STORE_TOKEN", "x")
        .args([
            "--nodes",
            "2",
            "--node-rank",
            "1",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            &free_port().to_string(),
        ])
        .arg(shipped_config("ci-tiny.yaml"))
        .args(["--set", &format!("run.dir={}", dir.path().display()), "--set", "dist.join_timeout_secs=2"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains("could not reach the rendezvous store") && err.contains("dist.join_timeout_secs"),
        "{err}"
    );
}

#[test]
fn a_signal_on_one_node_stops_every_node_cleanly_at_the_same_step() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let long = ["--set", "train.total_kimg=1000"];
    let nodes: Vec<Child> = (0..2).map(|n| start_node(dir.path(), n, 2, 1, port, &long)).collect();
    for node in 0..2 {
        wait_for_heartbeat(&dir.path().join(format!("shared/ci-tiny/heartbeat/rank-{node}")));
    }
    unsafe { libc::kill(nodes[1].id() as i32, libc::SIGINT) };
    let outputs: Vec<_> = nodes.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let mut steps = Vec::new();
    for (node, out) in outputs.iter().enumerate() {
        assert_eq!(out.status.code(), Some(130), "node {node}: {}", stderr(out));
        let log =
            std::fs::read_to_string(dir.path().join(format!("shared/ci-tiny/logs/rank-{node}.log"))).unwrap();
        let line = log.lines().find(|l| l.contains("stopped by signal")).unwrap_or_else(|| panic!("{log}"));
        steps.push(line.split("step=").nth(1).unwrap().trim().to_string());
    }
    assert_eq!(steps[0], steps[1], "both ranks stop after the same step");
}

/// `command` run in a mount namespace of its own in which `mount_script` (sh, with `$1` the
/// directory to cover) has changed what a path holds: node 1's view of the file system differs
/// from node 0's, as on a cluster where the run directory is not on shared storage.
fn with_private_mounts(command: &Command, mount_script: &str, target: &Path) -> Command {
    let mut wrapped = Command::new("unshare");
    wrapped
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!("{mount_script} && shift && exec \"$@\""))
        .args(["sh"])
        .arg(target)
        .arg(command.get_program())
        .args(command.get_args())
        .stderr(Stdio::piped());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
}

/// Both launchers of a job that failed its cross-node check, with their stderr.
fn failed_pair(mut node0: Command, mut node1: Command) -> (String, String) {
    let (a, b) = (node0.spawn().unwrap(), node1.spawn().unwrap());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!((a.status.code(), b.status.code()), (Some(2), Some(2)), "{}\n{}", stderr(&a), stderr(&b));
    (stderr(&a), stderr(&b))
}

/// Before any rank starts, every node checks it runs node 0's job: the same settings, the same
/// dataset, and the run directory on storage both see (simulated with a mount namespace in which
/// node 1's run directory or dataset path holds something else).
#[test]
fn every_node_runs_node_0s_job_in_a_shared_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let port = free_port();
    let lr = ["--set", "train.g_opt.lr=0.001"];
    let (err0, err1) = failed_pair(
        node_command(dir.path(), 0, 2, 1, port, &[]),
        node_command(dir.path(), 1, 2, 1, port, &lr),
    );
    let differ = "node 1's settings differ from node 0's: train.g_opt.lr: 0.002 -> 0.001";
    assert!(err0.contains(differ) && err1.contains(differ), "{err0}\n{err1}");
    let port = free_port();
    let (err0, err1) = failed_pair(
        node_command(dir.path(), 0, 2, 1, port, &["--max-restarts", "2"]),
        node_command(dir.path(), 1, 2, 1, port, &[]),
    );
    let restarts = "node 1 was started with --max-restarts 0 but node 0 with 2";
    assert!(err0.contains(restarts) && err1.contains(restarts), "{err0}\n{err1}");

    let port = free_port();
    let node1 = node_command(dir.path(), 1, 2, 1, port, &[]);
    let private = with_private_mounts(&node1, "mount -t tmpfs tmpfs \"$1\"", &shared);
    let (err0, err1) = failed_pair(node_command(dir.path(), 0, 2, 1, port, &[]), private);
    let unseen = "node 1 cannot see the file node 0 wrote in it: the run directory must be on storage every node shares";
    assert!(err0.contains(unseen) && err1.contains(unseen), "{err0}\n{err1}");
    assert!(!shared.join("ci-tiny/logs/rank-0.log").exists(), "no rank started");
    let probes = std::fs::read_dir(shared.join("ci-tiny"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".node-0-probe"));
    assert_eq!(probes.count(), 0, "node 0 removes its probe file");

    // The same data.path holding another dataset on node 1.
    let prepare = |out: &Path, seed: &str| {
        let status = gan_launch()
            .args([
                "data",
                "prepare",
                "--from",
                "generated",
                "--resolution",
                "16",
                "--count",
                "64",
                "--seed",
                seed,
            ])
            .arg("--out")
            .arg(out)
            .output()
            .unwrap();
        assert!(status.status.success(), "{}", stderr(&status));
    };
    let (data, other) = (dir.path().join("data"), dir.path().join("other"));
    prepare(&data, "1");
    prepare(&other, "2");
    let on_data = [
        "--set".to_string(),
        "data.source=prepared".into(),
        "--set".into(),
        format!("data.path={}", data.display()),
    ];
    let on_data: Vec<&str> = on_data.iter().map(String::as_str).collect();
    let port = free_port();
    let node1 = node_command(dir.path(), 1, 2, 1, port, &on_data);
    let remount = format!("mount --bind '{}' \"$1\"", other.display());
    let (err0, err1) = failed_pair(
        node_command(dir.path(), 0, 2, 1, port, &on_data),
        with_private_mounts(&node1, &remount, &data),
    );
    let another = "node 1 reads another dataset than node 0";
    assert!(
        err0.contains(another) && err1.contains("data.path must hold the same prepared dataset"),
        "{err0}\n{err1}"
    );
}
