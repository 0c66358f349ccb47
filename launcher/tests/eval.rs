//! `gan-launch eval fid|kid|is` end to end with the real binaries: a short run, then its
//! checkpoint scored with pytorch-fid's Inception architecture. The standard weights cannot be
//! downloaded here, so the scoring runs on seeded random weights passed with --weights (and is
//! labelled as not standard), and the missing-weights error is checked for saying where the
//! file goes.
mod common;

use std::path::Path;
use std::process::Output;

use common::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn eval(home: &Path, args: &[&str]) -> Output {
    gan_launch().env("HOME", home).env_remove("GAN_FID_WEIGHTS").arg("eval").args(args).output().unwrap()
}

/// The number after `<metric> = ` on the result line.
fn value(out: &Output, metric: &str) -> f64 {
    let text = stdout(out);
    let line =
        text.lines().find(|l| l.starts_with(&format!("{metric} = "))).unwrap_or_else(|| panic!("{text}"));
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn fid_kid_and_is_of_a_checkpoint() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let run = gan_launch()
        .arg(shipped_config("ci-tiny.yaml"))
        .args(["--set", &format!("run.dir={}", dir.path().display())])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    let run_dir = dir.path().join("ci-tiny");
    // Seeded random weights in pytorch-fid's layout, from the reference script.
    let weights_dir = dir.path().join("weights");
    std::fs::create_dir_all(&weights_dir).unwrap();
    let made = std::process::Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("scripts/fid_reference.py"))
        .arg(&weights_dir)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let weights = weights_dir.join("weights.pth").display().to_string();
    let home = dir.path().join("home");
    let run_arg = run_dir.display().to_string();
    let common = ["--num", "20", "--num-real", "40", "--batch", "20", "--weights", &weights];

    let first = eval(&home, &[&["fid", &run_arg][..], &common].concat());
    assert!(first.status.success(), "{}", stderr(&first));
    let fid = value(&first, "fid");
    assert!(fid.is_finite() && fid > 0.0, "{fid}");
    let line = stdout(&first);
    assert!(line.contains("custom-inception-") && line.contains("NOT the standard FID network"), "{line}");
    // The real statistics are cached: the second run reads them and gives the same number.
    let second = eval(&home, &[&["fid", &run_arg][..], &common].concat());
    assert!(stderr(&second).contains("real statistics from the cache"), "{}", stderr(&second));
    assert_eq!(value(&second, "fid"), fid);

    let kid = eval(&home, &[&["kid", &run_arg][..], &common].concat());
    assert!(kid.status.success(), "{}", stderr(&kid));
    assert!(value(&kid, "kid").is_finite());
    let is = eval(&home, &[&["is", &run_arg][..], &common].concat());
    assert!(is.status.success(), "{}", stderr(&is));
    let score = value(&is, "is");
    assert!((1.0..=1008.0).contains(&score), "{score}");
}

/// Without the standard weights (and no download possible here), eval stops with exit code 2
/// and says where to put the file.
#[test]
fn missing_standard_weights_say_where_the_file_goes() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let run = gan_launch()
        .arg(shipped_config("ci-tiny.yaml"))
        .args(["--set", &format!("run.dir={}", dir.path().display()), "--set", "train.total_kimg=0.064"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    let home = dir.path().join("home");
    let out = eval(&home, &["fid", &dir.path().join("ci-tiny").display().to_string(), "--num", "4"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let expected = home.join(".cache/gan-launch/pt_inception-2015-12-05-6726825d.pth");
    assert!(err.contains(&format!("put it at {}", expected.display())), "{err}");
    assert!(err.contains("GAN_FID_WEIGHTS") && err.contains("--weights"), "{err}");
}
