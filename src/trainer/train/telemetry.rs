//! A rank's Prometheus endpoint: the registry of `gan_core::metrics`, served on
//! `metrics.port + LOCAL_RANK`, fed per step (durations, counters) and per tick (the reduced
//! statistics, learning rates, EMA beta, memory).
use std::sync::Arc;

use gan_core::config::{RankPlan, RunConfig};
use gan_core::metrics::{serve_recorded, MetricsServer, RankMetrics};
use gan_core::rundir::{CRATE_VERSION, GIT_COMMIT};

use super::progress::TickReport;
use super::setup::LIBTORCH_VERSION;

/// The metrics of a rank and the server that exposes them (dropped with the rank).
pub struct Telemetry {
    pub metrics: Arc<RankMetrics>,
    /// Kept for its lifetime: dropping it closes the endpoint.
    _server: Option<MetricsServer>,
}

impl Telemetry {
    /// Registers the rank's series and starts its endpoint. A port that cannot be bound is a
    /// loud warning, not a failed job: training matters more than its dashboard.
    pub fn start(cfg: &RunConfig, plan: &RankPlan, restart_count: u32) -> Option<Self> {
        if !cfg.metrics.enabled {
            return None;
        }
        let build = [("version", CRATE_VERSION), ("git_commit", GIT_COMMIT), ("libtorch", LIBTORCH_VERSION)];
        let metrics = Arc::new(RankMetrics::new(cfg.name(), plan.rank, plan.node_rank, &build));
        metrics.attempt.set(f64::from(restart_count));
        let registry = metrics.registry.clone();
        let gauges = Arc::clone(&metrics);
        let render = Arc::new(move || {
            gauges.resident_memory_bytes.set(gan_core::metrics::resident_memory_bytes());
            gan_core::metrics::render(&registry)
        });
        let port = cfg.metrics.rank_port(plan.local_rank);
        let addr_file = cfg.run_dir().join("metrics").join(format!("rank-{}.addr", plan.rank));
        let who = format!("rank {}", plan.rank);
        let server = serve_recorded(&cfg.metrics.bind, port, render, &addr_file, &who);
        Some(Telemetry { metrics, _server: server })
    }

    /// Once per tick: the reduced statistics and the values only this rank's state knows.
    pub fn tick(&self, report: &TickReport, cur_nimg: u64, rates: TickRates, device: tch::Device) {
        let m = &self.metrics;
        m.set_tick(&report.stats, cur_nimg, report.imgs_per_sec);
        m.learning_rate.with_label_values(&["G"]).set(rates.g_lr);
        m.learning_rate.with_label_values(&["D"]).set(rates.d_lr);
        m.ema_beta.set(rates.ema_beta);
        m.augment_probability.set(rates.augment_p);
        m.cuda_memory_used_bytes.set(cuda_memory_used_bytes(device).unwrap_or(0.0));
    }
}

/// Per-tick values that are not statistics.
#[derive(Clone, Copy, Debug)]
pub struct TickRates {
    pub g_lr: f64,
    pub d_lr: f64,
    pub ema_beta: f64,
    /// Augmentation probability (0 while no augmentation runs).
    pub augment_p: f64,
}

/// Memory in use on the current CUDA device, through the driver API (None without CUDA).
pub fn cuda_memory_used_bytes(device: tch::Device) -> Option<f64> {
    if !matches!(device, tch::Device::Cuda(_)) {
        return None;
    }
    use cudarc::driver::result;
    result::init().ok()?;
    let (free, total) = result::mem_get_info().ok()?;
    Some((total - free) as f64)
}
