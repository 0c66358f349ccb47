//! The sbatch script on a real SLURM cluster (Debian's slurmctld, slurmd and munge with two
//! emulated nodes, brought up by scripts/slurm-test-cluster.sh): `gan-launch sbatch` refuses a
//! bad job before it queues and submits a 2-node job of one CPU rank per node, which finishes
//! with exit code 0; preempted by USR1, either to the job steps (as
//! `--signal=USR1@90` does) or to the batch shell only (`--signal=B:USR1@90`), the job
//! checkpoints, requeues itself and resumes at the checkpointed step with SLURM_RESTART_COUNT=1.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The test cluster, torn down when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    conf: String,
}

impl Cluster {
    fn up() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Ports of our own (slurmctld, slurmd, and one per emulated node), away from a developer's cluster.
        let port = 20000 + (std::process::id() % 2000) as u16 * 16;
        let started = Instant::now();
        let out = Command::new(repo().join("scripts/slurm-test-cluster.sh"))
            .arg("up")
            .env("SLURM_TEST_DIR", dir.path())
            .env("SLURM_TEST_PORT", port.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "cluster bring-up failed: {}", stderr(&out));
        eprintln!("SLURM bring-up: {:.2} s", started.elapsed().as_secs_f64());
        let conf = stdout(&out).trim().strip_prefix("export SLURM_CONF=").unwrap().to_string();
        Cluster { dir, port, conf }
    }

    fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SLURM_CONF", &self.conf);
        cmd
    }

    /// `scontrol show job` fields of job `id`.
    fn field(&self, id: &str, name: &str) -> String {
        let out = self.cmd("scontrol").args(["show", "job", id]).output().unwrap();
        let text = stdout(&out);
        text.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_string()
    }

    /// Submits the sbatch script for 2 nodes x 1 rank of ci-tiny in `dir`.
    fn submit(&self, dir: &Path, sets: &[&str]) -> String {
        let mut cmd = self.cmd("sbatch");
        cmd.current_dir(dir)
            .env("GAN_LAUNCH", env!("CARGO_BIN_EXE_gan-launch"))
            .env("GAN_GPUS", "1")
            .args(["--parsable", "--nodes=2", "--output", &dir.join("job.out").display().to_string()])
            .arg(repo().join("launcher/slurm/gan-launch.sbatch"))
            .arg(shipped_config("ci-tiny.yaml"))
            .args(["--set", &format!("run.dir={}", dir.join("runs").display())]);
        for set in sets {
            // Flags go as they are, the rest as overrides.
            if set.starts_with("--") {
                cmd.arg(set);
            } else {
                cmd.args(["--set", set]);
            }
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "sbatch: {}", stderr(&out));
        stdout(&out).trim().split(';').next().unwrap().to_string()
    }

    /// Waits for a final state. A requeued job waits out SLURM's own hold (about cred_expire, 10 s
    /// here) before it starts again: forcing StartTime=now lets it start within the second its old
    /// credential was revoked, and slurmd, which compares at 1 s resolution, kills it as
    /// "Job credential revoked" (FAILED).
    fn wait(&self, id: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.field(id, "JobState");
            if ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"].contains(&state.as_str()) {
                // While a job requeues itself, slurmctld can show a final-looking state for a moment
                // before PENDING; a state that holds for 3 s is the job's end.
                std::thread::sleep(Duration::from_secs(3));
                if self.field(id, "JobState") == state {
                    return state;
                }
                continue;
            }
            assert!(Instant::now() < deadline, "job {id} still {state}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/slurm-test-cluster.sh"))
            .arg("down")
            .env("SLURM_TEST_DIR", self.dir.path())
            .env("SLURM_TEST_PORT", self.port.to_string())
            .status();
    }
}

fn step_after(text: &str, marker: &str) -> u64 {
    let line =
        text.lines().find(|l| l.contains(marker)).unwrap_or_else(|| panic!("no {marker:?} in:\n{text}"));
    line.split(marker).nth(1).unwrap().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

/// Runs a long job, sends USR1 the given way once it has a checkpoint, and checks it
/// checkpoints, requeues itself and finishes after resuming at that step.
fn preempt_and_resume(cluster: &Cluster, scancel_args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let id = cluster.submit(dir.path(), &["train.total_kimg=1.5", "checkpoint.every_ticks=1"]);
    let latest = dir.path().join("runs/ci-tiny/checkpoints/latest");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !latest.exists() {
        assert!(
            Instant::now() < deadline,
            "no checkpoint: {}",
            std::fs::read_to_string(dir.path().join("job.out")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = cluster.cmd("scancel").args(scancel_args).arg("--signal=USR1").arg(&id).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let state = cluster.wait(&id, Duration::from_secs(300));
    let log = std::fs::read_to_string(dir.path().join("job.out")).unwrap();
    eprintln!(
        "preempted job ({scancel_args:?}) wall time incl. requeue: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if state != "COMPLETED" {
        let job = cluster.cmd("scontrol").args(["show", "job", &id]).output().unwrap();
        let ctld = std::fs::read_to_string(cluster.dir.path().join("log/slurmctld.log")).unwrap_or_default();
        let tail: Vec<&str> = ctld.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
        panic!(
            "job {id} ended {state}\n{}\nslurmctld.log:\n{}\njob.out:\n{log}",
            stdout(&job),
            tail.join("\n")
        );
    }
    assert_eq!(cluster.field(&id, "Restarts"), "1", "{log}");
    assert_eq!(cluster.field(&id, "ExitCode"), "0:0", "{log}");
    assert!(log.contains("checkpointed after preemption; requeueing"), "{log}");
    assert!(log.contains(&format!("gan-launch job {id} (restart 1)")), "{log}");
    let preempted = step_after(&log, "preempted: checkpointed at step ");
    assert_eq!(step_after(&log, "resumed at step "), preempted, "{log}");
    assert!(log.contains("training finished step=47"), "1.5 kimg of batch 32 = 47 steps: {log}");
}

#[test]
fn sbatch_script_runs_preempts_requeues_and_resumes_on_a_real_cluster() {
    gan_train_path();
    let cluster = Cluster::up();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = format!("run.dir={}", dir.path().join("runs").display());
    let sbatch = |sets: &[&str]| {
        let mut cmd = cluster.cmd(env!("CARGO_BIN_EXE_gan-launch"));
        cmd.current_dir(dir.path()).arg("sbatch").arg(shipped_config("ci-tiny.yaml"));
        cmd.args(["--nodes", "2", "--gpus", "1", "--set", &run_dir]);
        for set in sets {
            // Flags go as they are, the rest as overrides.
            if set.starts_with("--") {
                cmd.arg(set);
            } else {
                cmd.args(["--set", set]);
            }
        }
        cmd.args(["--", "--output", &dir.path().join("job.out").display().to_string()]).output().unwrap()
    };
    // `gan-launch sbatch` checks the job for its 2 nodes before submitting: a bad one never queues.
    let refused = sbatch(&["train.batch_size=1"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("at least the world size 2"), "{}", stderr(&refused));
    let missing_data = ["data.source=prepared", "data.path=/nonexistent/dataset"];
    let refused = sbatch(&missing_data);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("pass --skip-data-check"), "{}", stderr(&refused));
    let queue = cluster.cmd("squeue").args(["-h", "-o", "%i"]).output().unwrap();
    assert_eq!(stdout(&queue).trim(), "", "nothing was submitted");
    // Data only the nodes would see: submitted unchecked, and the nodes refuse it before any rank.
    let unchecked = sbatch(&[&missing_data[..], &["--skip-data-check"]].concat());
    assert!(unchecked.status.success(), "{}", stderr(&unchecked));
    let id = stdout(&unchecked).trim().to_string();
    assert_eq!(cluster.wait(&id, Duration::from_secs(120)), "FAILED");
    let log = std::fs::read_to_string(dir.path().join("job.out")).unwrap();
    assert!(log.contains("/nonexistent/dataset/index.json") && !log.contains("[rank="), "{log}");
    std::fs::remove_file(dir.path().join("job.out")).unwrap();
    // A plain 2-node run, submitted by `gan-launch sbatch` with its built-in script: exit code 0.
    let started = Instant::now();
    let submitted = sbatch(&["train.total_kimg=0.256"]);
    assert!(submitted.status.success(), "{}", stderr(&submitted));
    let id = stdout(&submitted).trim().to_string();
    assert!(stderr(&submitted).contains(&format!("submitted job {id}: ci-tiny on 2 node(s) x 1 rank(s)")));
    assert_eq!(cluster.wait(&id, Duration::from_secs(180)), "COMPLETED");
    eprintln!("2-node job wall time: {:.1} s", started.elapsed().as_secs_f64());
    let log = std::fs::read_to_string(dir.path().join("job.out")).unwrap();
    assert_eq!(cluster.field(&id, "ExitCode"), "0:0", "{log}");
    assert!(log.contains("[launcher node=1]") && log.contains("world=2"), "both nodes ran: {log}");
    assert!(dir.path().join("runs/ci-tiny/checkpoints/step-00000008/manifest.json").is_file(), "{log}");
    // USR1 to the job steps (gan-launch on every node), as --signal=USR1@90 delivers it.
    preempt_and_resume(&cluster, &[]);
    // USR1 to the batch shell only (--signal=B:USR1@90): the script passes it on and requeues.
    preempt_and_resume(&cluster, &["--batch"]);
}
