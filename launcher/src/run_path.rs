//! A run named on the command line: its directory (or a path inside it), or the config file its
//! job was started with. Launching, `plan`, `k8s` and `sbatch` take CONFIG; the commands that look
//! at a run afterwards (`status`, `sample`, `eval`, `ckpt`) take it too, so a user need not know
//! where `run.dir`/`run.name` put the run.
use std::path::{Path, PathBuf};

use gan_core::config;

/// `path` itself, or the run directory of the config file it names (a `.yaml`/`.yml` file,
/// loaded with the GAN_* environment as a launch would; a job started with other `--set`s is
/// named by its directory). A config that does not load is an error naming the key.
pub fn resolve(path: &Path) -> anyhow::Result<PathBuf> {
    if !is_config_file(path) {
        return Ok(path.to_path_buf());
    }
    Ok(config::load(path, &[])?.run_dir())
}

fn is_config_file(path: &Path) -> bool {
    let yaml =
        path.extension().is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    yaml && path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config names its run directory; anything else (a directory, a G_ema file, a path that is
    /// not there) is passed on as it is.
    #[test]
    fn a_config_file_names_its_run_directory() {
        let dir = tempfile::tempdir().unwrap();
        let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/ci-tiny.yaml");
        let text = std::fs::read_to_string(shipped).unwrap();
        let cfg = dir.path().join("job.yaml");
        std::fs::write(&cfg, text.replace("  name: ci-tiny\n", "  name: here\n  dir: /somewhere/runs\n"))
            .unwrap();
        assert_eq!(resolve(&cfg).unwrap(), Path::new("/somewhere/runs/here"));
        let g_ema = dir.path().join("g_ema-final.safetensors");
        std::fs::write(&g_ema, b"x").unwrap();
        for other in [dir.path().to_path_buf(), g_ema, dir.path().join("gone.yaml")] {
            assert_eq!(resolve(&other).unwrap(), other);
        }
        std::fs::write(&cfg, text.replace("batch_size: 32", "batch_size: 0")).unwrap();
        let err = resolve(&cfg).unwrap_err().to_string();
        assert!(err.contains("train.batch_size"), "{err}");
    }
}
