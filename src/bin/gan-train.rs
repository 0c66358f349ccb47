//! `gan-train`: one training rank. `gan-launch` starts one per GPU (or CPU share) with torchrun's
//! environment; started by hand without that environment it runs as a lone rank.
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use gan_core::comm::SingleRank;
use gan_core::config::{self, HostFacts, SetOverride};
use gan_core::launch_env::RankEnv;
use gan_core::logging::{self, Role};
use gan_core::train::{self, Setup};
use gan_core::Error;

/// One training rank of a gan-launch job.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Config file (YAML).
    config: PathBuf,
    /// Override a config key, e.g. --set train.batch_size=64 (applied after GAN_* variables).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<SetOverride>,
    /// The config is the launcher's resolved copy: apply no environment or overrides again.
    #[arg(long)]
    resolved: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("gan-train: error: {err:#}");
            let code = err.downcast_ref::<Error>().map_or(1, Error::exit_code);
            ExitCode::from(code as u8)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let env = RankEnv::from_process()?;
    let cfg = if args.resolved {
        config::load_resolved(&args.config)?
    } else {
        config::load(&args.config, &args.sets)?
    };
    let env = env.unwrap_or_else(|| RankEnv::single(cfg.dist.master_port));
    logging::init(
        Role::Rank { rank: env.rank, local_rank: env.local_rank, node_rank: env.group_rank },
        cfg.log.format,
        &cfg.log.level,
    );
    if env.world_size != config::world_size(&cfg) {
        return Err(Error::Env(format!(
            "WORLD_SIZE={} but the config plans {} ranks (dist.nodes x dist.gpus)",
            env.world_size,
            config::world_size(&cfg)
        ))
        .into());
    }
    if env.world_size > 1 {
        return Err(Error::Env(format!(
            "world size {} needs the distributed runtime, which this build does not have yet; run with --gpus 1",
            env.world_size
        ))
        .into());
    }
    let plan = config::plan(&cfg, HostFacts::detect()).swap_remove(env.rank as usize);

    // Ctrl-C or SIGTERM: finish the current step, write the final files, exit 128 + signal.
    let stop = Arc::new(AtomicUsize::new(0));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_usize(signal, Arc::clone(&stop), signal as usize)
            .context("installing signal handlers")?;
    }
    let setup = Setup::new(cfg, plan, Box::new(SingleRank), env.restart_count)?;
    let outcome = train::train(setup, &stop)?;
    match outcome.stopped_by_signal {
        Some(signal) => {
            tracing::warn!(signal, step = outcome.step, "stopped by signal after a clean shutdown");
            Ok(ExitCode::from(128 + signal as u8))
        }
        None => {
            tracing::info!(step = outcome.step, kimg = outcome.cur_nimg as f64 / 1000.0, "training finished");
            Ok(ExitCode::SUCCESS)
        }
    }
}
