//! Joining a job's process group from a rank: which backend the config and device call for, the
//! connection to the store the launcher hosts, and the CPU ring. (The NCCL backend needs CUDA
//! memory and is built by the trainer from the same store connection.)
use std::time::Duration;

use super::RingGroup;
use crate::config::{Backend, RunConfig};
use crate::error::{Error, Result};
use crate::launch_env::RankEnv;
use crate::rendezvous::{StoreClient, TOKEN_ENV};

/// The concrete backend: `auto` is NCCL for GPU ranks, the CPU ring otherwise.
pub fn resolve_backend(backend: Backend, uses_cuda: bool) -> Backend {
    match (backend, uses_cuda) {
        (Backend::Auto, true) => Backend::Nccl,
        (Backend::Auto, false) => Backend::Cpu,
        (explicit, _) => explicit,
    }
}

/// Connects this rank to the store on MASTER_ADDR:MASTER_PORT with the launcher's token. Keys are
/// per attempt: a restarted group must not read the previous attempt's addresses or ids.
pub fn connect_store(cfg: &RunConfig, env: &RankEnv) -> Result<StoreClient> {
    let token = std::env::var(TOKEN_ENV)
        .map_err(|_| Error::Env(format!("{TOKEN_ENV} is not set; start multi-rank jobs with gan-launch")))?;
    let address = format!("{}:{}", env.master_addr, env.master_port);
    let scope = format!("{}/attempt-{}", env.run_id, env.restart_count);
    let timeout = Duration::from_secs(cfg.dist.connect_timeout_secs);
    StoreClient::connect(&address, &token, &scope, &format!("rank {}", env.rank), timeout)
}

/// Joins the CPU ring called `name` through `store` (`train`, or `eval` for background
/// evaluation, which must not interleave its collectives with training's).
pub fn join_ring(store: &mut StoreClient, cfg: &RunConfig, env: &RankEnv, name: &str) -> Result<RingGroup> {
    let connect_timeout = Duration::from_secs(cfg.dist.connect_timeout_secs);
    let advertise = advertised_host(&env.master_addr);
    let mut ring = RingGroup::connect_named(
        store,
        name,
        env.rank,
        env.world_size,
        ("0.0.0.0", &advertise),
        connect_timeout,
    )?;
    ring.set_timeout(Duration::from_secs(cfg.dist.collective_timeout_secs))?;
    Ok(ring)
}

/// The address peers reach this rank at: loopback when the whole job is on this machine (the
/// master is loopback), otherwise this host's name.
fn advertised_host(master_addr: &str) -> String {
    let loopback = master_addr == "localhost"
        || master_addr.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        "127.0.0.1".into()
    } else {
        gethostname::gethostname().to_string_lossy().into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_nccl_only_for_gpu_ranks() {
        assert_eq!(resolve_backend(Backend::Auto, true), Backend::Nccl);
        assert_eq!(resolve_backend(Backend::Auto, false), Backend::Cpu);
        assert_eq!(resolve_backend(Backend::Cpu, true), Backend::Cpu);
        assert_eq!(resolve_backend(Backend::Nccl, true), Backend::Nccl);
    }
}
