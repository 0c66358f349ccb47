//! `gan-train shapes CONFIG`: the variables of the networks a config builds, with their shapes
//! (JSON `gan_core::checkpoint::NetShapes`), so that `gan-launch` can tell before any rank starts,
//! from the checkpoint's headers, whether a start could load it. Only the trainer can build the
//! networks; they are built on the CPU and never run.
use std::path::PathBuf;

use tch::nn;

use super::tensors::shapes;
use crate::models::{self, NetSpec};
use gan_core::checkpoint::NetShapes;
use gan_core::config::{self, SetOverride};

#[derive(clap::Args, Debug)]
pub struct ShapesArgs {
    /// Config file (YAML).
    config: PathBuf,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<SetOverride>,
    /// CONFIG is already resolved (written by gan-launch): no overrides, no environment.
    #[arg(long)]
    resolved: bool,
}

pub fn run(args: &ShapesArgs) -> anyhow::Result<()> {
    let cfg = if args.resolved {
        config::load_resolved(&args.config)?
    } else {
        config::load(&args.config, &args.sets)?
    };
    println!("{}", serde_json::to_string(&net_shapes(&cfg))?);
    Ok(())
}

/// G's and D's variables as training builds them (the same builders and path roots).
pub fn net_shapes(cfg: &config::RunConfig) -> NetShapes {
    let spec = NetSpec::from_config(cfg);
    let (g_vs, d_vs) = (nn::VarStore::new(tch::Device::Cpu), nn::VarStore::new(tch::Device::Cpu));
    let _g = models::generator(cfg.model.arch, &spec, g_vs.root());
    let _d = models::discriminator(cfg.model.arch, &spec, d_vs.root());
    NetShapes { g: shapes(&g_vs), d: shapes(&d_vs) }
}
