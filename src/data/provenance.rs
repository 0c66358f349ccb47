//! How a prepared dataset was made, recorded in its `index.json` beside the shards: the source,
//! the labels' origin, the resize filter and how many images it shrank, what was converted or
//! skipped, and which build prepared it when.
//!
//! Why: the pixels' content hash says whether two datasets are the same, not how one came about.
//! Months later, an FID that differs by a point from a paper's may be the resize filter (box 4.3,
//! Lanczos 5.3 on FFHQ at 256: SPECS 1.4), a class count that looks wrong may be the labels mode,
//! and neither can be read off the shards. None of this enters the content hash: the same pixels
//! prepared twice are the same dataset.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rundir::{CRATE_VERSION, GIT_COMMIT};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    /// What was read, with its absolute path, e.g. "image folder /data/ffhq", "StyleGAN zip
    /// /data/ffhq256.zip", "generated shapes (8192 images, 4 classes, seed 0)".
    pub source: String,
    /// `--labels` as given, e.g. "folders"; with "auto", the index's classes show what it found.
    pub labels: String,
    /// `--resize-filter`: box, lanczos or bilinear.
    pub resize_filter: String,
    /// Images whose centre crop was larger than the resolution and went through the filter; 0
    /// means the filter never ran.
    pub resized: u64,
    /// Images converted to 8-bit RGB (`--convert`), by their colour type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub converted: BTreeMap<String, u64>,
    /// Images left out (`--skip-bad`).
    #[serde(default)]
    pub skipped: u64,
    /// gan-launch's version and commit.
    pub tool: String,
    /// When the index was written (RFC 3339, UTC).
    pub prepared_at: String,
}

impl Provenance {
    /// A record of this build, now, with the counts left at zero.
    pub fn new(source: String, labels: &str, resize_filter: &str) -> Self {
        Provenance {
            source,
            labels: labels.to_string(),
            resize_filter: resize_filter.to_string(),
            tool: format!("gan-launch {CRATE_VERSION} ({GIT_COMMIT})"),
            prepared_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ..Provenance::default()
        }
    }

    /// The images `--convert` converted, e.g. "12 image(s) (10 L8, 2 Rgba8)"; None when none were.
    pub fn converted_summary(&self) -> Option<String> {
        if self.converted.is_empty() {
            return None;
        }
        let kinds: Vec<String> = self.converted.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
        Some(format!("{} image(s) ({})", self.converted.values().sum::<u64>(), kinds.join(", ")))
    }

    /// One line, e.g. "from image folder /data/ffhq, labels none; 70000 image(s) shrunk with
    /// box; 12 image(s) (12 L8) converted to RGB; 3 skipped; by gan-launch 0.1.0 (5d2c...) at 2026-...".
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("from {}, labels {}", self.source, self.labels)];
        parts.push(match self.resized {
            0 => "no image resized".to_string(),
            n => format!("{n} image(s) shrunk with {}", self.resize_filter),
        });
        if let Some(converted) = self.converted_summary() {
            parts.push(format!("{converted} converted to RGB"));
        }
        if self.skipped > 0 {
            parts.push(format!("{} skipped", self.skipped));
        }
        parts.push(format!("by {} at {}", self.tool, self.prepared_at));
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_what_matters_for_comparisons() {
        let mut p = Provenance::new("image folder /data/afhq/train".into(), "folders", "lanczos");
        assert!(p.tool.starts_with("gan-launch ") && p.prepared_at.ends_with('Z'), "{p:?}");
        assert!(p
            .describe()
            .starts_with("from image folder /data/afhq/train, labels folders; no image resized; by "));
        p.resized = 14630;
        p.converted.insert("L8".into(), 2);
        p.skipped = 1;
        let line = p.describe();
        assert!(
            line.contains(
                "; 14630 image(s) shrunk with lanczos; 2 image(s) (2 L8) converted to RGB; 1 skipped; by "
            ),
            "{line}"
        );
    }
}
