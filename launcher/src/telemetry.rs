//! The launcher's Prometheus endpoint: its ranks (alive, heartbeat age, last step), restarts
//! and the job's state, refreshed by the supervision loop.
use std::sync::Arc;

use gan_core::config::RunConfig;
use gan_core::metrics::{JobState, LauncherMetrics, MetricsServer};
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
        let server = match MetricsServer::start(&cfg.metrics.bind, cfg.metrics.launcher_port, render) {
            Ok(server) => {
                let addr = server.local_addr();
                tracing::info!(address = %addr, "serving launcher metrics at http://{addr}/metrics");
                let file = cfg.run_dir().join("metrics").join(format!("launcher-node-{node_rank}.addr"));
                if let Err(e) = gan_core::fsutil::write_atomic(&file, format!("{addr}\n").as_bytes()) {
                    tracing::warn!("cannot record the metrics address: {e}");
                }
                Some(server)
            }
            Err(e) => {
                tracing::warn!("no launcher metrics endpoint: {e}; the job continues without it");
                None
            }
        };
        Some(LauncherTelemetry { metrics, _server: server })
    }

    pub fn set_state(&self, state: JobState) {
        self.metrics.set_state(state);
    }
}
