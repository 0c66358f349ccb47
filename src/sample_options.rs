//! The options of drawing an image grid from a checkpoint, shared by `gan-launch sample` (which
//! resolves and verifies the checkpoint) and `gan-train sample` (which draws it), so the two
//! command lines cannot drift apart.
use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug, Clone, PartialEq)]
pub struct SampleOptions {
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
    /// Truncation psi in (0, 1]: BigGAN redraws latents beyond |z| = 2 and scales them by psi;
    /// StyleGAN2 pulls w toward its running mean, w_avg + psi (w - w_avg).
    #[arg(long)]
    pub truncation: Option<f64>,
    /// Draw every image of this class (default: one row per class).
    #[arg(long = "class")]
    pub class: Option<u32>,
    /// Seed of the latents.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SampleOptions {
    /// The options as command-line arguments (for passing them on to the trainer).
    pub fn to_args(&self) -> Vec<String> {
        let mut args =
            vec!["--out".to_string(), self.out.display().to_string(), "--seed".into(), self.seed.to_string()];
        if let Some(psi) = self.truncation {
            args.extend(["--truncation".to_string(), psi.to_string()]);
        }
        if let Some(k) = self.class {
            args.extend(["--class".to_string(), k.to_string()]);
        }
        args
    }
}
