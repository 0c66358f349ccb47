//! The per-rank plan: what each rank of a run will do, derived from the config alone, so that
//! `gan-launch plan` and the ranks themselves agree without talking to each other.
use std::ops::Range;

use serde::Serialize;

use super::schema::RunConfig;
use super::train::Device;
use crate::rng::SplitMix64;

/// What one rank runs with.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RankPlan {
    pub rank: u32,
    pub local_rank: u32,
    pub node_rank: u32,
    /// `cpu` or `cuda:<index>`.
    pub device: String,
    /// CPU threads for this rank's intra-op parallelism.
    pub threads: u32,
    pub batch_per_rank: u32,
    /// Forward/backward rounds per optimizer step.
    pub accumulation: u32,
    /// Seed of this rank's latents and augmentations; weights start from `run.seed` on every rank.
    pub seed: u64,
}

/// Facts about the machine the plan is for; the launcher fills them in for its node.
#[derive(Clone, Copy, Debug)]
pub struct HostFacts {
    /// GPUs this process may use (after CUDA_VISIBLE_DEVICES).
    pub gpus: u32,
    /// CPU cores available to this process.
    pub cpus: u32,
}

impl HostFacts {
    /// Reads the facts of the machine we are running on.
    pub fn detect() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        HostFacts { gpus: crate::devices::visible_gpu_count(), cpus }
    }
}

/// World size of the run (nodes x ranks per node).
pub fn world_size(cfg: &RunConfig) -> u32 {
    cfg.dist.nodes * cfg.dist.gpus
}

/// Rank `rank`'s contiguous share of `n` items (images of a step, of an evaluation) split over
/// `world` ranks: shares differ by at most one, the larger ones first, so any count splits over
/// any world size and rank 0's share is the largest. In rank order they cover `0..n` in order.
pub fn rank_share(n: u64, rank: u32, world: u32) -> Range<u64> {
    let (rank, world) = (u64::from(rank), u64::from(world));
    let (base, extra) = (n / world, n % world);
    let start = rank * base + rank.min(extra);
    start..start + base + u64::from(rank < extra)
}

/// Images per forward pass on rank `rank`: `train.batch_per_rank`, else its share of
/// `train.batch_size` (then one round a step; shares may differ by one image between ranks).
pub fn batch_of_rank(cfg: &RunConfig, rank: u32) -> u32 {
    match cfg.train.batch_per_rank {
        Some(b) => b,
        None => rank_share(u64::from(cfg.train.batch_size), rank, world_size(cfg)).count() as u32,
    }
}

/// The largest images per forward pass of any rank (rank 0's).
pub fn batch_per_rank(cfg: &RunConfig) -> u32 {
    batch_of_rank(cfg, 0)
}

/// The distinct per-rank batches of the run: one, or two when the batch does not split evenly.
pub fn per_rank_batches(cfg: &RunConfig) -> Vec<u32> {
    let mut batches = vec![batch_of_rank(cfg, 0), batch_of_rank(cfg, world_size(cfg) - 1)];
    batches.dedup();
    batches
}

/// The plan of every rank of the run, in rank order.
pub fn plan(cfg: &RunConfig, host: HostFacts) -> Vec<RankPlan> {
    let world = world_size(cfg);
    let local_ranks = cfg.dist.gpus;
    let threads = (host.cpus / local_ranks).max(1);
    (0..world)
        .map(|rank| {
            let local_rank = rank % local_ranks;
            RankPlan {
                rank,
                local_rank,
                node_rank: rank / local_ranks,
                device: device_for(cfg.train.device, local_rank, host.gpus),
                threads: cfg.train.threads.unwrap_or(threads),
                batch_per_rank: batch_of_rank(cfg, rank),
                accumulation: cfg.train.batch_per_rank.map_or(1, |b| cfg.train.batch_size / (world * b)),
                seed: rank_seed(cfg.run.seed, rank),
            }
        })
        .collect()
}

/// `auto` uses the GPU numbered LOCAL_RANK when this node has one for every local rank.
pub fn device_for(device: Device, local_rank: u32, gpus: u32) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda => format!("cuda:{local_rank}"),
        Device::Auto if local_rank < gpus => format!("cuda:{local_rank}"),
        Device::Auto => "cpu".into(),
    }
}

/// Decorrelated per-rank seeds from one run seed (splitmix64 finaliser), so rank streams differ
/// but are reproducible.
pub fn rank_seed(seed: u64, rank: u32) -> u64 {
    let z = seed ^ (u64::from(rank) + 1).wrapping_mul(SplitMix64::GAMMA);
    SplitMix64::mix(z) >> 1 // libtorch seeds are taken as i64 in places; stay non-negative
}

/// Human-readable table of the plan.
pub fn format_plan(plans: &[RankPlan]) -> String {
    let mut out = String::from("rank  node  local  device   threads  batch/rank  accum  seed\n");
    for p in plans {
        out.push_str(&format!(
            "{:<5} {:<5} {:<6} {:<8} {:<8} {:<11} {:<6} {}\n",
            p.rank, p.node_rank, p.local_rank, p.device, p.threads, p.batch_per_rank, p.accumulation, p.seed
        ));
    }
    out
}
