//! The options of drawing an image grid from a checkpoint, shared by `gan-launch sample` (which
//! resolves and verifies the checkpoint) and `gan-train sample` (which draws it), so the two
//! command lines cannot drift apart.
use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};

#[derive(Args, Debug, Clone, PartialEq)]
pub struct SampleOptions {
    /// Output PNG (with --num: a new or empty directory for the images).
    #[arg(long)]
    pub out: PathBuf,
    /// Write this many images, one PNG each (NNNNNN.png), instead of a grid: image i is the
    /// image i that `gan-launch eval` scores with the same --seed (its latent, its label drawn
    /// from the dataset's class mix, its noise), for metrics from other tools (clean-fid,
    /// torch-fidelity) or a look at many samples.
    #[arg(long)]
    pub num: Option<u64>,
    /// Truncation psi in (0, 1]: BigGAN redraws latents beyond |z| = 2 and scales them by psi;
    /// StyleGAN2 pulls w toward its running mean, w_avg + psi (w - w_avg).
    // Hyphen values allowed: `--truncation -1` is then refused saying what psi may be.
    #[arg(long, allow_hyphen_values = true)]
    pub truncation: Option<f64>,
    /// Draw every image of this class, by name (as the dataset's class folder was named) or by
    /// index (default: one row per class).
    #[arg(long = "class", value_name = "NAME_OR_INDEX", allow_hyphen_values = true)]
    pub class: Option<String>,
    /// Seed of the latents.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SampleOptions {
    /// The options as command-line arguments (for passing them on to the trainer), each as
    /// `--key=value`, so a value that starts with `-` (an output named `-grid.png`) stays a value.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![format!("--out={}", self.out.display()), format!("--seed={}", self.seed)];
        if let Some(psi) = self.truncation {
            args.push(format!("--truncation={psi}"));
        }
        if let Some(k) = &self.class {
            args.push(format!("--class={k}"));
        }
        if let Some(n) = self.num {
            args.push(format!("--num={n}"));
        }
        args
    }
}

/// A truncation psi given on the command line is in (0, 1].
pub fn check_truncation(psi: Option<f64>) -> Result<()> {
    match psi {
        Some(psi) if !(psi > 0.0 && psi <= 1.0) => {
            Err(Error::config("--truncation", psi, "a number in (0, 1]"))
        }
        _ => Ok(()),
    }
}

/// The label `--class` names: one of `names` (the dataset's class names, in label order; empty
/// when not recorded), exactly or else ignoring case when that is unambiguous, or an index below
/// `num_classes` (0 for an unconditional model).
pub fn resolve_class(arg: &str, num_classes: u32, names: &[String]) -> Result<u32> {
    if num_classes == 0 {
        return Err(Error::config("--class", arg, "none: the model is unconditional"));
    }
    let names = if names.len() == num_classes as usize { names } else { &[] };
    if let Some(k) = names.iter().position(|n| n == arg) {
        return Ok(k as u32);
    }
    let folded: Vec<usize> = (0..names.len()).filter(|&k| names[k].eq_ignore_ascii_case(arg)).collect();
    if let [k] = folded.as_slice() {
        return Ok(*k as u32);
    }
    match arg.parse::<u32>() {
        Ok(k) if k < num_classes => Ok(k),
        _ => Err(Error::config("--class", arg, allowed_classes(num_classes, names))),
    }
}

/// "a class index 0..9 or a name: airplane, automobile, ..." for the error of a `--class` not found.
fn allowed_classes(num_classes: u32, names: &[String]) -> String {
    let indices = format!("a class index 0..{}", num_classes - 1);
    if names.is_empty() {
        return indices;
    }
    format!("{indices} or a name: {}", crate::data::identity::abbreviate_names(names, 12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        options: SampleOptions,
    }

    /// What the launcher passes on parses back to the same options, values that start with `-`
    /// included.
    #[test]
    fn options_pass_on_unchanged() {
        use clap::Parser;
        let cli = Cli::parse_from([
            "x",
            "--out=-grid.png",
            "--class",
            "-1",
            "--truncation",
            "-0.5",
            "--seed",
            "7",
            "--num",
            "9",
        ]);
        let options = cli.options;
        assert_eq!((options.truncation, options.class.as_deref()), (Some(-0.5), Some("-1")));
        let again = Cli::parse_from(std::iter::once("x".to_string()).chain(options.to_args())).options;
        assert_eq!(again, options);
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_class_is_named_or_numbered() {
        let afhq = names(&["cat", "dog", "wild"]);
        assert_eq!(resolve_class("dog", 3, &afhq).unwrap(), 1);
        assert_eq!(resolve_class("Wild", 3, &afhq).unwrap(), 2, "case is ignored when unambiguous");
        assert_eq!(resolve_class("0", 3, &afhq).unwrap(), 0);
        let err = resolve_class("horse", 3, &afhq).unwrap_err().to_string();
        assert!(err.contains("got horse, allowed: a class index 0..2 or a name: cat, dog, wild"), "{err}");
        let err = resolve_class("3", 3, &afhq).unwrap_err().to_string();
        assert!(err.contains("allowed: a class index 0..2"), "{err}");
        // Names come first: FFHQ-style numbered names are not indices.
        let chunks = names(&["00000", "01000"]);
        assert_eq!(resolve_class("01000", 2, &chunks).unwrap(), 1);
        // Without recorded names (or with names that do not fit the model), indices only.
        assert_eq!(resolve_class("1", 2, &[]).unwrap(), 1);
        let err = resolve_class("dog", 2, &afhq).unwrap_err().to_string();
        assert!(err.contains("allowed: a class index 0..1") && !err.contains("cat"), "{err}");
        let err = resolve_class("0", 0, &[]).unwrap_err().to_string();
        assert!(err.contains("the model is unconditional"), "{err}");
        let many: Vec<String> = (0..20).map(|k| format!("n{k:08}")).collect();
        let err = resolve_class("x", 20, &many).unwrap_err().to_string();
        assert!(err.contains("n00000010, ..., n00000019"), "{err}");
    }
}
