//! The Kubernetes files: every manifest validates offline (kubernetes-validate --strict for core
//! kinds, schema checks for JobSet and PodMonitor; see scripts/check-k8s.sh), the ConfigMap is
//! the config file, and the environment the Indexed Job gives its two pods starts a correct
//! 2-node job: two launchers on loopback with exactly that environment train a few steps.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn check_k8s(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(repo().join("scripts/check-k8s.sh")).args(files).output().unwrap();
    (out.status.success(), format!("{}{}", stdout(&out), stderr(&out)))
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_manifest_validates_and_broken_ones_do_not() {
    let files = manifests();
    assert!(files.len() >= 6, "{files:?}");
    let (ok, report) = check_k8s(&files);
    assert!(ok, "{report}");
    for kind in ["service/", "job/", "jobset/", "podmonitor/", "configmap/", "persistentvolumeclaim/"] {
        assert!(report.contains(&format!("passed for resource {kind}")), "{kind} not checked: {report}");
    }
    // Each checker catches a mistake: an unknown field in the Job, a wrong type in the JobSet,
    // a misspelt PodMonitor field.
    let dir = tempfile::tempdir().unwrap();
    for (file, from, to) in [
        ("job.yaml", "  completionMode: Indexed", "  completionModee: Indexed"),
        ("jobset.yaml", "maxRestarts: 3", "maxRestarts: \"3\""),
        ("podmonitor.yaml", "path: /metrics", "pathh: /metrics"),
    ] {
        let text = std::fs::read_to_string(repo().join("k8s").join(file)).unwrap();
        assert!(text.contains(from), "{file} lacks {from:?}");
        let broken = dir.path().join(file);
        std::fs::write(&broken, text.replace(from, to)).unwrap();
        let (ok, report) = check_k8s(&[broken]);
        assert!(!ok, "{file} with {to:?} passed: {report}");
    }
}

#[test]
fn the_configmap_is_the_demo_config() {
    let out = Command::new(repo().join("scripts/k8s-configmap.sh"))
        .arg("configs/demo.yaml")
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success());
    let committed = std::fs::read_to_string(repo().join("k8s/configmap.yaml")).unwrap();
    assert_eq!(
        stdout(&out),
        committed,
        "k8s/configmap.yaml is stale: run scripts/k8s-configmap.sh configs/demo.yaml > k8s/configmap.yaml"
    );
    let doc: serde_json::Value = serde_norway::from_str(&committed).unwrap();
    let demo = std::fs::read_to_string(repo().join("configs/demo.yaml")).unwrap();
    assert_eq!(doc["data"]["demo.yaml"].as_str().unwrap(), demo);
}

/// The pod environment of completion index `index`, as Kubernetes builds it from job.yaml.
fn pod_env(job: &serde_json::Value, index: u32, token: &str) -> Vec<(String, String)> {
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let mut env = vec![("JOB_COMPLETION_INDEX".to_string(), index.to_string())];
    for var in container["env"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap().to_string();
        let value = if let Some(v) = var["value"].as_str() {
            v.to_string()
        } else if let Some(path) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            assert_eq!(path, "metadata.labels['job-name']", "{name}");
            job["metadata"]["name"].as_str().unwrap().to_string() // the job controller's job-name label
        } else {
            assert!(var["valueFrom"]["secretKeyRef"].is_object(), "{name}");
            token.to_string()
        };
        env.push((name, value));
    }
    env
}

#[test]
fn two_launchers_with_the_indexed_jobs_pod_environment_train_together() {
    gan_train_path();
    let job: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(repo().join("k8s/job.yaml")).unwrap()).unwrap();
    let service: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(repo().join("k8s/service.yaml")).unwrap()).unwrap();
    let name = job["metadata"]["name"].as_str().unwrap();
    let nodes = job["spec"]["completions"].as_u64().unwrap();
    assert_eq!(nodes, job["spec"]["parallelism"].as_u64().unwrap());
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    // Node 0's stable DNS name: <job>-0.<subdomain>, where the subdomain is the headless Service.
    let subdomain = job["spec"]["template"]["spec"]["subdomain"].as_str().unwrap();
    assert_eq!(subdomain, service["metadata"]["name"].as_str().unwrap());
    assert!(service["spec"]["clusterIP"] == "None" && service["spec"]["selector"]["job-name"] == name);
    let node0 = format!("{name}-0.{subdomain}");
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> =
        container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();

    let dir = tempfile::tempdir().unwrap();
    // The ConfigMap mounted at /config and the volume at /runs become directories here.
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::copy(repo().join("configs/demo.yaml"), config_dir.join("demo.yaml")).unwrap();
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace("/config/", &format!("{}/", config_dir.display()))
                .replace("=/runs", &format!("={}/runs", dir.path().display()))
        })
        .collect();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let pods: Vec<_> = (0..nodes as u32)
        .map(|index| {
            let mut env = pod_env(&job, index, "test-token");
            assert!(env.iter().any(|(k, _)| k == "GAN_LAUNCH_CACHE"), "the pods share one cache: {env:?}");
            for (key, value) in env.iter_mut() {
                match key.as_str() {
                    // The Service's DNS name resolves to node 0's pod: here, loopback.
                    "MASTER_ADDR" => {
                        assert_eq!(value, &node0);
                        *value = "127.0.0.1".into();
                    }
                    // No GPUs here: one CPU rank per pod instead of one per GPU.
                    "GAN_DIST__GPUS" => *value = "1".into(),
                    // A free port instead of 29500, so tests can run side by side.
                    "GAN_DIST__MASTER_PORT" => *value = port.to_string(),
                    // The caches live on the shared run volume, as /runs does here.
                    "GAN_LAUNCH_CACHE" => {
                        assert!(value.starts_with("/runs/"), "{value}");
                        *value = value.replacen("/runs", &format!("{}/runs", dir.path().display()), 1);
                    }
                    _ => {}
                }
            }
            gan_launch()
                .args(&args)
                // A few steps instead of the demo's 30 kimg, and free metrics ports.
                .args([
                    "--set",
                    "train.total_kimg=0.128",
                    "--set",
                    "metrics.port=0",
                    "--set",
                    "metrics.launcher_port=0",
                ])
                .args(["--set", "log.progress=false"])
                .envs(env)
                .current_dir(dir.path())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = pods.into_iter().map(|p| p.wait_with_output().unwrap()).collect();
    for (i, out) in outs.iter().enumerate() {
        assert!(out.status.success(), "pod {i}: {}", stderr(out));
    }
    let node0_log = stderr(&outs[0]);
    assert!(
        node0_log.contains("placement from the scheduler") && node0_log.contains("world=2"),
        "{node0_log}"
    );
    assert!(stderr(&outs[1]).contains("[launcher node=1]"), "{}", stderr(&outs[1]));
    assert!(node0_log.contains("training finished step=2"), "{node0_log}");
}
