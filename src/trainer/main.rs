//! `gan-train`: one training rank, and the only binary that links libtorch. `gan-launch` starts
//! one per GPU (or CPU share) with torchrun's environment; started by hand without that
//! environment it runs as a lone rank.
//!
//! Everything that needs tensors lives under this binary (`models`, `train`); the `gan_core`
//! library stays torch-free, so the launcher that links it never loads libtorch.
mod augment;
mod ckpt;
mod comm;
mod eval;
mod gpu_check;
mod host_memory;
mod memory;
mod models;
mod precision;
mod sample;
mod train;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use gan_core::comm::{self as host_comm, ProcessGroup, Recorded, SingleRank};
use gan_core::config::{self, HostFacts, SetOverride};
use gan_core::config::{Backend, RankPlan, RunConfig};
use gan_core::error::EXIT_REQUEUE;
use gan_core::flight::{self, Recorder};
use gan_core::heartbeat::HEARTBEAT_ENV;
use gan_core::launch_env::RankEnv;
use gan_core::logging::{self, Role};
use gan_core::rendezvous::StoreClient;
use gan_core::run_lock::{self, RunLock};
use gan_core::Error;
use train::Setup;

/// One training rank of a gan-launch job.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (YAML).
    config: Option<PathBuf>,
    /// Override a config key, e.g. --set train.batch_size=64 (applied after GAN_* variables).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<SetOverride>,
    /// The config is the launcher's resolved copy: apply no environment or overrides again.
    #[arg(long)]
    resolved: bool,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Write an image grid from a checkpoint's G_ema (or --num separate images).
    Sample(sample::SampleArgs),
    /// FID, KID, IS, precision/recall or density/coverage of a checkpoint's G_ema.
    Eval(eval::command::EvalArgs),
    /// One rank's memory: sizes counted, each phase's working memory measured on the CPU at
    /// small batches (JSON, for `gan-launch plan --memory`).
    Memory(memory::MemoryArgs),
    /// The variables of the networks CONFIG builds, with their shapes (JSON, for gan-launch's
    /// check of the checkpoint a start would load).
    Shapes(ckpt::shapes::ShapesArgs),
    /// GPU checks for scripts/gpu-check.sh (NCCL; a CPU step next to a GPU step).
    #[command(subcommand)]
    GpuCheck(gpu_check::GpuCheck),
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Before any thread starts; `memory` measures resident sizes and sets glibc up its own way.
    let host_allocator = match args.command {
        Some(Command::Memory(_)) => None,
        _ => Some(host_memory::keep_freed_memory()),
    };
    // The tools (`gan-launch sample`, `eval`, ...) log to the terminal, where the error line says it
    // all; a rank's error also goes into its log file, which its launcher shows on failure.
    let is_tool = args.command.is_some();
    match run(args, host_allocator) {
        Ok(code) => code,
        Err(err) => {
            if is_tool {
                eprintln!("gan-launch: error: {err:#}");
            } else {
                tracing::error!("{err:#}");
                eprintln!("gan-train: error: {err:#}");
            }
            let code = err.downcast_ref::<Error>().map_or(1, Error::exit_code);
            ExitCode::from(code as u8)
        }
    }
}

fn run(args: Args, host_allocator: Option<host_memory::HostAllocator>) -> anyhow::Result<ExitCode> {
    match &args.command {
        Some(Command::Sample(sample_args)) => {
            logging::init(Role::Tool, gan_core::config::LogFormat::Text, "info");
            return sample::run(sample_args).map(|_| ExitCode::SUCCESS);
        }
        Some(Command::Eval(eval_args)) => {
            logging::init(Role::Tool, gan_core::config::LogFormat::Text, "info");
            return eval::command::run(eval_args).map(|_| ExitCode::SUCCESS);
        }
        Some(Command::Memory(memory_args)) => {
            logging::init(Role::Tool, gan_core::config::LogFormat::Text, "warn");
            return memory::run(memory_args).map(|_| ExitCode::SUCCESS);
        }
        Some(Command::Shapes(shapes_args)) => {
            logging::init(Role::Tool, gan_core::config::LogFormat::Text, "warn");
            return ckpt::shapes::run(shapes_args).map(|_| ExitCode::SUCCESS);
        }
        Some(Command::GpuCheck(check)) => {
            logging::init(Role::Tool, gan_core::config::LogFormat::Text, "warn");
            return gpu_check::run(check).map(|_| ExitCode::SUCCESS);
        }
        None => {}
    }
    let config_path = args.config.as_ref().context("a CONFIG file is required (see --help)")?;
    let env = RankEnv::from_process()?;
    let cfg = if args.resolved {
        config::load_resolved(config_path)?
    } else {
        config::load(config_path, &args.sets)?
    };
    // On its own (no launcher, which holds the run otherwise), the trainer holds the run itself.
    let _lock = match env {
        None => Some(RunLock::acquire(&cfg.run_dir(), run_lock::REMOTE_WAIT)?),
        Some(_) => None,
    };
    let env = env.unwrap_or_else(|| RankEnv::single(cfg.dist.master_port));
    logging::init(
        Role::Rank { rank: env.rank, local_rank: env.local_rank, node_rank: env.group_rank },
        cfg.log.format,
        &cfg.log.level,
    );
    match &host_allocator {
        Some(alloc @ host_memory::HostAllocator::UserTuned(_)) => tracing::info!("{alloc}"),
        Some(alloc) => tracing::debug!("{alloc}"),
        None => {}
    }
    if env.world_size != config::world_size(&cfg) {
        return Err(Error::Env(format!(
            "WORLD_SIZE={} but the config plans {} ranks (dist.nodes x dist.gpus)",
            env.world_size,
            config::world_size(&cfg)
        ))
        .into());
    }
    let plan = config::plan(&cfg, HostFacts::detect()).swap_remove(env.rank as usize);
    // Before any service thread starts.
    if host_allocator.as_ref().is_some_and(|alloc| host_memory::one_arena_by_hand(alloc, &plan.device)) {
        tracing::debug!("host memory: every thread allocates from the main heap (one arena, mallopt)");
    }

    // Ctrl-C, SIGTERM, or SIGUSR1/2 (SLURM's warning before the time limit): finish the current
    // step (all ranks agree on which), checkpoint, exit with the requeue code for preemption
    // signals (checkpoint.preempt_signals) or 128 + signal otherwise. A second signal while
    // SIGINT while shutting down exits at once (someone pressing Ctrl-C twice means it); the
    // other signals may legitimately arrive twice (SLURM's `--signal=USR1@90` reaches the ranks
    // directly and through the launcher), so repeats of those are ignored.
    let stop = Arc::new(AtomicUsize::new(0));
    let stopping = Arc::new(AtomicBool::new(false));
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    signal_hook::flag::register_conditional_shutdown(SIGINT, 128 + SIGINT, Arc::clone(&stopping))
        .and_then(|_| signal_hook::flag::register(SIGINT, Arc::clone(&stopping)))
        .context("installing signal handlers")?;
    for signal in [SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGHUP] {
        signal_hook::flag::register_usize(signal, Arc::clone(&stop), signal as usize)
            .context("installing signal handlers")?;
    }
    // Where this rank is, rewritten beside its heartbeat every second: what the launcher reads
    // to name the rank that holds the others up when the job gets stuck.
    let flight = Arc::new(Recorder::from_env(env.rank)?);
    let record_file = match std::env::var_os(HEARTBEAT_ENV) {
        Some(heartbeat) if cfg.dist.flight_record_secs > 0.0 => {
            let path = flight::path_beside(std::path::Path::new(&heartbeat));
            let interval = Duration::from_secs_f64(cfg.dist.flight_record_secs);
            Some(flight::start_writer(Arc::clone(&flight), path, interval))
        }
        _ => None,
    };
    let ended = train_rank(cfg, env, plan, &flight, &stop);
    if let Some(file) = record_file {
        // The last record says how the rank ended, so `gan-launch status` of a finished or
        // failed job shows that rather than whatever it was doing a second before.
        file.exit(match &ended {
            Ok(how) => how.describe(),
            Err(e) => format!("failed: {}", format!("{e:#}").lines().next().unwrap_or_default()),
        });
    }
    ended.map(Ended::exit_code)
}

/// How a rank's training ended, when it did not fail.
enum Ended {
    Finished { step: u64 },
    Preempted { step: u64, signal: i32, checkpoint_failed: Option<String> },
    Stopped { step: u64, signal: i32, checkpoint_failed: Option<String> },
}

impl Ended {
    fn describe(&self) -> String {
        match self {
            Ended::Finished { step } => format!("finished at step {step}"),
            Ended::Preempted { step, signal, checkpoint_failed: None } => {
                format!("preempted by signal {signal}: checkpointed at step {step}, exited for a requeue")
            }
            Ended::Preempted { step, signal, checkpoint_failed: Some(e) } => format!(
                "preempted by signal {signal} at step {step}, whose checkpoint failed ({e}); exited for a requeue, \
                 which resumes from the newest checkpoint that verifies"
            ),
            Ended::Stopped { step, signal, checkpoint_failed: None } => {
                format!("stopped by signal {signal} after a checkpoint at step {step}")
            }
            Ended::Stopped { step, signal, checkpoint_failed: Some(e) } => {
                format!("stopped by signal {signal} at step {step}, whose checkpoint failed ({e})")
            }
        }
    }

    /// The rank's last log line about a stop. A checkpoint that failed at a stop signal does not
    /// change how the rank exits: a preempted job is still requeued, and goes on from the newest
    /// checkpoint that verifies.
    fn log(&self) {
        match self {
            Ended::Preempted { step, checkpoint_failed: None, .. } => tracing::warn!(
                step,
                "preempted: checkpointed at step {step}; exiting with the requeue code {EXIT_REQUEUE}"
            ),
            Ended::Preempted { step, checkpoint_failed: Some(e), .. } => tracing::error!(
                step,
                "preempted at step {step}, but its checkpoint failed: {e}; exiting with the requeue code \
                 {EXIT_REQUEUE} all the same: the requeued job resumes from the newest checkpoint that verifies"
            ),
            Ended::Stopped { step, checkpoint_failed: None, .. } => {
                tracing::warn!(step, "stopped by signal after a checkpoint and a clean shutdown")
            }
            Ended::Stopped { step, checkpoint_failed: Some(e), .. } => {
                tracing::error!(step, "stopped by signal at step {step}, but its checkpoint failed: {e}")
            }
            Ended::Finished { .. } => {}
        }
    }

    fn exit_code(self) -> ExitCode {
        match self {
            Ended::Finished { .. } => ExitCode::SUCCESS,
            Ended::Preempted { .. } => ExitCode::from(EXIT_REQUEUE as u8),
            Ended::Stopped { signal, .. } => ExitCode::from(128 + signal as u8),
        }
    }
}

/// The rank's run once its flight record is being written: join the group, train, report.
fn train_rank(
    cfg: RunConfig,
    env: RankEnv,
    plan: config::RankPlan,
    flight: &Arc<Recorder>,
    stop: &AtomicUsize,
) -> anyhow::Result<Ended> {
    let (group, mut store) = join_group(&cfg, &env, &plan)?;
    let group: Box<dyn ProcessGroup> = Box::new(Recorded::new(group, flight.track(flight::TRAIN_TRACK)));
    // Background evaluation runs its collectives on a ring of its own (a new one after each
    // rollback: the old one may have been shut with an evaluation in flight).
    let background_eval = cfg.eval.every_kimg > 0.0 && cfg.eval.background;
    let mut join_eval = |rollbacks: u32| -> gan_core::Result<Option<Box<dyn ProcessGroup>>> {
        match store.as_mut() {
            Some(store) if background_eval => {
                let name = if rollbacks == 0 { "eval".to_string() } else { format!("eval-{rollbacks}") };
                let ring = Box::new(host_comm::join_ring(store, &cfg, &env, &name)?);
                Ok(Some(Box::new(Recorded::new(ring, flight.track("eval")))))
            }
            _ => Ok(None),
        }
    };
    let eval_group = join_eval(0)?;
    let restarted = env.restart_count > 0 || gan_core::cluster::scheduler_restart_count() > 0;
    let preempt: Vec<i32> = cfg.checkpoint.preempt_signals.iter().map(|s| s.number()).collect();
    let mut setup =
        Setup::build(cfg.clone(), plan, group, (env.restart_count, restarted), Arc::clone(flight), None)?;
    setup.eval_pg = eval_group;
    let outcome = train::train_with_rollbacks(setup, stop, &mut join_eval)?;
    let (step, checkpoint_failed) = (outcome.step, outcome.checkpoint_failed);
    let ended = match outcome.stopped_by_signal {
        Some(signal) if preempt.contains(&signal) => Ended::Preempted { step, signal, checkpoint_failed },
        Some(signal) => Ended::Stopped { step, signal, checkpoint_failed },
        None => {
            tracing::info!(step, kimg = outcome.cur_nimg as f64 / 1000.0, "training finished");
            return Ok(Ended::Finished { step });
        }
    };
    ended.log();
    Ok(ended)
}

/// This rank's process group, and the store connection it keeps for the run.
fn join_group(
    cfg: &RunConfig,
    env: &RankEnv,
    plan: &RankPlan,
) -> anyhow::Result<(Box<dyn ProcessGroup>, Option<StoreClient>)> {
    if env.world_size == 1 {
        return Ok((Box::new(SingleRank), None));
    }
    let mut store = host_comm::connect_store(cfg, env)?;
    let backend = host_comm::resolve_backend(cfg.dist.backend, plan.device.starts_with("cuda"));
    let group: Box<dyn ProcessGroup> = match backend {
        Backend::Nccl => {
            let timeout = std::time::Duration::from_secs(cfg.dist.connect_timeout_secs);
            Box::new(comm::nccl::NcclGroup::connect(
                &mut store,
                env.rank,
                env.world_size,
                env.local_rank,
                timeout,
            )?)
        }
        Backend::Cpu | Backend::Auto => Box::new(host_comm::join_ring(&mut store, cfg, env, "train")?),
    };
    tracing::info!(backend = %backend, "joined the process group");
    Ok((group, Some(store)))
}
