//! Evaluation during training (`eval.every_kimg`): every rank draws its equal share of
//! `eval.num` images from G_ema and extracts pytorch-fid Inception features; the float64 moments
//! (N, Σx, Σxxᵀ) are summed over ranks, and pool3 rows or logits are gathered only for KID or IS.
//! Rank 0 computes the metrics, exports the gauges (labelled with the feature network), appends
//! `eval.jsonl` and tracks the best FID for checkpoints. Real statistics are computed once, shared
//! out the same way, and cached per dataset content. Training waits meanwhile; the pause is
//! measured and logged.
use std::time::Instant;

use tch::{nn, Device, Kind, Tensor};

use super::setup::Setup;
use crate::eval::extract::{self, Extracted, Share};
use crate::eval::inception::FidInception;
use crate::eval::stats::{frechet_distance, inception_score, kernel_inception_distance, FeatureStats};
use crate::eval::weights::{self, FeatureNet};
use gan_core::comm::{broadcast_bytes, ProcessGroup, ReduceOp};
use gan_core::config::EvalMetricName;
use gan_core::error::{Error, Result};

/// Latents of every evaluation come from this seed (image i from (seed, i)), so successive FIDs
/// differ by the generator, not by the draw, and do not depend on the world size.
const EVAL_SEED: u64 = 0x4649_445F_4556_414C; // "FID_EVAL"

pub struct Evaluator {
    _vs: nn::VarStore,
    net: FidInception,
    net_id: FeatureNet,
    /// Rank 0: the real side's moments and rows.
    real: Option<Extracted>,
    every_nimg: u64,
    next_nimg: u64,
    worse_in_a_row: u32,
}

impl Evaluator {
    /// Loads the feature network on every rank and the real statistics, before training starts
    /// (missing weights stop the run here, not hours in). None when evaluation is off.
    pub fn start(s: &mut Setup) -> Result<Option<Self>> {
        let e = s.cfg.eval.clone();
        if e.every_kimg <= 0.0 {
            return Ok(None);
        }
        // One download per node: local rank 0 resolves (and, when missing, downloads) the weights
        // first; the other ranks look once it is done. A failed download ends local rank 0, and
        // the launcher then stops the job.
        let first = s.plan.local_rank == 0;
        let early = if first { Some(weights::resolve(e.weights.as_deref())?) } else { None };
        s.pg.barrier()?;
        let (path, net_id) = match early {
            Some(resolved) => resolved,
            None => weights::resolve(e.weights.as_deref())?,
        };
        let vs = nn::VarStore::new(s.device);
        let net = FidInception::new(&vs.root());
        weights::load_into(&vs, &path)?;
        let real = collect_real(s, &net, &net_id.label())?;
        let every_nimg = (e.every_kimg * 1000.0).round().max(1.0) as u64;
        let next_nimg = (s.start.cur_nimg / every_nimg + 1) * every_nimg;
        Ok(Some(Evaluator { _vs: vs, net, net_id, real, every_nimg, next_nimg, worse_in_a_row: 0 }))
    }

    /// At the first tick past each multiple of `every_kimg`, and at the end.
    pub fn due(&self, cur_nimg: u64, done: bool) -> bool {
        done || cur_nimg >= self.next_nimg
    }

    /// One evaluation (every rank calls it at the same tick); returns the pause in seconds.
    pub fn run(&mut self, s: &mut Setup, step: u64, cur_nimg: u64) -> Result<f64> {
        let started = Instant::now();
        self.next_nimg = (cur_nimg / self.every_nimg + 1) * self.every_nimg;
        let e = s.cfg.eval.clone();
        let (rank, world) = (s.pg.rank(), s.pg.world_size());
        let per_rank = e.num / u64::from(world);
        let share = Share { first: u64::from(rank) * per_rank, n: per_rank, batch: e.batch, seed: EVAL_SEED };
        let classes = if s.cfg.model.conditional { s.cfg.data.num_classes } else { 0 };
        let heartbeat = &mut s.heartbeat;
        let mut beat = || {
            let _ = heartbeat.beat(step, cur_nimg);
        };
        let fake = extract::generated(&self.net, s.g_ema.as_ref(), classes, share, s.device, &mut beat);
        let stats = reduce_moments(s.pg.as_mut(), &fake.stats)?;
        let wants = |m: EvalMetricName| e.metrics.contains(&m);
        let rows =
            if wants(EvalMetricName::Kid) { Some(gather_rows(s.pg.as_mut(), &fake.rows)?) } else { None };
        let logits =
            if wants(EvalMetricName::Is) { Some(gather_rows(s.pg.as_mut(), &fake.logits)?) } else { None };
        let pause = started.elapsed().as_secs_f64();
        if let Some(real) = self.real.take() {
            let reported = self.report(s, &real, &stats, rows, logits, (step, cur_nimg, pause));
            self.real = Some(real);
            reported?;
        }
        Ok(pause)
    }

    /// Rank 0: the metrics, their log line, gauges, `eval.jsonl` and the best FID.
    fn report(
        &mut self,
        s: &mut Setup,
        real: &Extracted,
        fake: &FeatureStats,
        rows: Option<Tensor>,
        logits: Option<Tensor>,
        (step, cur_nimg, pause): (u64, u64, f64),
    ) -> Result<()> {
        let label = self.net_id.label();
        let num = s.cfg.eval.num.to_string();
        let mut line = serde_json::json!({
            "kimg": cur_nimg as f64 / 1000.0, "step": step, "feature_network": label,
            "num_images": s.cfg.eval.num, "pause_secs": pause,
        });
        let mut shown = Vec::new();
        if s.cfg.eval.metrics.contains(&EvalMetricName::Fid) {
            let ((mu1, cov1), (mu2, cov2)) = (fake.mean_cov(), real.stats.mean_cov());
            let fid = frechet_distance(&mu1, &cov1, &mu2, &cov2);
            line["fid"] = fid.into();
            shown.push(format!("FID {fid:.3}"));
            let best = s.best_metrics.get("fid").copied();
            if best.is_none_or(|b| fid < b) {
                s.best_metrics.insert("fid".into(), fid);
                self.worse_in_a_row = 0;
            } else {
                self.worse_in_a_row += 1;
            }
            if let Some(t) = &s.telemetry {
                t.metrics.fid.with_label_values(&[label.as_str(), num.as_str()]).set(fid);
                t.metrics.fid_worse_evaluations.set(f64::from(self.worse_in_a_row));
            }
        }
        if let Some(rows) = rows {
            tch::manual_seed(EVAL_SEED as i64);
            let kid = kernel_inception_distance(&real.rows, &rows, 100, 1000);
            line["kid"] = kid.into();
            shown.push(format!("KID {kid:.5}"));
            if let Some(t) = &s.telemetry {
                t.metrics.kid.with_label_values(&[label.as_str(), num.as_str()]).set(kid);
            }
        }
        if let Some(logits) = logits {
            let (mean, std) = inception_score(&logits, 10.min(logits.size()[0]));
            line["is"] = mean.into();
            line["is_std"] = std.into();
            shown.push(format!("IS {mean:.3} ± {std:.3}"));
            if let Some(t) = &s.telemetry {
                t.metrics.inception_score.with_label_values(&[label.as_str(), num.as_str()]).set(mean);
            }
        }
        // The checkpoint of this step records these (evaluation runs before it).
        let results =
            ["fid", "kid", "is"].iter().filter_map(|k| line[*k].as_f64().map(|v| (k.to_string(), v)));
        s.last_eval = Some((step, results.collect()));
        let standard =
            if self.net_id == FeatureNet::Standard { "" } else { ", NOT the standard FID network" };
        tracing::info!(
            step,
            "eval at {:.1} kimg: {} ({} images, {label}{standard}); training paused {pause:.2} s",
            cur_nimg as f64 / 1000.0,
            shown.join(", "),
            s.cfg.eval.num
        );
        let path = s.stats_path().with_file_name("eval.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str(&format!("{line}\n"));
        gan_core::fsutil::write_atomic(&path, text.as_bytes())
    }
}

/// The real side, computed by all ranks (each a contiguous share) unless rank 0 has it cached.
fn collect_real(s: &mut Setup, net: &FidInception, label: &str) -> Result<Option<Extracted>> {
    let e = s.cfg.eval.clone();
    let n = extract::real_count(&s.cfg, e.num_real)?;
    let cache = extract::cache_path(&s.cfg, label, n)?;
    let cached = if s.is_rank0() { extract::read_cache(&cache) } else { None };
    let mut hit = vec![u8::from(cached.is_some())];
    broadcast_bytes(s.pg.as_mut(), &mut hit, 0)?;
    if hit[0] == 1 {
        if cached.is_some() {
            tracing::info!(path = %cache.display(), "real statistics from the cache");
        }
        return Ok(cached);
    }
    let (rank, world) = (s.pg.rank(), s.pg.world_size());
    let heartbeat = &mut s.heartbeat;
    let mut beat = || {
        let _ = heartbeat.beat(0, 0);
    };
    let mine = extract::real_share(net, &s.cfg, n, e.batch, (rank, world), s.device, &mut beat)?;
    let stats = reduce_moments(s.pg.as_mut(), &mine.stats)?;
    if !s.is_rank0() {
        return Ok(None);
    }
    // KID's real rows: rank 0's share of the real images.
    let out = Extracted { stats, rows: mine.rows, logits: mine.logits };
    extract::write_cache(&cache, &out)?;
    Ok(Some(out))
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

/// Every rank's rows [n, cols] (equal n everywhere), concatenated in rank order.
fn gather_rows(pg: &mut dyn ProcessGroup, rows: &Tensor) -> Result<Tensor> {
    let cols = rows.size()[1];
    let mine: Vec<f32> = Vec::try_from(&rows.to_kind(Kind::Float).reshape([-1]))
        .map_err(|e: tch::TchError| Error::Tensor(e.to_string()))?;
    let mut all = vec![0f32; mine.len() * pg.world_size() as usize];
    pg.all_gather_f32(&mine, &mut all)?;
    Ok(Tensor::from_slice(&all).view([-1, cols]))
}
