//! The GPU tooling on a machine without a GPU (CI): the checks of scripts/gpu-check.sh that need
//! CUDA say so and exit with the user-error code, and `bench train` prints its GPU columns
//! (sec/kimg; peak memory only on a GPU) for a CPU run.
mod common;

use common::*;

#[test]
fn gpu_checks_say_there_is_no_gpu() {
    let train = gan_train_path();
    let config = shipped_config("ci-tiny.yaml").display().to_string();
    for args in [&["gpu-check", "nccl"][..], &["gpu-check", "step", &config][..]] {
        let out = std::process::Command::new(&train).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("libtorch sees no CUDA device"), "{}", stderr(&out));
    }
}

#[test]
fn bench_train_reports_sec_per_kimg() {
    gan_train_path();
    let config = shipped_config("ci-tiny.yaml");
    let out = gan_launch()
        .args(["bench", "train", &config.display().to_string(), "--steps", "2", "--threads", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("sec/kimg") && text.contains("peak MiB"), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with(&config.display().to_string()))
        .unwrap_or_else(|| panic!("{text}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    let (imgs_per_sec, sec_per_kimg): (f64, f64) = (cols[1].parse().unwrap(), cols[2].parse().unwrap());
    assert!((imgs_per_sec * sec_per_kimg / 1000.0 - 1.0).abs() < 0.01, "{row}");
    assert_eq!(cols[9], "-", "no GPU, no peak memory: {row}");
}

/// Part 4 of scripts/gpu-check.sh without the standard file: random Inception weights written
/// as safetensors load for `eval`, labelled as not standard.
#[test]
fn random_inception_weights_score_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let weights = random_inception_weights(dir.path());
    let run_dir = short_run(dir.path());
    let out = gan_launch()
        .env("HOME", dir.path())
        .args(["eval", "is", &run_dir.display().to_string(), "--num", "20", "--batch", "10"])
        .args(["--weights", &weights.display().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("imgs/s") && text.contains("NOT the standard FID network"), "{text}");
}
