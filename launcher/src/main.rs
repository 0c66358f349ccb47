//! `gan-launch`: validates a config, plans the ranks, and starts and supervises one trainer
//! process per GPU (or CPU share) with torchrun's environment. It never links libtorch, so it
//! starts in milliseconds and checks a config before any rank pays libtorch's start-up.
mod bench;
mod ckpt;
mod cli;
mod console;
mod data;
mod job;
mod k8s;
mod memory;
mod nccl_lib;
mod nodes;
mod rank_logs;
mod run_path;
mod sbatch;
mod start_fit;
mod status;
mod supervise;
mod telemetry;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use gan_core::cluster::{self, Placement};
use gan_core::config::{self, HostFacts, RunConfig};
use gan_core::logging::{self, Role};
use gan_core::Error;

use cli::{Cli, Command, JobArgs, PlanArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Plan(args)) => plan(&args),
        Some(Command::Bench(bench)) => bench::run(&bench).map(|_| ExitCode::SUCCESS),
        Some(Command::Data(data::Data::Prepare(args))) => data::prepare(&args).map(|_| ExitCode::SUCCESS),
        Some(Command::Data(data::Data::Info(args))) => data::info(&args).map(|_| ExitCode::SUCCESS),
        Some(Command::Ckpt(cmd)) => ckpt::run(&cmd).map(|_| ExitCode::SUCCESS),
        Some(Command::Sample(args)) => ckpt::sample(&args),
        Some(Command::Eval(args)) => ckpt::eval(&args),
        Some(Command::Status(args)) => status::run(&args),
        Some(Command::K8s(args)) => k8s::run(&args),
        Some(Command::Sbatch(args)) => sbatch::run(&args),
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
fn load_config(args: &JobArgs, placement: Option<&Placement>) -> anyhow::Result<RunConfig> {
    let path = args.config.as_ref().context("a CONFIG file is required (see --help)")?;
    Ok(config::load(path, &args.overrides(placement))?)
}

/// `gan-launch plan`: the resolved config, every rank's plan and what the start would resume,
/// without training; with `--memory`, one rank's memory and whether it fits. A dataset that is
/// missing or does not match, or a checkpoint to start from that is not there, is reported after
/// the plan (exit 2, as a launch would refuse it): the plan and memory depend only on the config,
/// so a job can be sized before its data is prepared or from a machine that cannot see it.
fn plan(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let placement = cluster::detect_from_process()?;
    let cfg = load_config(&args.job, placement.as_ref())?;
    let plans = config::plan(&cfg, HostFacts::detect());
    println!("# resolved config\n{}", config::to_yaml(&cfg));
    println!("# plan: {} node(s) x {} rank(s) = world size {}", cfg.dist.nodes, cfg.dist.gpus, plans.len());
    print!("{}", config::format_plan(&plans));
    // The dataset the ranks would read, as checkpoints record it (a missing one is reported below).
    if let Ok(dataset) = gan_core::data::identity::DatasetIdentity::of(&cfg.data, cfg.run.seed) {
        println!("# data: {}", dataset.describe());
    }
    // How it was prepared: the resize filter moves FID by a point (SPECS 1.4).
    let prepared = cfg.data.path.as_deref().and_then(|dir| gan_core::data::shards::read_index(dir).ok());
    if let Some(prepared) = prepared.and_then(|index| index.prepared) {
        println!("# data prepared: {}", prepared.describe());
    }
    let start = gan_core::checkpoint::plan_start(&cfg.checkpoint.resume_from(), &cfg.run_dir(), false);
    if let Ok(start) = &start {
        print_start(&cfg, start);
    }
    for note in config::unused_settings(&cfg) {
        println!("# note: {note}");
    }
    if args.memory {
        // Every rank has the same networks and batch; rank 0 stands for all.
        let trainer = supervise::trainer_path(args.job.trainer.as_deref())?;
        let measured = memory::measure(&trainer, &cfg)?;
        let target = memory::Target::resolve(args.gpu_memory_gib, &plans[0]);
        memory::report(&measured, &cfg, &plans[0], target.as_ref())?;
    }
    let preflight = job::NodeSetup::node_rank(&args.job, placement.as_ref(), &cfg)
        .and_then(|_| gan_core::data::check(&cfg.data))
        .and_then(|()| cfg.eval.check_weights())
        .and_then(|()| check_start_paths(&cfg, false))
        .and_then(|()| gan_core::run_lock::check_free(&cfg.run_dir()))
        .and(start);
    let refused = "a launch of this plan would refuse to start";
    let start = preflight.context(refused)?;
    for warning in start_fit::check(&cfg, &start, args.job.trainer.as_deref(), true).context(refused)? {
        println!("# note: {warning}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What a launch would start from (`checkpoint::plan_start`; one that cannot be decided is
/// reported after the plan).
fn print_start(cfg: &config::RunConfig, start: &gan_core::checkpoint::StartPlan) {
    let init = match (&start.from, &cfg.checkpoint.init_from) {
        (None, Some(init)) => format!("; G, D and G_ema from {} (checkpoint.init_from)", init.display()),
        _ => String::new(),
    };
    println!("# start: {}{init}", start.describe(&cfg.run_dir()));
    if start.from.as_ref().is_some_and(|from| from.state.cur_nimg >= cfg.train.total_nimg()) {
        println!(
            "# already trained to train.total_kimg {}: the start takes no step (raise it to train on)",
            cfg.train.total_kimg
        );
    }
    match start.from.as_ref().map(|from| config::diff::since_checkpoint(&from.dir, cfg)) {
        Some(Ok(changes)) if !changes.is_empty() => {
            println!("# changed since the checkpoint: {}", config::diff::describe(&changes))
        }
        Some(Err(e)) => println!("# cannot compare the config with the checkpoint's: {e}"),
        _ => {}
    }
}

/// The checkpoints the start takes its state from are there (`checkpoint::check_start_paths`).
pub(crate) fn check_start_paths(cfg: &config::RunConfig, restarted: bool) -> gan_core::Result<()> {
    let c = &cfg.checkpoint;
    gan_core::checkpoint::check_start_paths(
        &c.resume_from(),
        c.init_from.as_deref(),
        &cfg.run_dir(),
        restarted,
    )
}

/// Runs this node's part of the job.
fn launch(args: &JobArgs) -> anyhow::Result<ExitCode> {
    let placement = cluster::detect_from_process()?;
    let cfg = load_config(args, placement.as_ref())?;
    // Before any rank starts (and pays libtorch's start-up): the dataset is there and matches,
    // named evaluation weights are there, and a checkpoint to start from names one.
    gan_core::data::check(&cfg.data)?;
    cfg.eval.check_weights()?;
    check_start_paths(&cfg, cluster::scheduler_restart_count() > 0)?;
    let node = job::NodeSetup::resolve(args, placement.as_ref(), &cfg)?;
    logging::init(Role::Launcher { node_rank: node.node_rank }, cfg.log.format, &cfg.log.level);
    for note in config::unused_settings(&cfg) {
        tracing::warn!("{note}");
    }
    if let Some(p) = &placement {
        tracing::info!(source = p.source, node_rank = node.node_rank, master = %node.master_addr, "placement from the scheduler");
    }
    job::run(args, &cfg, &node)
}
