//! Real training runs through the launcher: `gan-launch --nodes 1 --gpus 1 CONFIG` starts the
//! trainer with torchrun's environment, which trains, writes the run directory and exits 0; a
//! Ctrl-C (SIGINT to the launcher) stops it cleanly with the final files written.
mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn run_dir_args(dir: &Path) -> Vec<String> {
    vec!["--set".into(), format!("run.dir={}", dir.display())]
}

#[test]
fn single_rank_run_trains_and_writes_the_run_directory() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let out = gan_launch()
        .args(["--nodes", "1", "--gpus", "1"])
        .arg(shipped_config("ci-tiny.yaml"))
        .args(run_dir_args(dir.path()))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    // Every line names its process.
    assert!(err.lines().filter(|l| l.contains("tick")).all(|l| l.contains("[rank=0]")), "{err}");
    assert!(err.contains("[launcher node=0]"), "{err}");
    let run = dir.path().join("ci-tiny");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(manifest["world_size"], 1);
    assert_eq!(manifest["device"].as_str().unwrap().split(' ').next(), Some("cpu"));
    assert!(manifest["libtorch_version"].as_str().unwrap().starts_with("2.11.0"), "{manifest}");
    for key in ["git_commit", "crate_version", "host", "start_time", "rank_seeds"] {
        assert!(!manifest[key].is_null(), "manifest lacks {key}: {manifest}");
    }
    // 0.5 kimg in ticks of 0.25 kimg (8 steps of 32): grids at 256 and 512 images, and the init grid.
    assert!(run.join("samples/fakes000000.256.png").is_file());
    let grid = image::open(run.join("samples/fakes000000.512.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (8 * 16, 4 * 16));
    assert!(run.join("g_ema-final.safetensors").is_file());
    assert!(run.join("config.yaml").is_file());
}

#[test]
fn json_logs_carry_the_rank() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let out = gan_launch()
        .arg(shipped_config("ci-tiny.yaml"))
        .args(run_dir_args(dir.path()))
        .args(["--set", "log.format=json", "--set", "train.total_kimg=0.25"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let events: Vec<serde_json::Value> =
        stderr(&out).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let rank_events: Vec<&serde_json::Value> = events.iter().filter(|e| e["role"] == "rank").collect();
    assert!(rank_events.len() >= 2, "{events:?}");
    assert!(rank_events.iter().all(|e| e["rank"] == 0 && e["local_rank"] == 0 && e["node"] == 0));
    assert!(events.iter().any(|e| e["role"] == "launcher"));
}

/// A user's own malloc tuning reaches the rank whole (every tunable of a multi-part
/// `GLIBC_TUNABLES`, the malloc one not first), and the launcher adds none of its own.
#[test]
fn the_users_malloc_tunables_reach_the_rank_whole() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let tunables = "glibc.pthread.rseq=0:glibc.malloc.arena_max=2";
    let out = gan_launch()
        .env("GLIBC_TUNABLES", tunables)
        .arg(shipped_config("ci-tiny.yaml"))
        .args(run_dir_args(dir.path()))
        .args(["--set", "train.total_kimg=0.032"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let said = format!("[rank=0] host memory: glibc malloc as GLIBC_TUNABLES={tunables} sets it");
    assert!(err.contains(&said), "{err}");
}

/// `gan-train` started by hand on a CPU sets up glibc itself (mallopt): freed blocks kept, and
/// every thread on the main heap, as the launcher's tunables do for its ranks.
#[test]
fn gan_train_by_hand_keeps_freed_memory_on_every_thread() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(gan_train_path())
        .env_remove("GLIBC_TUNABLES")
        .arg(shipped_config("ci-tiny.yaml"))
        .args(run_dir_args(dir.path()))
        .args(["--set", "train.total_kimg=0.032", "--set", "log.level=debug"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("host memory: freed blocks kept for reuse up to 2 GiB free (mallopt"), "{err}");
    assert!(
        err.contains("host memory: every thread allocates from the main heap (one arena, mallopt)"),
        "{err}"
    );
}

#[test]
fn ctrl_c_stops_cleanly_with_final_files() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let child = gan_launch()
        .arg(shipped_config("ci-tiny.yaml"))
        .args(run_dir_args(dir.path()))
        .args(["--set", "train.total_kimg=1000"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until training has started (rank 0 writes the manifest first).
    let manifest = dir.path().join("ci-tiny/run.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !manifest.exists() {
        assert!(Instant::now() < deadline, "training did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "shutdown took {:?}", started.elapsed());
    assert!(err.contains("stopped by signal after a checkpoint and a clean shutdown"), "{err}");
    assert!(dir.path().join("ci-tiny/g_ema-final.safetensors").is_file(), "{err}");
    assert!(dir.path().join("ci-tiny/checkpoints/latest").is_file(), "Ctrl-C checkpoints too: {err}");
}

/// Every shipped recipe trains as shipped through its first tick: its initialisation, one D/G
/// cycle (biggan-cifar's is 4 D steps and a G step), the sample grids and a checkpoint.
/// Only what a test machine needs changes: generated data in place of the dataset (at most 8
/// classes), small batches, stylegan2.yaml at 64x64, no evaluation and no metrics server. The
/// recipes' own settings (orthogonal init, attention, R1, path length, ADA, mixing) stay.
#[test]
fn every_shipped_recipe_runs_its_first_tick() {
    gan_train_path();
    // (recipe, batch, steps: one D/G cycle, overrides)
    let recipes: [(&str, u32, u32, &[&str]); 4] = [
        ("biggan.yaml", 2, 1, &["data.num_classes=8", "train.batch_per_rank=2"]),
        ("biggan-cifar.yaml", 8, 4, &["data.num_classes=8"]),
        ("stylegan2.yaml", 8, 1, &["data.resolution=64"]),
        ("stylegan2-cifar.yaml", 32, 1, &["data.num_classes=8"]),
    ];
    for (file, batch, steps, extra) in recipes {
        let started = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = gan_launch();
        cmd.args(["--gpus", "1", "--master-port", "0"]).arg(shipped_config(file));
        let sets = [
            format!("run.dir={}", dir.path().display()),
            "data.source=generated".into(),
            format!("train.batch_size={batch}"),
            format!("train.total_kimg={}", f64::from(steps * batch) / 1000.0),
            "eval.every_kimg=0".into(),
            "metrics.enabled=false".into(),
            "log.progress=false".into(),
        ];
        for set in sets.iter().map(String::as_str).chain(extra.iter().copied()) {
            cmd.args(["--set", set]);
        }
        let out = cmd.output().unwrap();
        let err = stderr(&out);
        assert!(out.status.success(), "{file}: {err}");
        assert!(err.contains(&format!("training finished step={steps}")), "{file}: {err}");
        let run = dir.path().join(file.trim_end_matches(".yaml"));
        let checkpoint = format!("checkpoints/step-{steps:08}/manifest.json");
        for written in ["samples/reals.png", "samples/fakes-init.png", checkpoint.as_str()] {
            assert!(run.join(written).is_file(), "{file}: no {written}");
        }
        // The end's tick: its grid's diversity, and BigGAN's spectral norms (StyleGAN2 has none).
        let stats = std::fs::read_to_string(run.join("stats.jsonl")).unwrap();
        let last: serde_json::Value = serde_json::from_str(stats.lines().last().unwrap()).unwrap();
        assert!(last["sample_diversity"]["ratio"].as_f64().unwrap() >= 0.0, "{file}: {last}");
        for network in ["G", "D"] {
            let sv0 = last["stats"][format!("SV0/{network}")].as_f64();
            assert_eq!(sv0.is_some(), file.starts_with("biggan"), "{file}: {last}");
            assert!(sv0.is_none_or(|sv0| sv0.is_finite() && sv0 > 0.0), "{file}: {last}");
        }
        eprintln!("{file}: {:.0} s", started.elapsed().as_secs_f64());
    }
}
