//! Checkpoints end to end, with the real binaries: exact resume after SIGKILL of the whole job
//! (1 and 2 ranks), SIGKILL inside a checkpoint write at each step of the commit protocol,
//! corrupt checkpoints skipped, preemption by SIGTERM to one rank or USR1 to the launcher, a
//! changed world size, an incompatible model or dataset (refused by `plan` and `sbatch` too),
//! and the `ckpt` commands.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// 16x16 shapes, 32 images a step, a tick (and a checkpoint) every 4 steps.
fn job(dir: &Path, gpus: u32, total_kimg: f64) -> std::process::Command {
    let mut cmd = gan_launch();
    cmd.arg(shipped_config("ci-tiny.yaml"))
        .args(["--gpus", &gpus.to_string(), "--master-port", "0"])
        .args(["--set", &format!("run.dir={}", dir.display())])
        .args(["--set", &format!("train.total_kimg={total_kimg}")])
        .args(["--set", "train.kimg_per_tick=0.128", "--set", "checkpoint.every_ticks=1"])
        .args(["--set", "checkpoint.keep_last=3"]);
    cmd
}

fn run(cmd: &mut std::process::Command) -> (Output, String) {
    let out = cmd.output().unwrap();
    let err = stderr(&out);
    (out, err)
}

fn ckpt_dir(dir: &Path) -> PathBuf {
    dir.join("ci-tiny/checkpoints")
}

fn latest_step(dir: &Path) -> Option<u64> {
    let name = std::fs::read_to_string(ckpt_dir(dir).join("latest")).ok()?;
    name.trim().strip_prefix("step-")?.parse().ok()
}

fn committed_steps(dir: &Path) -> Vec<u64> {
    let mut steps: Vec<u64> = std::fs::read_dir(ckpt_dir(dir))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("step-")?.parse().ok())
        .collect();
    steps.sort();
    steps
}

/// The step a start resumed at, from rank 0's log line.
fn resumed_step(log: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("resumed at step "))?;
    line.split("resumed at step ").nth(1)?.split(' ').next()?.parse().ok()
}

fn state_files(dir: &Path, step: u64) -> Vec<Vec<u8>> {
    let step_dir = ckpt_dir(dir).join(format!("step-{step:08}"));
    ["g", "d", "g_ema", "g_opt", "d_opt"]
        .iter()
        .map(|n| std::fs::read(step_dir.join(format!("{n}.safetensors"))).unwrap())
        .collect()
}

/// Tick losses from stats.jsonl: (tick, Loss/G, Loss/D).
fn tick_losses(dir: &Path) -> Vec<(u64, f64, f64)> {
    std::fs::read_to_string(dir.join("ci-tiny/stats.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let stat = |k: &str| v["stats"][k].as_f64().unwrap();
            (v["tick"].as_u64().unwrap(), stat("Loss/G"), stat("Loss/D"))
        })
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn exact_resume_after_sigkill(gpus: u32) {
    gan_train_path();
    let (straight, interrupted) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // 1.024 kimg = 32 steps straight through.
    let (out, err) = run(&mut job(straight.path(), gpus, 1.024));
    assert!(out.status.success(), "{err}");
    // The same run, but long enough to be killed mid-way: SIGKILL to the launcher after the
    // step-8 checkpoint (its ranks die with it), then a resume to the same 32 steps.
    let mut child: Child = job(interrupted.path(), gpus, 1000.0).stderr(Stdio::null()).spawn().unwrap();
    wait_until("a checkpoint at step 8 or later", || latest_step(interrupted.path()).is_some_and(|s| s >= 8));
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = latest_step(interrupted.path()).unwrap();
    let (out, err) = run(&mut job(interrupted.path(), gpus, 1.024));
    assert!(out.status.success(), "{err}");
    let resumed = resumed_step(&err).unwrap_or_else(|| panic!("no resume: {err}"));
    assert!(resumed >= killed_at && resumed < 32, "resumed at {resumed}, latest was {killed_at}");
    assert_eq!(
        state_files(straight.path(), 32),
        state_files(interrupted.path(), 32),
        "bit-identical final state"
    );
    assert_eq!(
        tick_losses(straight.path()),
        tick_losses(interrupted.path()),
        "identical losses at every tick"
    );
    assert_eq!(committed_steps(interrupted.path()), vec![24, 28, 32], "checkpoint.keep_last 3");
}

#[test]
fn exact_resume_after_sigkill_with_one_rank() {
    exact_resume_after_sigkill(1);
}

#[test]
fn exact_resume_after_sigkill_with_two_ranks() {
    exact_resume_after_sigkill(2);
}

/// SIGKILL at each point of a checkpoint write; the next start loads the last committed one.
#[test]
fn a_kill_inside_a_checkpoint_write_leaves_the_previous_one_loadable() {
    gan_train_path();
    // The commit point is the rename: dying before it keeps step 8, after it step 12 is whole.
    for (point, expected) in
        [("mid-file", 8), ("before-manifest", 8), ("before-rename", 8), ("before-latest", 12)]
    {
        let dir = tempfile::tempdir().unwrap();
        let (out, err) = run(&mut job(dir.path(), 1, 0.256));
        assert!(out.status.success(), "{err}");
        // Resumes at 8; the first checkpoint it writes (step 12) dies at `point`.
        let (out, err) = run(job(dir.path(), 1, 0.512).env("GANLAUNCH_CKPT_FAULT", point));
        assert_eq!(out.status.code(), Some(137), "{point}: the rank was SIGKILLed: {err}");
        let (out, err) = run(&mut job(dir.path(), 1, 0.512));
        assert!(out.status.success(), "{point}: {err}");
        assert_eq!(resumed_step(&err), Some(expected), "{point}: {err}");
        if expected == 8 && point != "before-manifest" {
            assert!(err.contains("removed a partial checkpoint"), "{point}: {err}");
        }
    }
}

#[test]
fn a_corrupt_newest_checkpoint_is_skipped_with_a_warning() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = run(&mut job(dir.path(), 1, 0.256));
    assert!(out.status.success(), "{err}");
    let file = ckpt_dir(dir.path()).join("step-00000008/g.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, bytes).unwrap();
    // Named, it is an error, and `plan` says so as a launch would.
    let named = format!("checkpoint.resume={}", ckpt_dir(dir.path()).join("step-00000008").display());
    let (out, err) = checked("plan", dir.path(), &[&named]);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("would refuse to start") && err.contains("g.safetensors fails its BLAKE3 check"));
    let (out, err) = run(&mut job(dir.path(), 1, 0.384));
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("skipping checkpoint") && err.contains("g.safetensors fails its BLAKE3 check"),
        "{err}"
    );
    assert_eq!(resumed_step(&err), Some(4), "{err}");
}

/// SIGTERM to one rank only: both ranks checkpoint at the same step and the job exits with the
/// requeue code; the next start continues at that step.
#[test]
fn sigterm_to_one_rank_checkpoints_every_rank_and_asks_for_a_requeue() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let child = job(dir.path(), 2, 1000.0).stderr(Stdio::piped()).spawn().unwrap();
    let ranks = wait_for_ranks(child.id(), None);
    unsafe { libc::kill(pid_of_rank(&ranks, 1) as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{err}");
    let logs: Vec<String> = (0..2)
        .map(|r| std::fs::read_to_string(dir.path().join(format!("ci-tiny/logs/rank-{r}.log"))).unwrap())
        .collect();
    let preempted_at = |log: &str| -> u64 {
        let line = log.lines().find(|l| l.contains("preempted: checkpointed at step ")).expect(log);
        line.split("checkpointed at step ").nth(1).unwrap().split(';').next().unwrap().parse().unwrap()
    };
    let step = preempted_at(&logs[0]);
    assert_eq!(step, preempted_at(&logs[1]), "both ranks stop at one step");
    assert_eq!(latest_step(dir.path()), Some(step));
    // The requeued job: a few more steps from there.
    let total = (step + 4) as f64 * 32.0 / 1000.0;
    let (out, err) = run(&mut job(dir.path(), 2, total));
    assert!(out.status.success(), "{err}");
    assert_eq!(resumed_step(&err), Some(step), "{err}");
}

/// The terminal a job was started from goes away (an SSH session drops): the job gets SIGHUP,
/// which by default would kill the launcher and, through it, every rank without a checkpoint.
/// Run in a real pseudo-terminal whose master is then closed, the ranks checkpoint at one step
/// and the launcher exits 128 + 1, although its terminal is gone.
#[test]
fn a_terminal_that_hangs_up_stops_the_job_with_a_checkpoint() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let cmd = job(dir.path(), 2, 1000.0);
    let script = "import os, pty, select, sys, time\n\
                  marker, argv = sys.argv[1], sys.argv[2:]\n\
                  pid, fd = pty.fork()\n\
                  if pid == 0:\n    os.execv(argv[0], argv)\n\
                  deadline = time.time() + 120\n\
                  while not os.path.exists(marker) and time.time() < deadline:\n\
                  \x20   if select.select([fd], [], [], 0.1)[0]:\n\
                  \x20       os.read(fd, 65536)\n\
                  os.close(fd)\n\
                  print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n";
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .arg(ckpt_dir(dir.path()).join("latest"))
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "129", "the launcher's exit code");
    let steps: Vec<u64> = (0..2)
        .map(|r| {
            let log = std::fs::read_to_string(dir.path().join(format!("ci-tiny/logs/rank-{r}.log"))).unwrap();
            let line = log.lines().find(|l| l.contains("stopped by signal after a checkpoint")).expect(&log);
            line.split("step=").nth(1).unwrap().trim().parse().unwrap()
        })
        .collect();
    assert_eq!(steps[0], steps[1], "both ranks stop at one step");
    assert_eq!(latest_step(dir.path()), Some(steps[0]));
    let status = stdout(&gan_launch().arg("status").arg(dir.path().join("ci-tiny")).output().unwrap());
    let said = format!("stopped by signal 1 after a checkpoint at step {}", steps[0]);
    assert!(status.contains(&said), "{status}");
}

/// USR1 as SLURM's `--signal=USR1@90` delivers it (without `B:`): to the launcher and to every
/// rank at once, so each rank also gets the launcher's forwarded copy. One checkpoint, exit 75.
#[test]
fn usr1_to_launcher_and_ranks_at_once_is_one_preemption() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let child = job(dir.path(), 2, 1000.0).stderr(Stdio::piped()).spawn().unwrap();
    let ranks = wait_for_ranks(child.id(), None);
    for pid in ranks.iter().chain([child.id()].iter()) {
        unsafe { libc::kill(*pid as i32, libc::SIGUSR1) };
    }
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{err}");
    let log = std::fs::read_to_string(dir.path().join("ci-tiny/logs/rank-0.log")).unwrap();
    assert_eq!(log.matches("preempted: checkpointed at step").count(), 1, "{log}");
    assert!(latest_step(dir.path()).is_some());
}

/// One rank's checkpoint resumed by two ranks, and back: the data stream is re-sharded.
#[test]
fn the_world_size_and_batch_may_change_across_a_resume() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = run(&mut job(dir.path(), 1, 0.256));
    assert!(out.status.success(), "{err}");
    let (out, err) = run(&mut job(dir.path(), 2, 0.512));
    assert!(out.status.success(), "{err}");
    assert!(err.contains("written by 1 rank(s); now 2 ranks"), "{err}");
    assert!(!err.contains("resuming with train.batch_size"), "the batch did not change: {err}");
    assert_eq!(resumed_step(&err), Some(8));
    let (out, err) = run(&mut job(dir.path(), 1, 0.768));
    assert!(out.status.success(), "{err}");
    assert!(err.contains("written by 2 rank(s); now 1 ranks"), "{err}");
    assert_eq!((resumed_step(&err), latest_step(dir.path())), (Some(16), Some(24)));
    // `status` shows this job's one rank, not the second rank of the job before.
    let status = gan_launch().arg("status").arg(dir.path().join("ci-tiny")).output().unwrap();
    assert!(
        stdout(&status).starts_with(&format!("{}: 1 rank(s)", dir.path().join("ci-tiny").display())),
        "{}",
        stdout(&status)
    );
    assert!(stdout(&status).contains("every rank has ended: finished at step 24"), "{}", stdout(&status));
    // A smaller batch goes on from the images done (0.768 kimg), 16 images a step, and says so;
    // `plan` and the start name every setting changed since the checkpoint was written.
    let plan = |sets: &[&str]| {
        let mut cmd = gan_launch();
        cmd.args(["plan", "--gpus", "1"]).arg(shipped_config("ci-tiny.yaml"));
        cmd.args(["--set", &format!("run.dir={}", dir.path().display())]);
        for set in sets {
            cmd.args(["--set", set]);
        }
        stdout(&cmd.output().unwrap())
    };
    let changed = "train.batch_size: 32 -> 16";
    let plan_out = plan(&["train.batch_size=16", "train.total_kimg=1.024"]);
    assert!(
        plan_out.contains("# changed since the checkpoint: ") && plan_out.contains(changed),
        "{plan_out}"
    );
    assert!(!plan_out.contains("already trained"), "{plan_out}");
    // At the total the checkpoint reached, the start would take no step, and `plan` says so.
    let plan_out = plan(&["train.total_kimg=0.768"]);
    assert!(
        plan_out.contains("# already trained to train.total_kimg 0.768: the start takes no step"),
        "{plan_out}"
    );
    let (out, err) = run(job(dir.path(), 1, 1.024).args(["--set", "train.batch_size=16"]));
    assert!(out.status.success(), "{err}");
    assert!(err.contains("resuming with train.batch_size 16 where the checkpoint's run used 32"), "{err}");
    assert!(err.contains("this start changes 2 setting(s) from the checkpoint's: "), "{err}");
    assert!(err.contains(changed) && err.contains("train.total_kimg: 0.768 -> 1.024"), "{err}");
    assert_eq!((resumed_step(&err), latest_step(dir.path())), (Some(24), Some(40)));
}

/// A disk that cannot take checkpoints: every write fails, in the background or not, and
/// training goes on (the previous checkpoint, if any, intact); at the end the trained G_ema is still saved, apart, and the run
/// fails on the last checkpoint's error, which its rank's last flight record gives `status` too.
#[test]
fn failed_checkpoint_writes_keep_training_and_the_final_g_ema() {
    gan_train_path();
    for background in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = job(dir.path(), 1, 0.512);
        cmd.env("GANLAUNCH_CKPT_FAULT", "disk-full")
            .args(["--set", &format!("checkpoint.background={background}")]);
        let (out, err) = run(&mut cmd);
        assert_eq!(out.status.code(), Some(1), "background {background}: {err}");
        let full = "No space left on device";
        let continues = format!(
            "g.safetensors: {full} (os error 28); the previous checkpoint is intact, training continues"
        );
        assert!(err.matches(&continues).count() >= 3, "every tick's write failed, training went on: {err}");
        assert!(err.contains("the last checkpoint could not be written: write "), "{err}");
        let left: Vec<String> = std::fs::read_dir(ckpt_dir(dir.path()))
            .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        assert!(
            left.iter().all(|name| !name.starts_with("step-")),
            "nothing committed, no temporary left: {left:?}"
        );
        let final_file = dir.path().join("ci-tiny/g_ema-final.safetensors");
        let verified = gan_launch().args(["ckpt", "verify"]).arg(&final_file).output().unwrap();
        assert!(
            stdout(&verified).contains("ok (G_ema file of a dcgan model, step 16"),
            "{}",
            stderr(&verified)
        );
        let status = stdout(&gan_launch().arg("status").arg(dir.path().join("ci-tiny")).output().unwrap());
        assert!(status.contains("every rank has ended: failed: write ") && status.contains(full), "{status}");
    }
}

/// A 4 MiB tmpfs, unmounted when dropped (mounting needs root, as the SLURM cluster does).
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "mounting a tmpfs: {}", stderr(&out));
        SmallDisk(dir)
    }

    /// Takes every byte left, as another job's output would.
    fn fill(&self) {
        use std::io::Write;
        let mut filler = std::fs::File::create(self.0.path().join("filler")).unwrap();
        while filler.write_all(&[0u8; 65536]).is_ok() {}
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// A real disk that fills up mid-run: checkpoint, sample grid and stats writes fail and training
/// goes on to the end, its heartbeat and flight record rewritten in place (a watchdog that took
/// the full disk for a hang would stop the job within `dist.heartbeat_timeout_secs`, 8 s: short
/// beside the run after the fill, long beside a step on a loaded CI machine); only the final
/// G_ema fails the run, leaving no partial file, and `status` says why.
#[test]
fn a_disk_that_fills_up_mid_run_fails_only_the_final_write() {
    gan_train_path();
    let disk = SmallDisk::mount();
    let mut cmd = job(disk.0.path(), 1, 3.0);
    let child = cmd.args(["--set", "dist.heartbeat_timeout_secs=8"]).stderr(Stdio::piped()).spawn().unwrap();
    wait_until("the first checkpoint", || latest_step(disk.0.path()).is_some());
    disk.fill();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // Rank 0's lines, from the console: its log file is on the full disk too.
    let full = "No space left on device (os error 28); training continues without it";
    assert!(err.contains("could not write the sample grid") && err.contains(full), "{err}");
    assert!(err.contains("could not write a line of stats.jsonl"), "{err}");
    assert!(err.contains("the last checkpoint could not be written"), "trained to the end: {err}");
    assert!(!err.contains("made no progress"), "the watchdog saw the heartbeat: {err}");
    assert!(!disk.0.path().join("ci-tiny/g_ema-final.safetensors.tmp").exists(), "no partial G_ema left");
    let status = stdout(&gan_launch().arg("status").arg(disk.0.path().join("ci-tiny")).output().unwrap());
    assert!(status.contains("failed: write ") && status.contains("No space left on device"), "{status}");
}

/// A preemption whose checkpoint cannot be written (a full disk) still exits for a requeue: the
/// requeued job resumes from the newest checkpoint that verifies, where exiting 1 would have
/// ended the job for good. The trained G_ema is saved apart, and `status` says what happened.
#[test]
fn a_preemption_whose_checkpoint_fails_still_asks_for_a_requeue() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = job(dir.path(), 2, 1000.0);
    let child = cmd.env("GANLAUNCH_CKPT_FAULT", "disk-full").stderr(Stdio::piped()).spawn().unwrap();
    wait_for_ranks(child.id(), None);
    unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{err}");
    let log = std::fs::read_to_string(dir.path().join("ci-tiny/logs/rank-0.log")).unwrap();
    assert!(
        log.contains("but its checkpoint failed: write ") && log.contains("requeue code 75 all the same"),
        "{log}"
    );
    assert!(dir.path().join("ci-tiny/g_ema-final.safetensors").is_file());
    let status = stdout(&gan_launch().arg("status").arg(dir.path().join("ci-tiny")).output().unwrap());
    assert!(
        status.contains("whose checkpoint failed (write ") && status.contains("exited for a requeue"),
        "{status}"
    );
}

/// A `plan` or `sbatch` (`what`) of the ci-tiny run in `dir`, with `sets`: an sbatch that passes its
/// checks would submit, so only refusals go that way.
fn checked(what: &str, dir: &Path, sets: &[&str]) -> (Output, String) {
    let mut cmd = gan_launch();
    cmd.arg(what).arg(shipped_config("ci-tiny.yaml")).args(["--set", &format!("run.dir={}", dir.display())]);
    if what == "sbatch" {
        cmd.args(["--nodes", "1", "--gpus", "1"]);
    }
    for set in sets {
        cmd.args(["--set", set]);
    }
    run(&mut cmd)
}

/// Refused where a resume of another model costs nothing yet: `plan`, `sbatch` before the job
/// queues, and the ranks, which load the checkpoint. A model setting that leaves every shape as
/// it was passes (the shapes are compared, not the settings).
#[test]
fn a_checkpoint_of_another_model_is_refused_with_exit_code_2() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = run(&mut job(dir.path(), 1, 0.128));
    assert!(out.status.success(), "{err}");
    let narrower = "model.channel_max=32";
    for what in ["plan", "sbatch"] {
        let (out, err) = checked(what, dir.path(), &[narrower]);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains("would refuse to start: checkpoint "), "{what}: {err}");
        assert!(
            err.contains("/g.safetensors: G variable `b8.conv0.weight` has shape [32, 64, 3, 3] there, [32, 32, 3, 3] in")
                && err.contains("changed since the checkpoint: model.channel_max: 64 -> 32;")
                && err.contains("set them back, or start over with --resume none"),
            "{what}: {err}"
        );
        assert!(!err.contains("sbatch failed") && !err.contains("running sbatch"), "not submitted: {err}");
    }
    // A trainer that does not run where `plan` does (a login node without its libraries): the
    // shapes go unchecked there, with a note, and the ranks still refuse them.
    let mut elsewhere = gan_launch();
    elsewhere
        .arg("plan")
        .arg(shipped_config("ci-tiny.yaml"))
        .env("GAN_LAUNCH_TRAINER", "/nonexistent/gan-train");
    elsewhere.args(["--set", &format!("run.dir={}", dir.path().display()), "--set", narrower]);
    let (out, err) = run(&mut elsewhere);
    assert!(out.status.success(), "{err}");
    assert!(
        stdout(&out).contains("# note: the networks' shapes were not compared with "),
        "{}",
        stdout(&out)
    );
    let (out, err) = checked("plan", dir.path(), &["model.arch=stylegan2"]);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("it holds a dcgan model and this config trains model.arch stylegan2"), "{err}");
    // Channels are min(channel_base / res, channel_max): 256 / 4 = 64 reached the old limit, not the new.
    let (out, err) = checked("plan", dir.path(), &["model.channel_max=128"]);
    assert!(out.status.success(), "{err}");
    assert!(stdout(&out).contains("model.channel_max: 64 -> 128"), "{}", stdout(&out));
    let (out, err) = run(job(dir.path(), 1, 0.256).args(["--set", narrower]));
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("has shape") && err.contains("did model.* change?"), "{err}");
    assert_eq!(committed_steps(dir.path()), vec![4], "nothing lost");
}

/// A resume on another dataset than the checkpoint's is refused with both datasets named, and
/// nothing is lost: one class fewer (the labels would name other shapes; this is found before
/// the model's shapes are compared), or other images of the same classes.
/// `checkpoint.allow_dataset_change` lets the second go on, with a warning.
#[test]
fn a_resume_on_another_dataset_is_refused_unless_allowed() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = run(&mut job(dir.path(), 1, 0.128));
    assert!(out.status.success(), "{err}");
    let fewer_classes = ["--set", "data.num_classes=3"];
    let (out, err) = checked("plan", dir.path(), &[fewer_classes[1]]);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("would refuse to start: checkpoint") && err.contains("it was trained on generated ")
    );
    let (out, err) = run(job(dir.path(), 1, 0.256).args(fewer_classes));
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("it was trained on generated ")
            && err.contains("4 classes (disc, square, triangle, ring)")
            && err.contains("3 classes (disc, square, triangle)")
            && err.contains("labels of a conditional model would mean other classes")
            && err.contains("checkpoint.allow_dataset_change: true"),
        "{err}"
    );
    assert_eq!(committed_steps(dir.path()), vec![4], "nothing lost");
    let other_images = ["--set", "data.num_images=1024"];
    let (out, err) = run(job(dir.path(), 1, 0.256).args(other_images));
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("2048 images of 16x16x3") && err.contains("1024 images of 16x16x3"), "{err}");
    assert!(!err.contains("labels of a conditional model"), "the same classes: {err}");
    let allow = ["--set", "checkpoint.allow_dataset_change=true"];
    let (out, err) = checked("plan", dir.path(), &[other_images[1], allow[1]]);
    assert!(out.status.success(), "{err}");
    assert!(
        stdout(&out).contains("# note: resuming ") && stdout(&out).contains("on another dataset"),
        "{err}"
    );
    let (out, err) = run(job(dir.path(), 1, 0.256).args(other_images).args(allow));
    assert!(out.status.success(), "{err}");
    assert!(err.contains("on another dataset (checkpoint.allow_dataset_change)"), "{err}");
    assert_eq!(resumed_step(&err), Some(4), "{err}");
    // The new checkpoints record the new dataset: a plain resume on it passes.
    let (out, err) = run(job(dir.path(), 1, 0.384).args(other_images));
    assert!(out.status.success(), "{err}");
    assert_eq!(resumed_step(&err), Some(8), "{err}");
}

#[test]
fn resume_none_sets_old_checkpoints_aside_and_resume_path_starts_from_another_run() {
    gan_train_path();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (out, err) = run(&mut job(a.path(), 1, 0.256));
    assert!(out.status.success(), "{err}");
    let (out, err) = run(job(a.path(), 1, 0.128).args(["--resume", "none"]));
    assert!(out.status.success(), "{err}");
    assert_eq!(resumed_step(&err), None, "a fresh start: {err}");
    let aside: Vec<_> = std::fs::read_dir(a.path().join("ci-tiny"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("replaced-"))
        .collect();
    assert_eq!(aside.len(), 1, "{err}");
    assert!(aside[0].path().join("checkpoints/step-00000008/manifest.json").is_file());
    // The old line's grids and final G_ema go with it: samples/ shows the new line only.
    assert!(aside[0].path().join("samples/fakes000000.256.png").is_file(), "{err}");
    assert!(aside[0].path().join("g_ema-final.safetensors").is_file(), "{err}");
    assert!(!a.path().join("ci-tiny/samples/fakes000000.256.png").exists(), "{err}");
    assert!(a.path().join("ci-tiny/samples/fakes000000.128.png").is_file(), "{err}");
    // Another run directory starts from a's newest checkpoint (step 4 of the fresh run).
    let from = a.path().join("ci-tiny");
    let (out, err) = run(job(b.path(), 1, 0.256).args(["--resume", from.to_str().unwrap()]));
    assert!(out.status.success(), "{err}");
    assert_eq!(resumed_step(&err), Some(4), "{err}");
    // A path that names no checkpoint (here a file) is refused before any rank starts.
    let c = tempfile::tempdir().unwrap();
    let file = from.join("g_ema-final.safetensors");
    let (out, err) = run(job(c.path(), 1, 0.256).args(["--resume", file.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("g_ema-final.safetensors: is a file; expected a checkpoint directory"), "{err}");
    assert!(!err.contains("[rank=") && !c.path().join("ci-tiny").exists(), "no rank started: {err}");
    // A SLURM requeue goes on from the run's own checkpoints, even once the named one is gone.
    std::fs::remove_dir_all(&from).unwrap();
    let (out, err) = run(job(b.path(), 1, 0.384)
        .args(["--resume", from.to_str().unwrap()])
        .env("SLURM_RESTART_COUNT", "1"));
    assert!(out.status.success(), "{err}");
    assert_eq!(resumed_step(&err), Some(8), "{err}");
}

fn replaced_dirs(run_dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(run_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("replaced-"))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

/// Going back by hand to an earlier checkpoint of the same run (say the one before a collapse)
/// starts a new line: the later checkpoints move aside, so a plain restart goes on from the new
/// line, not from the abandoned one, and retention does not prune the new line in their favour.
/// Starting from another run's checkpoint sets all of the run's own aside.
#[test]
fn resuming_an_earlier_checkpoint_sets_the_later_ones_aside() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = run(&mut job(dir.path(), 1, 0.64));
    assert!(out.status.success(), "{err}");
    assert_eq!(committed_steps(dir.path()), vec![12, 16, 20]);
    let back = ckpt_dir(dir.path()).join("step-00000012");
    // `plan` says so first, and moves nothing.
    let mut plan = gan_launch();
    plan.arg("plan")
        .arg(shipped_config("ci-tiny.yaml"))
        .args(["--set", &format!("run.dir={}", dir.path().display())]);
    let planned = plan.arg("--resume").arg(&back).output().unwrap();
    let said = "(step 12, 0.384 kimg); moves the run's later checkpoints (step 16, 20) to replaced-<time>/";
    assert!(stdout(&planned).contains(said), "{}{}", stdout(&planned), stderr(&planned));
    assert_eq!(committed_steps(dir.path()), vec![12, 16, 20]);
    let (out, err) = run(job(dir.path(), 1, 0.58).args(["--resume", back.to_str().unwrap()]));
    assert!(out.status.success(), "{err}");
    assert_eq!(resumed_step(&err), Some(12), "{err}");
    assert!(
        err.contains("resuming from step 12 of this run: moved its 2 later checkpoint(s) aside"),
        "{err}"
    );
    assert_eq!(committed_steps(dir.path()), vec![12, 16, 19], "the new line only");
    let run_dir = dir.path().join("ci-tiny");
    let aside = replaced_dirs(&run_dir);
    assert_eq!(aside.len(), 1, "{err}");
    for step in [16, 20] {
        assert!(
            aside[0].join(format!("checkpoints/step-{step:08}/manifest.json")).is_file(),
            "{step} kept aside"
        );
    }
    // The grids the abandoned line drew after step 12 (0.384 kimg) go with its checkpoints.
    assert!(aside[0].join("samples/fakes000000.640.png").is_file(), "{err}");
    assert!(!aside[0].join("samples/fakes000000.384.png").exists(), "{err}");
    assert!(!run_dir.join("samples/fakes000000.640.png").exists(), "{err}");
    let listed = stdout(&gan_launch().args(["ckpt", "ls"]).arg(&run_dir).output().unwrap());
    let line = format!("set aside: {} (step 16, 20;", aside[0].join("checkpoints").display());
    assert!(listed.contains(&line), "ckpt ls says where they went: {listed}");
    // A plain start (a restart, a requeue) goes on from the new line's newest.
    let (out, err) = run(&mut job(dir.path(), 1, 0.7));
    assert!(out.status.success(), "{err}");
    assert_eq!(resumed_step(&err), Some(19), "{err}");
    // Another run's checkpoint: this run's own move aside, whole.
    let other = tempfile::tempdir().unwrap();
    let (out, err) = run(&mut job(other.path(), 1, 0.128));
    assert!(out.status.success(), "{err}");
    let from = other.path().join("ci-tiny");
    let (out, err) = run(job(dir.path(), 1, 0.256).args(["--resume", from.to_str().unwrap()]));
    assert!(out.status.success(), "{err}");
    assert_eq!(resumed_step(&err), Some(4), "{err}");
    assert_eq!(committed_steps(dir.path()), vec![8], "{err}");
    // In the same second as the first set-aside or not, the second gets a directory of its own.
    let aside = replaced_dirs(&run_dir);
    assert_eq!(aside.len(), 2, "{err}");
    assert!(aside[1].join("checkpoints/step-00000022/manifest.json").is_file(), "{err}");
    let moved = gan_core::checkpoint::Checkpoints::new(aside[1].join("checkpoints")).list().unwrap().len();
    let said =
        format!("checkpoint.resume names another run's checkpoint: moved the run's {moved} checkpoint(s)");
    assert!(err.contains(&said), "{err}");
}

/// Largest absolute difference between the tensors of two safetensors files of the same model.
fn max_abs_difference(a: &Path, b: &Path) -> f32 {
    let (a, b) =
        (gan_core::checkpoint::read_tensors(a).unwrap(), gan_core::checkpoint::read_tensors(b).unwrap());
    assert_eq!(a.len(), b.len());
    let floats = |data: &[u8]| -> Vec<f32> {
        data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
    };
    let mut worst = 0f32;
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.name, &x.shape), (&y.name, &y.shape));
        for (p, q) in floats(&x.data).iter().zip(floats(&y.data)) {
            worst = worst.max((p - q).abs());
        }
    }
    worst
}

fn state_json(dir: &Path, step: u64) -> serde_json::Value {
    let path = ckpt_dir(dir).join(format!("step-{step:08}/state.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `--init-from` starts a new run from another run's G, D and G_ema (fine-tuning, here on another
/// generated dataset): the networks carry over (with a learning rate too small to move them,
/// they stay the source's), the counters start at zero, and it is taken only while the run has no
/// checkpoint of its own, so a restart goes on from the run's own even once the source is gone.
#[test]
fn init_from_starts_a_new_run_from_another_runs_networks() {
    gan_train_path();
    let (source, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (out, err) = run(&mut job(source.path(), 1, 0.128));
    assert!(out.status.success(), "{err}");
    let from = source.path().join("ci-tiny");
    let tiny_lr = ["--set", "train.g_opt.lr=1e-30", "--set", "train.d_opt.lr=1e-30"];
    let fine_tune = |total_kimg: f64| {
        let mut cmd = job(dir.path(), 1, total_kimg);
        cmd.args(["--init-from", from.to_str().unwrap(), "--set", "run.seed=7"]).args(tiny_lr);
        cmd
    };
    let (out, err) = run(&mut fine_tune(0.128));
    assert!(out.status.success(), "{err}");
    assert!(err.contains("initialised G, D and G_ema from step 4 (0.1 kimg) of"), "{err}");
    assert!(err.contains("fine-tuning on another dataset: it was trained on generated"), "{err}");
    assert_eq!(resumed_step(&err), None, "{err}");
    let state = state_json(dir.path(), 4);
    assert_eq!((state["step"].as_u64(), state["cur_nimg"].as_u64()), (Some(4), Some(128)), "counters from 0");
    for net in ["g", "d"] {
        let file = format!("step-00000004/{net}.safetensors");
        let moved =
            max_abs_difference(&ckpt_dir(source.path()).join(&file), &ckpt_dir(dir.path()).join(&file));
        assert!(moved < 1e-6, "{net} is the source's: {moved}");
    }
    // The run's own checkpoint wins from now on, even once the source is gone.
    std::fs::rename(&from, source.path().join("moved")).unwrap();
    let (out, err) = run(&mut fine_tune(0.256));
    assert!(out.status.success(), "{err}");
    assert_eq!(resumed_step(&err), Some(4), "{err}");
    assert!(!err.contains("initialised G, D and G_ema"), "{err}");
    // Its checkpoints, through the resume, and its final G_ema say what it started from.
    let started = format!(
        "started from the networks of {} (step 4, 0.128 kimg, trained on generated ",
        ckpt_dir(source.path()).join("step-00000004").display()
    );
    for path in [dir.path().join("ci-tiny"), dir.path().join("ci-tiny/g_ema-final.safetensors")] {
        let verified = gan_launch().args(["ckpt", "verify"]).arg(&path).output().unwrap();
        assert!(stdout(&verified).contains(&started), "{}{}", stdout(&verified), stderr(&verified));
    }
    // A fresh run whose source is gone, or is a G_ema file (no D), or holds other networks, is
    // refused before any rank.
    let fresh = tempfile::tempdir().unwrap();
    let init_from = format!("checkpoint.init_from={}", dir.path().join("ci-tiny").display());
    let (out, err) = checked("plan", fresh.path(), &[&init_from, "model.z_dim=16"]);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("has shape") && err.contains("checkpoint.init_from needs networks of the same shapes")
    );
    let (out, err) = run(job(fresh.path(), 1, 0.128).args(["--init-from", from.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no checkpoint there") && err.contains("(named by checkpoint.init_from)"), "{err}");
    let g_ema_file = source.path().join("moved/g_ema-final.safetensors");
    let (out, err) = run(job(fresh.path(), 1, 0.128).args(["--init-from", g_ema_file.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("a G_ema file holds no D"), "{err}");
    assert!(!err.contains("[rank=") && !fresh.path().join("ci-tiny").exists(), "no rank started: {err}");
}

/// FreezeD while fine-tuning a small StyleGAN2 on two ranks: D's first four layers (b16's
/// FromRGB, conv0, conv1 and skip) stay exactly the source's, the rest of D trains.
#[test]
fn freeze_d_fine_tunes_with_ds_first_layers_kept() {
    gan_train_path();
    let stylegan2 =
        ["model.arch=stylegan2", "model.w_dim=32", "model.mapping_layers=2", "model.mbstd_group_size=4"];
    let sets: Vec<&str> = stylegan2.iter().flat_map(|s| ["--set", s]).collect();
    let (source, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (out, err) = run(job(source.path(), 1, 0.128).args(&sets));
    assert!(out.status.success(), "{err}");
    let from = source.path().join("ci-tiny");
    let fine_tune =
        ["--init-from", from.to_str().unwrap(), "--set", "train.freeze_d=4", "--set", "run.seed=3"];
    let (out, err) = run(job(dir.path(), 2, 0.128).args(&sets).args(fine_tune));
    assert!(out.status.success(), "{err}");
    let d_of = |root: &Path| {
        gan_core::checkpoint::read_tensors(&ckpt_dir(root).join("step-00000004/d.safetensors")).unwrap()
    };
    let (before, after) = (d_of(source.path()), d_of(dir.path()));
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a.name, b.name);
        let frozen = a.name.starts_with("b16.");
        let trainable_here = a.name.starts_with("b8.") || a.name.starts_with("b4.");
        if frozen {
            assert!(a.data == b.data, "{} is frozen", a.name);
        } else if trainable_here && a.name.ends_with("weight") {
            assert!(a.data != b.data, "{} trains", a.name);
        }
    }
    assert!(before.iter().any(|t| t.name == "b16.skip.weight"), "a resnet D");
}

/// (mean, max) absolute difference of two grids' pixels, in 0..1. Two runs of one G_ema on one
/// batch agree up to the last bits of a float, not to the bit: libtorch's CPU kernels split their
/// sums by their thread count (1 and 2 threads give 2 pixels a level apart in a 128x128 grid),
/// and a CI run once drew two grids of one G_ema that were not byte for byte the same.
fn grid_distance(a: &image::RgbImage, b: &image::RgbImage) -> (f64, f64) {
    assert_eq!(a.dimensions(), b.dimensions());
    let diffs: Vec<f64> =
        a.as_raw().iter().zip(b.as_raw()).map(|(&x, &y)| f64::from(x.abs_diff(y)) / 255.0).collect();
    (diffs.iter().sum::<f64>() / diffs.len() as f64, diffs.iter().cloned().fold(0.0, f64::max))
}

/// The same grid up to rounding: no pixel off by more than two levels, almost all exact.
fn assert_same_grid(a: &image::RgbImage, b: &image::RgbImage, what: &str) {
    let (mean, max) = grid_distance(a, b);
    assert!(max <= 2.0 / 255.0 && mean < 1e-3, "{what}: mean {mean}, max {max}");
}

#[test]
fn ckpt_commands_list_verify_and_export() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = run(&mut job(dir.path(), 1, 0.256));
    assert!(out.status.success(), "{err}");
    let run_dir = dir.path().join("ci-tiny");
    // The job's config names the run as well as its directory does (its run.dir set here as
    // the job's --set did).
    let by_config = |command: &[&str]| {
        let mut cmd = gan_launch();
        cmd.args(command).arg(shipped_config("ci-tiny.yaml")).env("GAN_RUN__DIR", dir.path());
        cmd
    };
    let ls = by_config(&["ckpt", "ls"]).output().unwrap();
    let table = stdout(&ls);
    assert!(
        ls.status.success() && table.contains("step-00000008") && table.contains("ok (latest)"),
        "{table}"
    );
    // The diversity column: that of the last grid up to each checkpoint, as in stats.jsonl.
    let stats = std::fs::read_to_string(run_dir.join("stats.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(stats.lines().last().unwrap()).unwrap();
    let diversity = format!("{:.2}", last["sample_diversity"]["ratio"].as_f64().unwrap());
    let latest_row = table.lines().find(|l| l.contains("(latest)")).unwrap();
    assert!(table.lines().next().unwrap().contains(" diversity "), "{table}");
    assert!(latest_row.split_whitespace().any(|cell| cell == diversity), "{diversity}: {table}");
    // kimg to the image: ci-tiny's checkpoints come every 0.128 kimg.
    assert!(latest_row.split_whitespace().nth(2) == Some("0.256"), "{table}");
    let verify = gan_launch()
        .args(["ckpt", "verify"])
        .arg(ckpt_dir(dir.path()).join("step-00000004"))
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", stderr(&verify));
    assert!(
        stdout(&verify).contains("\n  trained on generated ")
            && stdout(&verify).contains(": 2048 images of 16x16x3, 4 classes (disc, square, triangle, ring)"),
        "{}",
        stdout(&verify)
    );
    // A truncated file: verify fails with exit 2 and ls marks it.
    let file = ckpt_dir(dir.path()).join("step-00000004/d_opt.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..100]).unwrap();
    let verify = gan_launch()
        .args(["ckpt", "verify"])
        .arg(ckpt_dir(dir.path()).join("step-00000004"))
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(2));
    assert!(stderr(&verify).contains("d_opt.safetensors has 100 bytes"), "{}", stderr(&verify));
    let table = stdout(&gan_launch().args(["ckpt", "ls"]).arg(&run_dir).output().unwrap());
    assert!(table.contains("CORRUPT"), "{table}");
    // A grid from the newest checkpoint: one class, truncated latents; a bad class is exit 2.
    let grid = dir.path().join("grid.png");
    let sample = by_config(&["sample"])
        .arg("--out")
        .arg(&grid)
        .args(["--class", "1", "--truncation", "0.7"])
        .output()
        .unwrap();
    assert!(sample.status.success(), "{}", stderr(&sample));
    let img = image::open(&grid).unwrap();
    assert_eq!((img.width(), img.height()), (8 * 16, 8 * 16), "8 x 8 samples of 16 px");
    // A file that is no G_ema file (the grid just drawn) is refused as such, exit 2.
    let not_g_ema =
        gan_launch().arg("sample").arg(&grid).arg("--out").arg(dir.path().join("x.png")).output().unwrap();
    assert_eq!(not_g_ema.status.code(), Some(2), "{}", stderr(&not_g_ema));
    assert!(stderr(&not_g_ema).contains("does not read as a safetensors file"), "{}", stderr(&not_g_ema));
    let bad = gan_launch()
        .arg("sample")
        .arg(&run_dir)
        .arg("--out")
        .arg(&grid)
        .args(["--class", "7"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let err = stderr(&bad);
    assert!(err.contains("--class") && err.contains("0..3 or a name: disc, square, triangle"), "{err}");
    // Export G_ema and read it back in Python with the reference safetensors package.
    let out_file = dir.path().join("g_ema.safetensors");
    let export =
        gan_launch().args(["ckpt", "export"]).arg(&run_dir).arg("--out").arg(&out_file).output().unwrap();
    assert!(export.status.success(), "{}", stderr(&export));
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let script = "import sys\nfrom safetensors import safe_open\nfrom safetensors.torch import load_file\n\
                  with safe_open(sys.argv[1], 'pt') as f: meta = f.metadata()\n\
                  g = load_file(sys.argv[1]); opt = load_file(sys.argv[2])\n\
                  print(meta['arch'], meta['step'], len(g), int(opt['step']), meta['dataset'].split()[0])";
    let py = std::process::Command::new(python)
        .args(["-c", script])
        .arg(&out_file)
        .arg(ckpt_dir(dir.path()).join("step-00000008/g_opt.safetensors"))
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", stderr(&py));
    let printed = stdout(&py);
    let fields: Vec<&str> = printed.split_whitespace().collect();
    assert_eq!((fields[0], fields[1], fields[3], fields[4]), ("dcgan", "8", "8", "generated"), "{printed}");
    assert!(fields[2].parse::<u32>().unwrap() > 4, "{printed}");

    // `sample` takes the exported file, or the run's final one, as it takes the checkpoint: the
    // same grid from the same G_ema. Another safetensors file is refused, naming it.
    let sample_of = |source: &Path, png: &str, class: &str| {
        let path = dir.path().join(png);
        let out =
            gan_launch().arg("sample").arg(source).arg("--out").arg(&path).args(["--class", class]).output();
        let out = out.unwrap();
        assert!(out.status.success(), "{}: {}", source.display(), stderr(&out));
        image::open(path).unwrap().to_rgb8()
    };
    let by_index = sample_of(&out_file, "exported.png", "1");
    assert_same_grid(&by_index, &sample_of(&run_dir, "checkpoint.png", "1"), "checkpoint");
    sample_of(&run_dir.join("g_ema-final.safetensors"), "final.png", "1");
    // Classes go by the dataset's names too, which checkpoints and G_ema files record.
    assert_same_grid(&by_index, &sample_of(&out_file, "named.png", "square"), "class by name");
    assert_same_grid(&by_index, &sample_of(&run_dir, "named-ckpt.png", "Square"), "name, any case");
    // What "the same grid" rules out: another class from the same latents.
    let other = grid_distance(&by_index, &sample_of(&out_file, "class2.png", "2"));
    assert!(other.0 > 0.02, "class 1 and class 2 draw the same grid: {other:?}");
    let tensors_only = ckpt_dir(dir.path()).join("step-00000008/g.safetensors");
    let bad = gan_launch().arg("sample").arg(&tensors_only).arg("--out").arg(&grid).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("g.safetensors: its metadata do not say format gan-launch-g-ema"));
    // `ckpt verify` checks a G_ema file's tensors against their digest; the commands that want
    // a checkpoint or run directory say so when given a file.
    let verified = gan_launch().args(["ckpt", "verify"]).arg(&out_file).output().unwrap();
    assert!(stdout(&verified).contains(": ok (G_ema file of a dcgan model, step 8"), "{}", stdout(&verified));
    let mut bytes = std::fs::read(&out_file).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&out_file, bytes).unwrap();
    for args in [&["ckpt", "verify"][..], &["sample", "--out", "x.png"][..]] {
        let out = gan_launch().args(args).arg(&out_file).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("do not match the BLAKE3 digest"), "{}", stderr(&out));
    }
    for args in [&["ckpt", "ls"][..], &["ckpt", "export", "--out", "y.safetensors"][..]] {
        let out = gan_launch().args(args).arg(&out_file).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("g_ema.safetensors: is a file; expected a"), "{}", stderr(&out));
    }
}
