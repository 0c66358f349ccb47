//! A rank's data: the dataset opened (and verified) once per start, the class mix of a
//! conditional run, and the loader of the rank's share of the stream from where the run left it.
use std::sync::Arc;

use gan_core::comm::ProcessGroup;
use gan_core::config::{RankPlan, RunConfig};
use gan_core::data::loader::{Loader, LoaderSpec};
use gan_core::data::{self, classes::ClassDistribution, sampler::Sampler, ImageSource};
use gan_core::error::Result;
use gan_core::rng::SplitMix64;

/// The dataset a rank reads and, for a conditional run, its class mix (counted once here; the
/// evaluator draws its labels from the same mix). Local rank 0 verifies the shards' checksums
/// for the whole node; the others check sizes.
pub fn open_data(
    cfg: &RunConfig,
    plan: &RankPlan,
) -> Result<(Arc<dyn ImageSource>, Option<ClassDistribution>)> {
    let verify = cfg.data.verify_checksums && plan.local_rank == 0;
    let source: Arc<dyn ImageSource> = Arc::from(data::open(&cfg.data, cfg.run.seed, verify)?);
    let class_mix =
        if cfg.model.conditional { Some(ClassDistribution::of(&cfg.data, source.as_ref())?) } else { None };
    Ok((source, class_mix))
}

/// The rank's share of the data stream, from where the run left it (`data_consumed` images of
/// the whole stream), with its own flips.
pub fn start_loader(
    cfg: &RunConfig,
    plan: &RankPlan,
    pg: &dyn ProcessGroup,
    source: &Arc<dyn ImageSource>,
    data_consumed: u64,
) -> Loader {
    let spec = LoaderSpec {
        global_batch: u64::from(cfg.train.batch_size),
        rank: pg.rank(),
        world: pg.world_size(),
        xflip: cfg.data.xflip,
        flip_seed: SplitMix64::for_item(plan.seed, 0x464C_4950).next_u64(), // stream "FLIP"
        prefetch: cfg.data.prefetch as usize,
    };
    let sampler = Sampler::resume(cfg.run.seed, source.len(), data_consumed);
    Loader::start(Arc::clone(source), sampler, spec)
}
