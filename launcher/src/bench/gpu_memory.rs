//! Peak GPU memory of a benchmark's ranks, read from `nvidia-smi` (the launcher has no CUDA of
//! its own): the memory used on GPU 0, sampled every 100 ms while the job runs, minus what was in
//! use before it started. It counts what the processes hold (libtorch's cached blocks included),
//! as nvidia-smi and users' dashboards see it, not only live tensors. `plan --memory` reads GPU 0's
//! total here too.
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A memory field of GPU 0 in MiB ("memory.used", "memory.total"), if nvidia-smi answers.
pub fn gpu0_mib(field: &str) -> Option<u64> {
    let out = Command::new("nvidia-smi")
        .args([&format!("--query-gpu={field}"), "--format=csv,noheader,nounits", "--id=0"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().lines().next()?.trim().parse().ok()
}

fn used_mib() -> Option<u64> {
    gpu0_mib("memory.used")
}

pub struct PeakSampler {
    baseline: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<bool>,
}

impl PeakSampler {
    pub fn start() -> Self {
        let baseline = used_mib().unwrap_or(0);
        let (peak, stop) = (Arc::new(AtomicU64::new(baseline)), Arc::new(AtomicBool::new(false)));
        let (p, s) = (Arc::clone(&peak), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut answered = false;
            while !s.load(Ordering::SeqCst) {
                if let Some(mib) = used_mib() {
                    answered = true;
                    p.fetch_max(mib, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            answered
        });
        PeakSampler { baseline, peak, stop, thread }
    }

    /// The peak above the baseline in MiB; None when nvidia-smi never answered.
    pub fn finish(self) -> Option<u64> {
        self.stop.store(true, Ordering::SeqCst);
        let answered = self.thread.join().unwrap_or(false);
        answered.then(|| self.peak.load(Ordering::SeqCst).saturating_sub(self.baseline))
    }
}
