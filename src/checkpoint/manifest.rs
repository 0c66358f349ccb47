//! What a checkpoint says about itself: `manifest.json` (format, versions, every file with its
//! size and BLAKE3) and `state.json` (where training stood).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Format name in every manifest.
pub const FORMAT: &str = "gan-launch-checkpoint";
/// Bumped when the layout changes incompatibly; older versions are refused with a message.
pub const FORMAT_VERSION: u32 = 1;

/// One file of a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    /// BLAKE3 of the whole file, hex.
    pub blake3: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub step: u64,
    pub cur_nimg: u64,
    /// RFC 3339, UTC.
    pub created: String,
    /// Ranks of the run that wrote it (a resume may use another count).
    pub world_size: u32,
    /// Network family (`model.arch`), for a quick compatibility check before any tensor is read.
    pub arch: String,
    pub git_commit: String,
    pub crate_version: String,
    pub libtorch_version: String,
    pub files: Vec<FileEntry>,
    /// Evaluation of this checkpoint's G_ema, when one ran at its step (`fid`, `kid`, `is`):
    /// what `checkpoint.keep_best` ranks by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

impl Manifest {
    /// Total size of the checkpoint's files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    pub fn kimg(&self) -> f64 {
        self.cur_nimg as f64 / 1000.0
    }
}

/// Where training stood when the checkpoint was taken (between two steps, at a tick boundary).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: u64,
    /// Real images shown to D so far.
    pub cur_nimg: u64,
    /// Ticks completed (the next tick report has this number).
    pub tick: u64,
    /// Global position of the data stream (images handed to training by all ranks together).
    pub data_consumed: u64,
    /// Global batch of the run that wrote it.
    pub batch_size: u32,
    /// Every rank's random streams at this step, in rank order.
    pub ranks: Vec<RankState>,
    /// Augmentation state (e.g. `ada_p` and its statistics), by name.
    #[serde(default)]
    pub augment: BTreeMap<String, f64>,
    /// Running values of regularisers (e.g. `pl_mean`), by name.
    #[serde(default)]
    pub regularisers: BTreeMap<String, f64>,
    /// Evaluation history: best values by metric (the lowest `fid`; the highest `recall` and
    /// `coverage`, which mode dropping is measured against).
    #[serde(default)]
    pub best_metrics: BTreeMap<String, f64>,
    /// Rollbacks (non-finite loss, mode dropping) in this run's history so far: they key the ranks'
    /// random streams (`rng::rollback_seed`), so a resume continues on the same streams.
    #[serde(default)]
    pub rollbacks: u32,
    /// The dataset trained on, so a resume on another one is caught (None in checkpoints
    /// written before it was recorded).
    #[serde(default)]
    pub dataset: Option<crate::data::identity::DatasetIdentity>,
    /// The checkpoint whose networks the run started from (`checkpoint.init_from`), carried
    /// through every resume: a fine-tuned model says what it was fine-tuned from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<InitSource>,
}

/// A checkpoint a run took its initial networks from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InitSource {
    /// The checkpoint directory, as resolved when the run started.
    pub path: String,
    pub step: u64,
    pub cur_nimg: u64,
    /// The dataset it had been trained on.
    pub dataset: Option<crate::data::identity::DatasetIdentity>,
}

impl InitSource {
    /// e.g. "runs/ffhq/checkpoints/step-00012000 (step 12000, 768.000 kimg, trained on ...)".
    pub fn describe(&self) -> String {
        let data = self.dataset.as_ref().map_or(String::new(), |d| format!(", trained on {}", d.describe()));
        format!("{} (step {}, {:.3} kimg{data})", self.path, self.step, self.cur_nimg as f64 / 1000.0)
    }
}

/// A rank's random state. Torch's generators (CPU and CUDA) are reseeded at every step from the
/// rank's seed and the step, and the flip stream is a function of the data position, so these
/// numbers are the whole state; a resumed rank checks that it derives the same ones.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RankState {
    pub rank: u32,
    /// The rank's stream seed (latents, labels, augmentation).
    pub seed: u64,
    /// The seed torch's generators get at the next step.
    pub next_step_torch_seed: u64,
}
