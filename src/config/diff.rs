//! What changed between two resolved configs, key by key: a resume says which settings differ
//! from those its checkpoint was trained with (a changed learning rate or loss is easy to
//! forget, and a run that "got worse after the resume" often started there).
use std::path::Path;

use serde_json::Value;

use super::RunConfig;
use crate::error::Result;

/// Keys that say how a start finds its state, not how training goes: they differ between starts
/// of one run by design.
const START_KEYS: [&str; 2] = ["checkpoint.resume", "checkpoint.init_from"];

/// One changed setting, written `key: before -> after`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    pub before: String,
    pub after: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} -> {}", self.key, self.before, self.after)
    }
}

/// The settings of `after` that differ from `before`, in key order (sections as the schema
/// orders them).
pub fn changes(before: &RunConfig, after: &RunConfig) -> Vec<Change> {
    let before = serde_json::to_value(before).expect("a RunConfig always serialises");
    let after = serde_json::to_value(after).expect("a RunConfig always serialises");
    let mut found = Vec::new();
    walk("", &before, &after, &mut found);
    found.retain(|c| !START_KEYS.contains(&c.key.as_str()));
    found
}

/// The settings of `cfg` that differ from those the checkpoint in `dir` was written with (its
/// resolved `config.yaml`).
pub fn since_checkpoint(dir: &Path, cfg: &RunConfig) -> Result<Vec<Change>> {
    let saved = super::load_resolved(&dir.join("config.yaml"))?;
    Ok(changes(&saved, cfg))
}

/// Every line of the changes, joined for one log line.
pub fn describe(changes: &[Change]) -> String {
    changes.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn walk(prefix: &str, before: &Value, after: &Value, found: &mut Vec<Change>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut keys: Vec<&String> = b.keys().collect();
            keys.extend(a.keys().filter(|k| !b.contains_key(*k)));
            for key in keys {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                let missing = Value::Null;
                walk(&path, b.get(key).unwrap_or(&missing), a.get(key).unwrap_or(&missing), found);
            }
        }
        _ if before != after => {
            found.push(Change { key: prefix.to_string(), before: show(before), after: show(after) })
        }
        _ => {}
    }
}

/// A value as a user writes it in YAML: strings unquoted, nothing as `null`.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `configs/ci-tiny.yaml` with `sets` applied.
    fn config(sets: &[(&str, &str)]) -> RunConfig {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/ci-tiny.yaml");
        let sets: Vec<_> = sets.iter().map(|(k, v)| crate::config::SetOverride::new(k, v)).collect();
        crate::config::load(&path, &sets).unwrap()
    }

    #[test]
    fn changed_settings_are_named_with_both_values() {
        let before = config(&[("train.g_opt.lr", "0.002"), ("train.total_kimg", "1")]);
        let after = config(&[
            ("train.g_opt.lr", "0.001"),
            ("train.total_kimg", "2"),
            ("train.loss", "hinge"),
            ("checkpoint.resume", "none"),
            ("checkpoint.init_from", "/x"),
        ]);
        let found: Vec<String> = changes(&before, &after).iter().map(ToString::to_string).collect();
        assert!(found.contains(&"train.g_opt.lr: 0.002 -> 0.001".to_string()), "{found:?}");
        assert!(found.contains(&"train.total_kimg: 1.0 -> 2.0".to_string()), "{found:?}");
        assert!(found.contains(&"train.loss: ns_logistic -> hinge".to_string()), "{found:?}");
        assert_eq!(found.len(), 3, "how the start finds its state is no change: {found:?}");
        assert!(changes(&before, &before).is_empty());
        let described = describe(&changes(&before, &after));
        assert!(described.contains("0.002 -> 0.001; "), "{described}");
    }
}
