//! Layered loading: YAML file, then `GAN_`-prefixed environment variables, then `--set` overrides,
//! each layer replacing single keys of the one before. The merge is done by the `config` crate; the
//! typed deserialisation goes through `serde_path_to_error` so every error names its key path.
use std::collections::HashMap;
use std::path::Path;

use config::{Config, Environment, File, FileFormat};

use super::schema::RunConfig;
use crate::error::{Error, Result};

/// Environment prefix: `GAN_TRAIN__BATCH_SIZE=64` sets `train.batch_size`. Sections and keys are
/// separated by a double underscore because keys themselves contain single underscores.
pub const ENV_PREFIX: &str = "GAN";
const ENV_SEPARATOR: &str = "__";

/// One `--set section.key=value` override. The value is read as YAML, so `3`, `true`, `hinge` and
/// `[0.0, 0.99]` all mean what they look like.
#[derive(Clone, Debug, PartialEq)]
pub struct SetOverride {
    pub key: String,
    pub value: String,
}

impl std::str::FromStr for SetOverride {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::Config {
            key: "--set".into(),
            message: format!("`{text}` {why}; expected section.key=value, e.g. train.batch_size=64"),
            origin: String::new(),
        };
        let (key, value) = text.split_once('=').ok_or_else(|| bad("has no `=`"))?;
        let key = key.trim();
        let valid_part = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !key.split('.').all(valid_part) {
            return Err(bad("has an invalid key"));
        }
        Ok(SetOverride { key: key.to_string(), value: value.trim().to_string() })
    }
}

impl SetOverride {
    /// `key=value`, as `--set` would give it.
    pub fn new(key: &str, value: impl ToString) -> Self {
        SetOverride { key: key.into(), value: value.to_string() }
    }
}

/// Loads and validates `path` with the process environment and the given overrides.
pub fn load(path: &Path, sets: &[SetOverride]) -> Result<RunConfig> {
    load_with_env(path, sets, std::env::vars())
}

/// Loads `path` with an explicit environment (tests pass their own instead of mutating the process's).
pub fn load_with_env(
    path: &Path,
    sets: &[SetOverride],
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<RunConfig> {
    load_checked(path, sets, env, super::validate)
}

fn load_checked(
    path: &Path,
    sets: &[SetOverride],
    env: impl IntoIterator<Item = (String, String)>,
    validate: fn(&RunConfig) -> Result<()>,
) -> Result<RunConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::ConfigFile { path: path.to_path_buf(), message: e.to_string() })?;
    resolve_text(&text, path, sets, env, validate)
}

/// Merges the YAML `text` (read from `path`, which names it in errors and gives `run.name` its
/// default) with the environment and overrides, then deserialises and validates it.
fn resolve_text(
    text: &str,
    path: &Path,
    sets: &[SetOverride],
    env: impl IntoIterator<Item = (String, String)>,
    validate: fn(&RunConfig) -> Result<()>,
) -> Result<RunConfig> {
    let env: HashMap<String, String> = env.into_iter().filter(|(k, _)| is_config_env(k)).collect();
    let mut builder = Config::builder().add_source(File::from_str(text, FileFormat::Yaml)).add_source(
        Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("_")
            .separator(ENV_SEPARATOR)
            .try_parsing(true)
            .source(Some(env.clone().into_iter().collect())),
    );
    for set in sets {
        builder = builder.add_source(File::from_str(&set_as_yaml(set), FileFormat::Yaml));
    }
    let merged = builder
        .build()
        .map_err(|e| Error::ConfigFile { path: path.to_path_buf(), message: strip_origin(&e.to_string()) })?;
    let mut cfg: RunConfig = serde_path_to_error::deserialize(merged.clone()).map_err(|e| {
        // A missing key is reported with every other missing one and what each takes; an unknown
        // key (a typo, often the reason another is missing) is reported as such first.
        let missing = missing_field_key(&strip_origin(&e.inner().to_string())).is_some();
        match super::required::check_required(&merged) {
            Err(all_missing) if missing => all_missing,
            _ => deserialize_error(&merged, &e.path().to_string(), e.inner(), sets, &env),
        }
    })?;
    if cfg.run.name.is_none() {
        cfg.run.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    }
    validate(&cfg).map_err(|e| match e {
        Error::Config { key, message, .. } => {
            let origin = origin_of(&key, sets, &env);
            Error::Config { key, message, origin }
        }
        other => other,
    })?;
    Ok(cfg)
}

/// Reads a resolved config written by [`super::save_resolved`] without applying env or overrides
/// again (ranks read what the launcher resolved, so every rank sees the same values).
pub fn load_resolved(path: &Path) -> Result<RunConfig> {
    load_checked(path, &[], std::iter::empty(), super::validate)
}

/// A resolved config held in memory (the metadata of an exported G_ema file), as
/// [`load_resolved`] reads one from a file; `origin` names where it came from in errors.
pub fn parse_resolved(text: &str, origin: &Path) -> Result<RunConfig> {
    resolve_text(text, origin, &[], std::iter::empty(), super::validate)
}

/// Only `GAN_<SECTION>__<KEY>` variables are config; other `GAN_*` variables belong to the user.
fn is_config_env(name: &str) -> bool {
    name.strip_prefix("GAN_").is_some_and(|rest| rest.contains(ENV_SEPARATOR))
}

fn env_key(name: &str) -> String {
    name["GAN_".len()..].to_lowercase().replace(ENV_SEPARATOR, ".")
}

/// `train.batch_size=3` becomes the YAML document `{train: {batch_size: 3}}`.
fn set_as_yaml(set: &SetOverride) -> String {
    let parts: Vec<&str> = set.key.split('.').collect();
    let mut doc = String::new();
    for (depth, part) in parts.iter().enumerate() {
        doc.push_str(&"  ".repeat(depth));
        doc.push_str(part);
        doc.push(':');
        doc.push(if depth + 1 == parts.len() { ' ' } else { '\n' });
    }
    doc.push_str(if set.value.is_empty() { "''" } else { &set.value });
    doc.push('\n');
    doc
}

fn deserialize_error(
    merged: &Config,
    path: &str,
    inner: &config::ConfigError,
    sets: &[SetOverride],
    env: &HashMap<String, String>,
) -> Error {
    let message = strip_origin(&inner.to_string());
    // serde reports an unknown key at its parent's path; name the key itself. The config crate
    // names a missing one in full.
    let key = match (unknown_field_name(&message), missing_field_key(&message)) {
        (_, Some(missing)) => missing.to_string(),
        (Some(field), _) if path == "." || path.is_empty() => field.to_string(),
        (Some(field), _) if !path.ends_with(field) => format!("{path}.{field}"),
        _ => path.to_string(),
    };
    // A scalar's value helps ("got 3"); a whole section's, printed in hash order, does not.
    let value =
        merged.get::<config::Value>(&key).ok().filter(|v| !matches!(v.kind, config::ValueKind::Table(_)));
    let message = match value.map(|v| v.to_string()) {
        Some(v) if !message.contains(&v) => format!("value {v:?}: {message}"),
        _ => message,
    };
    Error::Config { key: key.clone(), message, origin: origin_of(&key, sets, env) }
}

/// The config crate appends " for key `x` in <source>"; we print the key ourselves.
fn strip_origin(message: &str) -> String {
    message.split(" for key `").next().unwrap_or(message).to_string()
}

fn missing_field_key(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing configuration field \"")?;
    rest.split('"').next()
}

fn unknown_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// Names the layer that supplied `key`, so a bad value can be traced to where it was set.
fn origin_of(key: &str, sets: &[SetOverride], env: &HashMap<String, String>) -> String {
    let covers = |k: &str| k == key || key.starts_with(&format!("{k}.")) || k.starts_with(&format!("{key}."));
    if let Some(set) = sets.iter().rev().find(|s| covers(&s.key)) {
        return format!(" (set by --set {}={})", set.key, set.value);
    }
    if let Some((name, value)) = env.iter().find(|(name, _)| covers(&env_key(name))) {
        return format!(" (set by environment {name}={value})");
    }
    String::new()
}
