use std::path::PathBuf;

use super::*;
use crate::error::Error;

const BASE: &str = "
data: { source: generated, resolution: 16, num_classes: 4 }
model: { arch: dcgan, conditional: true }
train:
  batch_size: 32
  total_kimg: 1
  loss: hinge
  g_opt: { lr: 0.001 }
  d_opt: { lr: 0.002, betas: [0.5, 0.9] }
";

fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("exp.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn sets(items: &[&str]) -> Vec<SetOverride> {
    items.iter().map(|s| s.parse().unwrap()).collect()
}

fn env(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Loads `text` with overrides and returns the config error's (key, full message).
fn config_error(text: &str, set: &[&str], vars: &[(&str, &str)]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let err = load_with_env(&write(&dir, text), &sets(set), env(vars)).unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    match &err {
        Error::Config { key, .. } => (key.clone(), err.to_string()),
        other => panic!("expected a config error, got {other}"),
    }
}

#[test]
fn defaults_fill_in_and_name_comes_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = load_with_env(&write(&dir, BASE), &[], env(&[])).unwrap();
    assert_eq!(cfg.name(), "exp");
    assert_eq!(cfg.dist.gpus, 1);
    assert_eq!(cfg.train.g_opt.betas, [0.0, 0.99]);
    assert_eq!(cfg.train.d_opt.betas, [0.5, 0.9]);
    assert_eq!(cfg.model.z_dim, 128);
    assert_eq!(cfg.run.dir, PathBuf::from("runs"));
}

#[test]
fn every_shipped_config_loads_and_validates() {
    let configs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut count = 0;
    for entry in std::fs::read_dir(&configs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            load_with_env(&path, &[], env(&[])).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            count += 1;
        }
    }
    assert!(count >= 2, "expected the shipped configs in {}", configs.display());
}

/// The CUDA switches default to the references' settings: no TF32, cuDNN autotuning on.
#[test]
fn cuda_switches_default_to_the_references_settings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = load_with_env(&write(&dir, BASE), &[], env(&[])).unwrap();
    assert_eq!((cfg.train.allow_tf32, cfg.train.cudnn_benchmark), (false, true));
    let cfg = load_with_env(&write(&dir, BASE), &sets(&["train.allow_tf32=true"]), env(&[])).unwrap();
    assert!(cfg.train.allow_tf32);
}

#[test]
fn resolved_config_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = load_with_env(&write(&dir, BASE), &sets(&["train.ema_rampup=0.05"]), env(&[])).unwrap();
    let resolved = dir.path().join("resolved.yaml");
    save_resolved(&cfg, &resolved).unwrap();
    assert_eq!(load_resolved(&resolved).unwrap(), cfg);
    // A checkpoint's config is read back where the checkpoint it resumed from is gone (deleted,
    // or another machine): `sample` and `eval` must not refuse it for that.
    let resumed = dir.path().join("old-run");
    std::fs::create_dir(&resumed).unwrap();
    let set = format!("checkpoint.resume={}", resumed.display());
    let cfg = load_with_env(&write(&dir, BASE), &sets(&[set.as_str()]), env(&[])).unwrap();
    save_resolved(&cfg, &resolved).unwrap();
    std::fs::remove_dir(&resumed).unwrap();
    assert_eq!(load_resolved(&resolved).unwrap(), cfg);
    let text = std::fs::read_to_string(&resolved).unwrap();
    assert_eq!(parse_resolved(&text, &resolved).unwrap(), cfg);
}

#[test]
fn unknown_key_is_named_with_its_path_and_the_allowed_keys() {
    let (key, msg) = config_error(&format!("{BASE}  batch_sise: 3\n"), &[], &[]);
    assert_eq!(key, "train.batch_sise");
    assert!(msg.contains("batch_size"), "the allowed keys are listed: {msg}");
    let (key, _) = config_error(&format!("{BASE}trian: {{}}\n"), &[], &[]);
    assert_eq!(key, "trian");
}

#[test]
fn wrong_type_names_key_and_value() {
    let (key, msg) = config_error(&BASE.replace("batch_size: 32", "batch_size: lots"), &[], &[]);
    assert_eq!(key, "train.batch_size");
    assert!(msg.contains("lots"), "{msg}");
}

#[test]
fn bad_enum_value_lists_the_allowed_values() {
    let (key, msg) = config_error(&BASE.replace("loss: hinge", "loss: wasserstein"), &[], &[]);
    assert_eq!(key, "train.loss");
    assert!(msg.contains("wasserstein") && msg.contains("hinge") && msg.contains("ns_logistic"), "{msg}");
}

#[test]
fn invalid_combinations_are_refused() {
    let cases: &[(&[&str], &str, &str)] = &[
        (&["data.resolution=24"], "data.resolution", "power of two"),
        (&["data.source=prepared"], "data.path", "the directory of a prepared dataset"),
        (&["data.source=prepared", "data.path="], "data.path", "the directory of a prepared dataset"),
        (&["data.num_classes=0"], "model.conditional", "num_classes"),
        (&["train.batch_per_rank=12"], "train.batch_size", "1 x 12"),
        // A recipe's batch_per_rank on more ranks: the global batch splits, batch_per_rank is the fix.
        (
            &["train.batch_per_rank=32", "dist.gpus=4"],
            "train.batch_size",
            "4 x 32 = 128 (or train.batch_per_rank a divisor of batch_size / ranks = 8, e.g. 8)",
        ),
        (&["train.d_opt.betas=[0.5, 1.0]"], "train.d_opt.betas[1]", "[0, 1)"),
        (&["data.num_classes=9"], "data.num_classes", "at most 8"),
        (&["log.level=loud"], "log.level", "info"),
        (&["dist.backend=nccl", "train.device=cpu"], "dist.backend", "NCCL needs GPUs"),
        (&["train.pl_weight=2"], "train.pl_weight", "stylegan2"),
        (&["train.style_mixing_prob=0.9"], "train.style_mixing_prob", "stylegan2"),
        (&["model.arch=stylegan2", "train.style_mixing_prob=1.5"], "train.style_mixing_prob", "[0, 1]"),
        (
            &["model.arch=stylegan2", "model.mbstd_group_size=5"],
            "model.mbstd_group_size",
            "divisor of the per-rank batch 32",
        ),
        (&["model.arch=stylegan2", "model.d_architecture=skip"], "model.d_architecture", "resnet"),
        (&["train.precision=fp16"], "train.precision", "bf16"),
        (&["train.rollback_lr_mult=0"], "train.rollback_lr_mult", "(0, 1]"),
        (&["train.rollback_lr_mult=2"], "train.rollback_lr_mult", "(0, 1]"),
        (&["eval.every_kimg=1", "eval.num=1"], "eval.num", "at least 2 per rank: 2 for world size 1"),
        (&["eval.every_kimg=1", "eval.metrics=[fid, lpips]"], "eval.metrics[1]", "`pr`, `dc`"),
        (
            &["eval.every_kimg=1", "eval.metrics=[pr, dc]", "eval.num=4"],
            "eval.num",
            "more than 5 images for dc",
        ),
        (&["eval.rollback_on_mode_dropping=true"], "eval.rollback_on_mode_dropping", "eval.every_kimg > 0"),
        (
            &["eval.every_kimg=1", "eval.metrics=[fid, is]", "eval.rollback_on_mode_dropping=true"],
            "eval.rollback_on_mode_dropping",
            "fid and pr or dc",
        ),
        (
            &["eval.every_kimg=1", "eval.metrics=[fid, dc]", "eval.rollback_on_mode_dropping=true"],
            "eval.rollback_on_mode_dropping",
            "checkpoint.keep_best >= 1",
        ),
        (
            &[
                "eval.every_kimg=1",
                "eval.metrics=[fid, pr]",
                "eval.rollback_on_mode_dropping=true",
                "checkpoint.keep_best=1",
                "train.max_rollbacks=0",
            ],
            "eval.rollback_on_mode_dropping",
            "train.max_rollbacks >= 1",
        ),
        (
            &["eval.every_kimg=1", "eval.batch=8", "eval.gen_batch=16"],
            "eval.gen_batch",
            "from 1 to eval.batch (8)",
        ),
        (&["eval.every_kimg=1", "eval.gen_batch=0"], "eval.gen_batch", "from 1 to eval.batch (50)"),
        (&["eval.quick_every_kimg=1"], "eval.quick_every_kimg", "less than eval.every_kimg (0)"),
        (&["train.freeze_d=2"], "train.freeze_d", "0 unless model.arch is stylegan2"),
        // 16x16 resnet D: FromRGB, then b16 and b8 with conv0, conv1 and skip each.
        (&["model.arch=stylegan2", "train.freeze_d=8"], "train.freeze_d", "at most 7: the layers of D"),
        (
            &["model.arch=stylegan2", "model.d_architecture=orig", "train.freeze_d=6"],
            "train.freeze_d",
            "at most 5",
        ),
        (
            &["checkpoint.resume=runs/a", "checkpoint.init_from=runs/b"],
            "checkpoint.init_from",
            "null while checkpoint.resume names a checkpoint",
        ),
        (&["eval.every_kimg=1", "eval.quick_every_kimg=1"], "eval.quick_every_kimg", "between the full ones"),
        (&["eval.every_kimg=1", "eval.quick_every_kimg=-1"], "eval.quick_every_kimg", "finite number >= 0"),
        (
            &["eval.every_kimg=1", "eval.quick_every_kimg=0.5", "eval.quick_num=10000"],
            "eval.quick_num",
            "fewer images than eval.num (10000)",
        ),
        (
            &["eval.every_kimg=1", "eval.quick_every_kimg=0.5", "eval.quick_num=1"],
            "eval.quick_num",
            "at least 2 per rank",
        ),
        (
            &["eval.every_kimg=1", "eval.metrics=[pr]", "eval.quick_every_kimg=0.5", "eval.quick_num=3"],
            "eval.quick_num",
            "more than 3 images for pr",
        ),
        (
            &["eval.every_kimg=1", "eval.metrics=[pr]", "eval.num_real=3"],
            "eval.num_real",
            "more than 3 images",
        ),
    ];
    for (set, want_key, want_text) in cases {
        let (key, msg) = config_error(BASE, set, &[]);
        assert_eq!(&key, want_key, "{set:?}: {msg}");
        assert!(msg.contains(want_text), "{set:?}: {msg}");
    }
}

#[test]
fn bad_set_syntax_is_a_config_error() {
    for bad in ["train.batch_size", "train..x=1", "=3", "tra in.x=1"] {
        let err = bad.parse::<SetOverride>().unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--set"), "{err}");
    }
    let (key, msg) = config_error(BASE, &["train.nonsense=1"], &[]);
    assert_eq!(key, "train.nonsense");
    assert!(msg.contains("--set train.nonsense=1"), "the error names the layer: {msg}");
}

#[test]
fn overrides_apply_file_then_env_then_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, BASE);
    let load = |set: &[&str], vars: &[(&str, &str)]| load_with_env(&path, &sets(set), env(vars)).unwrap();
    assert_eq!(load(&[], &[]).train.batch_size, 32);
    assert_eq!(load(&[], &[("GAN_TRAIN__BATCH_SIZE", "64")]).train.batch_size, 64);
    let both = load(&["train.batch_size=128"], &[("GAN_TRAIN__BATCH_SIZE", "64")]);
    assert_eq!(both.train.batch_size, 128, "--set wins over the environment");
    // Later --set wins over earlier; nested keys and lists work from both layers.
    let cfg = load(
        &["train.g_opt.lr=0.01", "train.g_opt.lr=0.02", "train.g_opt.betas=[0.5, 0.9]"],
        &[("GAN_TRAIN__D_OPT__LR", "0.5"), ("GAN_MODEL__CONDITIONAL", "false")],
    );
    assert_eq!(cfg.train.g_opt.lr, 0.02);
    assert_eq!(cfg.train.g_opt.betas, [0.5, 0.9]);
    assert_eq!(cfg.train.d_opt.lr, 0.5);
    assert!(!cfg.model.conditional);
    // GAN_ variables that are not config (no double underscore) are left alone.
    assert_eq!(load(&[], &[("GAN_HOME", "/x")]).train.batch_size, 32);
}

#[test]
fn errors_name_the_layer_that_set_the_bad_value() {
    let (key, msg) = config_error(BASE, &[], &[("GAN_TRAIN__BATCH_SIZE", "abc")]);
    assert_eq!(key, "train.batch_size");
    assert!(msg.contains("GAN_TRAIN__BATCH_SIZE=abc"), "{msg}");
    let (_, msg) = config_error(BASE, &["train.batch_size=1", "dist.gpus=2"], &[]);
    assert!(msg.contains("--set train.batch_size=1"), "{msg}");
}

#[test]
fn plan_splits_batch_threads_and_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = load_with_env(&write(&dir, BASE), &sets(&["dist.gpus=2", "train.batch_per_rank=8"]), env(&[]))
        .unwrap();
    let plans = plan(&cfg, HostFacts { gpus: 0, cpus: 8 });
    assert_eq!(plans.len(), 2);
    assert!(plans.iter().all(|p| p.device == "cpu" && p.threads == 4 && p.batch_per_rank == 8));
    assert!(plans.iter().all(|p| p.accumulation == 2), "32 = 2 ranks x 8 x 2 rounds");
    assert_ne!(plans[0].seed, plans[1].seed);
    let gpu = plan(&cfg, HostFacts { gpus: 2, cpus: 8 });
    assert_eq!(gpu[1].device, "cuda:1");
    assert!(format_plan(&plans).contains("cpu"));
}

#[test]
fn a_batch_that_does_not_split_evenly_gives_ranks_shares_a_step() {
    // No power-of-two rule: 32 images on 3 ranks are 11, 11 and 10, one round each.
    let dir = tempfile::tempdir().unwrap();
    let cfg = load_with_env(&write(&dir, BASE), &sets(&["dist.gpus=3"]), env(&[])).unwrap();
    let plans = plan(&cfg, HostFacts { gpus: 0, cpus: 6 });
    let batches: Vec<(u32, u32)> = plans.iter().map(|p| (p.batch_per_rank, p.accumulation)).collect();
    assert_eq!(batches, [(11, 1), (11, 1), (10, 1)]);
    assert_eq!(per_rank_batches(&cfg), [11, 10]);
    for (n, world) in [(32u64, 3u32), (50, 8), (7, 7), (1000, 1)] {
        let shares: Vec<_> = (0..world).map(|r| rank_share(n, r, world)).collect();
        assert_eq!(shares[0].start, 0);
        assert_eq!(shares.last().unwrap().end, n);
        assert!(shares
            .windows(2)
            .all(|w| w[0].end == w[1].start && w[0].clone().count() >= w[1].clone().count()));
        assert!(shares.iter().all(|s| s.clone().count() as u64 >= n / u64::from(world)));
    }
    // Every share must take minibatch-stddev groups: 11 and 10 take no group of 4.
    let stylegan = ["dist.gpus=3", "model.arch=stylegan2", "model.mbstd_group_size=4"];
    let (key, msg) = config_error(BASE, &stylegan, &[]);
    assert_eq!(key, "model.mbstd_group_size");
    assert!(msg.contains("per-rank batch 11"), "{msg}");
    // It says what would fit: a batch of whole groups on every rank, or smaller groups.
    assert!(msg.contains("train.batch_size=24 or 36 (3 ranks x 4) keeps groups of 4"), "{msg}");
    assert!(msg.contains("model.mbstd_group_size=1 fits"), "{msg}");
    let (_, msg) =
        config_error(BASE, &["dist.gpus=2", "model.arch=stylegan2", "model.mbstd_group_size=5"], &[]);
    assert!(msg.contains("train.batch_size=30 or 40 (2 ranks x 5)"), "{msg}");
    assert!(msg.contains("model.mbstd_group_size=4 fits"), "{msg}");
    // A fixed batch_per_rank keeps rounds alike on every rank, so it must split evenly.
    let (key, msg) = config_error(BASE, &["dist.gpus=3", "train.batch_per_rank=4"], &[]);
    assert_eq!(key, "train.batch_size");
    assert!(msg.contains("or no train.batch_per_rank: each rank then takes 11 or 10 images"), "{msg}");
}

#[test]
fn flight_record_interval_is_seconds_or_off() {
    for bad in ["-1", "1e20"] {
        let (key, msg) = config_error(BASE, &[&format!("dist.flight_record_secs={bad}")], &[]);
        assert_eq!(key, "dist.flight_record_secs");
        assert!(msg.contains("0 turns flight records off"), "{msg}");
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = load_with_env(&write(&dir, BASE), &sets(&["dist.flight_record_secs=0"]), env(&[])).unwrap();
    assert_eq!(cfg.dist.flight_record_secs, 0.0);
}

/// A config of exactly the required keys, built as nested JSON (which is YAML).
fn config_of(pairs: &[(&str, serde_json::Value)]) -> String {
    let mut root = serde_json::Map::new();
    for (key, value) in pairs {
        let parts: Vec<&str> = key.split('.').collect();
        let mut table = &mut root;
        for part in &parts[..parts.len() - 1] {
            table = table.entry(*part).or_insert_with(|| serde_json::json!({})).as_object_mut().unwrap();
        }
        table.insert(parts[parts.len() - 1].to_string(), value.clone());
    }
    serde_json::Value::Object(root).to_string()
}

#[test]
fn the_required_keys_are_exactly_the_schema_keys_without_defaults() {
    use serde_json::json;
    let values = [
        ("data.source", json!("generated")),
        ("data.resolution", json!(16)),
        ("model.arch", json!("dcgan")),
        ("train.batch_size", json!(8)),
        ("train.total_kimg", json!(1)),
        ("train.loss", json!("hinge")),
        ("train.g_opt.lr", json!(0.002)),
        ("train.d_opt.lr", json!(0.002)),
    ];
    let keys: Vec<&str> = values.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, super::required::required_keys().collect::<Vec<_>>());
    // These alone load: nothing else lacks a default (a new required field fails here).
    let dir = tempfile::tempdir().unwrap();
    load_with_env(&write(&dir, &config_of(&values)), &[], env(&[])).unwrap();
    // Without any one of them, the error names it; the typed read alone would name its section.
    for left_out in 0..values.len() {
        let mut fewer = values.to_vec();
        let (key, _) = fewer.remove(left_out);
        let (err_key, msg) = config_error(&config_of(&fewer), &[], &[]);
        assert_eq!(err_key, key, "{msg}");
        assert!(msg.contains("no default and must be set"), "{msg}");
    }
}

#[test]
fn every_missing_key_is_listed_at_once_with_what_it_takes() {
    let text = "
data: { source: generated, resolution: 16 }
model: { arch: dcgan }
train: { batch_size: 8, total_kimg: 1, g_opt: { betas: [0.0, 0.99] } }
";
    let (key, msg) = config_error(text, &["train.device=cpu"], &[]);
    assert_eq!(key, "train.loss");
    assert!(msg.contains("`train.loss` (one of hinge, ns_logistic, wgan_gp)"), "{msg}");
    assert!(msg.contains("`train.g_opt.lr` (G's Adam learning rate)"), "{msg}");
    assert!(msg.contains("`train.d_opt.lr`"), "{msg}");
    // An override of a neighbouring key is not blamed for what nobody set.
    assert!(!msg.contains("set by"), "{msg}");
    // A section given as a scalar is a type error, reported by the typed read at its key.
    let (key, msg) = config_error(BASE, &["train.g_opt=0.001"], &[]);
    assert_eq!(key, "train.g_opt", "{msg}");
    assert!(!msg.contains("must be set"), "{msg}");
}

#[test]
fn a_misspelt_section_is_named_before_the_keys_it_leaves_missing() {
    let text = BASE.replace("model:", "modle:");
    let (key, msg) = config_error(&text, &[], &[]);
    assert_eq!(key, "modle", "{msg}");
    assert!(msg.contains("unknown field `modle`"), "{msg}");
}
