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
/// tunables put a rank on a CPU (`gan_core::host_malloc::Arenas` says why). Call it while the
/// process has one thread: with a limit set later, new threads reuse the arenas other threads
/// made.
pub fn one_arena_by_hand(alloc: &HostAllocator, device: &str) -> bool {
    if *alloc != HostAllocator::KeepsFreedBelow2Gib || Arenas::for_device(device) != Arenas::One {
        return false;
    }
    // SAFETY: mallopt only changes the allocator's parameters, in a single-threaded process.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) == 1 }
}
