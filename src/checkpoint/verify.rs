//! Checking a checkpoint before anyone trusts it: the manifest's own hash, its format, and every
//! listed file's size and BLAKE3; tensor files must also parse as safetensors.
use std::io::Read;
use std::path::{Path, PathBuf};

use super::manifest::{Manifest, TrainState, FORMAT, FORMAT_VERSION};
use super::safetensors::TensorFile;
use super::{MANIFEST_FILE, MANIFEST_HASH_FILE, STATE_FILE};

/// A checkpoint that verified.
#[derive(Clone, Debug)]
pub struct Verified {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub state: TrainState,
}

/// Verifies the checkpoint in `dir`; the error says what is wrong, naming the file.
pub fn verify(dir: &Path) -> Result<Verified, String> {
    open(dir, true)
}

/// Reads the manifest and state of a checkpoint another process has just verified, without
/// hashing every file again (the other ranks of a job, after rank 0 chose it).
pub fn open_verified_by_peer(dir: &Path) -> Result<Verified, String> {
    open(dir, false)
}

/// Cheap soundness (for retention, which runs after every commit): the manifest matches its hash
/// and every file it lists has its size. Catches truncation and lost files, not bit rot; resume
/// still verifies every byte.
pub fn looks_sound(dir: &Path) -> bool {
    open(dir, false).is_ok_and(|v| {
        v.manifest
            .files
            .iter()
            .all(|f| std::fs::metadata(dir.join(&f.name)).is_ok_and(|m| m.len() == f.bytes))
    })
}

fn open(dir: &Path, check_files: bool) -> Result<Verified, String> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest_bytes = std::fs::read(&manifest_path)
        .map_err(|e| format!("{MANIFEST_FILE} unreadable ({e}): partial write?"))?;
    let recorded = std::fs::read_to_string(dir.join(MANIFEST_HASH_FILE))
        .map_err(|e| format!("{MANIFEST_HASH_FILE} unreadable ({e})"))?;
    if recorded.trim() != blake3::hash(&manifest_bytes).to_hex().as_str() {
        return Err(format!("{MANIFEST_FILE} does not match {MANIFEST_HASH_FILE} (corrupted)"));
    }
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| format!("{MANIFEST_FILE} is not a manifest: {e}"))?;
    if manifest.format != FORMAT || manifest.format_version != FORMAT_VERSION {
        return Err(format!(
            "format {} v{} (this build reads {FORMAT} v{FORMAT_VERSION})",
            manifest.format, manifest.format_version
        ));
    }
    for entry in manifest.files.iter().filter(|_| check_files) {
        let path = dir.join(&entry.name);
        let (bytes, hash) = hash_file(&path).map_err(|e| format!("{}: {e}", entry.name))?;
        if bytes != entry.bytes {
            return Err(format!(
                "{} has {bytes} bytes, the manifest says {} (truncated?)",
                entry.name, entry.bytes
            ));
        }
        if hash != entry.blake3 {
            return Err(format!("{} fails its BLAKE3 check (corrupted)", entry.name));
        }
        if entry.name.ends_with(".safetensors") {
            TensorFile::open(&path).map_err(|e| e.to_string())?;
        }
    }
    let state_bytes = std::fs::read(dir.join(STATE_FILE)).map_err(|e| format!("{STATE_FILE}: {e}"))?;
    if !manifest.files.iter().any(|f| f.name == STATE_FILE) {
        return Err(format!("the manifest does not list {STATE_FILE}"));
    }
    let state: TrainState = serde_json::from_slice(&state_bytes)
        .map_err(|e| format!("{STATE_FILE} is not a train state: {e}"))?;
    if state.step != manifest.step || state.cur_nimg != manifest.cur_nimg {
        return Err(format!("{STATE_FILE} disagrees with the manifest about the step"));
    }
    Ok(Verified { dir: dir.to_path_buf(), manifest, state })
}

/// Size and BLAKE3 of a file, read in large blocks.
fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 4 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hasher.finalize().to_hex().to_string()))
}
