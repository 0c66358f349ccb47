//! Scoring one G_ema: every rank generates its share of `eval.num` images (shares differ by at
//! most one) and extracts pytorch-fid Inception features; the float64 moments (N, Σx, Σxxᵀ) are
//! summed over the group, and pool3 rows or logits are gathered only for the metrics that need
//! them (KID, precision/recall and density/coverage; IS). Rank 0 holds the real side and computes
//! the metrics. The same code runs on the training thread (training waits) or on the background
//! evaluator's thread with its own group.
use std::collections::BTreeMap;

use tch::{nn, Device, Kind, Tensor};

use crate::eval::extract::{self, Extracted, Share};
use crate::eval::inception::FidInception;
use crate::eval::manifold;
use crate::eval::stats::FeatureStats;
use crate::eval::stats::{frechet_distance, inception_score, kernel_inception_distance};
use crate::eval::weights::{self, FeatureNet};
use crate::models::Generator;
use crate::train::sync::flatten;
use gan_core::comm::{broadcast_bytes, ProcessGroup, ReduceOp};
use gan_core::config::{rank_share, EvalMetricName, RunConfig};
use gan_core::data::classes::ClassDistribution;
use gan_core::error::{Error, Result};

/// Latents of every evaluation come from this seed (image i from (seed, i)), so successive FIDs
/// differ by the generator, not by the draw, and do not depend on the world size. KID's subsets
/// come from it too.
pub const EVAL_SEED: u64 = 0x4649_445F_4556_414C; // "FID_EVAL"

/// Rank 0's results: by metric name (`fid`, `kid`, `is`, `is_std`, `precision`, `recall`,
/// `density`, `coverage`).
pub type Scores = BTreeMap<String, f64>;

/// The feature network and the real statistics of a run's evaluations.
pub struct Scorer {
    _vs: nn::VarStore,
    net: FidInception,
    pub net_id: FeatureNet,
    cfg: RunConfig,
    device: Device,
    /// The dataset's class mix, for conditional runs' fake labels.
    labels: Option<ClassDistribution>,
    /// Rank 0, once prepared: the real side's moments and rows.
    real: Option<Extracted>,
    real_ready: bool,
}

impl Scorer {
    /// Resolves and loads the feature network; every rank of `pg` calls this. One download per
    /// node: local rank 0 resolves (and, when missing, downloads) the weights first; the other
    /// ranks look after `pg`'s barrier. Without the standard weights on every rank, evaluation
    /// is off (None) and each rank that lacks them says where the file goes; weights the user
    /// named explicitly must load, or the run stops. `labels`: the dataset's class mix, which
    /// conditional runs draw their fakes' labels from.
    pub fn load(
        cfg: &RunConfig,
        device: Device,
        local_rank0: bool,
        pg: &mut dyn ProcessGroup,
        labels: Option<ClassDistribution>,
    ) -> Result<Option<Self>> {
        let explicit = cfg.eval.weights.as_deref().map(|path| (path, "eval.weights"));
        let early = local_rank0.then(|| weights::resolve(explicit, true));
        pg.barrier()?;
        let resolved = early.unwrap_or_else(|| weights::resolve(explicit, false));
        let mut lacking = [f32::from(u8::from(resolved.is_err()))];
        pg.all_reduce_f32(&mut lacking, ReduceOp::Sum)?;
        let (path, net_id) = match resolved {
            Err(e) if explicit.is_some() => return Err(e),
            Err(e) => {
                let why = if let Error::Env(message) = &e { message.clone() } else { e.to_string() };
                tracing::warn!("evaluation is off for this run: {why}");
                return Ok(None);
            }
            Ok(_) if lacking[0] > 0.0 => {
                if pg.rank() == 0 {
                    tracing::warn!(
                        "evaluation is off for this run: another rank lacks the standard FID weights"
                    );
                }
                return Ok(None);
            }
            Ok(found) => found,
        };
        let vs = nn::VarStore::new(device);
        let net = FidInception::new(&vs.root());
        weights::load_into(&vs, &path)?;
        Ok(Some(Scorer {
            _vs: vs,
            net,
            net_id,
            cfg: cfg.clone(),
            device,
            labels,
            real: None,
            real_ready: false,
        }))
    }

    /// The real side, once: from rank 0's cache, or computed by all ranks (each a contiguous
    /// share) and cached.
    pub fn prepare_real(
        &mut self,
        pg: &mut dyn ProcessGroup,
        beat: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        if self.real_ready {
            return Ok(());
        }
        let e = &self.cfg.eval;
        let n = extract::real_count(&self.cfg, e.num_real)?;
        let cache = extract::cache_path(&self.cfg, &self.net_id.label(), n)?;
        let rank0 = pg.rank() == 0;
        let cached = if rank0 { extract::read_cache(&cache) } else { None };
        let mut hit = vec![u8::from(cached.is_some())];
        broadcast_bytes(pg, &mut hit, 0)?;
        if hit[0] == 1 {
            if cached.is_some() {
                tracing::info!(path = %cache.display(), "real statistics from the cache");
            }
            self.real = cached;
        } else {
            let share = (pg.rank(), pg.world_size());
            let mine = extract::real_share(&self.net, &self.cfg, n, e.batch, share, self.device, beat)?;
            let stats = reduce_moments(pg, &mine.stats)?;
            let rows = first_rows(pg, &mine.rows, rank_share(n, share.0, share.1).start, n)?;
            if rank0 {
                let out = Extracted { stats, rows, logits: mine.logits };
                extract::write_cache(&cache, &out)?;
                self.real = Some(out);
            }
        }
        self.real_ready = true;
        Ok(())
    }

    /// Scores `num` images of `g` (every rank of `pg` calls this); Some on rank 0.
    pub fn score(
        &mut self,
        pg: &mut dyn ProcessGroup,
        g: &dyn Generator,
        num: u64,
        beat: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Option<Scores>> {
        self.prepare_real(pg, beat)?;
        let e = &self.cfg.eval;
        let mine = rank_share(num, pg.rank(), pg.world_size());
        let share = Share {
            first: mine.start,
            n: mine.end - mine.start,
            batch: e.batch,
            gen_batch: e.gen_batch(),
            seed: EVAL_SEED,
        };
        let fake = extract::generated(&self.net, g, self.labels.as_ref(), None, share, self.device, beat)?;
        let stats = reduce_moments(pg, &fake.stats)?;
        let wants = |m: EvalMetricName| e.metrics.contains(&m);
        let per_sample = [EvalMetricName::Kid, EvalMetricName::Pr, EvalMetricName::Dc];
        let gather = |pg: &mut dyn ProcessGroup, rows: &Tensor| gather_rows(pg, rows, num);
        let rows = if per_sample.into_iter().any(wants) { Some(gather(pg, &fake.rows)?) } else { None };
        let logits = if wants(EvalMetricName::Is) { Some(gather(pg, &fake.logits)?) } else { None };
        let Some(real) = &self.real else { return Ok(None) };
        let mut scores = Scores::new();
        if wants(EvalMetricName::Fid) {
            let ((mu1, cov1), (mu2, cov2)) = (stats.mean_cov(), real.stats.mean_cov());
            scores.insert("fid".into(), frechet_distance(&mu1, &cov1, &mu2, &cov2));
        }
        if let Some(rows) = rows {
            if wants(EvalMetricName::Kid) {
                scores
                    .insert("kid".into(), kernel_inception_distance(&real.rows, &rows, 100, 1000, EVAL_SEED));
            }
            let wanted = (wants(EvalMetricName::Pr), wants(EvalMetricName::Dc));
            for (name, value) in manifold::scores(&real.rows, &rows, self.device, wanted)? {
                scores.insert(name.into(), value);
            }
        }
        if let Some(logits) = logits {
            let (mean, std) = inception_score(&logits, 10.min(logits.size()[0]));
            scores.insert("is".into(), mean);
            scores.insert("is_std".into(), std);
        }
        Ok(Some(scores))
    }
}

/// Sums N, Σx and Σxxᵀ over ranks (float64, so the order of the sum does not matter beyond
/// rounding in the last place).
fn reduce_moments(pg: &mut dyn ProcessGroup, stats: &FeatureStats) -> Result<FeatureStats> {
    if pg.world_size() == 1 {
        return Ok(FeatureStats {
            count: stats.count,
            sum: stats.sum.copy(),
            sum_outer: stats.sum_outer.copy(),
        });
    }
    let dim = stats.sum.size()[0];
    let parts = [Tensor::from(stats.count).view([1]), stats.sum.shallow_clone(), stats.sum_outer.view([-1])];
    let flat = Tensor::cat(&parts, 0).to_kind(Kind::Double).to_device(Device::Cpu);
    let mut host: Vec<f64> = Vec::try_from(&flat).map_err(|e: tch::TchError| Error::Tensor(e.to_string()))?;
    pg.all_reduce_f64(&mut host, ReduceOp::Sum)?;
    let all = Tensor::from_slice(&host);
    Ok(FeatureStats {
        count: host[0],
        sum: all.narrow(0, 1, dim),
        sum_outer: all.narrow(0, 1 + dim, dim * dim).view([dim, dim]),
    })
}

/// The real rows of images `0..min(n, REAL_ROWS)`, of which each rank holds those of its share
/// (`rows`, from image `first` on): every rank adds its own into a zeroed buffer at their place, so
/// a sum over ranks assembles them exactly.
fn first_rows(pg: &mut dyn ProcessGroup, rows: &Tensor, first: u64, n: u64) -> Result<Tensor> {
    if pg.world_size() == 1 {
        return Ok(rows.shallow_clone());
    }
    let cols = 2048usize;
    let total = n.min(extract::REAL_ROWS) as usize;
    let mut all = vec![0f32; total * cols];
    let mine = flatten(&[rows.shallow_clone()]);
    if !mine.is_empty() {
        let at = first as usize * cols;
        all[at..at + mine.len()].copy_from_slice(&mine);
    }
    pg.all_reduce_f32(&mut all, ReduceOp::Sum)?;
    Ok(Tensor::from_slice(&all).view([total as i64, cols as i64]))
}

/// Every rank's rows of its share of `num` images ([`rank_share`]), concatenated in rank
/// order: all `num` rows in image order. Shares differ by at most one row, so each rank sends the
/// largest share's length, zero-padded, and the padding is dropped after the gather.
fn gather_rows(pg: &mut dyn ProcessGroup, rows: &Tensor, num: u64) -> Result<Tensor> {
    let world = pg.world_size();
    if world == 1 {
        return Ok(rows.shallow_clone());
    }
    let cols = rows.size()[1] as usize;
    let slot_rows = num.div_ceil(u64::from(world)) as usize;
    let mut mine = flatten(&[rows.shallow_clone()]);
    mine.resize(slot_rows * cols, 0.0);
    let mut all = vec![0f32; mine.len() * world as usize];
    pg.all_gather_f32(&mine, &mut all)?;
    let mut ordered = Vec::with_capacity(num as usize * cols);
    for (rank, slot) in (0..world).zip(all.chunks_exact(slot_rows * cols)) {
        let share = rank_share(num, rank, world);
        ordered.extend_from_slice(&slot[..(share.end - share.start) as usize * cols]);
    }
    Ok(Tensor::from_slice(&ordered).view([num as i64, cols as i64]))
}
