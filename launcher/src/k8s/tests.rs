use std::path::Path;

use gan_core::config::{self, RunConfig, SetOverride};

use super::*;

fn demo(sets: &[(&str, &str)]) -> RunConfig {
    let sets: Vec<SetOverride> =
        sets.iter().map(|(k, v)| SetOverride { key: k.to_string(), value: v.to_string() }).collect();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/demo.yaml");
    config::load(&path, &sets).unwrap()
}

fn config_key(err: Error) -> String {
    match err {
        Error::Config { key, .. } => key,
        other => panic!("not a config error: {other}"),
    }
}

#[test]
fn default_names_are_dns_labels_made_from_the_run_name() {
    assert_eq!(default_name("demo"), "gan-demo");
    assert_eq!(default_name("BigGAN_128 run"), "gan-biggan-128-run");
    assert_eq!(default_name("x__"), "gan-x");
    for name in ["gan-demo", "a", "a-1", "9z"] {
        assert!(check_name("--name", name, 63).is_ok(), "{name}");
    }
    for name in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
        assert_eq!(config_key(check_name("--name", name, 63).unwrap_err()), "--name", "{name:?}");
    }
    assert!(check_claim("--runs-claim", "runs.team-a").is_ok());
    assert!(check_claim("--runs-claim", "runs..a").is_err());
}

#[test]
fn the_longest_name_leaves_the_pods_host_names_within_63_characters() {
    // Job pods: <name>-<index>; JobSet pods: <name>-node-0-<index>.
    assert_eq!(max_name_len(1, false), 61);
    assert_eq!(max_name_len(10, false), 61);
    assert_eq!(max_name_len(11, false), 60);
    assert_eq!(max_name_len(11, true), 53);
    let name = "a".repeat(max_name_len(128, true));
    assert_eq!(format!("{name}-node-0-127").len(), 63);
}

#[test]
fn paths_the_pods_read_must_lie_on_their_volumes() {
    let on_runs = demo(&[("data.source", "prepared"), ("data.path", "/runs/data/shapes")]);
    assert!(check_pod_paths(&on_runs, false).is_ok());
    let on_data = demo(&[("data.source", "prepared"), ("data.path", "/data/imagenet128")]);
    assert_eq!(config_key(check_pod_paths(&on_data, false).unwrap_err()), "data.path");
    assert!(check_pod_paths(&on_data, true).is_ok());
    let relative = demo(&[("data.source", "prepared"), ("data.path", "data/imagenet128")]);
    let err = check_pod_paths(&relative, true).unwrap_err().to_string();
    assert!(err.contains("data/imagenet128") && err.contains("/runs") && err.contains("/data"), "{err}");
    // Generated data reads nothing; a stale path under it is not checked.
    assert!(check_pod_paths(&demo(&[("data.path", "elsewhere")]), false).is_ok());
    let weights = demo(&[("eval.weights", "/home/me/inception.pth")]);
    assert_eq!(config_key(check_pod_paths(&weights, true).unwrap_err()), "eval.weights");
    let resume = demo(&[("checkpoint.resume", "runs/demo/checkpoints/step-00000100")]);
    assert_eq!(config_key(check_pod_paths(&resume, true).unwrap_err()), "checkpoint.resume");
    assert!(check_pod_paths(&demo(&[("checkpoint.resume", "none")]), false).is_ok());
    // A checkpoint on the cluster's volume need not exist here.
    let on_cluster = demo(&[("checkpoint.resume", "/runs/demo/checkpoints/step-00000100")]);
    assert!(check_pod_paths(&on_cluster, false).is_ok());
    let init = demo(&[("checkpoint.init_from", "runs/ffhq/checkpoints")]);
    assert_eq!(config_key(check_pod_paths(&init, true).unwrap_err()), "checkpoint.init_from");
    assert!(check_pod_paths(&demo(&[("checkpoint.init_from", "/runs/ffhq")]), false).is_ok());
}
