//! `gan-launch eval fid|kid|is|pr|dc` end to end with the real binaries: a short run, then its
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

/// One G_ema scored twice, in two processes: the same FID up to float rounding. libtorch's CPU
/// kernels split their sums by their thread count (1 thread against 2 moves this test's FID by
/// 3e-8 of itself), which no test here controls.
fn assert_same_fid(fid: f64, expected: f64, what: &str) {
    assert!((fid - expected).abs() <= 1e-6 * expected.abs(), "{what}: {fid} vs {expected}");
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
    let weights = random_weights(&dir.path().join("weights"));
    let home = dir.path().join("home");
    let run_arg = run_dir.display().to_string();
    let common = ["--num", "20", "--num-real", "40", "--batch", "20", "--weights", &weights];

    let first = eval(&home, &[&["fid", &run_arg][..], &common].concat());
    assert!(first.status.success(), "{}", stderr(&first));
    let fid = value(&first, "fid");
    assert!(fid.is_finite() && fid > 0.0, "{fid}");
    let line = stdout(&first);
    assert!(line.contains("custom-inception-") && line.contains("NOT the standard FID network"), "{line}");
    assert!(line.contains("[20 generated images vs 40 reals (the generated shapes), "), "{line}");
    // The real statistics are cached: the second run reads them and gives the same number.
    let second = eval(&home, &[&["fid", &run_arg][..], &common].concat());
    assert!(stderr(&second).contains("real statistics from the cache"), "{}", stderr(&second));
    assert_same_fid(value(&second, "fid"), fid, "cached real statistics");
    // Another user (or pod) whose GAN_LAUNCH_CACHE names the same directory finds them too.
    let shared = home.join(".cache/gan-launch");
    let stats: Vec<_> =
        std::fs::read_dir(shared.join("fid-stats")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(stats.len() == 1 && stats[0].extension().unwrap() == "safetensors", "{stats:?}");
    let other_home = dir.path().join("other-home");
    let third = gan_launch()
        .env("HOME", &other_home)
        .env("GAN_LAUNCH_CACHE", &shared)
        .args([&["eval", "fid", &run_arg][..], &common].concat())
        .output()
        .unwrap();
    assert!(stderr(&third).contains("real statistics from the cache"), "{}", stderr(&third));
    assert_same_fid(value(&third, "fid"), fid, "a shared cache");
    assert!(!other_home.join(".cache").exists(), "nothing cached under the other home");
    // The run's final G_ema file holds the newest checkpoint's G_ema: the same number.
    let final_file = run_dir.join("g_ema-final.safetensors").display().to_string();
    let of_file = eval(&home, &[&["fid", &final_file][..], &common].concat());
    assert!(of_file.status.success(), "{}", stderr(&of_file));
    assert_same_fid(value(&of_file, "fid"), fid, "the final G_ema file");
    // G making 3 images a pass instead of 20: the same images (up to a rounding step), so the
    // same FID; a generator batch above the feature batch is refused.
    let chunked = eval(&home, &[&["fid", &run_arg, "--gen-batch", "3"][..], &common].concat());
    assert!(chunked.status.success(), "{}", stderr(&chunked));
    assert!((value(&chunked, "fid") - fid).abs() <= 1e-3 * fid, "{} vs {fid}", value(&chunked, "fid"));
    let too_big = eval(&home, &[&["fid", &run_arg, "--gen-batch", "21"][..], &common].concat());
    assert_eq!(too_big.status.code(), Some(2), "{}", stderr(&too_big));
    assert!(
        stderr(&too_big).contains("`--gen-batch`") && stderr(&too_big).contains("from 1 to --batch (20)")
    );

    let kid = eval(&home, &[&["kid", &run_arg][..], &common].concat());
    assert!(kid.status.success(), "{}", stderr(&kid));
    assert!(value(&kid, "kid").is_finite());
    let is = eval(&home, &[&["is", &run_arg][..], &common].concat());
    assert!(is.status.success(), "{}", stderr(&is));
    let score = value(&is, "is");
    assert!((1.0..=1008.0).contains(&score), "{score}");
    // `sample --num` writes the very images evaluation scores (latents, labels from the dataset's
    // mix): the checkpoint's FID against that folder is 0, against the images of another seed
    // far from it; and the folder's IS is the checkpoint's. Only IS scores a single folder.
    let sample = |out: &Path, more: &[&str]| {
        let mut cmd = gan_launch();
        cmd.args(["sample", &run_arg, "--num", "20", "--out"]).arg(out).args(more).output().unwrap()
    };
    let (dump, other_seed) = (dir.path().join("dump"), dir.path().join("dump-seed-1"));
    for (out, more) in [(&dump, &[][..]), (&other_seed, &["--seed", "1"][..])] {
        let wrote = sample(out, more);
        assert!(wrote.status.success(), "{}", stderr(&wrote));
    }
    let files: Vec<_> = std::fs::read_dir(&dump).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files.len(), 20, "{files:?}");
    assert!(dump.join("000000.png").is_file() && dump.join("000019.png").is_file());
    let (dump_arg, other_arg) = (dump.display().to_string(), other_seed.display().to_string());
    let against = |folder: &str, more: &[&str]| {
        let out = eval(&home, &[&["fid", &run_arg, "--against", folder][..], more, &common].concat());
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains(&format!("vs 20 images of {folder}, ")), "{}", stdout(&out));
        value(&out, "fid")
    };
    assert!(against(&dump_arg, &[]) < 1e-3, "the same images");
    assert!(against(&other_arg, &[]) > 1.0, "other images");
    let of_folder = eval(&home, &["is", &dump_arg, "--batch", "20", "--weights", &weights]);
    assert!(of_folder.status.success(), "{}", stderr(&of_folder));
    assert_same_fid(value(&of_folder, "is"), score, "IS of the written images");
    assert!(stdout(&of_folder).contains(&format!("[20 images of {dump_arg}, ")), "{}", stdout(&of_folder));
    // Truncated, the same (latents redrawn beyond 2 and scaled, from each image's own stream).
    let half = dir.path().join("dump-half");
    assert!(sample(&half, &["--truncation", "0.5"]).status.success());
    let half_arg = half.display().to_string();
    assert!(against(&half_arg, &["--truncation", "0.5"]) < 1e-3, "the same truncated images");
    assert!(against(&half_arg, &[]) > 1.0, "untruncated images are others");
    let truncated = eval(&home, &[&["is", &run_arg, "--truncation", "0.5"][..], &common].concat());
    assert!(
        stdout(&truncated).contains("[20 generated images with truncation psi 0.5, "),
        "{}",
        stdout(&truncated)
    );
    let on_folder = eval(&home, &["is", &half_arg, "--truncation", "0.5", "--weights", &weights]);
    assert_eq!(on_folder.status.code(), Some(2), "{}", stderr(&on_folder));
    let fid_of_one = eval(&home, &["fid", &dump_arg, "--weights", &weights]);
    assert_eq!(fid_of_one.status.code(), Some(2), "{}", stderr(&fid_of_one));
    assert!(stderr(&fid_of_one).contains("`--against`"), "{}", stderr(&fid_of_one));
    // Into a folder that holds images already: refused, so two calls never mix in one folder.
    let again = sample(&dump, &[]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(stderr(&again).contains("a new or empty directory"), "{}", stderr(&again));
    // Precision/recall and density/coverage: one line per number. Precision is a share of the 20
    // fakes, recall and coverage shares of the 40 reals.
    let share_of = |v: f64, n: f64| (0.0..=1.0).contains(&v) && ((v * n).round() - v * n).abs() < 1e-9;
    let pr = eval(&home, &[&["pr", &run_arg][..], &common].concat());
    assert!(pr.status.success(), "{}", stderr(&pr));
    assert!(
        share_of(value(&pr, "precision"), 20.0) && share_of(value(&pr, "recall"), 40.0),
        "{}",
        stdout(&pr)
    );
    let dc = eval(&home, &[&["dc", &run_arg][..], &common].concat());
    assert!(dc.status.success(), "{}", stderr(&dc));
    assert!(value(&dc, "density") >= 0.0 && share_of(value(&dc, "coverage"), 40.0), "{}", stdout(&dc));
    // Too few generated images for a 5th neighbour: a user error that says why.
    let few = ["--num", "4", "--num-real", "40", "--batch", "4", "--weights", &weights];
    let out = eval(&home, &[&["dc", &run_arg][..], &few].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("number of generated images") && stderr(&out).contains("more than k = 5"));
}

/// Seeded random weights in pytorch-fid's layout, from the reference script, under `dir`.
fn random_weights(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let made = std::process::Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("scripts/fid_reference.py"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    dir.join("weights.pth").display().to_string()
}

fn eval_lines(run_dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run_dir.join("eval.jsonl")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Evaluation during a 2-rank run: every 0.25 kimg and at the end, FID, KID, IS, precision/recall
/// and density/coverage land in eval.jsonl labelled with the (non-standard) feature network,
/// scored in the background. The checkpoint of the first evaluation's step was held until its
/// score arrived, which then sits beside it (eval.json) and ranks it for keep_best. Then the final
/// G_ema is scored again by starting the finished run again (it takes no step) with 1 rank (real
/// statistics recomputed, no cache), with 2 ranks, and with 2 ranks and training waiting
/// (eval.background=false): the FID (and every other metric) is the same, whatever the split of
/// images between ranks and whichever thread scores.
#[test]
fn evaluation_during_training_is_the_same_with_one_and_two_ranks() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let weights = random_weights(&dir.path().join("weights"));
    let sets = [
        format!("run.dir={}", dir.path().display()),
        "eval.every_kimg=0.25".into(),
        // 39: two ranks draw 20 and 19 images (batches still line up with one rank's), one rank
        // all of them.
        "eval.num=39".into(),
        "eval.num_real=40".into(),
        "eval.batch=10".into(),
        // G_ema generates in passes of 4 (4, 4, 2 per feature batch).
        "eval.gen_batch=4".into(),
        "eval.metrics=[fid, kid, is, pr, dc]".into(),
        format!("eval.weights={weights}"),
        // One thread per rank in both layouts: libtorch's CPU convolutions sum in a different
        // order with another thread count, which the singular 20-image covariances amplify.
        "train.threads=1".into(),
        "checkpoint.every_ticks=1".into(),
        "checkpoint.keep_last=1".into(),
        "checkpoint.keep_best=1".into(),
    ];
    let launch = |gpus: &str, home: &Path, extra: &[&str]| {
        let mut cmd = gan_launch();
        cmd.env("HOME", home).arg(shipped_config("ci-tiny.yaml")).args([
            "--gpus",
            gpus,
            "--master-port",
            "0",
        ]);
        for set in sets.iter().map(String::as_str).chain(extra.iter().copied()) {
            cmd.args(["--set", set]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{gpus} ranks: {}", stderr(&out));
        out
    };
    let (home_a, home_b) = (dir.path().join("a"), dir.path().join("b"));
    let trained = launch("2", &home_a, &[]);
    let run_dir = dir.path().join("ci-tiny");
    let lines = eval_lines(&run_dir);
    assert_eq!(lines.len(), 2, "at 0.25 kimg and at the end: {lines:?}");
    for line in &lines {
        assert!(
            line["fid"].as_f64().unwrap().is_finite() && line["kid"].is_f64() && line["is"].is_f64(),
            "{line}"
        );
        for name in ["precision", "recall", "density", "coverage"] {
            assert!(line[name].as_f64().is_some_and(|v| v >= 0.0), "{name}: {line}");
        }
        assert!(line["feature_network"].as_str().unwrap().starts_with("custom-inception-"), "{line}");
        assert!(line["pause_secs"].as_f64().unwrap() > 0.0);
        assert_eq!(line["background"], true, "{line}");
    }
    let log = stderr(&trained);
    assert!(log.contains("eval at 0.5 kimg: FID") && log.contains("scored in the background"), "{log}");
    // keep_last 1 and keep_best 1: the step-8 checkpoint survives exactly when its FID is the
    // better one, and then carries it beside its manifest.
    let step8 = run_dir.join("checkpoints/step-00000008");
    let fid_at = |i: usize| lines[i]["fid"].as_f64().unwrap();
    assert_eq!(step8.exists(), fid_at(0) < fid_at(1), "{lines:?}");
    if step8.exists() {
        let recorded: serde_json::Value =
            serde_json::from_slice(&std::fs::read(step8.join("eval.json")).unwrap()).unwrap();
        assert_eq!(recorded["fid"], lines[0]["fid"], "{recorded}");
    }
    // The checkpoint taken at the end carries the evaluation of its own G_ema (for keep_best).
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(run_dir.join("checkpoints/step-00000016/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["metrics"]["fid"], lines[1]["fid"], "{manifest}");
    // ckpt ls shows each checkpoint's FID and recall.
    let ls = stdout(&gan_launch().args(["ckpt", "ls"]).arg(&run_dir).output().unwrap());
    let row = ls.lines().find(|l| l.starts_with("step-00000016")).unwrap_or_else(|| panic!("{ls}"));
    let shown = |name: &str| format!("{:.3}", lines[1][name].as_f64().unwrap());
    assert!(row.contains(&shown("fid")) && row.contains(&shown("recall")), "{ls}");
    let again = stderr(&launch("1", &home_b, &[]));
    assert!(again.contains("no step to take") && again.contains("scoring its G_ema again"), "{again}");
    assert!(!again.contains("] tick "), "a start that takes no step has no tick: {again}");
    launch("2", &home_a, &[]);
    launch("2", &home_a, &["eval.background=false"]);
    let lines = eval_lines(&run_dir);
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[4]["background"], false, "{:?}", lines[4]);
    let fid = |i: usize| lines[i]["fid"].as_f64().unwrap();
    let (end_of_training, one_rank, two_ranks) = (fid(1), fid(2), fid(3));
    assert_eq!(end_of_training, two_ranks, "same G_ema, same ranks: the same FID");
    assert_eq!(fid(4), two_ranks, "training waiting or not: the same FID");
    assert_eq!(lines[4]["kid"], lines[3]["kid"], "KID's subsets come from a fixed seed");
    assert!(
        (one_rank - two_ranks).abs() <= 1e-9 * two_ranks.abs().max(1.0),
        "1 rank {one_rank} vs 2 ranks {two_ranks}"
    );
    // The real rows are the dataset's first images whichever ranks computed them: the real
    // statistics of home b came from 1 rank, those of home a from 2.
    for name in ["recall", "coverage", "precision", "density"] {
        assert_eq!(lines[2][name], lines[3][name], "{name}: 1 rank {} vs 2 ranks {}", lines[2], lines[3]);
    }
    let kid = |i: usize| lines[i]["kid"].as_f64().unwrap();
    assert!((kid(2) - kid(3)).abs() <= 1e-6 * kid(3).abs().max(1e-3), "KID {} vs {}", kid(2), kid(3));
}

/// Quick evaluations (10 images every 0.125 kimg) between the full ones (20 images every 0.25
/// kimg and at the end): in the log and eval.jsonl, marked quick, but they never judge the run.
/// The checkpoint of a quick evaluation's step gets no metrics (nothing for keep_best to rank it
/// by), and the best FID is the best of the full evaluations.
#[test]
fn quick_evaluations_go_between_the_full_ones_and_rank_nothing() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let weights = random_weights(&dir.path().join("weights"));
    let sets = [
        format!("run.dir={}", dir.path().display()),
        "train.kimg_per_tick=0.125".into(),
        "eval.every_kimg=0.25".into(),
        "eval.quick_every_kimg=0.125".into(),
        "eval.num=20".into(),
        "eval.quick_num=10".into(),
        "eval.num_real=40".into(),
        "eval.batch=10".into(),
        "eval.metrics=[fid, pr]".into(),
        format!("eval.weights={weights}"),
        "checkpoint.every_ticks=1".into(),
        "checkpoint.keep_last=2".into(),
        "checkpoint.keep_best=1".into(),
    ];
    let mut cmd = gan_launch();
    cmd.env("HOME", dir.path().join("home")).arg(shipped_config("ci-tiny.yaml")).args(["--master-port", "0"]);
    for set in &sets {
        cmd.args(["--set", set]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let run_dir = dir.path().join("ci-tiny");
    let lines = eval_lines(&run_dir);
    let seen: Vec<(f64, bool, u64)> = lines
        .iter()
        .map(|l| {
            (l["kimg"].as_f64().unwrap(), l["quick"].as_bool().unwrap(), l["num_images"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(seen, [(0.128, true, 10), (0.256, false, 20), (0.384, true, 10), (0.512, false, 20)]);
    assert!(lines.iter().all(|l| l["fid"].is_f64() && l["recall"].is_f64()), "{lines:?}");
    let log = stderr(&out);
    assert!(
        log.contains("quick eval at 0.1 kimg: FID") && log.contains("(10 images, custom-inception-"),
        "{log}"
    );
    assert!(log.contains("eval at 0.3 kimg: FID") && log.contains("(20 images, custom-inception-"), "{log}");
    // keep_last 2: steps 12 (a quick evaluation's) and 16 (the final, full one) stay.
    let step = |n: u64| run_dir.join(format!("checkpoints/step-{n:08}"));
    let manifest = |n: u64| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(step(n).join("manifest.json")).unwrap()).unwrap()
    };
    assert!(manifest(12)["metrics"].as_object().is_none_or(|m| m.is_empty()), "{}", manifest(12));
    assert!(!step(12).join("eval.json").exists(), "a quick evaluation ranks no checkpoint");
    assert_eq!(manifest(16)["metrics"]["fid"], lines[3]["fid"]);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(step(16).join("state.json")).unwrap()).unwrap();
    let full_best = lines[1]["fid"].as_f64().unwrap().min(lines[3]["fid"].as_f64().unwrap());
    assert_eq!(state["best_metrics"]["fid"].as_f64(), Some(full_best), "{state}");
}

/// Without the standard weights (and no download possible here), eval stops with exit code 2
/// and says where to put the file.
#[test]
fn missing_standard_weights_say_where_the_file_goes() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = short_run(dir.path());
    let home = dir.path().join("home");
    let out = eval(&home, &["fid", &run_dir.display().to_string(), "--num", "4"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let expected = home.join(".cache/gan-launch/pt_inception-2015-12-05-6726825d.pth");
    assert!(err.contains(&format!("put it at {}", expected.display())), "{err}");
    assert!(err.contains("GAN_FID_WEIGHTS") && err.contains("--weights"), "{err}");
    // A cache directory named by GAN_LAUNCH_CACHE is where the file goes then.
    let shared = dir.path().join("shared-cache");
    let out = gan_launch()
        .env("HOME", &home)
        .env("GAN_LAUNCH_CACHE", &shared)
        .args(["eval", "fid", &run_dir.display().to_string(), "--num", "4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let expected = shared.join("pt_inception-2015-12-05-6726825d.pth");
    assert!(stderr(&out).contains(&format!("put it at {}", expected.display())), "{}", stderr(&out));
}

/// Training with evaluation on but without the standard weights: evaluation is off with one
/// clear message (each rank that lacks them logs it; rank 0's log is the launcher's), and the run
/// trains to the end (2 ranks agree).
#[test]
fn training_without_the_standard_weights_runs_with_evaluation_off() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let out = gan_launch()
        .env("HOME", &home)
        .env_remove("GAN_FID_WEIGHTS")
        .arg(shipped_config("ci-tiny.yaml"))
        .args(["--gpus", "2", "--master-port", "0"])
        .args(["--set", &format!("run.dir={}", dir.path().display()), "--set", "eval.every_kimg=0.25"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let expected = home.join(".cache/gan-launch/pt_inception-2015-12-05-6726825d.pth");
    assert_eq!(err.matches("[rank=0] evaluation is off for this run: FID needs").count(), 1, "{err}");
    assert!(err.contains(&format!("put it at {}", expected.display())), "{err}");
    assert!(err.contains("training finished"), "{err}");
    assert!(!dir.path().join("ci-tiny/eval.jsonl").exists());
}

/// Preemption does not wait for evaluations: SIGTERM to one rank while an evaluation runs in the
/// background, and the job checkpoints and exits with the requeue code without evaluating the
/// step it stopped at; the evaluation in flight either finished first or is dropped, and says so.
#[test]
fn preemption_skips_the_final_evaluation_and_drops_one_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let weights = random_inception_weights(dir.path());
    let child = gan_launch()
        .env("HOME", dir.path())
        .arg(shipped_config("ci-tiny.yaml"))
        .args(["--gpus", "2", "--master-port", "0"])
        .args(["--set", &format!("run.dir={}", dir.path().display()), "--set", "train.total_kimg=1000"])
        .args(["--set", "eval.every_kimg=0.25", "--set", "eval.num=200", "--set", "eval.num_real=200"])
        .args(["--set", &format!("eval.weights={}", weights.display())])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ranks = wait_for_ranks(child.id(), None);
    let log_path = dir.path().join("ci-tiny/logs/rank-0.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !std::fs::read_to_string(&log_path).unwrap_or_default().contains("handed to the background") {
        assert!(std::time::Instant::now() < deadline, "no evaluation started");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    unsafe { libc::kill(pid_of_rank(&ranks, 1) as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let log = std::fs::read_to_string(&log_path).unwrap();
    let line = log.lines().find(|l| l.contains("preempted: checkpointed at step ")).expect(&log);
    let stopped: u64 =
        line.split("checkpointed at step ").nth(1).unwrap().split(';').next().unwrap().parse().unwrap();
    let handed = log.matches("handed to the background").count();
    assert!(!log.contains(&format!("evaluation of step {stopped} handed")), "{log}");
    let evaluated = eval_lines(&dir.path().join("ci-tiny"));
    assert!(evaluated.iter().all(|l| l["step"].as_u64() != Some(stopped)), "{evaluated:?}");
    let dropped = log.matches("was still running; dropped").count();
    assert_eq!(
        evaluated.len() + dropped,
        handed,
        "every evaluation handed over was reported or dropped: {log}"
    );
}

/// Writes `n` seeded noise images of `size`x`size` (the last `odd` at 48x48, to mix sizes) to `dir`.
fn write_images(dir: &Path, n: u32, size: u32, odd: u32, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut state = seed;
    for i in 0..n {
        let s = if i >= n - odd { 48 } else { size };
        let img = image::RgbImage::from_fn(s, s, |x, y| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let noise = (state >> 56) as u8 / 4;
            let base = |v: u32| (v * 4 % 192) as u8;
            image::Rgb([base(x) + noise, base(y), base(i * 10) + noise])
        });
        img.save(dir.join(format!("img{i:03}.png"))).unwrap();
    }
}

/// FID between two folders, as pytorch-fid's command line: zero for a folder against itself,
/// positive and symmetric between two; too few images and an undecodable file are named. Precision
/// and recall of a folder against itself are 1.
#[test]
fn fid_between_two_folders() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let weights = random_weights(&dir.path().join("weights"));
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    write_images(&a, 8, 32, 0, 1);
    write_images(&b, 8, 32, 2, 2);
    let home = dir.path().join("home");
    let fid = |x: &Path, y: &Path| {
        let out = eval(
            &home,
            &[
                "fid",
                x.to_str().unwrap(),
                "--against",
                y.to_str().unwrap(),
                "--batch",
                "4",
                "--weights",
                &weights,
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("8 vs 8 images"), "{}", stdout(&out));
        value(&out, "fid")
    };
    // 8 images in 2048 dimensions: singular covariances, so "zero" is relative to the scale of
    // the features (FID of two different folders here is in the thousands).
    let same = fid(&a, &a);
    let (ab, ba) = (fid(&a, &b), fid(&b, &a));
    assert!(ab > 1.0, "{ab}");
    assert!(same.abs() < 1e-4 * ab, "FID of a folder with itself: {same} (vs {ab} between two)");
    assert!((ab - ba).abs() <= 1e-6 * ab, "symmetric: {ab} vs {ba}");
    // Precision and recall of a folder against itself: every image lies in its own neighbourhood.
    let (a_str, four) = (a.to_str().unwrap(), "4");
    let pr = eval(&home, &["pr", a_str, "--against", a_str, "--batch", four, "--weights", &weights]);
    assert!(pr.status.success(), "{}", stderr(&pr));
    assert_eq!((value(&pr, "precision"), value(&pr, "recall")), (1.0, 1.0), "{}", stdout(&pr));

    let few = dir.path().join("few");
    write_images(&few, 1, 32, 0, 3);
    let out =
        eval(&home, &["fid", a.to_str().unwrap(), "--against", few.to_str().unwrap(), "--weights", &weights]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("has 1 PNG/JPEG images"), "{}", stderr(&out));
    std::fs::write(b.join("zzz.png"), b"not a png").unwrap();
    let out =
        eval(&home, &["fid", a.to_str().unwrap(), "--against", b.to_str().unwrap(), "--weights", &weights]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("zzz.png") && stderr(&out).contains("cannot decode"), "{}", stderr(&out));
}

/// `eval` of a checkpoint scores against the dataset its config names. When that path now holds
/// other images (prepared again with --force), the score still comes, with a warning that names
/// the dataset the checkpoint was trained on and the one it is scored against.
#[test]
fn eval_warns_when_the_dataset_changed_since_training() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let prepare = |seed: &str| {
        let out = gan_launch()
            .args(["data", "prepare", "--from", "generated", "--resolution", "16", "--count", "256"])
            .args(["--seed", seed, "--force", "--out"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    prepare("1");
    let run = gan_launch()
        .arg(shipped_config("ci-tiny.yaml"))
        .args(["--set", &format!("run.dir={}", dir.path().display())])
        .args(["--set", "data.source=prepared", "--set", &format!("data.path={}", data.display())])
        .args(["--set", "train.total_kimg=0.128"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    let run_arg = dir.path().join("ci-tiny").display().to_string();
    let weights = random_weights(&dir.path().join("weights"));
    let fid = ["fid", &run_arg, "--num", "10", "--num-real", "20", "--batch", "10", "--weights", &weights];
    let home = dir.path().join("home");
    let same = eval(&home, &fid);
    assert!(same.status.success(), "{}", stderr(&same));
    assert!(!stderr(&same).contains("not the checkpoint's training data"), "{}", stderr(&same));
    prepare("2");
    let other = eval(&home, &fid);
    assert!(other.status.success(), "{}", stderr(&other));
    let err = stderr(&other);
    assert!(
        err.contains("the reals are not the checkpoint's training data: it was trained on prepared "),
        "{err}"
    );
    assert!(value(&other, "fid").is_finite());
    // The run's final G_ema file records the dataset too.
    let final_file = dir.path().join("ci-tiny/g_ema-final.safetensors").display().to_string();
    let of_file = eval(&home, &[&["fid", &final_file][..], &fid[2..]].concat());
    assert!(of_file.status.success(), "{}", stderr(&of_file));
    assert!(
        stderr(&of_file).contains("the reals are not the checkpoint's training data"),
        "{}",
        stderr(&of_file)
    );
}
