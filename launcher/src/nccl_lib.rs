//! Making NCCL loadable for GPU ranks. cudarc opens `libnccl.so`, while PyTorch's wheel ships only
//! `libnccl.so.2` (in `site-packages/nvidia/nccl/lib`). The launcher finds that file through the
//! ranks' `LD_LIBRARY_PATH` (a torch `lib` directory next to the wheel's `nvidia/` tree, or NCCL's
//! own directory), links `libnccl.so` to it in the run directory, and puts that directory first
//! on the ranks' loader path: the ranks then load the same NCCL libtorch_cuda uses.
use std::path::{Path, PathBuf};

/// Where `libnccl.so.2` may live relative to a loader-path directory.
const CANDIDATES: [&str; 2] = ["libnccl.so.2", "../../nvidia/nccl/lib/libnccl.so.2"];

/// Finds `libnccl.so.2` from a `LD_LIBRARY_PATH`-style list.
pub fn find_nccl(ld_library_path: &str) -> Option<PathBuf> {
    ld_library_path
        .split(':')
        .filter(|d| !d.is_empty())
        .flat_map(|dir| CANDIDATES.iter().map(move |c| Path::new(dir).join(c)))
        .find(|p| p.is_file())
}

/// Links `dir/libnccl.so` to the NCCL found on `ld_library_path` and returns the loader path
/// the ranks should get, or None when there is no NCCL to link (the rank then says so clearly).
pub fn ranks_library_path(dir: &Path, ld_library_path: &str) -> std::io::Result<Option<String>> {
    let Some(nccl) = find_nccl(ld_library_path) else { return Ok(None) };
    std::fs::create_dir_all(dir)?;
    let link = dir.join("libnccl.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(nccl.canonicalize()?, &link)?;
    Ok(Some(format!("{}:{ld_library_path}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_the_wheels_nccl_next_to_torch_lib() {
        let root = tempfile::tempdir().unwrap();
        let torch_lib = root.path().join("site-packages/torch/lib");
        let nccl_dir = root.path().join("site-packages/nvidia/nccl/lib");
        std::fs::create_dir_all(&torch_lib).unwrap();
        std::fs::create_dir_all(&nccl_dir).unwrap();
        std::fs::write(nccl_dir.join("libnccl.so.2"), b"elf").unwrap();
        let path = format!("/nonexistent:{}", torch_lib.display());
        let links = root.path().join("run/.nccl");
        let new_path = ranks_library_path(&links, &path).unwrap().unwrap();
        assert!(new_path.starts_with(&links.display().to_string()));
        assert_eq!(std::fs::read(links.join("libnccl.so")).unwrap(), b"elf");
        assert_eq!(ranks_library_path(&links, "/nonexistent").unwrap(), None);
    }
}
