//! The options of `eval`, shared by `gan-launch eval` (which resolves and verifies the
//! checkpoint) and `gan-train eval` (which computes the metric), so the two command lines cannot
//! drift apart.
use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// A metric over Inception features (SPECS.md 1, 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EvalMetric {
    /// Fréchet Inception Distance (pytorch-fid's pipeline) against the run's dataset.
    Fid,
    /// Kernel Inception Distance (unbiased MMD², cubic kernel; 100 subsets of up to 1000).
    Kid,
    /// Inception Score (10 splits, logits without the fc bias).
    Is,
    /// Improved precision and recall (k = 3) of the pool3 features.
    Pr,
    /// Density and coverage (k = 5) of the pool3 features.
    Dc,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// Generated images to score.
    #[arg(long, default_value_t = 50_000)]
    pub num: u64,
    /// Real images for the statistics (default: the whole dataset). Cached per dataset content,
    /// feature network and count.
    #[arg(long)]
    pub num_real: Option<u64>,
    /// Images per forward pass of the feature network.
    #[arg(long, default_value_t = 50)]
    pub batch: u32,
    /// Images the generator makes per forward pass, at most --batch (default: the run's
    /// eval.gen_batch, else --batch). Lower it when generating at high resolution runs out of
    /// memory; the metric does not change.
    #[arg(long)]
    pub gen_batch: Option<u32>,
    /// Other Inception weights (same architecture). Results are then labelled with the file's
    /// hash, never as standard FID. Default: the standard pytorch-fid file from $GAN_FID_WEIGHTS
    /// or the cache directory ($GAN_LAUNCH_CACHE, else ~/.cache/gan-launch/).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Seed of the latents.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Score images drawn with the truncation trick at psi in (0, 1], as `sample --truncation`
    /// draws them (BigGAN's IS/FID trade-off curves); the result line says so.
    #[arg(long, allow_hyphen_values = true)]
    pub truncation: Option<f64>,
}

impl EvalOptions {
    /// The options as command-line arguments (for passing them on to the trainer), each as
    /// `--key=value`, so a value that starts with `-` stays a value.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--num={}", self.num),
            format!("--batch={}", self.batch),
            format!("--seed={}", self.seed),
        ];
        if let Some(n) = self.gen_batch {
            args.push(format!("--gen-batch={n}"));
        }
        if let Some(n) = self.num_real {
            args.push(format!("--num-real={n}"));
        }
        if let Some(w) = &self.weights {
            args.push(format!("--weights={}", w.display()));
        }
        if let Some(psi) = self.truncation {
            args.push(format!("--truncation={psi}"));
        }
        args
    }
}

impl EvalMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            EvalMetric::Fid => "fid",
            EvalMetric::Kid => "kid",
            EvalMetric::Is => "is",
            EvalMetric::Pr => "pr",
            EvalMetric::Dc => "dc",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        options: EvalOptions,
    }

    /// What the launcher passes on parses back to the same options, a path that starts with `-`
    /// included.
    #[test]
    fn options_pass_on_unchanged() {
        use clap::Parser;
        let args = [
            "x",
            "--num",
            "500",
            "--num-real",
            "600",
            "--gen-batch",
            "8",
            "--weights=-w.pth",
            "--seed",
            "3",
            "--truncation",
            "-1",
        ];
        let options = Cli::parse_from(args).options;
        assert_eq!(options.weights.as_deref(), Some(std::path::Path::new("-w.pth")));
        assert_eq!(options.truncation, Some(-1.0), "refused later, saying what psi may be");
        let again = Cli::parse_from(std::iter::once("x".to_string()).chain(options.to_args())).options;
        assert_eq!(again, options);
    }
}
