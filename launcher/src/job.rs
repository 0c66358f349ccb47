//! One node's part of a job: where this node sits (flags over scheduler environment), the
//! rendezvous store (hosted on node 0), agreement with the other nodes' launchers, and the
//! attempts: start the ranks, supervise them, restart them together after a failure.
use std::process::ExitCode;
use std::time::Duration;

use gan_core::cluster::Placement;
use gan_core::config::{self, Backend, ConsoleRanks, HostFacts, RankPlan, RunConfig};
use gan_core::error::{EXIT_DIVERGED, EXIT_USER_ERROR};
use gan_core::heartbeat;
use gan_core::launch_env::RankEnv;
use gan_core::rendezvous::{self, StoreServer, TOKEN_ENV};
use gan_core::run_lock::{self, RunLock};
use gan_core::Error;

use crate::cli::JobArgs;
use crate::console::Console;
use crate::nccl_lib;
use crate::nodes::{NodeGroup, RemoteEvent};
use crate::supervise::{self, GroupExit, Peers, RankSpec, Watchdog};
use crate::telemetry::LauncherTelemetry;
use gan_core::metrics::JobState;

/// Where this node's launcher sits in the job.
pub struct NodeSetup {
    pub node_rank: u32,
    pub master_addr: String,
    pub run_id: String,
}

impl NodeSetup {
    /// Flags first, then the scheduler's environment, then single-node defaults.
    pub fn resolve(args: &JobArgs, placement: Option<&Placement>, cfg: &RunConfig) -> anyhow::Result<Self> {
        let node_rank = Self::node_rank(args, placement, cfg)?;
        let master_addr = args
            .master_addr
            .clone()
            .or_else(|| placement.and_then(|p| p.master_addr.clone()))
            .or_else(|| std::env::var("MASTER_ADDR").ok());
        let master_addr = match (master_addr, cfg.dist.nodes) {
            (Some(addr), _) => addr,
            (None, 1) => "127.0.0.1".into(),
            (None, n) => {
                return Err(Error::Env(format!(
                "{n} nodes need the address of node 0: pass --master-addr (SLURM and Kubernetes provide it)"
            ))
                .into())
            }
        };
        let run_id = placement.and_then(|p| p.job_id.clone()).unwrap_or_else(|| cfg.name().to_string());
        Ok(NodeSetup { node_rank, master_addr, run_id })
    }

    /// This node's rank: the flag, else the scheduler's, else 0; below the node count.
    pub fn node_rank(
        args: &JobArgs,
        placement: Option<&Placement>,
        cfg: &RunConfig,
    ) -> gan_core::Result<u32> {
        let node_rank = args.node_rank.or(placement.map(|p| p.node_rank)).unwrap_or(0);
        if node_rank >= cfg.dist.nodes {
            return Err(Error::Env(format!(
                "node rank {node_rank} is not below the node count {}",
                cfg.dist.nodes
            )));
        }
        Ok(node_rank)
    }
}

/// Node 0's store on `dist.master_port`. A single-node job whose port is taken (most often by
/// another job on the same machine, both on the default 29500) takes a free port instead, as
/// torchrun's `--standalone` does: only this launcher's own ranks connect, and they are told the
/// port. Other nodes must know it in advance, so a multi-node job stops there.
fn host_store(cfg: &RunConfig, token: &str) -> anyhow::Result<StoreServer> {
    let wanted = format!("0.0.0.0:{}", cfg.dist.master_port);
    let listener = match std::net::TcpListener::bind(&wanted) {
        Ok(listener) => listener,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && cfg.dist.nodes == 1 => {
            let listener = std::net::TcpListener::bind("0.0.0.0:0")
                .map_err(|e| Error::Env(format!("rendezvous store: cannot listen on a free port: {e}")))?;
            let port = listener.local_addr()?.port();
            tracing::warn!(
                "port {} is in use (another job on this machine?); this single-node job's store listens on {port} instead",
                cfg.dist.master_port
            );
            listener
        }
        Err(e) => {
            let hint = match e.kind() {
                std::io::ErrorKind::AddrInUse => {
                    "; every node connects to it there, so free it or start every node with another --master-port"
                }
                _ => "",
            };
            return Err(Error::Env(format!("rendezvous store: cannot listen on {wanted}: {e}{hint}")).into());
        }
    };
    Ok(StoreServer::serve(listener, token)?)
}

/// Runs this node's ranks to the end of the job and returns the launcher's exit code.
pub fn run(args: &JobArgs, cfg: &RunConfig, node: &NodeSetup) -> anyhow::Result<ExitCode> {
    let trainer = supervise::trainer_path(args.trainer.as_deref())?;
    let run_dir = cfg.run_dir();
    // Node 0 holds the run for the job's life (other nodes share its directory).
    let _lock = match node.node_rank {
        0 => Some(RunLock::acquire(&run_dir, run_lock::REMOTE_WAIT)?),
        _ => None,
    };
    let resolved = run_dir.join("config.yaml");
    config::save_resolved(cfg, &resolved)?;
    let plans: Vec<_> = config::plan(cfg, HostFacts::detect())
        .into_iter()
        .filter(|p| p.node_rank == node.node_rank)
        .collect();
    let world = config::world_size(cfg);
    if node.node_rank == 0 {
        forget_ranks_beyond(&run_dir.join("heartbeat"), world);
    }
    let token = store_token(cfg)?;
    // Node 0 hosts the store for the job's lifetime; every launcher and rank meets there.
    let store = match (world, node.node_rank) {
        (1, _) | (_, 1..) => None,
        (_, 0) => Some(host_store(cfg, &token)?),
    };
    let master_port = store.as_ref().map_or(cfg.dist.master_port, |s| s.local_addr().port());
    let timeout = Duration::from_secs(cfg.dist.connect_timeout_secs);
    let mut group = match cfg.dist.nodes {
        1 => None,
        nodes => {
            let address = format!("{}:{master_port}", node.master_addr);
            Some(NodeGroup::join(
                &address,
                &token,
                &node.run_id,
                node.node_rank,
                nodes,
                cfg.dist.gpus,
                (Duration::from_secs(cfg.dist.join_timeout_secs), timeout),
            )?)
        }
    };
    if let Some(group) = &mut group {
        group.check_same_job(cfg, &run_dir, args.max_restarts)?;
    }
    let watchdog = Watchdog {
        heartbeat_timeout: Duration::from_secs(cfg.dist.heartbeat_timeout_secs),
        startup_timeout: Duration::from_secs(cfg.dist.connect_timeout_secs + cfg.dist.heartbeat_timeout_secs),
    };
    let mut extra_env = vec![(TOKEN_ENV.to_string(), token.clone())];
    if let Some(path) = nccl_library_path(cfg, &plans, &run_dir)? {
        extra_env.push(("LD_LIBRARY_PATH".to_string(), path));
    }
    let mut signals = supervise::forwarded_signals()?;
    let telemetry = LauncherTelemetry::start(cfg, node.node_rank, plans.len());
    let metrics = telemetry.as_ref().map(|t| t.metrics.as_ref());
    let has_rank0 = plans.iter().any(|p| p.rank == 0);
    let total_nimg = cfg.train.total_nimg();
    for attempt in 0..=args.max_restarts {
        tracing::info!(run_dir = %run_dir.display(), ranks = plans.len(), world, master_port, attempt, "launching {}", trainer.display());
        // A fresh bar per attempt (a restarted run starts over until checkpoints exist).
        let console = match has_rank0 {
            true => Console::with_progress(cfg.log.progress, total_nimg),
            false => Console::plain(),
        };
        let attempt_of = Attempt { node, master_port, attempt, max_restarts: args.max_restarts };
        let specs = rank_specs(cfg, &plans, &attempt_of, &extra_env, &console);
        let mut peers = AttemptPeers { group: group.as_mut(), attempt };
        let exit =
            supervise::run_ranks(&trainer, &resolved, specs, &mut signals, watchdog, &mut peers, metrics)?;
        match exit {
            GroupExit::Finished => {
                // Node 0 keeps the store up until every node is done with it.
                if let Some(group) = group.as_mut() {
                    group.finish(attempt)?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            GroupExit::Stopped(code) => return Ok(ExitCode::from(code)),
            GroupExit::Failed { code, reason } => {
                // Supervision reported a rank's failure already; this covers the rest (the first
                // report of an attempt is the one every node sees).
                if let Some(group) = group.as_mut() {
                    let _ = group.report_failure(attempt, &reason);
                }
                if !restarts_after(code, attempt, args.max_restarts) {
                    return Ok(ExitCode::from(code));
                }
                if let Some(group) = group.as_mut() {
                    group.agree(attempt, "restart")?;
                }
                tracing::warn!("restarting every rank ({} of {} restarts)", attempt + 1, args.max_restarts);
                if let Some(t) = &telemetry {
                    t.metrics.restarts_total.inc();
                    t.set_state(JobState::Starting);
                }
            }
        }
    }
    unreachable!("the last attempt always returns")
}

/// Whether a job whose ranks failed with `code` on `attempt` starts them again, saying why not:
/// bad input does not get better by trying again, a divergence would replay, and the restarts
/// may be used up.
fn restarts_after(code: u8, attempt: u32, max_restarts: u32) -> bool {
    let retryable = ![EXIT_USER_ERROR, EXIT_DIVERGED].contains(&i32::from(code));
    if i32::from(code) == EXIT_DIVERGED && attempt < max_restarts {
        tracing::error!(
            "not restarting: the run diverged with no rollbacks left (train.max_rollbacks), and a restart from \
             the same checkpoint would replay it"
        );
    }
    if retryable && attempt < max_restarts {
        return true;
    }
    if max_restarts > 0 && attempt == max_restarts {
        tracing::error!(
            "giving up: the job failed again after {attempt} restart(s) (--max-restarts {max_restarts})"
        );
    }
    false
}

/// Where this node's ranks meet and which start of the job this is.
struct Attempt<'a> {
    node: &'a NodeSetup,
    master_port: u16,
    attempt: u32,
    max_restarts: u32,
}

/// What starts each of this node's ranks for an attempt: torchrun's environment, the launcher's
/// extra variables, its log and heartbeat files, and whether its output reaches the console.
fn rank_specs(
    cfg: &RunConfig,
    plans: &[RankPlan],
    at: &Attempt<'_>,
    extra_env: &[(String, String)],
    console: &Console,
) -> Vec<RankSpec> {
    let run_dir = cfg.run_dir();
    plans
        .iter()
        .map(|plan| RankSpec {
            plan: plan.clone(),
            env: RankEnv {
                rank: plan.rank,
                local_rank: plan.local_rank,
                world_size: config::world_size(cfg),
                local_world_size: cfg.dist.gpus,
                group_rank: plan.node_rank,
                master_addr: at.node.master_addr.clone(),
                master_port: at.master_port,
                restart_count: at.attempt,
                max_restarts: at.max_restarts,
                run_id: at.node.run_id.clone(),
            },
            extra_env: extra_env.to_vec(),
            log_path: run_dir.join("logs").join(format!("rank-{}.log", plan.rank)),
            echo: (plan.rank == 0 || cfg.log.console == ConsoleRanks::All).then(|| console.clone()),
            heartbeat_path: heartbeat::rank_file(&run_dir.join("heartbeat"), plan.rank),
        })
        .collect()
}

/// For GPU ranks that may use NCCL: a loader path on which cudarc finds the wheel's NCCL.
fn nccl_library_path(
    cfg: &RunConfig,
    plans: &[RankPlan],
    run_dir: &std::path::Path,
) -> anyhow::Result<Option<String>> {
    let gpu_ranks = plans.iter().any(|p| p.device.starts_with("cuda"));
    if !gpu_ranks || cfg.dist.backend == Backend::Cpu || config::world_size(cfg) == 1 {
        return Ok(None);
    }
    let current = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
    let path = nccl_lib::ranks_library_path(&run_dir.join(".nccl"), &current)?;
    if path.is_none() {
        tracing::warn!(
            "libnccl.so.2 not found on LD_LIBRARY_PATH; the ranks will look for libnccl.so themselves"
        );
    }
    Ok(path)
}

/// One node generates the token when it is alone; several nodes must share one from the
/// environment (the sbatch script and the Kubernetes manifests provide it).
fn store_token(cfg: &RunConfig) -> anyhow::Result<String> {
    match (std::env::var(TOKEN_ENV), cfg.dist.nodes) {
        (Ok(token), _) if !token.is_empty() => Ok(token),
        (_, 1) => Ok(rendezvous::new_token()),
        (_, nodes) => Err(Error::Env(format!(
            "{nodes} nodes need a shared store token: set {TOKEN_ENV} to the same secret on every node, \
             e.g. export {TOKEN_ENV}=$(head -c16 /dev/urandom | od -An -tx1 | tr -d ' \\n')"
        ))
        .into()),
    }
}

/// The other nodes during one attempt.
struct AttemptPeers<'a> {
    group: Option<&'a mut NodeGroup>,
    attempt: u32,
}

impl Peers for AttemptPeers<'_> {
    fn poll(&mut self) -> Option<RemoteEvent> {
        self.group.as_mut()?.poll(self.attempt)
    }

    fn signalled(&mut self, signal: i32) {
        if let Some(group) = self.group.as_mut() {
            let _ = group.report_signal(self.attempt, signal);
        }
    }

    fn failed(&mut self, reason: &str) {
        if let Some(group) = self.group.as_mut() {
            let _ = group.report_failure(self.attempt, reason);
        }
    }
}

/// Removes the heartbeats and flight records of ranks an earlier job of this run had beyond this
/// job's world size, so `gan-launch status` and the watchdog see this job's ranks only. (Each
/// rank's own files are replaced when it starts; no rank of this job writes these.)
fn forget_ranks_beyond(dir: &std::path::Path, world: u32) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let rank =
            name.to_str().and_then(|n| n.strip_prefix("rank-")?.split('.').next()?.parse::<u32>().ok());
        if rank.is_some_and(|r| r >= world) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
