//! Joining a job's process group from a rank: reach the store the launcher hosts, pick the backend
//! the config asks for, and connect to the peers.
use std::time::Duration;

use super::{ProcessGroup, RingGroup, SingleRank};
use crate::config::{Backend, RunConfig};
use crate::error::{Error, Result};
use crate::launch_env::RankEnv;
use crate::rendezvous::{StoreClient, TOKEN_ENV};

/// The group of this rank, and the store connection it keeps (for later agreement and heartbeats).
pub struct Joined {
    pub group: Box<dyn ProcessGroup>,
    pub store: Option<StoreClient>,
}

/// Connects rank `env.rank` to its peers. `uses_cuda` says whether the rank trains on a GPU.
pub fn join(cfg: &RunConfig, env: &RankEnv, uses_cuda: bool) -> Result<Joined> {
    if env.world_size == 1 {
        return Ok(Joined { group: Box::new(SingleRank), store: None });
    }
    let backend = match (cfg.dist.backend, uses_cuda) {
        (Backend::Cpu, _) | (Backend::Auto, false) => Backend::Cpu,
        (Backend::Nccl, _) | (Backend::Auto, true) => Backend::Nccl,
    };
    if backend == Backend::Nccl {
        return Err(Error::Env(
            "the nccl backend is not in this build yet; set dist.backend: cpu (the CPU ring also works between GPU ranks)"
                .into(),
        ));
    }
    let token = std::env::var(TOKEN_ENV)
        .map_err(|_| Error::Env(format!("{TOKEN_ENV} is not set; start multi-rank jobs with gan-launch")))?;
    let connect_timeout = Duration::from_secs(cfg.dist.connect_timeout_secs);
    let address = format!("{}:{}", env.master_addr, env.master_port);
    let me = format!("rank {}", env.rank);
    // Keys are per attempt: a restarted group must not read the previous attempt's ring addresses.
    let scope = format!("{}/attempt-{}", env.run_id, env.restart_count);
    let mut store = StoreClient::connect(&address, &token, &scope, &me, connect_timeout)?;
    let advertise = advertised_host(&env.master_addr);
    let mut ring =
        RingGroup::connect(&mut store, env.rank, env.world_size, "0.0.0.0", &advertise, connect_timeout)?;
    ring.set_timeout(Duration::from_secs(cfg.dist.collective_timeout_secs))?;
    Ok(Joined { group: Box::new(ring), store: Some(store) })
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
