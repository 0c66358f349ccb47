//! The GPU tooling on a machine without a GPU (CI): the checks of scripts/gpu-check.sh that need
//! CUDA say so and exit with the user-error code, and `bench train` prints its GPU columns
//! (sec/kimg; peak memory only on a GPU; the memory estimate) for a CPU run; the noise check runs on the CPU as well.
mod common;

use common::*;
use std::path::Path;

#[test]
fn gpu_checks_say_there_is_no_gpu() {
    let train = gan_train_path();
    let config = shipped_config("ci-tiny.yaml").display().to_string();
    let checks = [&["gpu-check", "nccl"][..], &["gpu-check", "step", &config], &["gpu-check", "noise"]];
    for args in checks {
        let out = std::process::Command::new(&train).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("libtorch sees no CUDA device"), "{}", stderr(&out));
    }
}

#[test]
fn bench_train_reports_sec_per_kimg() {
    gan_train_path();
    let config = shipped_config("ci-tiny.yaml");
    let tmp = tempfile::tempdir().unwrap();
    let out = gan_launch()
        .args(["bench", "train", &config.display().to_string(), "--steps", "2", "--threads", "1"])
        .arg("--estimate-memory")
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Its scratch run directories (the benchmark's and the memory measurement's) are gone.
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let text = stdout(&out);
    assert!(text.contains("sec/kimg") && text.contains("peak MiB") && text.contains("est. MiB"), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with(&config.display().to_string()))
        .unwrap_or_else(|| panic!("{text}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    let (imgs_per_sec, sec_per_kimg): (f64, f64) = (cols[1].parse().unwrap(), cols[2].parse().unwrap());
    assert!((imgs_per_sec * sec_per_kimg / 1000.0 - 1.0).abs() < 0.01, "{row}");
    assert_eq!(cols[9], "-", "no GPU, no peak memory: {row}");
    // ci-tiny's 0.4 MiB networks at the benchmark's batch of 32 need some MiB, not GiB.
    let estimate_mib: u64 = cols[10].parse().unwrap_or_else(|_| panic!("an estimate: {row}"));
    assert!((1..1024).contains(&estimate_mib), "{row}");
    assert_eq!(cols[11], "-", "ci-tiny has no ADA: {row}");
}

/// `--ada-p`: a recipe with ADA (ci-tiny with `train.augment: ada` from the environment) runs
/// its measured steps at that p, and says so.
#[test]
fn bench_train_measures_ada_at_the_asked_probability() {
    gan_train_path();
    let config = shipped_config("ci-tiny.yaml");
    let out = gan_launch()
        .args(["bench", "train", &config.display().to_string(), "--steps", "2", "--threads", "1"])
        .args(["--ada-p", "0.5"])
        .env("GAN_TRAIN__AUGMENT", "ada")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let row = text
        .lines()
        .find(|l| l.starts_with(&config.display().to_string()))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(row.split_whitespace().nth(11), Some("0.500"), "{row}");
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

/// The seeded-noise comparison of part 4 runs on the CPU too: the tensor form equals the host
/// stream, and both speeds are printed.
#[test]
fn noise_check_runs_on_the_cpu() {
    let out = std::process::Command::new(gan_train_path())
        .args(["gpu-check", "noise", "--device", "cpu", "--resolution", "32", "--images", "4"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("7 layers, 2704 values per image"), "{text}");
    assert_eq!(text.matches("ms/image").count(), 2, "{text}");
    let gap: f64 = text
        .split("largest difference: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(gap < 1e-6, "{text}");
}

/// Runs scripts/gpu-check.sh in its CPU mode with `args`; its table and its rows.txt.
fn gpu_check_script(args: &[&str]) -> (String, String) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out_dir = tempfile::tempdir().unwrap();
    let bin = gan_train_path().parent().unwrap().to_path_buf();
    let out = std::process::Command::new(repo.join("scripts/gpu-check.sh"))
        .arg("--cpu")
        .args(args)
        .args(["--bin", &bin.display().to_string(), "--out", &out_dir.path().display().to_string()])
        .env("HOME", out_dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let read = |name: &str| std::fs::read_to_string(out_dir.path().join(name)).unwrap();
    (read("table.txt"), read("rows.txt"))
}

/// The line of `table` that starts with `prefix`.
fn row(table: &str, prefix: &str) -> String {
    table
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}: {table}"))
        .to_string()
}

/// The script itself, in its CPU mode, for the parts that are quick here: it links the wheel's
/// NCCL where cudarc looks (part 1), fills part 4's rows from the commands' real output (each
/// row also written as it comes), stops a command that runs past `--part-secs`, and starts none
/// past `--budget-secs`.
#[test]
fn gpu_check_script_runs_in_cpu_mode() {
    let (table, rows) = gpu_check_script(&["--only", "1,4"]);
    assert!(row(&table, "1. NCCL").contains("libnccl.so loads: yes"), "{table}");
    assert!(row(&table, "4. FID feature extraction").contains("imgs/s"), "{table}");
    assert!(row(&table, "4. FID 256x256").contains("skipped (--cpu"), "{table}");
    let noise = row(&table, "4. StyleGAN2 metric noise");
    assert!(noise.contains("host loop") && noise.contains("largest difference"), "{table}");
    let manifold = row(&table, "4. precision/recall");
    assert!(manifold.contains("500 vs 1000 reals/fakes: pr ") && manifold.contains(" s, dc "), "{table}");
    assert!(!table.contains("FAILED"), "{table}");
    // The rows also went out one by one as they came.
    assert!(table.ends_with(&rows), "{rows}\nvs\n{table}");

    // A command that runs past --part-secs is stopped, and its row says so.
    let (table, _) = gpu_check_script(&["--only", "4", "--part-secs", "1"]);
    let fid = row(&table, "4. FID feature extraction");
    assert!(fid.contains("FAILED: gpu-check: stopped after 1 s (--part-secs)"), "{table}");

    // Past --budget-secs no command starts, and the table still comes.
    let (table, _) = gpu_check_script(&["--only", "4", "--budget-secs", "1"]);
    let last = row(&table, "4. precision/recall");
    assert!(last.contains("FAILED: gpu-check: not run, the --budget-secs of 1 s is spent"), "{table}");
}
