//! Loading the FID Inception's weights: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, a
//! torch zip pickle read directly by libtorch, matched to the network's variables by name. Loading
//! is strict: a missing tensor or a wrong shape is an error naming it (extra entries such as
//! BN's `num_batches_tracked` are ignored). The file's SHA-256 says whether it is the standard
//! network (prefix `6726825d`), which decides how its numbers may be labelled.
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tch::{nn, Tensor};

use gan_core::error::{Error, Result};

/// The standard weights' file name and the prefix of its SHA-256 (the torch-hub convention).
pub const STANDARD_FILE: &str = "pt_inception-2015-12-05-6726825d.pth";
pub const STANDARD_SHA256_PREFIX: &str = "6726825d";
/// Where pytorch-fid downloads them from.
pub const STANDARD_URL: &str =
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth";

/// Which feature network a set of weights is: the standard one, or another named by its hash
/// (metrics from it must never be labelled as standard FID).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeatureNet {
    /// pytorch-fid's Inception (TF 2015-12-05 weights).
    Standard,
    /// Other weights in the same architecture, by the first 16 hex digits of their SHA-256.
    Custom { sha256_prefix: String },
}

impl FeatureNet {
    /// The label metrics carry.
    pub fn label(&self) -> String {
        match self {
            FeatureNet::Standard => "inception-2015-12-05".into(),
            FeatureNet::Custom { sha256_prefix } => format!("custom-inception-{sha256_prefix}"),
        }
    }
}

/// SHA-256 of a file, in hex.
pub fn sha256_hex(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(Error::io("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(Error::io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Classifies the weights file by its hash.
pub fn identify(path: &Path) -> Result<FeatureNet> {
    let hash = sha256_hex(path)?;
    Ok(if hash.starts_with(STANDARD_SHA256_PREFIX) {
        FeatureNet::Standard
    } else {
        FeatureNet::Custom { sha256_prefix: hash[..16].to_string() }
    })
}

/// Copies the tensors of the state dict at `path` into every variable of `vs`, by name. The file
/// is a torch `.pth` (zip pickle, as the standard file) or, by its extension, `.safetensors` with
/// the same names.
pub fn load_into(vs: &nn::VarStore, path: &Path) -> Result<()> {
    let entries = if path.extension().is_some_and(|e| e == "safetensors") {
        Tensor::read_safetensors(path)
    } else {
        Tensor::loadz_multi(path)
    }
    .map_err(|e| Error::Tensor(format!("{} is not a readable torch state dict: {e}", path.display())))?;
    let by_name: HashMap<String, Tensor> = entries.into_iter().collect();
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in &names {
        let var = &vars[*name];
        match by_name.get(*name) {
            None => missing.push((*name).clone()),
            Some(t) if t.size() != var.size() => {
                wrong.push(format!("{name}: file {:?}, network {:?}", t.size(), var.size()));
            }
            Some(t) => tch::no_grad(|| var.shallow_clone().copy_(&t.to_device(var.device()))),
        }
    }
    if !missing.is_empty() || !wrong.is_empty() {
        let mut msg = "does not fit pytorch-fid's Inception:".to_string();
        if !missing.is_empty() {
            msg += &format!(" missing {} tensor(s): {}", missing.len(), summarise(&missing));
        }
        if !wrong.is_empty() {
            msg += &format!(" wrong shape: {}", summarise(&wrong));
        }
        return Err(Error::Checkpoint { path: path.to_path_buf(), message: msg });
    }
    Ok(())
}

fn summarise(items: &[String]) -> String {
    let shown: Vec<&str> = items.iter().take(5).map(String::as_str).collect();
    let more = if items.len() > 5 { format!(" and {} more", items.len() - 5) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

/// Where the standard weights are looked for: `$GAN_FID_WEIGHTS`, then the cache directory
/// ([`gan_core::cache::dir`], `~/.cache/gan-launch/` by default), in that order.
pub fn standard_locations() -> Vec<PathBuf> {
    let explicit = std::env::var_os("GAN_FID_WEIGHTS").filter(|p| !p.is_empty()).map(PathBuf::from);
    explicit.into_iter().chain([gan_core::cache::dir().join(STANDARD_FILE)]).collect()
}

/// The weights to use: `explicit` (any file of the right architecture, labelled by its hash;
/// with the setting or flag that named it), or the standard file from [`standard_locations`],
/// downloaded there when missing, `may_download` and the address is reachable. Without them the
/// error says where to put the file.
pub fn resolve(explicit: Option<(&Path, &str)>, may_download: bool) -> Result<(PathBuf, FeatureNet)> {
    if let Some((path, named_by)) = explicit {
        gan_core::config::check_weights_file(path, named_by)?;
        return Ok((path.to_path_buf(), identify(path)?));
    }
    let locations = standard_locations();
    let found = locations.iter().find(|p| p.is_file()).cloned();
    let dest = locations.last().expect("the user cache is always a location");
    let path = match found {
        Some(path) => path,
        None if may_download => download(dest)?,
        None => return Err(Error::Env(where_to_put(dest))),
    };
    match identify(&path)? {
        FeatureNet::Standard => Ok((path, FeatureNet::Standard)),
        FeatureNet::Custom { sha256_prefix } => Err(Error::Checkpoint {
            path,
            message: format!(
                "is not pytorch-fid's Inception (SHA-256 starts {sha256_prefix}, expected {STANDARD_SHA256_PREFIX}); \
                 pass it with --weights to use it anyway (results are then labelled custom)"
            ),
        }),
    }
}

fn where_to_put(dest: &Path) -> String {
    format!(
        "FID needs pytorch-fid's Inception weights: download {STANDARD_URL} and put it at {} \
         (or point GAN_FID_WEIGHTS at it), or pass other weights with --weights (labelled custom)",
        dest.display()
    )
}

/// Fetches the standard file with torch's own hub downloader (which checks the hash prefix) from
/// the venv libtorch came from.
fn download(dest: &Path) -> Result<PathBuf> {
    let python = PathBuf::from(env!("GAN_BUILD_PYTHON"));
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
    }
    tracing::info!(url = STANDARD_URL, dest = %dest.display(), "downloading the FID Inception weights");
    let script = format!(
        "import socket, torch.hub; socket.setdefaulttimeout(60); torch.hub.download_url_to_file({STANDARD_URL:?}, {:?}, hash_prefix={STANDARD_SHA256_PREFIX:?})",
        dest.display().to_string()
    );
    let ok = std::process::Command::new(&python)
        .args(["-c", &script])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok && dest.is_file() {
        Ok(dest.to_path_buf())
    } else {
        Err(Error::Env(format!("{} (the download failed)", where_to_put(dest))))
    }
}
