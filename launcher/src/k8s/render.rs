//! The manifests as text. They are written out line by line rather than serialised from values,
//! so each keeps the comments that say why a setting is there; every value that is not a checked
//! name or a number goes through JSON quoting, which is valid YAML.
use std::fmt::Write;

use super::{JobSpec, CONFIG_MOUNT, DATA_MOUNT, RUNS_MOUNT};

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
    files
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

/// `text` with every non-empty line indented by `spaces`.
fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines().map(|l| if l.is_empty() { "\n".to_string() } else { format!("{pad}{l}\n") }).collect()
}

fn labels(spec: &JobSpec) -> String {
    format!("labels:\n  app.kubernetes.io/name: gan-launch\n  app.kubernetes.io/instance: {}\n", spec.name)
}

fn configmap(spec: &JobSpec) -> String {
    format!(
        "# The config the pods run, mounted at {CONFIG_MOUNT}/{file}: the config resolved by `gan-launch k8s`\n\
         # (file, GAN_* environment and --set, every default filled in, run.dir on the runs volume),\n\
         # so the pods run exactly what it validated. Change the config and run `gan-launch k8s` again\n\
         # rather than editing this.\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-config\n{labels}data:\n  {key}: |\n{body}",
        file = spec.config_file,
        name = spec.name,
        labels = indent(&labels(spec), 2),
        key = quoted(&spec.config_file),
        body = indent(&spec.resolved_config, 4),
    )
}

fn pvc(spec: &JobSpec) -> String {
    format!(
        "# The run directory (checkpoints, logs, samples) and the FID cache, shared by every node of the\n\
         # job: checkpoints are written by rank 0 and read by every rank on resume, so it must be\n\
         # ReadWriteMany. Skip this file when the claim exists already.\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {claim}\n  labels:\n    \
         app.kubernetes.io/name: gan-launch\nspec:\n  accessModes: [ReadWriteMany]\n  resources:\n    requests:\n      \
         storage: {gib}Gi\n",
        claim = spec.runs_claim,
        gib = spec.runs_storage_gib,
    )
}

fn service(spec: &JobSpec) -> String {
    format!(
        "# Headless Service: gives every pod of the Indexed Job a stable DNS name, <job>-<index>.{name},\n\
         # so node 0 (the rendezvous store) is reachable as {name}-0.{name}.\n\
         apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n{labels}spec:\n  clusterIP: None\n  \
         publishNotReadyAddresses: true\n  selector:\n    job-name: {name}\n  ports:\n    - name: store\n      \
         port: {port}\n      targetPort: {port}\n",
        name = spec.name,
        labels = indent(&labels(spec), 2),
        port = spec.store_port,
    )
}

/// How the cluster treats a pod's exit, shared by the Job and the JobSet's job template.
fn pod_failure_policy(explain: bool) -> String {
    let why = |text: &str| if explain { text.to_string() } else { String::new() };
    format!(
        "podFailurePolicy:\n  rules:\n{}    - action: Ignore\n      onExitCodes:\n        containerName: gan-launch\n        \
         operator: In\n        values: [75]\n{}    - action: Ignore\n      onPodConditions:\n        - type: DisruptionTarget\n          \
         status: \"True\"\n{}    - action: FailJob\n      onExitCodes:\n        containerName: gan-launch\n        \
         operator: In\n        values: [2, 3]\n",
        why("    # Preempted: every rank checkpointed and gan-launch exited 75. Not counted as a failure;\n    \
             # the pod is recreated and resumes from the checkpoint.\n"),
        why("    # Evicted or its node drained: the same, by pod condition.\n"),
        why("    # Bad input (config, dataset, incompatible checkpoint, exit 2) does not improve by retrying,\n    \
             # and a divergence with no rollbacks left (exit 3) would replay.\n"),
    )
}

/// The pod template (`metadata` and `spec`), at column 0. `subdomain` is the Job's Service; a
/// JobSet sets its own. `job_name_label` is the label the controller puts the job's name in.
fn pod_template(spec: &JobSpec, master_addr: &str, subdomain: bool, job_name_label: &str) -> String {
    let mut t = format!("metadata:\n{}spec:\n", indent(&labels(spec), 2));
    if subdomain {
        writeln!(t, "  subdomain: {}", spec.name).unwrap();
    }
    t += "  restartPolicy: Never\n  # Long enough for every rank to finish its step and write a checkpoint after SIGTERM.\n  \
          terminationGracePeriodSeconds: 300\n  containers:\n    - name: gan-launch\n";
    writeln!(t, "      image: {}", quoted(&spec.image)).unwrap();
    writeln!(t, "      args: [{}]", quoted(&format!("{CONFIG_MOUNT}/{}", spec.config_file))).unwrap();
    t += &indent(&env(spec, master_addr, job_name_label), 6);
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

fn env(spec: &JobSpec, master_addr: &str, job_name_label: &str) -> String {
    format!(
        "env:\n  - name: MASTER_ADDR\n    value: {master_addr}\n  - name: JOB_NAME\n    valueFrom:\n      fieldRef:\n        \
         fieldPath: metadata.labels['{job_name_label}']\n  \
         # FID weights and real statistics on the shared volume: computed once for every pod\n  \
         # and every restart, instead of again in each pod's throwaway home.\n  - name: GAN_LAUNCH_CACHE\n    \
         value: {RUNS_MOUNT}/.cache\n  - name: GANLAUNCH_STORE_TOKEN\n    valueFrom:\n      secretKeyRef:\n        \
         name: {name}-store-token\n        key: token\n",
        name = spec.name,
    )
}

/// The store's port, and the launcher's and each local rank's metrics port (named for the PodMonitor).
fn ports(spec: &JobSpec) -> String {
    let mut p = format!("ports:\n  - {{name: store, containerPort: {}}}\n", spec.store_port);
    if let Some((launcher, first_rank)) = spec.metrics_ports {
        writeln!(p, "  - {{name: metrics-l, containerPort: {launcher}}}").unwrap();
        for local_rank in 0..spec.gpus {
            writeln!(
                p,
                "  - {{name: {}, containerPort: {}}}",
                rank_port_name(local_rank),
                first_rank as u32 + local_rank
            )
            .unwrap();
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
        "volumes:\n  - name: config\n    configMap:\n      name: {}-config\n  - name: runs\n    persistentVolumeClaim:\n      \
         claimName: {}\n",
        spec.name, spec.runs_claim
    );
    if let Some(claim) = &spec.data_claim {
        writeln!(
            v,
            "  - name: data\n    persistentVolumeClaim:\n      claimName: {claim}\n      readOnly: true"
        )
        .unwrap();
    }
    // A memory-backed volume counts against the pod's memory limit: a quarter of it.
    writeln!(
        v,
        "  # NCCL's shared-memory transport and the loaders need more than the runtime's 64 MB.\n  - name: shm\n    \
         emptyDir:\n      medium: Memory\n      sizeLimit: {}Gi",
        (spec.memory_gib / 4).max(1)
    )
    .unwrap();
    v
}

/// The header lines after a job file's description: the command that wrote it, then the Secret
/// and `kubectl apply` of the files (`job_files` between the shared ones).
fn how_to_apply(spec: &JobSpec, job_files: &str) -> String {
    let monitor = if spec.metrics_ports.is_some() { " -f podmonitor.yaml" } else { "" };
    format!(
        "Written by\n#   {command}\n# Before applying:\n#   kubectl create secret generic {name}-store-token \\\n\
         #     --from-literal=token=$(head -c16 /dev/urandom | od -An -tx1 | tr -d ' \\n')\n\
         #   kubectl apply -f configmap.yaml -f pvc.yaml -f {job_files}{monitor}\n",
        command = spec.command,
        name = spec.name,
    )
}

fn job(spec: &JobSpec) -> String {
    let master = format!("{name}-0.{name}", name = spec.name);
    format!(
        "# An Indexed Job: one pod per node, each running gan-launch, which starts one rank per GPU.\n\
         # Node rank = JOB_COMPLETION_INDEX; node 0 is reached by its stable name through the headless\n\
         # Service (service.yaml). {apply}\
         apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\n{labels}spec:\n  completionMode: Indexed\n  \
         completions: {nodes}\n  parallelism: {nodes}\n  backoffLimit: {restarts}\n{policy}  template:\n{pod}",
        apply = how_to_apply(spec, "service.yaml -f job.yaml"),
        name = spec.name,
        labels = indent(&labels(spec), 2),
        nodes = spec.nodes,
        restarts = spec.max_restarts,
        policy = indent(&pod_failure_policy(true), 2),
        pod = indent(&pod_template(spec, &master, true, "job-name"), 4),
    )
}

fn jobset(spec: &JobSpec) -> String {
    let master = format!("{name}-node-0-0.{name}", name = spec.name);
    let pod = pod_template(spec, &master, false, "jobset.sigs.k8s.io/jobset-name");
    format!(
        "# The job as a JobSet (jobset.x-k8s.io, the substrate of Kubeflow Trainer v2): the JobSet\n\
         # controller creates the headless Service itself (network.enableDNSHostnames), so node 0 is\n\
         # {master}. Needs the JobSet controller installed. {apply}\
         apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata:\n  name: {name}\n{labels}spec:\n  network:\n    \
         enableDNSHostnames: true\n    subdomain: {name}\n  failurePolicy:\n    \
         # A failed node restarts the whole gang (all ranks resume from the newest checkpoint) ...\n    \
         maxRestarts: {restarts}\n    rules:\n      \
         # ... except bad input, which the pod failure policy below marks as a job failure.\n      \
         - name: bad-input\n        action: FailJobSet\n        onJobFailureReasons: [PodFailurePolicy]\n  \
         replicatedJobs:\n    - name: node\n      replicas: 1\n      template:\n        spec:\n          \
         completionMode: Indexed\n          completions: {nodes}\n          parallelism: {nodes}\n          \
         backoffLimit: 0\n{policy}          template:\n{pod}",
        apply = how_to_apply(spec, "jobset.yaml"),
        name = spec.name,
        labels = indent(&labels(spec), 2),
        restarts = spec.max_restarts,
        nodes = spec.nodes,
        policy = indent(&pod_failure_policy(false), 10),
        pod = indent(&pod, 12),
    )
}

fn podmonitor(spec: &JobSpec) -> String {
    let mut endpoints =
        String::from("    - {port: metrics-l, path: /metrics, interval: 15s, honorLabels: true}\n");
    for local_rank in 0..spec.gpus {
        writeln!(
            endpoints,
            "    - {{port: {}, path: /metrics, interval: 15s, honorLabels: true}}",
            rank_port_name(local_rank)
        )
        .unwrap();
    }
    format!(
        "# prometheus-operator PodMonitor: scrapes the launcher (metrics-l) and every rank (metrics-rN) of\n\
         # each pod of {name}. Series already carry run, rank and node labels from gan-launch itself.\n\
         apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata:\n  name: {name}\n{labels}spec:\n  \
         selector:\n    matchLabels:\n      app.kubernetes.io/instance: {name}\n  podMetricsEndpoints:\n{endpoints}",
        name = spec.name,
        labels = indent(&labels(spec), 2),
    )
}
