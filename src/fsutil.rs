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
/// disposable state (heartbeats, flight records), where an fsync a second would cost more than
/// it protects.
///
/// On a full disk or over a quota, where the temporary file cannot be written, an existing file
/// is overwritten in place instead (its blocks are already allocated), padded with spaces to its
/// old length: a rank's heartbeat must go on while its checkpoints fail, or the launcher would
/// take a full disk for a hung rank. A reader may then see one torn write.
pub fn write_replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_beside(path)?;
    match std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            if is_out_of_space(&e) && path.is_file() {
                overwrite_in_place(path, bytes).map_err(Error::io("write", path))
            } else {
                Err(Error::io("write", path)(e))
            }
        }
    }
}

/// ENOSPC (a full disk) or EDQUOT (a quota).
fn is_out_of_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Writes `bytes` over the start of the existing file at `path`, padded with spaces to its
/// length (whitespace that a heartbeat's and a JSON reader skip), so no new block is needed
/// unless the content grows.
fn overwrite_in_place(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    let old_len = file.metadata()?.len() as usize;
    let mut padded = bytes.to_vec();
    padded.resize(padded.len().max(old_len), b' ');
    file.write_all(&padded)
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

/// Appends `line` and a newline to the file at `path`, creating it (records of a line per event,
/// such as `stats.jsonl`: one write of the whole line, so a reader never sees half of one).
pub fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut file =
        std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(Error::io("open", path))?;
    file.write_all(format!("{line}\n").as_bytes()).map_err(Error::io("append to", path))
}

/// Fsyncs a directory, making the creation, removal and renaming of its entries durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io("sync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-place rewrite (what a full disk leaves) keeps the old length, padded with spaces
    /// that a heartbeat's and a JSON reader skip; a longer content grows the file.
    #[test]
    fn an_in_place_rewrite_reads_as_the_new_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rank-0");
        std::fs::write(&path, "123456 7890123").unwrap();
        overwrite_in_place(&path, b"7 448").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "7 448         ");
        let beat = crate::heartbeat::read(&path).unwrap();
        assert_eq!((beat.step, beat.cur_nimg), (7, 448));
        overwrite_in_place(&path, br#"{"step": 8, "activity": "d_main"}"#).unwrap();
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["step"], 8);
        overwrite_in_place(&path, b"{}").unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&path).unwrap()).is_ok());
    }
}
