//! Writing one checkpoint: files go into `step-NNNNNNNN.tmp/`, each fsynced as it is written;
//! then the manifest (listing every file with its hash) and its hash, an fsync of the
//! directory, the rename to `step-NNNNNNNN/` (the commit point), an fsync of the parent,
//! `latest`, and only then retention. A crash at any point leaves either the previous
//! checkpoints untouched plus a `.tmp` that is never loaded, or the new one committed.
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::fault;
use super::layout::Checkpoints;
use super::layout::Retention;
use super::manifest::{FileEntry, Manifest};
use super::safetensors::{write_tensors, RawTensor};
use super::{MANIFEST_FILE, MANIFEST_HASH_FILE};
use crate::error::{Error, Result};
use crate::fsutil;

/// A checkpoint being written.
pub struct PendingCheckpoint {
    checkpoints: Checkpoints,
    step: u64,
    tmp: PathBuf,
    files: Vec<FileEntry>,
}

impl Checkpoints {
    /// Starts writing the checkpoint of `step` (a stale `.tmp` of the same step is replaced).
    pub fn begin(&self, step: u64) -> Result<PendingCheckpoint> {
        let tmp = self.tmp_dir(step);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(Error::io("remove", &tmp))?;
        }
        fsutil::create_dir_all(&tmp)?;
        Ok(PendingCheckpoint { checkpoints: self.clone(), step, tmp, files: Vec::new() })
    }
}

impl PendingCheckpoint {
    /// Adds a safetensors file.
    pub fn write_tensors(
        &mut self,
        name: &str,
        tensors: &[RawTensor],
        metadata: &BTreeMap<String, String>,
    ) -> Result<()> {
        let path = self.tmp.join(name);
        fault::disk_full(&path)?;
        let entry = write_tensors(&path, tensors, metadata)?;
        self.files.push(entry);
        Ok(())
    }

    /// Adds a JSON file.
    pub fn write_json(&mut self, name: &str, value: &impl Serialize) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).expect("checkpoint JSON always serialises");
        self.write_bytes(name, &bytes)
    }

    /// Adds a file with the given content.
    pub fn write_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.tmp.join(name);
        fsutil::write_synced(&path, bytes)?;
        self.files.push(FileEntry {
            name: name.into(),
            bytes: bytes.len() as u64,
            blake3: blake3::hash(bytes).to_hex().to_string(),
        });
        Ok(())
    }

    /// Writes the manifest (`files` filled in from what was written), commits, points `latest`
    /// here and applies `retention`. Returns the committed directory.
    pub fn commit(self, mut manifest: Manifest, retention: impl Into<Retention>) -> Result<PathBuf> {
        let retention = retention.into();
        manifest.step = self.step;
        manifest.files = self.files;
        fault::point("before-manifest");
        let bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest always serialises");
        fsutil::write_synced(&self.tmp.join(MANIFEST_FILE), &bytes)?;
        fsutil::write_synced(
            &self.tmp.join(MANIFEST_HASH_FILE),
            format!("{}\n", blake3::hash(&bytes).to_hex()).as_bytes(),
        )?;
        fsutil::sync_dir(&self.tmp)?;
        fault::point("before-rename");
        let dir = self.checkpoints.step_dir(self.step);
        // The same step committed before (a run stopped again right after resuming): move the
        // old one aside first, and delete it only once the new one is in place.
        let old = self.checkpoints.old_dir(self.step);
        let replaced = dir.exists();
        if replaced {
            std::fs::rename(&dir, &old).map_err(Error::io("rename", &dir))?;
        }
        std::fs::rename(&self.tmp, &dir).map_err(Error::io("rename", &self.tmp))?;
        fsutil::sync_dir(&self.checkpoints.root)?;
        if replaced {
            std::fs::remove_dir_all(&old).map_err(Error::io("remove", &old))?;
        }
        fault::point("before-latest");
        self.checkpoints.set_latest(self.step)?;
        fault::point("before-retention");
        for removed in self.checkpoints.retain(retention, self.step)? {
            tracing::info!(
                path = %removed.display(),
                "removed an old checkpoint (checkpoint.keep_last {}, keep_best {})",
                retention.keep_last,
                retention.keep_best
            );
        }
        Ok(dir)
    }

    /// Gives up on this checkpoint (after a write error), removing its temporary directory.
    pub fn abandon(self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}
