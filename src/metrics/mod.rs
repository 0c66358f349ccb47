//! Prometheus metrics, torch-free: the series every rank exports ([`RankMetrics`]) and the
//! launcher's ([`LauncherMetrics`]), each in its own registry with `run`, `rank`/`node` as
//! constant labels; a small HTTP server for `/metrics` (text format 0.0.4); and the push of a
//! run's final results to a Pushgateway.
//!
//! Naming follows Prometheus' conventions: `gan_` prefix, base units (seconds, bytes, ratios),
//! `_total` counters, histograms for durations. The names the dashboards and alert rules use are
//! exactly the ones registered here ([`RankMetrics::names`], [`LauncherMetrics::names`]; a test
//! checks every query against them).
mod builder;
mod launcher;
mod push;
mod rank;
mod server;

#[cfg(test)]
mod tests;

pub use launcher::{JobState, LauncherMetrics};
pub use push::{push_to_gateway, FinalResults};
pub use rank::{CheckpointMetrics, RankMetrics, StepParts};
pub use server::{serve_recorded, MetricsServer};

/// Renders a registry in the text exposition format 0.0.4.
pub fn render(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("encoding gathered metrics into memory cannot fail");
    String::from_utf8(buf).expect("the text format is UTF-8")
}

/// Resident memory of this process in bytes (from /proc; 0 where unavailable).
pub fn resident_memory_bytes() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page_size.max(0) as f64
}
