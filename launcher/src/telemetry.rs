//! The launcher's Prometheus endpoint: its ranks (alive, heartbeat age, last step), restarts
//! and the job's state, refreshed by the supervision loop.
use std::sync::Arc;

use gan_core::config::RunConfig;
use gan_core::metrics::{serve_recorded, JobState, LauncherMetrics, MetricsServer};
use gan_core::rundir::{CRATE_VERSION, GIT_COMMIT};

pub struct LauncherTelemetry {
    pub metrics: Arc<LauncherMetrics>,
    /// Kept for its lifetime: dropping it closes the endpoint.
    _server: Option<MetricsServer>,
}

impl LauncherTelemetry {
    /// Starts the endpoint on `metrics.launcher_port` (a port in use is a warning).
    pub fn start(cfg: &RunConfig, node_rank: u32, ranks: usize) -> Option<Self> {
        if !cfg.metrics.enabled {
            return None;
        }
        let metrics = Arc::new(LauncherMetrics::new(
            cfg.name(),
            node_rank,
            &[("version", CRATE_VERSION), ("git_commit", GIT_COMMIT)],
        ));
        metrics.ranks.set(ranks as f64);
        let registry = metrics.registry.clone();
        let render = Arc::new(move || gan_core::metrics::render(&registry));
        let addr_file = cfg.run_dir().join("metrics").join(format!("launcher-node-{node_rank}.addr"));
        let who = format!("launcher (node {node_rank})");
        let server = serve_recorded(&cfg.metrics.bind, cfg.metrics.launcher_port, render, &addr_file, &who);
        Some(LauncherTelemetry { metrics, _server: server })
    }

    pub fn set_state(&self, state: JobState) {
        self.metrics.set_state(state);
    }
}
