//! `gan-train sample CHECKPOINT --out grid.png`: a grid from a checkpoint's G_ema (or a G_ema
//! file), with optional truncation and a fixed class (what `gan-launch sample` runs after
//! resolving the checkpoint).
use std::path::PathBuf;

use clap::Args;
use tch::{nn, Device};

use crate::ckpt;
use crate::models::{self, NetSpec};
use crate::train::samples::SampleGrid;
use gan_core::sample_options::{resolve_class, SampleOptions};
use gan_core::Error;

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// A checkpoint directory (step-NNNNNNNN; gan-launch sample also takes a run directory) or a
    /// G_ema file.
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub options: SampleOptions,
}

pub fn run(args: &SampleArgs) -> anyhow::Result<()> {
    let opts = &args.options;
    let source = ckpt::GeneratorSource::open(&args.checkpoint)?;
    let cfg = source.config()?;
    if let Some(psi) = opts.truncation {
        if !(psi > 0.0 && psi <= 1.0) {
            return Err(Error::config("--truncation", psi, "a number in (0, 1]").into());
        }
    }
    let classes = if cfg.model.conditional { cfg.data.num_classes } else { 0 };
    let names = source.dataset().map(|d| d.classes).unwrap_or_default();
    let class = opts.class.as_deref().map(|arg| resolve_class(arg, classes, &names)).transpose()?;
    let device = if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu };
    let spec = NetSpec::from_config(&cfg);
    let vs = nn::VarStore::new(device);
    let g_ema = models::generator(cfg.model.arch, &spec, vs.root());
    source.load(&vs)?;
    let truncation = opts.truncation.map(|psi| (psi, g_ema.truncation()));
    let grid = SampleGrid::with_options(spec.z_dim, classes, opts.seed, device, truncation, class);
    grid.write(g_ema.as_ref(), &opts.out)?;
    println!("wrote {}", opts.out.display());
    Ok(())
}
