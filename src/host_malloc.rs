//! glibc malloc settings for the trainer's processes: keep freed host memory for reuse.
//!
//! Why: libtorch takes every CPU tensor from malloc. glibc serves a block above its mmap threshold
//! (at most 32 MiB) with a mapping of its own and unmaps it on free, and gives the top of its heap
//! back to the kernel once more than the trim threshold lies free there. A training step allocates
//! and frees the same activations every step, so each step faulted them in again, page by page,
//! each page zeroed by the kernel: StyleGAN2-CIFAR at batch 32 on 2 cores took 31 million page
//! faults in 3 steps and spent about 40% of its CPU time in the kernel. With mmap off and no
//! trimming, the heap grows to a step's peak once and later steps reuse it, as the CUDA caching
//! allocator keeps device memory. The price is a resident size that stays at that peak.
//!
//! Those two settings hold for the main thread's arena only. glibc gives every other thread (the
//! background evaluator, the loader) an arena of its own, built of heaps of at most 64 MiB; a
//! larger block there gets a mapping of its own whatever `mmap_max` says, unmapped on free. On a
//! CPU, the evaluator's Inception activations are such blocks: the demo recipe's 500-image FID
//! took 35.1 s, 24.0 s with one arena (the run's kernel time 38.7 -> 2.5 s). So a rank whose
//! tensors live in host memory also gets [`ONE_ARENA`]: every thread on the main heap. On a GPU
//! those tensors live on the device; there one arena would only keep an evaluation's host rows
//! resident after it ends, so threads keep their own.
//!
//! The settings are glibc tunables, read when a process starts, so the launcher puts them in the
//! environment of every trainer it starts ([`trainer_env`]). `mallopt` cannot set a trim
//! threshold above 2 GiB, which StyleGAN2's steps free at once; the trainer uses it only when
//! started without them (`gan-train` by hand). A user's own malloc settings win: with
//! `GLIBC_TUNABLES` naming a `glibc.malloc.` tunable, or a `MALLOC_*` variable, nothing is added.

/// glibc's variable for tunables, `name=value` pairs separated by colons.
pub const TUNABLES_VAR: &str = "GLIBC_TUNABLES";

/// mmap off (every block comes from the heap) and a trim threshold of 1 TiB (never trim).
pub const KEEP_FREED: &str = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776";

/// Every thread allocates from the main heap; for ranks that train on the CPU ([`Arenas`]).
pub const ONE_ARENA: &str = "glibc.malloc.arena_max=1";

/// Whether a trainer's threads share the main heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arenas {
    /// [`ONE_ARENA`]: the process's tensors live in host memory.
    One,
    /// glibc's default: tensors live on a GPU, or the process computes on one thread.
    PerThread,
}

impl Arenas {
    /// For a rank on `device` (`cpu` or `cuda:N`, as a rank's plan says).
    pub fn for_device(device: &str) -> Self {
        if device == "cpu" {
            Arenas::One
        } else {
            Arenas::PerThread
        }
    }
}

/// Set beside the tunables, so the trainer can tell ours from a user's: the same string without
/// it is the user's own tuning, which the trainer leaves alone and logs as such.
pub const MARKER_VAR: &str = "GANLAUNCH_HOST_MALLOC";
pub const MARKER_VALUE: &str = "keep-freed";

/// How a process's malloc is set up, read from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MallocSetup {
    /// The launcher started the process with [`KEEP_FREED`], as [`MARKER_VAR`] says.
    KeepsFreed,
    /// The user tunes malloc through this variable (`KEY=VALUE`); left as it is.
    UserTuned(String),
    /// glibc's defaults.
    Default,
}

impl MallocSetup {
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut setup = MallocSetup::Default;
        for (key, value) in vars {
            if key == MARKER_VAR && value == MARKER_VALUE {
                return MallocSetup::KeepsFreed;
            }
            let user_tuned = (key == TUNABLES_VAR && value.contains("glibc.malloc."))
                // glibc's own MALLOC_ARENA_MAX, MALLOC_TRIM_THRESHOLD_, ...; MALLOC_CONF is jemalloc's.
                || (key.starts_with("MALLOC_") && key != "MALLOC_CONF");
            if user_tuned {
                setup = MallocSetup::UserTuned(format!("{key}={value}"));
            }
        }
        setup
    }

    pub fn from_process() -> Self {
        Self::from_vars(process_vars())
    }
}

/// The variables a trainer process should start with, given the launcher's own environment:
/// `GLIBC_TUNABLES` with [`KEEP_FREED`] (and [`ONE_ARENA`] when asked) after any tunables already
/// there, and the marker; nothing when the user tunes malloc (or it is set up already).
pub fn trainer_env(
    vars: impl IntoIterator<Item = (String, String)>,
    arenas: Arenas,
) -> Vec<(&'static str, String)> {
    let vars: Vec<_> = vars.into_iter().collect();
    if MallocSetup::from_vars(vars.iter().cloned()) != MallocSetup::Default {
        return Vec::new();
    }
    let mut tunables: Vec<&str> = vars
        .iter()
        .find(|(k, v)| k == TUNABLES_VAR && !v.is_empty())
        .map(|(_, other)| other.as_str())
        .into_iter()
        .collect();
    tunables.push(KEEP_FREED);
    if arenas == Arenas::One {
        tunables.push(ONE_ARENA);
    }
    vec![(TUNABLES_VAR, tunables.join(":")), (MARKER_VAR, MARKER_VALUE.to_string())]
}

/// [`trainer_env`] for this process's environment.
pub fn trainer_env_here(arenas: Arenas) -> Vec<(&'static str, String)> {
    trainer_env(process_vars(), arenas)
}

/// This process's environment: the variables whose names and values are UTF-8.
fn process_vars() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn trainers_keep_freed_memory_unless_the_user_tunes_malloc() {
        use Arenas::PerThread;
        let plain = vars(&[("PATH", "/bin"), ("MALLOC_CONF", "dirty_decay_ms:0")]);
        assert_eq!(MallocSetup::from_vars(plain.clone()), MallocSetup::Default);
        let marker = (MARKER_VAR, MARKER_VALUE.to_string());
        assert_eq!(trainer_env(plain, PerThread), [(TUNABLES_VAR, KEEP_FREED.to_string()), marker.clone()]);
        // Other parts' tunables stay, ours go after them.
        let rseq = vars(&[(TUNABLES_VAR, "glibc.pthread.rseq=0")]);
        let value = format!("glibc.pthread.rseq=0:{KEEP_FREED}");
        assert_eq!(trainer_env(rseq, PerThread), [(TUNABLES_VAR, value.clone()), marker.clone()]);
        // The trainer sees the marker beside the whole tunables, and adds nothing.
        let started = vars(&[(TUNABLES_VAR, &value), (MARKER_VAR, MARKER_VALUE)]);
        assert_eq!(MallocSetup::from_vars(started.clone()), MallocSetup::KeepsFreed);
        assert_eq!(trainer_env(started, PerThread), []);
        // Without the marker the tunables are someone else's, even when they read like ours.
        let bare = MallocSetup::from_vars(vars(&[(TUNABLES_VAR, &value)]));
        assert_eq!(bare, MallocSetup::UserTuned(format!("{TUNABLES_VAR}={value}")));
        // The user's malloc settings win, through either kind of variable.
        for (key, value) in [
            (TUNABLES_VAR, "glibc.malloc.trim_threshold=1"),
            (TUNABLES_VAR, "glibc.pthread.rseq=0:glibc.malloc.arena_max=2"),
            ("MALLOC_ARENA_MAX", "2"),
        ] {
            let user = vars(&[(key, value)]);
            assert_eq!(
                MallocSetup::from_vars(user.clone()),
                MallocSetup::UserTuned(format!("{key}={value}"))
            );
            assert_eq!(trainer_env(user, Arenas::One), []);
        }
    }

    /// A rank on the CPU shares the main heap across its threads; one on a GPU does not.
    #[test]
    fn ranks_on_a_cpu_keep_one_arena() {
        assert_eq!(Arenas::for_device("cpu"), Arenas::One);
        assert_eq!(Arenas::for_device("cuda:3"), Arenas::PerThread);
        let rseq = vars(&[(TUNABLES_VAR, "glibc.pthread.rseq=0")]);
        let env = trainer_env(rseq, Arenas::for_device("cpu"));
        assert_eq!(env[0], (TUNABLES_VAR, format!("glibc.pthread.rseq=0:{KEEP_FREED}:{ONE_ARENA}")));
        assert_eq!(
            trainer_env(vec![], Arenas::for_device("cuda:0"))[0],
            (TUNABLES_VAR, KEEP_FREED.to_string())
        );
    }
}
