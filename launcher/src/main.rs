//! `gan-launch`: validates a config, plans the ranks, and starts and supervises one trainer
//! process per GPU (or CPU share) with torchrun's environment. It never links libtorch, so it
//! starts in milliseconds and checks a config before any rank pays libtorch's start-up.
mod cli;
mod rank_logs;
mod supervise;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use gan_core::config::{self, ConsoleRanks, HostFacts, RunConfig};
use gan_core::error::EXIT_USER_ERROR;
use gan_core::launch_env::RankEnv;
use gan_core::logging::{self, Role};
use gan_core::rendezvous::{self, StoreServer};
use gan_core::Error;
use supervise::GroupExit;

use cli::{Cli, Command, JobArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Plan(args)) => plan(&args),
        None => launch(&cli.job),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("gan-launch: error: {err:#}");
            let code = err.downcast_ref::<Error>().map_or(1, Error::exit_code);
            ExitCode::from(code as u8)
        }
    }
}

/// Loads the config with the command line's flags applied last (flags beat file and environment).
fn load(args: &JobArgs) -> anyhow::Result<RunConfig> {
    let path = args.config.as_ref().context("a CONFIG file is required (see --help)")?;
    Ok(config::load(path, &args.overrides())?)
}

/// `gan-launch plan`: the resolved config and every rank's plan, without training.
fn plan(args: &JobArgs) -> anyhow::Result<ExitCode> {
    let cfg = load(args)?;
    let plans = config::plan(&cfg, HostFacts::detect());
    println!("# resolved config\n{}", config::to_yaml(&cfg));
    println!("# plan: {} node(s) x {} rank(s) = world size {}", cfg.dist.nodes, cfg.dist.gpus, plans.len());
    print!("{}", config::format_plan(&plans));
    Ok(ExitCode::SUCCESS)
}

/// Runs the job's ranks on this node and passes on how they ended.
fn launch(args: &JobArgs) -> anyhow::Result<ExitCode> {
    let cfg = load(args)?;
    logging::init(Role::Launcher { node_rank: 0 }, cfg.log.format, &cfg.log.level);
    if cfg.dist.nodes > 1 {
        return Err(Error::Env(format!(
            "{} nodes: multi-node launching is not in this build yet; use --nodes 1 \
             (`gan-launch plan` shows larger layouts)",
            cfg.dist.nodes
        ))
        .into());
    }
    let trainer = supervise::trainer_path(args.trainer.as_deref())?;
    let run_dir = cfg.run_dir();
    let resolved = run_dir.join("config.yaml");
    config::save_resolved(&cfg, &resolved)?;
    let plans = config::plan(&cfg, HostFacts::detect());
    let world = plans.len() as u32;
    // The store lives in this process for the job's lifetime; ranks find each other through it.
    let token = rendezvous::new_token();
    let store = match world {
        1 => None,
        _ => Some(StoreServer::bind(&format!("0.0.0.0:{}", cfg.dist.master_port), &token)?),
    };
    let master_port = store.as_ref().map_or(cfg.dist.master_port, |s| s.local_addr().port());
    let watchdog = supervise::Watchdog {
        heartbeat_timeout: Duration::from_secs(cfg.dist.heartbeat_timeout_secs),
        startup_timeout: Duration::from_secs(cfg.dist.connect_timeout_secs + cfg.dist.heartbeat_timeout_secs),
    };
    let mut signals = supervise::forwarded_signals()?;
    for attempt in 0..=args.max_restarts {
        tracing::info!(run_dir = %run_dir.display(), ranks = world, master_port, attempt, "launching {}", trainer.display());
        let specs = plans
            .iter()
            .map(|plan| supervise::RankSpec {
                plan: plan.clone(),
                env: RankEnv {
                    rank: plan.rank,
                    local_rank: plan.local_rank,
                    world_size: world,
                    local_world_size: cfg.dist.gpus,
                    group_rank: plan.node_rank,
                    master_addr: "127.0.0.1".into(),
                    master_port,
                    restart_count: attempt,
                    max_restarts: args.max_restarts,
                    run_id: cfg.name().to_string(),
                },
                extra_env: vec![(rendezvous::TOKEN_ENV.to_string(), token.clone())],
                log_path: run_dir.join("logs").join(format!("rank-{}.log", plan.rank)),
                echo: plan.rank == 0 || cfg.log.console == ConsoleRanks::All,
                heartbeat_path: run_dir.join("heartbeat").join(format!("rank-{}", plan.rank)),
            })
            .collect();
        match supervise::run_ranks(&trainer, &resolved, specs, &mut signals, watchdog)? {
            GroupExit::Finished => return Ok(ExitCode::SUCCESS),
            GroupExit::Stopped(code) => return Ok(ExitCode::from(code)),
            // Bad input does not get better by trying again.
            GroupExit::Failed(code) if i32::from(code) == EXIT_USER_ERROR => return Ok(ExitCode::from(code)),
            GroupExit::Failed(code) if attempt == args.max_restarts => {
                if args.max_restarts > 0 {
                    tracing::error!(
                        "giving up: the job failed again after {attempt} restart(s) (--max-restarts {})",
                        args.max_restarts
                    );
                }
                return Ok(ExitCode::from(code));
            }
            GroupExit::Failed(_) => {
                tracing::warn!("restarting every rank ({} of {} restarts)", attempt + 1, args.max_restarts);
            }
        }
    }
    unreachable!("the last attempt always returns")
}
