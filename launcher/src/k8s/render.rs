//! The manifests as text. They are written from templates rather than serialised from values, so
//! each keeps the comments that say why a setting is there; every value that is not a checked
//! name or a number goes through JSON quoting, which is valid YAML. Templates are written at
//! column 0 and indented into place.
use std::fmt::Write;

use super::{secret_command, JobSpec, CONFIG_MOUNT, DATA_MOUNT, RUNS_MOUNT};
use gan_core::cluster::{K8S_INDEX_RESTART_ENV, K8S_JOBSET_RESTART_ENV};

/// Every file name `all` may write, whatever the variant.
pub const ALL_FILES: [&str; 6] =
    ["configmap.yaml", "pvc.yaml", "jobset.yaml", "service.yaml", "job.yaml", "podmonitor.yaml"];

/// (file name, contents) of every manifest, in the order to apply them.
pub fn all(spec: &JobSpec) -> Vec<(String, String)> {
    let mut files =
        vec![("configmap.yaml".to_string(), configmap(spec)), ("pvc.yaml".to_string(), pvc(spec))];
    if spec.jobset {
        files.push(("jobset.yaml".into(), jobset(spec)));
    } else {
        files.push(("service.yaml".into(), service(spec)));
        files.push(("job.yaml".into(), job(spec)));
    }
    if spec.metrics_ports.is_some() {
        files.push(("podmonitor.yaml".into(), podmonitor(spec)));
    }
    // The leftover check knows only ALL_FILES; every test that writes manifests checks this.
    debug_assert!(
        files.iter().all(|(f, _)| ALL_FILES.contains(&f.as_str())),
        "a manifest file missing from ALL_FILES"
    );
    files
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

/// `text` with every non-empty line indented by `spaces`.
pub(super) fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines().map(|l| if l.is_empty() { "\n".to_string() } else { format!("{pad}{l}\n") }).collect()
}

fn labels(spec: &JobSpec) -> String {
    format!("labels:\n  app.kubernetes.io/name: gan-launch\n  app.kubernetes.io/instance: {}\n", spec.name)
}

fn configmap(spec: &JobSpec) -> String {
    format!(
        r#"# The config the pods run, mounted at {CONFIG_MOUNT}/{file}: the config resolved by `gan-launch k8s`
# (file, GAN_* environment and --set, every default filled in, run.dir on the runs volume),
# so the pods run exactly what it validated. Change the config and run `gan-launch k8s` again
# rather than editing this.
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}-config
{labels}data:
  {key}: |
{body}"#,
        file = spec.config_file,
        name = spec.name,
        labels = indent(&labels(spec), 2),
        key = quoted(&spec.config_file),
        body = indent(&spec.resolved_config, 4),
    )
}

fn pvc(spec: &JobSpec) -> String {
    format!(
        r#"# The run directory (checkpoints, logs, samples) and the FID cache, shared by every node of the
# job: checkpoints are written by rank 0 and read by every rank on resume, so it must be
# ReadWriteMany. Skip this file when the claim exists already.
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {claim}
  labels:
    app.kubernetes.io/name: gan-launch
spec:
  accessModes: [ReadWriteMany]
  resources:
    requests:
      storage: {gib}Gi
"#,
        claim = spec.runs_claim,
        gib = spec.runs_storage_gib,
    )
}

fn service(spec: &JobSpec) -> String {
    format!(
        r#"# Headless Service: gives every pod of the Indexed Job a stable DNS name, <job>-<index>.{name},
# so node 0 (the rendezvous store) is reachable as {name}-0.{name}.
apiVersion: v1
kind: Service
metadata:
  name: {name}
{labels}spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    job-name: {name}
  ports:
    - name: store
      port: {port}
      targetPort: {port}
"#,
        name = spec.name,
        labels = indent(&labels(spec), 2),
        port = spec.store_port,
    )
}

/// How the cluster treats a pod's exit, shared by the Job and the JobSet's job template
/// (`explain`: with the comments, which the Job's copy carries).
fn pod_failure_policy(explain: bool) -> String {
    let why = |text: &str| if explain { text.to_string() } else { String::new() };
    format!(
        r#"podFailurePolicy:
  rules:
{preempted}    - action: Ignore
      onExitCodes:
        containerName: gan-launch
        operator: In
        values: [75]
{evicted}    - action: Ignore
      onPodConditions:
        - type: DisruptionTarget
          status: "True"
{bad_input}    - action: FailJob
      onExitCodes:
        containerName: gan-launch
        operator: In
        values: [2, 3]
"#,
        preempted = why(
            "    # Preempted: every rank checkpointed and gan-launch exited 75. Not counted as a failure;\n    \
             # the pod is recreated and resumes from the checkpoint.\n"
        ),
        evicted = why("    # Evicted or its node drained: the same, by pod condition.\n"),
        bad_input = why(
            "    # Bad input (config, dataset, incompatible checkpoint, exit 2) does not improve by retrying,\n    \
             # and a divergence with no rollbacks left (exit 3) would replay.\n"
        ),
    )
}

/// The pod template (`metadata` and `spec`), at column 0. `subdomain` is the Job's Service; a
/// JobSet sets its own. `job_name_label` is the label the controller puts the job's name in.
fn pod_template(spec: &JobSpec, master_addr: &str, subdomain: bool, job_name_label: &str) -> String {
    let mut t = format!("metadata:\n{}spec:\n", indent(&labels(spec), 2));
    if subdomain {
        writeln!(t, "  subdomain: {}", spec.name).unwrap();
    }
    t += r#"  restartPolicy: Never
  # Long enough for every rank to finish its step and write a checkpoint after SIGTERM.
  terminationGracePeriodSeconds: 300
  containers:
    - name: gan-launch
"#;
    writeln!(t, "      image: {}", quoted(&spec.image)).unwrap();
    writeln!(t, "      args: [{}]", quoted(&format!("{CONFIG_MOUNT}/{}", spec.config_file))).unwrap();
    t += &indent(&env(spec, master_addr, job_name_label, !subdomain), 6);
    t += &indent(&ports(spec), 6);
    t += &indent(&resources(spec), 6);
    t += "      volumeMounts:\n";
    writeln!(t, "        - {{name: config, mountPath: {CONFIG_MOUNT}, readOnly: true}}").unwrap();
    writeln!(t, "        - {{name: runs, mountPath: {RUNS_MOUNT}}}").unwrap();
    if spec.data_claim.is_some() {
        writeln!(t, "        - {{name: data, mountPath: {DATA_MOUNT}, readOnly: true}}").unwrap();
    }
    t += "        - {name: shm, mountPath: /dev/shm}\n";
    t + &indent(&volumes(spec), 2)
}

/// The container's environment; `jobset` adds the JobSet's restart attempt to the counts of
/// recreated pods that tell a restart from a first start.
fn env(spec: &JobSpec, master_addr: &str, job_name_label: &str, jobset: bool) -> String {
    let mut restarts = String::from(
        "  # Counts of this pod's restarts, from annotations the controllers set (empty on a first\n  \
         # start): a restarted pod goes on from the run's own checkpoints.\n",
    );
    let jobset_restarts = jobset.then_some(&K8S_JOBSET_RESTART_ENV);
    for (name, annotation) in K8S_INDEX_RESTART_ENV.iter().chain(jobset_restarts) {
        writeln!(
            restarts,
            "  - name: {name}\n    valueFrom:\n      fieldRef:\n        fieldPath: metadata.annotations['{annotation}']"
        )
        .unwrap();
    }
    let vars = format!(
        r#"env:
  - name: MASTER_ADDR
    value: {master_addr}
  - name: JOB_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.labels['{job_name_label}']
  # FID weights and real statistics on the shared volume: computed once for every pod
  # and every restart, instead of again in each pod's throwaway home.
  - name: GAN_LAUNCH_CACHE
    value: {RUNS_MOUNT}/.cache
  - name: GANLAUNCH_STORE_TOKEN
    valueFrom:
      secretKeyRef:
        name: {name}-store-token
        key: token
"#,
        name = spec.name,
    );
    vars + &restarts
}

/// The store's port, and the launcher's and each local rank's metrics port (named for the PodMonitor).
fn ports(spec: &JobSpec) -> String {
    let mut p = format!("ports:\n  - {{name: store, containerPort: {}}}\n", spec.store_port);
    if let Some((launcher, first_rank)) = spec.metrics_ports {
        writeln!(p, "  - {{name: metrics-l, containerPort: {launcher}}}").unwrap();
        for local_rank in 0..spec.gpus {
            let port = u32::from(first_rank) + local_rank;
            writeln!(p, "  - {{name: {}, containerPort: {port}}}", rank_port_name(local_rank)).unwrap();
        }
    }
    p
}

/// Port names are at most 15 characters: `metrics-r<local rank>` fits up to rank 99999.
fn rank_port_name(local_rank: u32) -> String {
    format!("metrics-r{local_rank}")
}

fn resources(spec: &JobSpec) -> String {
    let gpus = if spec.on_gpus { format!("    nvidia.com/gpu: {}\n", spec.gpus) } else { String::new() };
    format!(
        "resources:\n  requests:\n    cpu: \"{cpus}\"\n    memory: {mem}Gi\n  limits:\n{gpus}    memory: {mem}Gi\n",
        cpus = spec.cpus,
        mem = spec.memory_gib,
    )
}

fn volumes(spec: &JobSpec) -> String {
    let mut v = format!(
        r#"volumes:
  - name: config
    configMap:
      name: {name}-config
  - name: runs
    persistentVolumeClaim:
      claimName: {claim}
"#,
        name = spec.name,
        claim = spec.runs_claim,
    );
    if let Some(claim) = &spec.data_claim {
        v += &format!(
            "  - name: data\n    persistentVolumeClaim:\n      claimName: {claim}\n      readOnly: true\n"
        );
    }
    // A memory-backed volume counts against the pod's memory limit: a quarter of it.
    v + &format!(
        r#"  # NCCL's shared-memory transport and the loaders need more than the runtime's 64 MB.
  - name: shm
    emptyDir:
      medium: Memory
      sizeLimit: {}Gi
"#,
        (spec.memory_gib / 4).max(1)
    )
}

/// The header lines after a job file's description: the command that wrote it, then the Secret
/// and `kubectl apply` of the files (`job_files` between the shared ones).
fn how_to_apply(spec: &JobSpec, job_files: &str) -> String {
    let monitor = if spec.metrics_ports.is_some() { " -f podmonitor.yaml" } else { "" };
    let secret: String = secret_command(&spec.name).lines().map(|l| format!("#   {l}\n")).collect();
    format!(
        r#"Written by
#   {command}
# Before applying:
{secret}#   kubectl apply -f configmap.yaml -f pvc.yaml -f {job_files}{monitor}
"#,
        command = spec.command,
    )
}

/// The Indexed Job's spec at column 0, one completion per node: the Job's own, and the JobSet's
/// job template. Each index's pod is recreated up to `backoff_limit` times after a failure
/// (`backoffLimitPerIndex`; every node fails together, so a job-wide limit would spend one retry
/// per node), any failed index fails the Job, and the controller counts the recreations in the
/// pod's annotations, which tell gan-launch that it is a restart. `explain` comments the policy.
fn indexed_job(spec: &JobSpec, backoff_limit: u32, explain: bool, pod: &str) -> String {
    let why = if explain {
        "# A recreated pod's annotations count its index's failures (and ignored ones), which tells\n\
         # gan-launch it is a restart: it goes on from the run's own checkpoints (Kubernetes 1.29+).\n"
    } else {
        ""
    };
    format!(
        "completionMode: Indexed\ncompletions: {nodes}\nparallelism: {nodes}\n{why}\
         backoffLimitPerIndex: {backoff_limit}\nmaxFailedIndexes: 0\n{policy}template:\n{pod}",
        nodes = spec.nodes,
        policy = pod_failure_policy(explain),
        pod = indent(pod, 2),
    )
}

fn job(spec: &JobSpec) -> String {
    let master = format!("{name}-0.{name}", name = spec.name);
    let pod = pod_template(spec, &master, true, "job-name");
    format!(
        r#"# An Indexed Job: one pod per node, each running gan-launch, which starts one rank per GPU.
# Node rank = JOB_COMPLETION_INDEX; node 0 is reached by its stable name through the headless
# Service (service.yaml). {apply}apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
{labels}spec:
{job}"#,
        apply = how_to_apply(spec, "service.yaml -f job.yaml"),
        name = spec.name,
        labels = indent(&labels(spec), 2),
        job = indent(&indexed_job(spec, spec.max_restarts, true, &pod), 2),
    )
}

/// The JobSet restarts the whole gang itself, so its job template retries no pod on its own
/// (but still counts ignored failures per index, which a preempted pod recreated in place reads).
fn jobset(spec: &JobSpec) -> String {
    let master = format!("{name}-node-0-0.{name}", name = spec.name);
    let pod = pod_template(spec, &master, false, "jobset.sigs.k8s.io/jobset-name");
    format!(
        r#"# The job as a JobSet (jobset.x-k8s.io, the substrate of Kubeflow Trainer v2): the JobSet
# controller creates the headless Service itself (network.enableDNSHostnames), so node 0 is
# {master}. Needs the JobSet controller installed. {apply}apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata:
  name: {name}
{labels}spec:
  network:
    enableDNSHostnames: true
    subdomain: {name}
  failurePolicy:
    # A failed node restarts the whole gang (all ranks resume from the newest checkpoint) ...
    maxRestarts: {restarts}
    rules:
      # ... except bad input, which the pod failure policy below marks as a job failure.
      - name: bad-input
        action: FailJobSet
        onJobFailureReasons: [PodFailurePolicy]
  replicatedJobs:
    - name: node
      replicas: 1
      template:
        spec:
{job}"#,
        apply = how_to_apply(spec, "jobset.yaml"),
        name = spec.name,
        labels = indent(&labels(spec), 2),
        restarts = spec.max_restarts,
        job = indent(&indexed_job(spec, 0, false, &pod), 10),
    )
}

fn podmonitor(spec: &JobSpec) -> String {
    let mut endpoints =
        String::from("    - {port: metrics-l, path: /metrics, interval: 15s, honorLabels: true}\n");
    for local_rank in 0..spec.gpus {
        let port = rank_port_name(local_rank);
        writeln!(endpoints, "    - {{port: {port}, path: /metrics, interval: 15s, honorLabels: true}}")
            .unwrap();
    }
    format!(
        r#"# prometheus-operator PodMonitor: scrapes the launcher (metrics-l) and every rank (metrics-rN) of
# each pod of {name}. Series already carry run, rank and node labels from gan-launch itself.
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: {name}
{labels}spec:
  selector:
    matchLabels:
      app.kubernetes.io/instance: {name}
  podMetricsEndpoints:
{endpoints}"#,
        name = spec.name,
        labels = indent(&labels(spec), 2),
    )
}
