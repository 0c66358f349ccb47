//! Where gan-launch keeps what outlives a run and is shared between runs: the FID Inception
//! weights and the real-image statistics (`fid-stats/`). `scripts/setup.sh` resolves the same
//! directory for the libtorch venv, so one variable moves all of it.
//!
//! The default is per user (`~/.cache/gan-launch`). A job whose nodes or pods do not share a home
//! (Kubernetes pods, whose home is gone when the pod is) points `GAN_LAUNCH_CACHE` at shared
//! storage, so the statistics of a 50k-image dataset are computed once, not again on every node
//! and after every restart (StyleGAN recomputes them per machine, up to 30 min each).
use std::ffi::OsString;
use std::path::PathBuf;

/// The variable that names the cache directory outright.
pub const CACHE_ENV: &str = "GAN_LAUNCH_CACHE";

/// `$GAN_LAUNCH_CACHE`, else `$XDG_CACHE_HOME/gan-launch`, else `$HOME/.cache/gan-launch`, else
/// a directory under the system's temporary directory.
pub fn dir() -> PathBuf {
    dir_from(|name| std::env::var_os(name))
}

/// [`dir`] with the environment given by `var` (empty values count as unset, as in the shell's
/// `${VAR:-default}`).
pub fn dir_from(var: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(CACHE_ENV) {
        return dir;
    }
    set("XDG_CACHE_HOME")
        .or_else(|| set("HOME").map(|home| home.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("gan-launch")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(vars: &[(&str, &str)]) -> PathBuf {
        dir_from(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v)))
    }

    #[test]
    fn the_cache_variable_wins_then_xdg_then_home() {
        let all = [(CACHE_ENV, "/shared/cache"), ("XDG_CACHE_HOME", "/xdg"), ("HOME", "/home/u")];
        assert_eq!(dir_with(&all), PathBuf::from("/shared/cache"));
        assert_eq!(dir_with(&all[1..]), PathBuf::from("/xdg/gan-launch"));
        assert_eq!(dir_with(&all[2..]), PathBuf::from("/home/u/.cache/gan-launch"));
        assert_eq!(
            dir_with(&[(CACHE_ENV, ""), ("HOME", "/home/u")]),
            PathBuf::from("/home/u/.cache/gan-launch")
        );
        assert_eq!(dir_with(&[]), std::env::temp_dir().join("gan-launch"));
    }
}
