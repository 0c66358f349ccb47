//! Where this node sits in a multi-node job, read from the scheduler's environment: SLURM (one
//! launcher per node through `srun`) or a Kubernetes Indexed Job (one pod per node). Command-line
//! flags override what is found here. Torch-free.
pub mod hostlist;

use crate::error::{Error, Result};

/// This node's place in the job, as far as the environment tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Which scheduler described it, for logs.
    pub source: &'static str,
    /// Number of nodes, when the scheduler knows it.
    pub nodes: Option<u32>,
    pub node_rank: u32,
    /// Host of node 0 (where the rendezvous store runs), when known.
    pub master_addr: Option<String>,
    /// An id shared by every node of the job (SLURM job id, Kubernetes job name).
    pub job_id: Option<String>,
}

/// The variables our Kubernetes manifests fill from the pod's annotations (downward API), with
/// the annotation each reads: how often the Indexed Job has recreated this index's pod after a
/// counted failure and after an ignored one (a preemption, an eviction), with
/// `backoffLimitPerIndex` set. Absent annotations (a first start) read as empty.
pub const K8S_INDEX_RESTART_ENV: [(&str, &str); 2] = [
    ("GANLAUNCH_POD_INDEX_FAILURES", "batch.kubernetes.io/job-index-failure-count"),
    ("GANLAUNCH_POD_INDEX_IGNORED_FAILURES", "batch.kubernetes.io/job-index-ignored-failure-count"),
];

/// The same for a JobSet's gang restarts, which recreate its Jobs (their counts start again).
pub const K8S_JOBSET_RESTART_ENV: (&str, &str) =
    ("GANLAUNCH_JOBSET_RESTART_ATTEMPT", "jobset.sigs.k8s.io/restart-attempt");

/// How often the scheduler has started this job again, from `vars`: SLURM's requeues
/// (`SLURM_RESTART_COUNT`), or Kubernetes' recreated pods and gang restarts
/// ([`K8S_INDEX_RESTART_ENV`], [`K8S_JOBSET_RESTART_ENV`]); 0 for a first start or outside a
/// scheduler. A job started again goes on from its own newest checkpoint, whatever
/// `checkpoint.resume` first started it from.
pub fn scheduler_restarts(vars: impl Fn(&str) -> Option<String>) -> u32 {
    let k8s = K8S_INDEX_RESTART_ENV.iter().chain([&K8S_JOBSET_RESTART_ENV]).map(|(name, _)| *name);
    let names = std::iter::once("SLURM_RESTART_COUNT").chain(k8s);
    names.filter_map(|name| vars(name)?.trim().parse::<u32>().ok()).sum()
}

/// [`scheduler_restarts`] of the process environment.
pub fn scheduler_restart_count() -> u32 {
    scheduler_restarts(|name| std::env::var(name).ok())
}

/// Reads the placement from `vars`: SLURM first (inside a job step), then a Kubernetes Indexed Job.
pub fn detect(vars: impl Fn(&str) -> Option<String>) -> Result<Option<Placement>> {
    if let (Some(job_id), Some(node_id)) = (vars("SLURM_JOB_ID"), vars("SLURM_NODEID")) {
        return slurm(&vars, job_id, &node_id).map(Some);
    }
    if let Some(index) = vars("JOB_COMPLETION_INDEX") {
        return Ok(Some(Placement {
            source: "kubernetes",
            nodes: None,
            node_rank: number("JOB_COMPLETION_INDEX", &index)?,
            // The manifest names node 0 by its headless-service DNS name in MASTER_ADDR.
            master_addr: vars("MASTER_ADDR"),
            // Set by our manifest from the pod's job-name label (downward API).
            job_id: vars("JOB_NAME"),
        }));
    }
    Ok(None)
}

/// Reads the placement from the process environment.
pub fn detect_from_process() -> Result<Option<Placement>> {
    detect(|name| std::env::var(name).ok())
}

fn slurm(vars: &impl Fn(&str) -> Option<String>, job_id: String, node_id: &str) -> Result<Placement> {
    let nodes = vars("SLURM_JOB_NUM_NODES").or_else(|| vars("SLURM_NNODES"));
    let nodelist = vars("SLURM_JOB_NODELIST").or_else(|| vars("SLURM_NODELIST"));
    let master_addr = match nodelist {
        Some(list) => hostlist::expand(&list)?.into_iter().next(),
        None => None,
    };
    Ok(Placement {
        source: "slurm",
        nodes: nodes.map(|n| number("SLURM_JOB_NUM_NODES", &n)).transpose()?,
        node_rank: number("SLURM_NODEID", node_id)?,
        master_addr,
        job_id: Some(job_id),
    })
}

fn number(name: &str, text: &str) -> Result<u32> {
    text.trim().parse().map_err(|_| Error::Env(format!("{name}={text:?} is not a non-negative integer")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn slurm_job_step_on_the_second_node() {
        // As seen in a real two-node job step (CONVENTIONS.md 2.2).
        let vars = env(&[
            ("SLURM_JOB_ID", "41"),
            ("SLURM_NODEID", "1"),
            ("SLURM_JOB_NUM_NODES", "2"),
            ("SLURM_JOB_NODELIST", "gpu[07-08]"),
            ("SLURM_PROCID", "1"),
        ]);
        let p = detect(vars).unwrap().unwrap();
        assert_eq!(p.source, "slurm");
        assert_eq!((p.nodes, p.node_rank), (Some(2), 1));
        assert_eq!(p.master_addr.as_deref(), Some("gpu07"));
        assert_eq!(p.job_id.as_deref(), Some("41"));
    }

    #[test]
    fn kubernetes_indexed_job_pod() {
        let vars =
            env(&[("JOB_COMPLETION_INDEX", "3"), ("MASTER_ADDR", "train-0.train"), ("JOB_NAME", "train")]);
        let p = detect(vars).unwrap().unwrap();
        assert_eq!((p.source, p.node_rank), ("kubernetes", 3));
        assert_eq!(p.master_addr.as_deref(), Some("train-0.train"));
    }

    /// A first start reads no restart (Kubernetes gives absent annotations as empty values);
    /// a requeue, a recreated pod or a gang restart reads one.
    #[test]
    fn restarts_by_the_scheduler_are_read_from_slurm_and_kubernetes() {
        let first = [
            ("GANLAUNCH_POD_INDEX_FAILURES", ""),
            ("GANLAUNCH_POD_INDEX_IGNORED_FAILURES", ""),
            ("GANLAUNCH_JOBSET_RESTART_ATTEMPT", "0"),
        ];
        assert_eq!(scheduler_restarts(env(&first)), 0);
        assert_eq!(scheduler_restarts(env(&[])), 0);
        assert_eq!(scheduler_restarts(env(&[("SLURM_RESTART_COUNT", "2")])), 2);
        assert_eq!(scheduler_restarts(env(&[("GANLAUNCH_POD_INDEX_IGNORED_FAILURES", "1")])), 1);
        assert_eq!(scheduler_restarts(env(&[("GANLAUNCH_POD_INDEX_FAILURES", "1")])), 1);
        assert_eq!(scheduler_restarts(env(&[("GANLAUNCH_JOBSET_RESTART_ATTEMPT", "3")])), 3);
    }

    #[test]
    fn no_scheduler_and_bad_values() {
        assert_eq!(detect(env(&[])).unwrap(), None);
        assert!(detect(env(&[("JOB_COMPLETION_INDEX", "x")])).is_err());
        assert!(detect(env(&[("SLURM_JOB_ID", "1"), ("SLURM_NODEID", "0"), ("SLURM_JOB_NODELIST", "n[1-")]))
            .is_err());
    }
}
