//! The series a node's launcher exports: its ranks (alive, progress age, last step, time inside
//! the current collective), restarts and the job's state.
use prometheus::{Gauge, GaugeVec, IntCounter, Registry};

use super::builder::{labels, Builder};

/// Where the job is, as the launcher sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Starting,
    Running,
    Stopping,
    Finished,
    Failed,
}

impl JobState {
    const ALL: [JobState; 5] =
        [JobState::Starting, JobState::Running, JobState::Stopping, JobState::Finished, JobState::Failed];

    fn as_str(self) -> &'static str {
        match self {
            JobState::Starting => "starting",
            JobState::Running => "running",
            JobState::Stopping => "stopping",
            JobState::Finished => "finished",
            JobState::Failed => "failed",
        }
    }
}

pub struct LauncherMetrics {
    pub registry: Registry,
    names: Vec<String>,
    pub ranks: Gauge,
    pub ranks_alive: Gauge,
    pub restarts_total: IntCounter,
    pub heartbeat_age_seconds: GaugeVec,
    pub rank_step: GaugeVec,
    pub collective_wait_seconds: GaugeVec,
    job_state: GaugeVec,
}

impl LauncherMetrics {
    pub fn new(run: &str, node: u32, build: &[(&str, &str)]) -> Self {
        let mut b = Builder::new(labels(&[("run", run.into()), ("node", node.to_string())]));
        b.info("gan_launcher_build_info", "Build of the launcher (value 1).", build);
        let m = LauncherMetrics {
            ranks: b.gauge("gan_launcher_ranks", "Ranks this launcher runs."),
            ranks_alive: b
                .gauge("gan_launcher_ranks_alive", "Ranks of this launcher whose process is running."),
            restarts_total: b
                .counter("gan_launcher_restarts_total", "Times this launcher restarted its ranks."),
            heartbeat_age_seconds: b.gauge_vec(
                "gan_launcher_heartbeat_age_seconds",
                "Seconds since the rank last made progress (a step, a phase or a training collective started).",
                &["rank"],
            ),
            rank_step: b.gauge_vec(
                "gan_launcher_rank_step",
                "Last training step the rank reported.",
                &["rank"],
            ),
            collective_wait_seconds: b.gauge_vec(
                "gan_launcher_rank_collective_wait_seconds",
                "Seconds the rank has been inside its current collective of the process group (0 outside one): \
                 ranks waiting for a held-up rank grow together while it stays at 0.",
                &["rank", "group"],
            ),
            job_state: b.gauge_vec(
                "gan_launcher_job_state",
                "1 for the job's current state, 0 for the others.",
                &["state"],
            ),
            registry: b.registry,
            names: b.names,
        };
        m.set_state(JobState::Starting);
        m
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn set_state(&self, state: JobState) {
        for s in JobState::ALL {
            self.job_state.with_label_values(&[s.as_str()]).set(if s == state { 1.0 } else { 0.0 });
        }
    }
}
