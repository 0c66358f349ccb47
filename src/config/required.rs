//! The keys every config must set: hyperparameters with no sensible default (what to train, on
//! what, with which loss and learning rates). When the typed read finds one missing, all of them
//! are looked up on the merged layers, so a config missing several is told all of them at once,
//! with what each takes, instead of one serde error per attempt.
use config::{Config, ValueKind};

use super::{Arch, DataSource, Loss};
use crate::error::{Error, Result};

/// A required key and what it takes.
struct Required {
    key: &'static str,
    takes: Takes,
}

enum Takes {
    OneOf(&'static [&'static str]),
    Described(&'static str),
}

/// Every key of the schema without a serde default (a test keeps this list and the schema equal).
const REQUIRED: &[Required] = &[
    Required { key: "data.source", takes: Takes::OneOf(DataSource::NAMES) },
    Required { key: "data.resolution", takes: Takes::Described("image side in pixels, a power of two") },
    Required { key: "model.arch", takes: Takes::OneOf(Arch::NAMES) },
    Required { key: "train.batch_size", takes: Takes::Described("images per optimizer step over all ranks") },
    Required {
        key: "train.total_kimg",
        takes: Takes::Described("length of training in thousands of images"),
    },
    Required { key: "train.loss", takes: Takes::OneOf(Loss::NAMES) },
    Required { key: "train.g_opt.lr", takes: Takes::Described("G's Adam learning rate") },
    Required { key: "train.d_opt.lr", takes: Takes::Described("D's Adam learning rate") },
];

/// The required keys, in schema order (for the test that keeps them equal to the schema).
#[cfg(test)]
pub(super) fn required_keys() -> impl Iterator<Item = &'static str> {
    REQUIRED.iter().map(|r| r.key)
}

/// Fails naming the first missing required key, and listing every missing one with what it takes.
pub(super) fn check_required(merged: &Config) -> Result<()> {
    let missing: Vec<&Required> = REQUIRED.iter().filter(|r| is_missing(merged, r.key)).collect();
    let Some(first) = missing.first() else {
        return Ok(());
    };
    let listed: Vec<String> =
        missing.iter().map(|r| format!("`{}` ({})", r.key, r.takes.describe())).collect();
    let message = if missing.len() == 1 {
        format!("missing; this key has no default and must be set: {}", listed[0])
    } else {
        format!("missing; these keys have no default and must be set: {}", listed.join(", "))
    };
    Err(Error::Config { key: first.key.to_string(), message, origin: String::new() })
}

/// Missing when the key or one of its parents is absent. A parent that is present but not a table
/// (`g_opt: 0.001`) is the typed read's to report, with its own message.
fn is_missing(merged: &Config, key: &str) -> bool {
    let mut prefix = String::new();
    for part in key.split('.') {
        if !prefix.is_empty() {
            prefix.push('.');
        }
        prefix.push_str(part);
        match merged.get::<config::Value>(&prefix) {
            Err(_) => return true,
            Ok(value) if matches!(value.kind, ValueKind::Nil) => return true,
            Ok(value) if prefix.len() < key.len() && !matches!(value.kind, ValueKind::Table(_)) => {
                return false
            }
            Ok(_) => {}
        }
    }
    false
}

impl Takes {
    fn describe(&self) -> String {
        match self {
            Takes::OneOf(names) => format!("one of {}", names.join(", ")),
            Takes::Described(what) => (*what).to_string(),
        }
    }
}
