//! Small filesystem helpers with paths in their errors.
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes `bytes` to `path` through a temporary file in the same directory, fsynced and renamed,
/// so readers see either the old file or the whole new one, and the new one survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_beside(path)?;
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("write", path)(e)
    })
}

/// Replaces `path` with `bytes` through a temporary file and a rename, without fsync: readers
/// never see half a file, but the content may be lost in a crash. For frequently rewritten,
/// disposable state (heartbeats), where an fsync a second would cost more than it protects.
pub fn write_replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_beside(path)?;
    std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path)).map_err(Error::io("write", path))
}

/// A temporary path in `path`'s directory (created if needed): same filesystem, so the final
/// rename is atomic.
fn temp_beside(path: &Path) -> Result<PathBuf> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(dir.join(format!(".{file_name}.tmp{}", std::process::id())))
}

/// Creates `dir` and its parents.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))
}

/// Writes `bytes` to a new file at `path` and fsyncs it (for files inside a directory that is
/// itself committed by a rename).
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    write().map_err(Error::io("write", path))
}

/// Fsyncs a directory, making the creation, removal and renaming of its entries durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io("sync directory", dir))
}
