//! What a person watching a run sees: a live bar on rank 0 when stderr is a terminal, and one log
//! line per tick everywhere (under SLURM or Kubernetes stderr is a file and the bar hides itself).
use std::collections::BTreeMap;
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One tick's figures.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TickReport {
    pub tick: u64,
    pub step: u64,
    pub kimg: f64,
    pub imgs_per_sec: f64,
    pub sec_per_kimg: f64,
    /// Means of every reported statistic over the tick, across ranks; and for spectrally
    /// normalised networks (BigGAN) `SV0/G`, `SV0/D`: their largest singular value at its end.
    pub stats: BTreeMap<String, f64>,
}

impl TickReport {
    /// The losses in a short form for the bar and the log line.
    fn losses(&self) -> String {
        let mut parts = Vec::new();
        for (name, label) in [("Loss/G", "G"), ("Loss/D", "D"), ("Loss/R1", "R1")] {
            if let Some(v) = self.stats.get(name) {
                parts.push(format!("{label} {v:.4}"));
            }
        }
        let timing = |name: &str| self.stats.get(name).copied();
        if let (Some(step), Some(sync), Some(data)) =
            (timing("Timing/step_secs"), timing("Timing/sync_secs"), timing("Timing/data_secs"))
        {
            let share = |part: f64| 100.0 * part / step.max(1e-12);
            parts.push(format!(
                "step {:.1} ms (sync {:.0}%, data wait {:.1}%)",
                step * 1e3,
                share(sync),
                share(data)
            ));
        }
        parts.join("  ")
    }
}

pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar over `total_nimg` images, shown only when `enabled` and stderr is a terminal.
    pub fn new(enabled: bool, total_nimg: u64) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total_nimg), ProgressDrawTarget::stderr_with_hz(4));
            bar.set_style(
                ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} imgs {per_sec} eta {eta} {msg}")
                    .expect("a valid template"),
            );
            bar
        });
        Progress { bar }
    }

    /// Called every step with the images seen so far.
    pub fn step(&self, step: u64, cur_nimg: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(cur_nimg);
            if step.is_multiple_of(8) {
                bar.tick();
            }
        }
    }

    /// Called at every tick with its figures.
    pub fn tick(&self, report: &TickReport) {
        let line = || {
            tracing::info!(
                "tick {:<4} step {:<7} kimg {:<9.2} imgs/s {:<8.1} sec/kimg {:<7.3} {}",
                report.tick,
                report.step,
                report.kimg,
                report.imgs_per_sec,
                report.sec_per_kimg,
                report.losses()
            )
        };
        match &self.bar {
            Some(bar) => {
                bar.set_message(format!("step {} {}", report.step, report.losses()));
                bar.suspend(line);
            }
            None => line(),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
