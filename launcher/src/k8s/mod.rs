//! `gan-launch k8s`: the Kubernetes manifests of a job, from the same config and flags as a launch.
//!
//! The config is loaded and validated as `plan` does (file, `GAN_*` environment, `--set`, flags),
//! and its resolved form (every default filled in) becomes the ConfigMap the pods read, so the pods
//! run exactly what was checked here, whatever defaults the image's binary has. Everything that
//! must agree across files (the node and rank counts, the store and metrics ports, the names of the
//! Job, Service, ConfigMap, Secret and claims) is derived here once; the files are rendered by
//! [`render`]. Torch-free, like the rest of the launcher.
mod render;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use gan_core::config::{self, DataSource, Device, ResumeFrom, RunConfig, SetOverride};
use gan_core::Error;

/// Where the pods see the run volume, the dataset volume and the config.
pub const RUNS_MOUNT: &str = "/runs";
pub const DATA_MOUNT: &str = "/data";
pub const CONFIG_MOUNT: &str = "/config";

const DEFAULT_RUNS_CLAIM: &str = "gan-runs";
const DEFAULT_RUNS_STORAGE_GIB: u32 = 500;
const DEFAULT_CPUS_PER_GPU: u32 = 4;
const DEFAULT_MEMORY_GIB_PER_GPU: u32 = 32;
const DEFAULT_MAX_RESTARTS: u32 = 3;

#[derive(Args, Debug)]
pub struct K8sArgs {
    /// Config file (YAML), e.g. configs/biggan.yaml.
    pub config: PathBuf,
    /// Number of nodes: one pod each (overrides dist.nodes).
    #[arg(long)]
    pub nodes: Option<u32>,
    /// GPUs per node: one rank each (overrides dist.gpus).
    #[arg(long)]
    pub gpus: Option<u32>,
    /// Container image holding gan-launch and gan-train (k8s/Dockerfile builds one).
    #[arg(long)]
    pub image: String,
    /// Name of the Job (or JobSet), its Service and PodMonitor; the ConfigMap and the Secret
    /// are <name>-config and <name>-store-token (default: gan-<run name>).
    #[arg(long)]
    pub name: Option<String>,
    /// Write a JobSet (jobset.x-k8s.io; its controller restarts the whole gang and makes the
    /// headless Service) instead of an Indexed Job with its own Service.
    #[arg(long)]
    pub jobset: bool,
    /// ReadWriteMany claim mounted at /runs: the run directory, checkpoints and the FID cache.
    #[arg(long, default_value = DEFAULT_RUNS_CLAIM)]
    pub runs_claim: String,
    /// Size requested by the generated pvc.yaml for the runs claim.
    #[arg(long, default_value_t = DEFAULT_RUNS_STORAGE_GIB)]
    pub runs_storage_gib: u32,
    /// Claim holding the prepared dataset, mounted read-only at /data (data.path must lie there).
    #[arg(long)]
    pub data_claim: Option<String>,
    /// CPU cores requested per GPU (the loader threads and the launcher share them).
    #[arg(long, default_value_t = DEFAULT_CPUS_PER_GPU)]
    pub cpus_per_gpu: u32,
    /// Memory requested and limited per GPU, in GiB; a quarter of it backs /dev/shm (NCCL).
    #[arg(long, default_value_t = DEFAULT_MEMORY_GIB_PER_GPU)]
    pub memory_gib_per_gpu: u32,
    /// How often Kubernetes recreates a failed node's pod (Job backoffLimitPerIndex) or the whole
    /// gang (JobSet failurePolicy.maxRestarts); preemptions and disruptions do not count.
    #[arg(long, default_value_t = DEFAULT_MAX_RESTARTS)]
    pub max_restarts: u32,
    /// Override a config key: --set train.batch_size=64 (repeatable; the value is read as YAML).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<SetOverride>,
    /// Write one file per manifest into this directory instead of one YAML stream to stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Everything the manifests share, resolved and checked.
#[derive(Debug)]
pub struct JobSpec {
    pub name: String,
    pub nodes: u32,
    pub gpus: u32,
    pub image: String,
    pub jobset: bool,
    /// The ConfigMap's key and the file the pods are started with under /config.
    pub config_file: String,
    pub resolved_config: String,
    pub store_port: u16,
    /// (launcher port, first rank port), when metrics are served on fixed ports.
    pub metrics_ports: Option<(u16, u16)>,
    pub runs_claim: String,
    pub runs_storage_gib: u32,
    pub data_claim: Option<String>,
    pub on_gpus: bool,
    pub cpus: u32,
    pub memory_gib: u32,
    pub max_restarts: u32,
    /// The command line that wrote the files, for their header comments.
    pub command: String,
}

pub fn run(args: &K8sArgs) -> anyhow::Result<ExitCode> {
    let spec = JobSpec::resolve(args)?;
    let files = render::all(&spec);
    match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
            for (file, text) in &files {
                let path = dir.join(file);
                std::fs::write(&path, text).map_err(Error::io("write", &path))?;
            }
        }
        None => print!("{}", files.iter().map(|(_, text)| text.as_str()).collect::<Vec<_>>().join("---\n")),
    }
    eprintln!("{}", next_steps(&spec, args.out.as_deref(), &files));
    if let Some(warning) = args.out.as_deref().and_then(|dir| leftovers(dir, &files)) {
        eprintln!("{warning}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Manifests of an earlier run left in `dir` that this one did not write (the other variant's
/// Job or JobSet, a PodMonitor no longer wanted): `kubectl apply -f DIR` would start them too.
fn leftovers(dir: &Path, written: &[(String, String)]) -> Option<String> {
    let stale: Vec<&str> = render::ALL_FILES
        .iter()
        .copied()
        .filter(|f| !written.iter().any(|(w, _)| w == f) && dir.join(f).exists())
        .collect();
    (!stale.is_empty()).then(|| {
        format!(
            "gan-launch k8s: warning: {} also holds {} from an earlier run, not part of this job: \
             `kubectl apply -f {}` would apply them too; apply the files above, or delete those",
            dir.display(),
            stale.join(", "),
            dir.display()
        )
    })
}

impl JobSpec {
    fn resolve(args: &K8sArgs) -> anyhow::Result<JobSpec> {
        let cfg = load(args)?;
        let name = match &args.name {
            Some(name) => name.clone(),
            None => default_name(cfg.name()),
        };
        check_name("--name", &name, max_name_len(cfg.dist.nodes, args.jobset))?;
        check_claim("--runs-claim", &args.runs_claim)?;
        if let Some(claim) = &args.data_claim {
            check_claim("--data-claim", claim)?;
        }
        check_pod_paths(&cfg, args.data_claim.is_some())?;
        if args.image.trim().is_empty() || args.image.chars().any(char::is_whitespace) {
            return Err(Error::config("--image", format!("{:?}", args.image), "an image reference").into());
        }
        if cfg.dist.master_port == 0 {
            let allowed = "a fixed port: the pods and the Service name the rendezvous store's port";
            return Err(Error::config("dist.master_port", 0, allowed).into());
        }
        for (flag, value) in
            [("--cpus-per-gpu", args.cpus_per_gpu), ("--memory-gib-per-gpu", args.memory_gib_per_gpu)]
        {
            if value == 0 {
                return Err(Error::config(flag, 0, "at least 1").into());
            }
        }
        let m = &cfg.metrics;
        let metrics_ports =
            (m.enabled && m.port != 0 && m.launcher_port != 0).then_some((m.launcher_port, m.port));
        if m.enabled && metrics_ports.is_none() {
            eprintln!(
                "gan-launch k8s: warning: metrics.port or metrics.launcher_port is 0 (any free port), \
                 so no PodMonitor is written"
            );
        }
        let config_file =
            args.config.file_name().map_or("config.yaml".into(), |f| f.to_string_lossy().into_owned());
        Ok(JobSpec {
            name,
            nodes: cfg.dist.nodes,
            gpus: cfg.dist.gpus,
            image: args.image.clone(),
            jobset: args.jobset,
            config_file,
            resolved_config: config::to_yaml(&cfg),
            store_port: cfg.dist.master_port,
            metrics_ports,
            runs_claim: args.runs_claim.clone(),
            runs_storage_gib: args.runs_storage_gib,
            data_claim: args.data_claim.clone(),
            on_gpus: cfg.train.device != Device::Cpu,
            cpus: args.cpus_per_gpu * cfg.dist.gpus,
            memory_gib: args.memory_gib_per_gpu * cfg.dist.gpus,
            max_restarts: args.max_restarts,
            command: command_line(args, &cfg),
        })
    }
}

/// The config as `plan` would load it, with the run directory on the runs volume. The dataset
/// and a named checkpoint are not looked for: they live on the cluster, not here.
fn load(args: &K8sArgs) -> anyhow::Result<RunConfig> {
    let flags = [
        ("dist.nodes", args.nodes.map(|n| n.to_string())),
        ("dist.gpus", args.gpus.map(|g| g.to_string())),
        ("run.dir", Some(RUNS_MOUNT.to_string())),
    ];
    let sets = crate::cli::with_flags(args.sets.clone(), flags);
    config::load(&args.config, &sets).with_context(|| format!("loading {}", args.config.display()))
}

/// `gan-<run name>`, lowercased, with anything but letters, digits and '-' made a '-'.
fn default_name(run_name: &str) -> String {
    let name: String = format!("gan-{run_name}")
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name.trim_end_matches('-').to_string()
}

/// Pod host names are `<name>-<index>` (Job) or `<name>-node-0-<index>` (JobSet), and a host
/// name is a DNS label of at most 63 characters.
fn max_name_len(nodes: u32, jobset: bool) -> usize {
    let index_digits = (nodes.max(1) - 1).to_string().len();
    63 - index_digits - if jobset { "-node-0-".len() } else { "-".len() }
}

/// A DNS-1123 label: lowercase letters, digits and '-', starting and ending alphanumeric.
fn check_name(flag: &str, name: &str, max_len: usize) -> Result<(), Error> {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok = !name.is_empty()
        && name.len() <= max_len
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && alnum(name.chars().next())
        && alnum(name.chars().last());
    if ok {
        return Ok(());
    }
    let allowed = format!(
        "lowercase letters, digits and '-', starting and ending with a letter or digit, at most {max_len} \
         characters (the pods' host names derive from it)"
    );
    Err(Error::config(flag, format!("{name:?}"), allowed))
}

/// A claim name is a DNS-1123 subdomain: labels joined by '.'.
fn check_claim(flag: &str, claim: &str) -> Result<(), Error> {
    if claim.len() <= 253 && claim.split('.').all(|label| check_name(flag, label, 63).is_ok()) {
        return Ok(());
    }
    Err(Error::config(
        flag,
        format!("{claim:?}"),
        "a PersistentVolumeClaim name (lowercase letters, digits, '-', '.')",
    ))
}

/// A pod sees only its volumes: every path the config names must lie on one of them.
fn check_pod_paths(cfg: &RunConfig, data_claim: bool) -> Result<(), Error> {
    let mut mounts = vec![RUNS_MOUNT];
    if data_claim {
        mounts.push(DATA_MOUNT);
    }
    let named_checkpoint = match cfg.checkpoint.resume_from() {
        ResumeFrom::Path(path) => Some(path),
        ResumeFrom::Latest | ResumeFrom::Fresh => None,
    };
    let data = if cfg.data.source == DataSource::Prepared { cfg.data.path.as_deref() } else { None };
    let paths = [
        ("data.path", data),
        ("eval.weights", cfg.eval.weights.as_deref()),
        ("checkpoint.resume", named_checkpoint.as_deref()),
        ("checkpoint.init_from", cfg.checkpoint.init_from.as_deref()),
    ];
    for (key, path) in paths {
        let Some(path) = path else { continue };
        if !mounts.iter().any(|m| path.starts_with(m)) {
            let allowed = format!(
                "an absolute path on a volume the pods mount: {} (the runs claim){}",
                RUNS_MOUNT,
                if data_claim {
                    ", /data (--data-claim)"
                } else {
                    "; or pass --data-claim CLAIM to mount /data"
                }
            );
            return Err(Error::config(key, path.display(), allowed));
        }
    }
    Ok(())
}

/// The command that writes these files again (without `--out`), for their headers.
fn command_line(args: &K8sArgs, cfg: &RunConfig) -> String {
    let mut words = vec!["gan-launch k8s".to_string(), args.config.display().to_string()];
    words.push(format!("--nodes {} --gpus {} --image {}", cfg.dist.nodes, cfg.dist.gpus, args.image));
    let mut flag = |name: &str, value: String, default: &str| {
        if value != default {
            words.push(format!("--{name} {value}"));
        }
    };
    flag("name", args.name.clone().unwrap_or_default(), "");
    flag("runs-claim", args.runs_claim.clone(), DEFAULT_RUNS_CLAIM);
    flag("runs-storage-gib", args.runs_storage_gib.to_string(), &DEFAULT_RUNS_STORAGE_GIB.to_string());
    flag("data-claim", args.data_claim.clone().unwrap_or_default(), "");
    flag("cpus-per-gpu", args.cpus_per_gpu.to_string(), &DEFAULT_CPUS_PER_GPU.to_string());
    flag("memory-gib-per-gpu", args.memory_gib_per_gpu.to_string(), &DEFAULT_MEMORY_GIB_PER_GPU.to_string());
    flag("max-restarts", args.max_restarts.to_string(), &DEFAULT_MAX_RESTARTS.to_string());
    if args.jobset {
        words.push("--jobset".into());
    }
    for set in &args.sets {
        let pair = format!("{}={}", set.key, set.value);
        let plain = pair.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,".contains(c));
        words.push(if plain { format!("--set {pair}") } else { format!("--set '{pair}'") });
    }
    words.join(" ")
}

/// The command that creates the job's Secret: the rendezvous store's token, random, shared by
/// every pod (the sbatch script makes one per allocation the same way).
pub fn secret_command(name: &str) -> String {
    format!(
        "kubectl create secret generic {name}-store-token \\\n  \
         --from-literal=token=$(head -c16 /dev/urandom | od -An -tx1 | tr -d ' \\n')"
    )
}

/// What to run next: the Secret, then `kubectl apply`.
fn next_steps(spec: &JobSpec, out: Option<&Path>, files: &[(String, String)]) -> String {
    let what =
        format!("{} node(s) x {} rank(s) = world size {}", spec.nodes, spec.gpus, spec.nodes * spec.gpus);
    let apply = match out {
        Some(dir) => {
            let list: Vec<String> =
                files.iter().map(|(f, _)| format!("-f {}", dir.join(f).display())).collect();
            format!("kubectl apply {}", list.join(" "))
        }
        None => "kubectl apply -f <the YAML above>".into(),
    };
    format!(
        "gan-launch k8s: {} `{}` for {what}. Create its store token once, then apply:\n{}\n  {apply}",
        if spec.jobset { "JobSet" } else { "Indexed Job" },
        spec.name,
        render::indent(&secret_command(&spec.name), 2).trim_end(),
    )
}

#[cfg(test)]
mod tests;
