//! Whether a checkpoint fits the config that would start from it: the same architecture, the same
//! dataset (unless `checkpoint.allow_dataset_change`), and networks with the same variables of the
//! same shapes. The ranks check before they load any weights; `gan-launch plan` and `sbatch` check
//! before a job waits for its GPUs, so a resume with an edited `model.*` fails at submission
//! instead of seconds after the nodes are finally allocated.
//!
//! Shapes need the networks, which only the trainer can build; this side compares the shapes it
//! reports ([`NetShapes`]) with the safetensors headers, without reading the weights.
use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::safetensors::TensorFile;
use super::verify::Verified;
use crate::config::diff::Change;
use crate::config::RunConfig;
use crate::data::identity::DatasetIdentity;
use crate::error::{Error, Result};

/// A network's variables (parameters and buffers) by name, with their shapes.
pub type Shapes = BTreeMap<String, Vec<usize>>;

/// The variables of the networks a config builds (G_ema is built as G).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetShapes {
    pub g: Shapes,
    pub d: Shapes,
}

/// Refuses a checkpoint of another architecture than `model.arch`.
pub fn check_arch(from: &Verified, cfg: &RunConfig) -> Result<()> {
    if from.manifest.arch == cfg.model.arch.as_str() {
        return Ok(());
    }
    Err(Error::Checkpoint {
        path: from.dir.clone(),
        message: format!(
            "it holds a {} model and this config trains model.arch {}",
            from.manifest.arch, cfg.model.arch
        ),
    })
}

/// Refuses to resume a checkpoint trained on another dataset than the one the config names (`now`),
/// unless `checkpoint.allow_dataset_change`: then the difference comes back, for a warning.
/// Checkpoints from before datasets were recorded pass.
pub fn check_dataset(from: &Verified, cfg: &RunConfig, now: &DatasetIdentity) -> Result<Option<String>> {
    let Some(why) = from.state.dataset.as_ref().and_then(|saved| saved.differs_from(now)) else {
        return Ok(None);
    };
    if cfg.checkpoint.allow_dataset_change {
        return Ok(Some(format!(
            "resuming {} on another dataset (checkpoint.allow_dataset_change): {why}",
            from.dir.display()
        )));
    }
    Err(Error::Checkpoint {
        path: from.dir.clone(),
        message: format!(
            "{why} Check data.path (and run.seed for generated data); to go on training on the new dataset on \
             purpose, set checkpoint.allow_dataset_change: true (or start a new run from its networks with \
             checkpoint.init_from)"
        ),
    })
}

/// The data settings the networks are built from (the trainer's `NetSpec::from_config`), besides
/// every `model.*` key.
const DATA_KEYS_OF_THE_NETWORKS: [&str; 3] = ["data.resolution", "data.channels", "data.num_classes"];

/// Whether the networks' shapes depend on the setting `key` (`model.*`, and the data's
/// resolution, channels and classes).
pub fn shapes_depend_on(key: &str) -> bool {
    key.starts_with("model.") || DATA_KEYS_OF_THE_NETWORKS.contains(&key)
}

/// Whether the networks may be shaped differently from the checkpoint's after `changes` to the
/// config it was written with: nothing else moves a shape. `None`: the checkpoint's config could
/// not be read, so nothing is known.
pub fn shapes_may_differ(changes: Option<&[Change]>) -> bool {
    changes.is_none_or(|changes| changes.iter().any(|c| shapes_depend_on(&c.key)))
}

/// Refuses a checkpoint whose G, D or G_ema files do not hold exactly `ours`' variables, shape for
/// shape. Reads the files' headers only.
pub fn check_shapes(dir: &Path, ours: &NetShapes) -> Result<()> {
    let files = [
        ("g.safetensors", &ours.g, "G"),
        ("d.safetensors", &ours.d, "D"),
        ("g_ema.safetensors", &ours.g, "G_ema"),
    ];
    for (file, ours, what) in files {
        let path = dir.join(file);
        let theirs = TensorFile::open(&path)?.shapes()?;
        compare(ours, &theirs, what).map_err(|message| Error::Checkpoint { path, message })?;
    }
    Ok(())
}

/// Compares a network's variables with a file's; the message names the first variable that is
/// missing, shaped differently or extra. `what` names the network.
pub fn compare(ours: &Shapes, theirs: &Shapes, what: &str) -> std::result::Result<(), String> {
    let found = |problem: String| {
        Err(format!("{problem}; the checkpoint was written for another {what} (did model.* change?)"))
    };
    for (name, shape) in ours {
        match theirs.get(name) {
            None => return found(format!("{what} variable `{name}` is missing")),
            Some(saved) if saved != shape => {
                return found(format!(
                    "{what} variable `{name}` has shape {saved:?} there, {shape:?} in this model"
                ))
            }
            Some(_) => {}
        }
    }
    match theirs.keys().find(|name| !ours.contains_key(*name)) {
        Some(extra) => found(format!("it has {what} variable `{extra}`, which this model lacks")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(entries: &[(&str, &[usize])]) -> Shapes {
        entries.iter().map(|(name, shape)| (name.to_string(), shape.to_vec())).collect()
    }

    #[test]
    fn compare_names_the_first_variable_that_differs() {
        let ours = shapes(&[("b8.conv0.weight", &[64, 128, 3, 3]), ("b8.conv0.bias", &[64])]);
        assert_eq!(compare(&ours, &ours.clone(), "G"), Ok(()));
        let narrower = shapes(&[("b8.conv0.weight", &[64, 64, 3, 3]), ("b8.conv0.bias", &[64])]);
        let err = compare(&ours, &narrower, "G").unwrap_err();
        assert!(
            err.starts_with("G variable `b8.conv0.weight` has shape [64, 64, 3, 3] there, [64, 128, 3, 3]"),
            "{err}"
        );
        assert!(err.ends_with("written for another G (did model.* change?)"), "{err}");
        let missing = shapes(&[("b8.conv0.weight", &[64, 128, 3, 3])]);
        assert!(compare(&ours, &missing, "D")
            .unwrap_err()
            .starts_with("D variable `b8.conv0.bias` is missing"));
        let mut extra = ours.clone();
        extra.insert("attn.gamma".into(), vec![]);
        let err = compare(&ours, &extra, "G_ema").unwrap_err();
        assert!(err.starts_with("it has G_ema variable `attn.gamma`, which this model lacks"), "{err}");
    }

    #[test]
    fn only_model_and_data_settings_can_move_a_shape() {
        let change = |key: &str| Change { key: key.into(), before: "1".into(), after: "2".into() };
        assert!(!shapes_may_differ(Some(&[])));
        let elsewhere =
            [change("train.g_opt.lr"), change("run.dir"), change("data.path"), change("data.prefetch")];
        assert!(!shapes_may_differ(Some(&elsewhere)));
        assert!(shapes_may_differ(Some(&[change("train.total_kimg"), change("model.channel_max")])));
        assert!(shapes_may_differ(Some(&[change("data.num_classes")])));
        assert!(shapes_may_differ(None), "an unreadable config says nothing");
    }
}
