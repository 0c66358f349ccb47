//! The Kubernetes files: every manifest validates offline (kubernetes-validate --strict for core
//! kinds, schema checks for JobSet and PodMonitor; see scripts/check-k8s.sh), the committed ones
//! are `gan-launch k8s`'s output for the demo, other jobs' manifests agree with their flags and
//! config, bad input is refused, and the environment the Indexed Job gives its two pods starts a
//! correct 2-node job: two launchers on loopback with exactly that environment and the
//! ConfigMap's config train a few steps.
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

/// Runs `gan-launch k8s` from the repository root; returns (exit code, stderr).
fn generate(args: &[&str]) -> (i32, String) {
    let out = gan_launch().arg("k8s").args(args).current_dir(repo()).output().unwrap();
    (out.status.code().unwrap_or(-1), stderr(&out))
}

const DEMO_JOB: [&str; 7] =
    ["configs/demo.yaml", "--nodes", "2", "--gpus", "8", "--image", "ghcr.io/gan-launch/gan-launch:0.1.0"];

fn yaml(path: &Path) -> serde_json::Value {
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_committed_manifests_are_the_generators_output_for_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let (job_dir, jobset_dir) = (dir.path().join("job"), dir.path().join("jobset"));
    for (out, extra) in [(&job_dir, None), (&jobset_dir, Some("--jobset"))] {
        let mut args = DEMO_JOB.to_vec();
        args.extend(["--out", out.to_str().unwrap()]);
        args.extend(extra);
        let (code, log) = generate(&args);
        assert_eq!(code, 0, "{log}");
        assert!(
            log.contains("world size 16")
                && log.contains("kubectl create secret generic gan-demo-store-token"),
            "{log}"
        );
    }
    let stale = "is stale: run gan-launch k8s configs/demo.yaml --nodes 2 --gpus 8 --image \
                 ghcr.io/gan-launch/gan-launch:0.1.0 --out k8s (and again with --jobset)";
    for file in manifests() {
        let name = file.file_name().unwrap();
        let generated = if name == "jobset.yaml" { jobset_dir.join(name) } else { job_dir.join(name) };
        let committed = std::fs::read_to_string(&file).unwrap();
        assert_eq!(std::fs::read_to_string(&generated).unwrap(), committed, "{} {stale}", file.display());
    }
    // A variant written over the other says what else the directory holds: applying the whole
    // directory would start both.
    let mut args = DEMO_JOB.to_vec();
    args.extend(["--out", job_dir.to_str().unwrap(), "--jobset"]);
    let (code, log) = generate(&args);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains(
            "also holds service.yaml, job.yaml from an earlier run, not part of this job: `kubectl apply -f"
        ),
        "{log}"
    );
    let (_, log) = generate(&[&DEMO_JOB[..], &["--out", jobset_dir.to_str().unwrap(), "--jobset"]].concat());
    assert!(!log.contains("warning"), "{log}");
    // A named start point needs no warning: a recreated pod knows it is a restart.
    let resume = ["--set", "checkpoint.resume=/runs/demo/checkpoints/step-00000100"];
    let elsewhere = dir.path().join("resume");
    let (code, log) = generate(&[&DEMO_JOB[..], &resume, &["--out", elsewhere.to_str().unwrap()]].concat());
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("warning"), "{log}");
    // Without --out: the same manifests as one YAML stream, for `| kubectl apply -f -`.
    let streamed = gan_launch().arg("k8s").args(DEMO_JOB).current_dir(repo()).output().unwrap();
    assert!(streamed.status.success(), "{}", stderr(&streamed));
    let files = ["configmap.yaml", "pvc.yaml", "service.yaml", "job.yaml", "podmonitor.yaml"];
    let joined: Vec<String> =
        files.iter().map(|f| std::fs::read_to_string(job_dir.join(f)).unwrap()).collect();
    assert_eq!(stdout(&streamed), joined.join("---\n"));
    // Both variants share the ConfigMap, PVC and PodMonitor.
    for name in ["configmap.yaml", "pvc.yaml", "podmonitor.yaml"] {
        assert_eq!(
            std::fs::read(job_dir.join(name)).unwrap(),
            std::fs::read(jobset_dir.join(name)).unwrap(),
            "{name}"
        );
    }
    // The ConfigMap holds the demo config resolved for this job, loadable as a config.
    let map = yaml(&job_dir.join("configmap.yaml"));
    let resolved = dir.path().join("demo.yaml");
    std::fs::write(&resolved, map["data"]["demo.yaml"].as_str().unwrap()).unwrap();
    let cfg = gan_core::config::load_with_env(&resolved, &[], std::iter::empty()).unwrap();
    assert_eq!((cfg.dist.nodes, cfg.dist.gpus, cfg.name()), (2, 8, "demo"));
    assert_eq!(cfg.run.dir, Path::new("/runs"));
    let demo =
        gan_core::config::load_with_env(&repo().join("configs/demo.yaml"), &[], std::iter::empty()).unwrap();
    assert_eq!(cfg.train, demo.train);
    assert_eq!(cfg.model, demo.model);
}

#[test]
fn manifests_for_other_jobs_validate_and_agree_with_their_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big");
    let (code, log) = generate(&[
        "configs/stylegan2.yaml",
        "--nodes",
        "4",
        "--gpus",
        "8",
        "--image",
        "registry.example/gan:1",
        "--jobset",
        "--name",
        "sg2-ffhq",
        "--data-claim",
        "ffhq",
        "--set",
        "data.path=/data/ffhq256",
        "--set",
        "metrics.port=9500",
        "--set",
        "dist.master_port=23456",
        "--memory-gib-per-gpu",
        "64",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{log}");
    let files: Vec<PathBuf> =
        ["configmap.yaml", "pvc.yaml", "jobset.yaml", "podmonitor.yaml"].map(|f| out.join(f)).into();
    let (ok, report) = check_k8s(&files);
    assert!(ok, "{report}");
    let jobset = yaml(&out.join("jobset.yaml"));
    let job = &jobset["spec"]["replicatedJobs"][0]["template"]["spec"];
    assert_eq!((job["completions"].as_u64(), job["parallelism"].as_u64()), (Some(4), Some(4)));
    let pod = &job["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"], 8);
    assert_eq!(container["resources"]["limits"]["memory"], "512Gi");
    let env = container["env"].as_array().unwrap();
    let master = env.iter().find(|v| v["name"] == "MASTER_ADDR").unwrap();
    assert_eq!(master["value"], "sg2-ffhq-node-0-0.sg2-ffhq");
    let ports: Vec<(String, u64)> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_string(), p["containerPort"].as_u64().unwrap()))
        .collect();
    assert_eq!(ports[0], ("store".into(), 23456));
    assert_eq!(ports[1], ("metrics-l".into(), 9409));
    assert_eq!(ports[2..].len(), 8);
    assert_eq!(ports[9], ("metrics-r7".into(), 9507));
    let claims: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
        .collect();
    assert_eq!(claims, ["gan-runs", "ffhq"]);
    let monitor = yaml(&out.join("podmonitor.yaml"));
    let scraped: Vec<&str> = monitor["spec"]["podMetricsEndpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["port"].as_str().unwrap())
        .collect();
    assert_eq!(scraped, ports[1..].iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>());
    assert_eq!(monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"], "sg2-ffhq");

    // CPU ranks: no GPU limit. Metrics on free ports: no fixed ports to scrape, so no PodMonitor.
    let cpu = dir.path().join("cpu");
    let mut args = DEMO_JOB.to_vec();
    args.extend(["--set", "train.device=cpu", "--set", "metrics.port=0", "--out", cpu.to_str().unwrap()]);
    let (code, log) = generate(&args);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("no PodMonitor"), "{log}");
    assert!(!cpu.join("podmonitor.yaml").exists());
    let job = std::fs::read_to_string(cpu.join("job.yaml")).unwrap();
    assert!(!job.contains("nvidia.com/gpu") && !job.contains("metrics-r0"), "{job}");
}

#[test]
fn bad_jobs_are_refused_with_the_key_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_arg = out.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["--name", "My_Job"], "`--name`"),
        (&["--set", "data.source=prepared", "--set", "data.path=/home/me/ffhq"], "`data.path`"),
        (&["--set", "train.batch_size=8"], "`train.batch_size`"),
        (&["--set", "dist.master_port=0"], "`dist.master_port`"),
        (&["--runs-claim", "Runs"], "`--runs-claim`"),
    ];
    for (extra, key) in cases {
        let mut args = DEMO_JOB.to_vec();
        args.extend(extra);
        args.extend(["--out", out_arg]);
        let (code, log) = generate(&args);
        assert_eq!(code, 2, "{extra:?}: {log}");
        assert!(log.contains(key), "{extra:?}: {log}");
        assert!(!out.exists(), "{extra:?} wrote files");
    }
}

/// The pod environment of completion index `index`, as Kubernetes builds it from job.yaml, for a
/// pod the Job controller created after `failures` failures of its index (0: a first start, whose
/// pod has no failure-count annotations, which the downward API gives as empty values).
fn pod_env(job: &serde_json::Value, index: u32, token: &str, failures: u32) -> Vec<(String, String)> {
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let mut env = vec![("JOB_COMPLETION_INDEX".to_string(), index.to_string())];
    for var in container["env"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap().to_string();
        let value = if let Some(v) = var["value"].as_str() {
            v.to_string()
        } else if let Some(path) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match path {
                // The job controller's job-name label.
                "metadata.labels['job-name']" => job["metadata"]["name"].as_str().unwrap().to_string(),
                "metadata.annotations['batch.kubernetes.io/job-index-failure-count']" if failures > 0 => {
                    failures.to_string()
                }
                "metadata.annotations['batch.kubernetes.io/job-index-failure-count']"
                | "metadata.annotations['batch.kubernetes.io/job-index-ignored-failure-count']" => {
                    String::new()
                }
                other => panic!("{name}: unexpected fieldPath {other}"),
            }
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
    let job = yaml(&repo().join("k8s/job.yaml"));
    let service = yaml(&repo().join("k8s/service.yaml"));
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
    let map = yaml(&repo().join("k8s/configmap.yaml"));
    for (file, text) in map["data"].as_object().unwrap() {
        std::fs::write(config_dir.join(file), text.as_str().unwrap()).unwrap();
    }
    let args: Vec<String> =
        args.iter().map(|a| a.replace("/config/", &format!("{}/", config_dir.display()))).collect();
    let runs = dir.path().join("runs");
    // Every pod of a round, started as the Job controller starts them, `failures` recreations in.
    let round = |failures: u32, sets: &[&str]| -> Vec<std::process::Output> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pods: Vec<_> = (0..nodes as u32)
            .map(|index| {
                let mut env = pod_env(&job, index, "test-token", failures);
                assert!(
                    env.iter().any(|(k, _)| k == "GAN_LAUNCH_CACHE"),
                    "the pods share one cache: {env:?}"
                );
                for (key, value) in env.iter_mut() {
                    match key.as_str() {
                        // The Service's DNS name resolves to node 0's pod: here, loopback.
                        "MASTER_ADDR" => {
                            assert_eq!(value, &node0);
                            *value = "127.0.0.1".into();
                        }
                        // The caches live on the shared run volume, as /runs does here.
                        "GAN_LAUNCH_CACHE" => {
                            assert!(value.starts_with("/runs/"), "{value}");
                            *value = value.replacen("/runs", &runs.display().to_string(), 1);
                        }
                        _ => {}
                    }
                }
                gan_launch()
                    .args(&args)
                    // No GPUs here, so one CPU rank per pod instead of one per GPU; free ports, so
                    // tests can run side by side.
                    .args(["--gpus", "1", "--master-port", &port.to_string()])
                    .args(["--set", "metrics.port=0", "--set", "metrics.launcher_port=0"])
                    .args(["--set", "log.progress=false"])
                    .arg("--set")
                    .arg(format!("run.dir={}", runs.display()))
                    .args(sets.iter().flat_map(|s| ["--set", s]))
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
        outs
    };
    // A few steps instead of the demo's 30 kimg.
    let outs = round(0, &["train.total_kimg=0.128"]);
    let node0_log = stderr(&outs[0]);
    assert!(
        node0_log.contains("placement from the scheduler") && node0_log.contains("world=2"),
        "{node0_log}"
    );
    assert!(stderr(&outs[1]).contains("[launcher node=1]"), "{}", stderr(&outs[1]));
    assert!(node0_log.contains("training finished step=2"), "{node0_log}");
    // Pods recreated after a failure, from manifests written with `checkpoint.resume: none`: their
    // annotations say they are a restart, so they go on from the run's checkpoint rather than
    // set it aside and start over.
    let outs = round(1, &["train.total_kimg=0.256", "checkpoint.resume=none"]);
    let node0_log = stderr(&outs[0]);
    assert!(
        node0_log.contains("resumed at step 2 ") && !node0_log.contains("moved the run's"),
        "{node0_log}"
    );
    assert!(runs.join("demo/checkpoints/latest").exists(), "the run is on the runs volume");
}
