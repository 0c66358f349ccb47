//! The trainer's host allocator: glibc's malloc keeping freed memory for the next step
//! (`gan_core::host_malloc` says why and how the launcher sets it up).
use gan_core::host_malloc::{Arenas, MallocSetup};

/// How this process's malloc was set up, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAllocator {
    /// The launcher's tunables: mmap off, never trimmed.
    KeepsFreed,
    /// Started without them (`gan-train` by hand): mmap off through mallopt, which trims only
    /// beyond 2 GiB free at the heap's top.
    KeepsFreedBelow2Gib,
    /// The user tunes malloc through this variable; left as it is.
    UserTuned(String),
}

impl std::fmt::Display for HostAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::KeepsFreed => write!(f, "host memory: freed blocks kept for reuse (GLIBC_TUNABLES)"),
            Self::KeepsFreedBelow2Gib => {
                write!(f, "host memory: freed blocks kept for reuse up to 2 GiB free (mallopt; gan-launch sets more)")
            }
            Self::UserTuned(var) => write!(f, "host memory: glibc malloc as {var} sets it"),
        }
    }
}

/// Keeps freed host memory for reuse, unless the user tunes malloc. Call it before the process
/// starts threads: mallopt is not meant to race allocations.
pub fn keep_freed_memory() -> HostAllocator {
    match MallocSetup::from_process() {
        MallocSetup::KeepsFreed => HostAllocator::KeepsFreed,
        MallocSetup::UserTuned(var) => HostAllocator::UserTuned(var),
        MallocSetup::Default => {
            // SAFETY: mallopt only changes the allocator's parameters, in a single-threaded
            // process. M_MMAP_MAX 0: no block gets a mapping of its own; M_TRIM_THRESHOLD at the
            // largest value mallopt takes.
            unsafe {
                libc::mallopt(libc::M_MMAP_MAX, 0);
                libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
            }
            HostAllocator::KeepsFreedBelow2Gib
        }
    }
}

/// For `gan-train` started by hand on a CPU: every thread on the main heap, as the launcher's
/// tunables put a rank on a CPU (`gan_core::host_malloc::Arenas` says why). Only while the
/// process has one thread: with the limit set later, new threads would reuse the arenas other
/// threads made, so then nothing changes.
pub fn one_arena_by_hand(alloc: &HostAllocator, device: &str) -> bool {
    if *alloc != HostAllocator::KeepsFreedBelow2Gib || Arenas::for_device(device) != Arenas::One {
        return false;
    }
    if thread_count() != Some(1) {
        tracing::debug!("host memory: threads have started, so each keeps its own arena");
        return false;
    }
    // SAFETY: mallopt only changes the allocator's parameters, in a single-threaded process.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) == 1 }
}

/// This process's threads, as the kernel counts them.
fn thread_count() -> Option<u64> {
    proc_status("Threads")?.parse().ok()
}

/// A field of this process's /proc/self/status (`Threads`, `VmRSS`, ...), its value trimmed.
pub fn proc_status(field: &str) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| Some(l.strip_prefix(field)?.strip_prefix(':')?.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test runs beside the harness's main thread: too late for one arena, so nothing changes;
    /// and a process the launcher set up has it already, or not (a GPU rank).
    #[test]
    fn one_arena_only_before_threads_start_and_only_by_hand() {
        assert!(thread_count().is_some_and(|n| n >= 2), "{:?}", thread_count());
        assert!(!one_arena_by_hand(&HostAllocator::KeepsFreedBelow2Gib, "cpu"));
        assert!(!one_arena_by_hand(&HostAllocator::KeepsFreed, "cpu"));
        assert!(!one_arena_by_hand(&HostAllocator::UserTuned("MALLOC_ARENA_MAX=4".into()), "cpu"));
    }
}
