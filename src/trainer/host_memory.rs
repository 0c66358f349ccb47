//! The trainer's host allocator: glibc's malloc keeping freed memory for the next step
//! (`gan_core::host_malloc` says why and how the launcher sets it up), on every thread of a rank
//! that trains on the CPU.
use gan_core::host_malloc::MallocSetup;
use tch::Device;

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

/// On a CPU device, puts every thread this process starts from now on into the main thread's
/// arena (one arena), unless the user tunes malloc. Call it before the loader and evaluator
/// threads start.
///
/// Why: the settings above hold for the main arena only. glibc gives each other thread an arena
/// of its own, built of heaps of at most 64 MiB; a larger block there gets a mapping of its own
/// whatever `mmap_max` says, unmapped on free. On a CPU, the background evaluator's Inception
/// activations are such blocks: the demo recipe's 500-image FID took 35.1 s, 24.0 s with one arena
/// (the run's kernel time 38.7 -> 2.5 s). On a GPU those tensors live on the device; the host
/// blocks a thread takes there are few, and sharing the main heap would only keep an
/// evaluation's feature rows resident after it ends.
pub fn share_main_heap_on_cpu(device: Device) -> bool {
    if device != Device::Cpu || matches!(MallocSetup::from_process(), MallocSetup::UserTuned(_)) {
        return false;
    }
    // SAFETY: mallopt only changes the allocator's parameters. The limit is read when a thread
    // first allocates; the service threads running now keep the arenas they have.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After the trainer's setup on a CPU, a block larger than a thread arena's 64 MiB heaps,
    /// taken on a thread started later, comes from the main heap (below the program break), not
    /// from a mapping of its own (far above it). On a GPU nothing changes.
    #[test]
    fn on_a_cpu_later_threads_take_large_blocks_from_the_main_heap() {
        keep_freed_memory();
        assert!(!share_main_heap_on_cpu(Device::Cuda(0)));
        assert!(share_main_heap_on_cpu(Device::Cpu));
        let (address, program_break) = std::thread::spawn(|| {
            let block = vec![1u8; 100 << 20];
            // SAFETY: sbrk(0) only reads the current program break.
            let program_break = unsafe { libc::sbrk(0) } as usize;
            (block.as_ptr() as usize, program_break)
        })
        .join()
        .unwrap();
        assert!(address < program_break, "block at {address:#x}, program break at {program_break:#x}");
    }
}
