//! Recovery from divergence. A non-finite loss shows in the tick's statistics, which every rank
//! reduces to the same values, so all ranks see it at the same tick and can go back together:
//! each rebuilds its state from the latest checkpoint (or the start) with fresh random streams
//! (`rng::rollback_seed`), because the same streams would only retrace the same steps (a rank's
//! randomness is a function of its seed and the step). The count is saved in checkpoints, so a
//! later resume keeps the streams the run went on with.
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use super::setup::{Carried, Setup};
use super::trainer::{train, TrainOutcome};
use gan_core::comm::{ProcessGroup, SingleRank};
use gan_core::config;
use gan_core::error::{Error, Result};

/// Joins a fresh evaluator group for the rebuilt state (the old one may have been shut down with
/// an evaluation in flight); its argument is the rollback count, to name the group apart.
pub type RejoinEval<'a> = dyn FnMut(u32) -> Result<Option<Box<dyn ProcessGroup>>> + 'a;

/// Trains `setup` to the end; on a non-finite loss, rolls back and trains on, at most
/// `train.max_rollbacks` times in the run.
pub fn train_with_rollbacks(
    mut setup: Setup,
    stop: &AtomicUsize,
    rejoin_eval: &mut RejoinEval<'_>,
) -> Result<TrainOutcome> {
    loop {
        match train(&mut setup, stop) {
            Err(Error::NonFinite { what, step }) if setup.rollbacks < setup.cfg.train.max_rollbacks => {
                let rollbacks = setup.rollbacks + 1;
                tracing::warn!(
                    step,
                    rollbacks,
                    "non-finite {what} at step {step}: rolling back to the latest checkpoint with fresh random \
                     streams (rollback {rollbacks} of at most {})",
                    setup.cfg.train.max_rollbacks
                );
                setup = rebuild(setup, rollbacks)?;
                setup.eval_pg = rejoin_eval(rollbacks)?;
            }
            result => return result,
        }
    }
}

/// The state a rank trains on after rollback number `rollbacks`: `old`'s process group and
/// configuration, everything else loaded again as a restart would.
fn rebuild(mut old: Setup, rollbacks: u32) -> Result<Setup> {
    // The newest checkpoint may still be being written in the background: let it commit, so
    // every rank's choice of "latest" sees it.
    old.ckpt_writer.finish()?;
    let pg = std::mem::replace(&mut old.pg, Box::new(SingleRank));
    let (cfg, mut plan, restart_count) = (old.cfg.clone(), old.plan.clone(), old.restart_count());
    plan.seed = config::rank_seed(cfg.run.seed, plan.rank);
    let carried = Carried { rollbacks, source: Arc::clone(&old.source), class_mix: old.class_mix.take() };
    // The old state goes first: its loader thread, evaluator and metrics endpoint (whose port
    // the new one binds) stop with it.
    drop(old);
    let setup = Setup::build(cfg, plan, pg, (restart_count, true), Some(carried))?;
    if setup.is_rank0() {
        let from =
            setup.resumed.as_ref().map_or("the start".to_string(), |r| format!("step {}", r.state.step));
        tracing::warn!(rollbacks, "rolled back to {from}; training goes on with fresh random streams");
    }
    Ok(setup)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::train::step::POISON_STEP;
    use crate::train::tests::{test_config, TORCH_LOCK};
    use gan_core::checkpoint::{Checkpoints, Verified};
    use gan_core::config::{HostFacts, RunConfig};
    use gan_core::rng::rollback_seed;

    /// Ticks every 8 steps (of 32) with a checkpoint at each; step 12's D loss is made non-finite,
    /// which the tick at step 16 reports.
    fn config(dir: &std::path::Path, max_rollbacks: u32) -> RunConfig {
        let sets = ["checkpoint.every_ticks=1", "train.kimg_per_tick=0.256", "train.sample_ticks=0"];
        let max = format!("train.max_rollbacks={max_rollbacks}");
        test_config(dir, &[&sets[..], &[max.as_str()]].concat())
    }

    fn setup(cfg: &RunConfig, restarted: bool) -> Setup {
        let plan = config::plan(cfg, HostFacts { gpus: 0, cpus: 2 }).remove(0);
        Setup::new(cfg.clone(), plan, Box::new(SingleRank), 0, restarted).unwrap()
    }

    fn run(cfg: &RunConfig, poison_step: u64) -> Result<TrainOutcome> {
        POISON_STEP.store(poison_step, Ordering::SeqCst);
        let result = train_with_rollbacks(setup(cfg, false), &AtomicUsize::new(0), &mut |_| Ok(None));
        POISON_STEP.store(u64::MAX, Ordering::SeqCst);
        result
    }

    fn latest(cfg: &RunConfig) -> Verified {
        Checkpoints::of_run(&cfg.run_dir()).newest_valid(|_, _| {}).unwrap().expect("a checkpoint")
    }

    #[test]
    fn a_non_finite_loss_rolls_back_to_the_latest_checkpoint_with_fresh_streams() {
        let _lock = TORCH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let straight = run(&config(dirs[0].path(), 1), u64::MAX).unwrap();
        let cfg = config(dirs[1].path(), 1);
        let rolled = run(&cfg, 12).unwrap();
        assert_eq!(rolled.step, 32, "training reached its end after the rollback");
        // The last start resumed at step 8 (the checkpoint before the bad tick); its ticks are
        // those of steps 16, 24 and 32, on other streams than the straight run's.
        let steps: Vec<u64> = rolled.ticks.iter().map(|t| t.step).collect();
        assert_eq!(steps, [16, 24, 32]);
        assert!(rolled.ticks.iter().all(|t| t.stats["Loss/D"].is_finite()));
        let at_16 = |o: &TrainOutcome| o.ticks.iter().find(|t| t.step == 16).unwrap().stats["Loss/G"];
        assert_ne!(at_16(&rolled), at_16(&straight), "fresh random streams after the rollback");

        // Checkpoints after the rollback carry its count and the new streams, and a restart
        // continues on them.
        let rank_seed = config::rank_seed(cfg.run.seed, 0);
        let state = latest(&cfg).state;
        assert_eq!((state.step, state.rollbacks), (32, 1));
        assert_eq!(state.ranks[0].seed, rollback_seed(rank_seed, 1));
        assert_ne!(rollback_seed(rank_seed, 1), rank_seed);
        let restarted = setup(&cfg, true);
        assert_eq!((restarted.rollbacks, restarted.plan.seed), (1, rollback_seed(rank_seed, 1)));

        // With no rollbacks allowed, the run stops with the error, as before.
        let cfg = config(dirs[2].path(), 0);
        match run(&cfg, 12) {
            Err(Error::NonFinite { what, step }) => assert_eq!((what.as_str(), step), ("Loss/D", 16)),
            other => panic!("expected a non-finite loss error, got {other:?}"),
        }
        assert_eq!(latest(&cfg).state.step, 8, "nothing saved past the bad tick");
    }
}
