//! The command line's handling of configs: errors name the key and exit with code 2, overrides
//! apply in order (file, GAN_* environment, --set, flags), and `plan` prints the per-rank plan.
mod common;

use common::*;

const GOOD: &str = "
data: { source: generated, resolution: 16, num_classes: 4 }
model: { arch: dcgan, conditional: true }
train:
  batch_size: 32
  total_kimg: 1
  loss: hinge
  g_opt: { lr: 0.001 }
  d_opt: { lr: 0.001 }
";

/// Runs `gan-launch plan` on `text` with extra arguments and environment.
fn plan(text: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), text);
    let mut cmd = gan_launch();
    cmd.arg("plan").arg(&path).args(args).envs(env.iter().copied());
    cmd.output().unwrap()
}

fn assert_user_error(out: &std::process::Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "exit code 2 expected; stderr: {err}");
    for needle in needles {
        assert!(err.contains(needle), "stderr should mention {needle:?}: {err}");
    }
}

#[test]
fn unknown_key_exits_2_naming_the_key_path() {
    let out = plan(&GOOD.replace("loss: hinge", "loss: hinge\n  los: hinge"), &[], &[]);
    assert_user_error(&out, &["`train.los`", "unknown field", "loss"]);
}

#[test]
fn wrong_type_exits_2_naming_key_and_value() {
    let out = plan(&GOOD.replace("batch_size: 32", "batch_size: [32]"), &[], &[]);
    assert_user_error(&out, &["`train.batch_size`"]);
    let out = plan(GOOD, &[], &[("GAN_TRAIN__TOTAL_KIMG", "lots")]);
    assert_user_error(&out, &["`train.total_kimg`", "lots", "GAN_TRAIN__TOTAL_KIMG"]);
}

#[test]
fn invalid_combination_exits_2_with_what_is_allowed() {
    let out = plan(GOOD, &["--gpus", "40"], &[]);
    assert_user_error(&out, &["`train.batch_size`", "at least the world size 40"]);
    let out = plan(GOOD, &["--gpus", "3", "--set", "train.batch_per_rank=4"], &[]);
    assert_user_error(&out, &["`train.batch_size`", "multiple of ranks x batch_per_rank = 3 x 4 = 12"]);
    let out = plan(&GOOD.replace("num_classes: 4", "num_classes: 0"), &[], &[]);
    assert_user_error(&out, &["`model.conditional`", "num_classes"]);
    let out = plan(GOOD, &["--set", "model.arch=stylegan9"], &[]);
    assert_user_error(&out, &["`model.arch`", "stylegan9", "dcgan", "--set model.arch=stylegan9"]);
}

#[test]
fn bad_set_exits_2() {
    let out = plan(GOOD, &["--set", "train.batch_size"], &[]);
    assert_user_error(&out, &["--set", "train.batch_size", "section.key=value"]);
    let out = plan(GOOD, &["--set", "train.batch_size=-4"], &[]);
    assert_user_error(&out, &["`train.batch_size`", "-4"]);
}

#[test]
fn missing_config_file_exits_2_naming_it() {
    let out = gan_launch().args(["plan", "/nonexistent/exp.yaml"]).output().unwrap();
    assert_user_error(&out, &["/nonexistent/exp.yaml"]);
}

#[test]
fn overrides_apply_file_then_env_then_set_then_flags() {
    let batch = |args: &[&str], env: &[(&str, &str)]| {
        let out = plan(GOOD, args, env);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        let line = text.lines().find(|l| l.trim_start().starts_with("batch_size:")).unwrap().to_string();
        line.trim().trim_start_matches("batch_size:").trim().parse::<u32>().unwrap()
    };
    assert_eq!(batch(&[], &[]), 32);
    assert_eq!(batch(&[], &[("GAN_TRAIN__BATCH_SIZE", "64")]), 64);
    assert_eq!(batch(&["--set", "train.batch_size=128"], &[("GAN_TRAIN__BATCH_SIZE", "64")]), 128);
    // --gpus beats --set dist.gpus, which beats the environment.
    let out = plan(GOOD, &["--set", "dist.gpus=4", "--gpus", "2"], &[("GAN_DIST__GPUS", "8")]);
    assert!(stdout(&out).contains("world size 2"), "{}", stdout(&out));
}

#[test]
fn plan_prints_resolved_config_and_every_rank() {
    let out = plan(GOOD, &["--nodes", "2", "--gpus", "4", "--set", "train.batch_per_rank=2"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("# resolved config") && text.contains("loss: hinge"), "{text}");
    assert!(text.contains("world size 8"), "{text}");
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("rank "))
        .skip(1)
        .take_while(|l| !l.starts_with('#'))
        .collect();
    assert_eq!(rows.len(), 8, "{text}");
    // Then the dataset the ranks would read and what the start would do: the run directory has
    // no checkpoints.
    assert!(text.contains("\n# data: generated "), "{text}");
    assert!(text.lines().last().unwrap().starts_with("# start: starts fresh"), "{text}");
    // rank 5 = node 1, local rank 1, CPU, 2 per rank, 32 / (8 x 2) = 2 accumulation rounds.
    let cols: Vec<&str> = rows[5].split_whitespace().collect();
    assert_eq!(&cols[..3], ["5", "1", "1"]);
    assert_eq!(&cols[5..7], ["2", "2"]);
    let seeds: std::collections::HashSet<&str> =
        rows.iter().map(|r| r.split_whitespace().last().unwrap()).collect();
    assert_eq!(seeds.len(), 8, "every rank has its own seed");
    // A dataset path that generated data would not read is noted.
    let out = plan(GOOD, &["--set", "data.path=data/cifar10"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("\n# note: data.path (data/cifar10) is not read"), "{}", stdout(&out));
    // The plan of a node the layout does not have is refused, as its launch would be.
    let out = plan(GOOD, &["--nodes", "2", "--node-rank", "2"], &[]);
    assert_user_error(&out, &["would refuse to start", "node rank 2 is not below the node count 2"]);
}

/// Evaluation weights named in the config are looked for before any rank starts: by `plan`, and by
/// a launch, which starts no rank (`gan-train` is not even needed). Unused, they are not.
#[test]
fn missing_evaluation_weights_are_refused_before_any_rank() {
    let missing = ["--set", "eval.weights=/nonexistent/inception.pth"];
    let needles =
        ["config error at `eval.weights`: got /nonexistent/inception.pth, allowed: an existing weights file"];
    let on = ["--set", "eval.every_kimg=1"];
    let out = plan(GOOD, &[&missing[..], &on[..]].concat(), &[]);
    assert_user_error(&out, &[&["a launch of this plan would refuse to start"][..], &needles[..]].concat());
    let dir = tempfile::tempdir().unwrap();
    let out = gan_launch()
        .arg(write_config(dir.path(), GOOD))
        .args(["--set", &format!("run.dir={}", dir.path().display()), "--trainer", "/nonexistent/gan-train"])
        .args(missing)
        .args(on)
        .output()
        .unwrap();
    assert_user_error(&out, &needles);
    assert!(!stderr(&out).contains("[rank="), "no rank started: {}", stderr(&out));
    assert!(plan(GOOD, &missing, &[]).status.success(), "evaluation is off");
}

#[test]
fn every_shipped_config_plans() {
    for name in ["demo.yaml", "ci-tiny.yaml"] {
        let out = gan_launch().arg("plan").arg(shipped_config(name)).output().unwrap();
        assert!(out.status.success(), "{name}: {}", stderr(&out));
    }
}

#[test]
fn launcher_does_not_link_libtorch() {
    let binary = std::fs::read(env!("CARGO_BIN_EXE_gan-launch")).unwrap();
    let needle = b"libtorch_cpu.so";
    assert!(!binary.windows(needle.len()).any(|w| w == needle), "gan-launch must not depend on libtorch");
}
