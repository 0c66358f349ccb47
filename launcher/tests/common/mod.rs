//! Helpers for tests that run the real binaries as a user would.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The `gan-launch` binary under test.
pub fn gan_launch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gan-launch"));
    // Tests pass their config explicitly; config variables from the caller's shell must not leak in.
    for (name, _) in std::env::vars() {
        if name.starts_with("GAN_") {
            cmd.env_remove(name);
        }
    }
    // Nor may the caller's cache directory: tests give each run a HOME of its own.
    cmd.env_remove("RUST_LOG").env_remove("XDG_CACHE_HOME");
    cmd
}

/// The trainer binary installed beside `gan-launch` (built by `cargo build` of the workspace).
pub fn gan_train_path() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_gan-launch")).with_file_name("gan-train");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build` (make test does) before these tests",
        path.display()
    );
    path
}

/// Randomly initialised FID Inception weights written to `dir` by the trainer (stand-ins for the
/// standard file, which cannot be downloaded here; results are labelled as not standard).
pub fn random_inception_weights(dir: &Path) -> PathBuf {
    let weights = dir.join("random-inception.safetensors");
    let made = Command::new(gan_train_path())
        .args(["gpu-check", "random-inception", &weights.display().to_string()])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    weights
}

/// A short ci-tiny run (0.064 kimg) under `dir`; returns its run directory.
pub fn short_run(dir: &Path) -> PathBuf {
    let run = gan_launch()
        .arg(shipped_config("ci-tiny.yaml"))
        .args(["--set", &format!("run.dir={}", dir.display()), "--set", "train.total_kimg=0.064"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    dir.join("ci-tiny")
}

/// A shipped config by file name.
pub fn shipped_config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs").join(name)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `text` as a config file in `dir`.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("exp.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn children_of(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Waits until the launcher has `n` ranks that all beat (optionally: with this restart count).
pub fn wait_for_n_ranks(launcher: u32, n: usize, restart_count: Option<u32>) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the ranks did not start");
        let ranks = children_of(launcher);
        let attempt_ok = |pid: &u32| {
            restart_count
                .is_none_or(|count| env_of(*pid).contains(&format!("TORCHELASTIC_RESTART_COUNT={count}")))
        };
        if ranks.len() == n && ranks.iter().all(attempt_ok) && ranks.iter().all(|p| beats(*p)) {
            return ranks;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn env_of(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default())
        .replace('\0', "\n")
}

/// True once the rank's heartbeat file exists (it trains).
pub fn beats(pid: u32) -> bool {
    let env = env_of(pid);
    env.lines()
        .find_map(|l| l.strip_prefix("GANLAUNCH_HEARTBEAT_FILE="))
        .is_some_and(|p| Path::new(p).exists())
}

pub fn pid_of_rank(ranks: &[u32], rank: u32) -> u32 {
    ranks.iter().copied().find(|pid| env_of(*pid).lines().any(|l| l == format!("RANK={rank}"))).unwrap()
}

/// Waits until the launcher has two ranks that both beat (optionally: with this restart count).
pub fn wait_for_ranks(launcher: u32, restart_count: Option<u32>) -> Vec<u32> {
    wait_for_n_ranks(launcher, 2, restart_count)
}

/// GET http://addr/path -> (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u32, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    // Prometheus answers chunked; our endpoints do not. Strip chunk sizes when present.
    (status, if response.contains("Transfer-Encoding: chunked") { dechunk(&body) } else { body })
}

pub fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

/// The address a process of the run serves its metrics at (from `metrics/<name>.addr`), for
/// connecting from this host.
pub fn endpoint(run_dir: &Path, name: &str) -> String {
    let file = run_dir.join("metrics").join(format!("{name}.addr"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            return text.trim().replace("0.0.0.0", "127.0.0.1");
        }
        assert!(Instant::now() < deadline, "no {}", file.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}
