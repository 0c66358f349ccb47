//! Recovery from divergence and from mode collapse. A non-finite loss shows in the tick's
//! statistics, which every rank reduces to the same values, so all ranks see it at the same tick
//! and can go back together: each rebuilds its state from the latest checkpoint (or the start)
//! with fresh random streams (`rng::rollback_seed`), because the same streams would only retrace
//! the same steps (a rank's randomness is a function of its seed and the step). The count is
//! saved in checkpoints, so a later resume keeps the streams the run went on with.
//!
//! Mode dropping (`eval.rollback_on_mode_dropping`) is found by rank 0's evaluation report and
//! agreed at a tick (`Error::ModeDropping`). The latest checkpoint may already hold the collapsed
//! G, so the run goes back to the one with the best FID instead: rank 0 moves the newer ones to
//! `collapsed-<time>/checkpoints/` (and the grids drawn since to `collapsed-<time>/samples/`),
//! which makes it the latest, and the ranks rebuild from it as above.
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use super::setup::{Carried, Setup};
use super::trainer::{train, TrainOutcome};
use gan_core::checkpoint::{Checkpoints, SetAside};
use gan_core::comm::{ProcessGroup, SingleRank};
use gan_core::config;
use gan_core::error::{Error, Result};
use gan_core::flight::Activity;
use gan_core::rundir::RunDir;

/// Joins a fresh evaluator group for the rebuilt state (the old one may have been shut down with
/// an evaluation in flight); its argument is the rollback count, to name the group apart.
pub type RejoinEval<'a> = dyn FnMut(u32) -> Result<Option<Box<dyn ProcessGroup>>> + 'a;

/// Trains `setup` to the end; on a non-finite loss or agreed mode dropping, rolls back and trains
/// on, at most `train.max_rollbacks` times in the run.
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
            // Rank 0 asks only while rollbacks are left, and every rank holds the same count.
            Err(Error::ModeDropping { step, to_step }) => {
                let rollbacks = setup.rollbacks + 1;
                // The newest checkpoints may still be being written: let them commit first, so
                // that they are moved aside too.
                setup.ckpt_writer.finish()?;
                let aside = match setup.is_rank0() {
                    true => Some(set_aside_collapsed(&setup, to_step)?),
                    false => None,
                };
                tracing::warn!(
                    step,
                    rollbacks,
                    "G dropped modes by step {step}: rolling back to step {to_step} with fresh random streams \
                     (rollback {rollbacks} of at most {})",
                    setup.cfg.train.max_rollbacks
                );
                setup = rebuild(setup, rollbacks)?;
                setup.eval_pg = rejoin_eval(rollbacks)?;
                if let Some(aside) = aside {
                    // The collapsed grids go with the collapsed checkpoints, as the evidence.
                    let nimg = setup.resumed.as_ref().map(|r| r.state.cur_nimg);
                    RunDir::new(setup.cfg.run_dir()).set_aside_outputs_after(nimg, &aside)?;
                }
            }
            result => return result,
        }
    }
}

/// Moves the checkpoints after `to_step` to `collapsed-<time>/checkpoints/` in the run directory;
/// returns `collapsed-<time>/`.
fn set_aside_collapsed(setup: &Setup, to_step: u64) -> Result<std::path::PathBuf> {
    let run_dir = setup.cfg.run_dir();
    let aside = SetAside::Collapsed.new_dir(&run_dir);
    for dir in Checkpoints::of_run(&run_dir).set_aside_after(to_step, &aside.join("checkpoints"))? {
        tracing::warn!(path = %dir.display(), "moved a checkpoint taken after step {to_step} aside");
    }
    Ok(aside)
}

/// The state a rank trains on after rollback number `rollbacks`: `old`'s process group and
/// configuration, everything else loaded again as a restart would.
fn rebuild(mut old: Setup, rollbacks: u32) -> Result<Setup> {
    old.flight.continue_with(Activity::RollingBack);
    let flight = Arc::clone(&old.flight);
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
    let setup = Setup::build(cfg, plan, pg, (restart_count, true), flight, Some(carried))?;
    if setup.is_rank0() {
        let from =
            setup.resumed.as_ref().map_or("the start".to_string(), |r| format!("step {}", r.state.step));
        let lr = if setup.cfg.train.rollback_lr_mult < 1.0 {
            format!(" and learning rates G {:.3e}, D {:.3e}", setup.g_opt.lr, setup.d_opt.lr)
        } else {
            String::new()
        };
        tracing::warn!(rollbacks, "rolled back to {from}; training goes on with fresh random streams{lr}");
    }
    Ok(setup)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::train::evaluation::report::INJECTED;
    use crate::train::step::POISON_STEP;
    use crate::train::tests::{test_config, TORCH_LOCK};
    use gan_core::checkpoint::{verify, Verified};
    use gan_core::config::{HostFacts, RunConfig};
    use gan_core::rng::rollback_seed;

    /// Ticks every 8 steps (of 32) with a checkpoint at each; step 12's D loss is made non-finite,
    /// which the tick at step 16 reports.
    fn config(dir: &std::path::Path, max_rollbacks: u32, extra: &[&str]) -> RunConfig {
        let sets = ["checkpoint.every_ticks=1", "train.kimg_per_tick=0.256", "train.sample_ticks=0"];
        let max = format!("train.max_rollbacks={max_rollbacks}");
        test_config(dir, &[&sets[..], &[max.as_str()], extra].concat())
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
        let straight = run(&config(dirs[0].path(), 1, &[]), u64::MAX).unwrap();
        let cfg = config(dirs[1].path(), 1, &["train.rollback_lr_mult=0.5"]);
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
        // train.rollback_lr_mult 0.5: the rates are halved from the rollback on, on a restart too.
        let unrolled = setup(&config(dirs[0].path(), 1, &[]), true);
        assert_eq!(unrolled.rollbacks, 0);
        assert_eq!(restarted.g_opt.lr, unrolled.g_opt.lr * 0.5);
        assert_eq!(restarted.d_opt.lr, unrolled.d_opt.lr * 0.5);

        // With no rollbacks allowed, the run stops with the error, as before.
        let cfg = config(dirs[2].path(), 0, &[]);
        match run(&cfg, 12) {
            Err(Error::NonFinite { what, step }) => assert_eq!((what.as_str(), step), ("Loss/D", 16)),
            other => panic!("expected a non-finite loss error, got {other:?}"),
        }
        assert_eq!(latest(&cfg).state.step, 8, "nothing saved past the bad tick");
    }

    /// Evaluations at every tick (seeded random Inception weights; training waits for them unless
    /// `background`) with FID and precision/recall, checkpoints at every tick, one rollback allowed.
    fn evaluating(dir: &std::path::Path, rollback: bool, background: bool) -> RunConfig {
        let weights = dir.join("inception.safetensors");
        tch::manual_seed(0);
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let _net = crate::eval::inception::FidInception::new(&vs.root());
        vs.save(&weights).unwrap();
        let sets = [
            "eval.every_kimg=0.256".to_string(),
            format!("eval.background={background}"),
            "eval.metrics=[fid, pr]".into(),
            "eval.num=8".into(),
            "eval.num_real=16".into(),
            "eval.batch=8".into(),
            format!("eval.weights={}", weights.display()),
            format!("eval.rollback_on_mode_dropping={rollback}"),
            "checkpoint.keep_best=1".into(),
            "train.sample_ticks=1".into(),
        ];
        config(dir, 1, &sets.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Recall rises to 0.6 at step 8 (FID 30, the best) and 0.5 at step 16 (FID 40), then falls to
    /// 0.2 at step 24.
    fn inject_collapse_at_24() {
        *INJECTED.lock().unwrap() = vec![
            (8, "fid", 30.0),
            (8, "recall", 0.6),
            (16, "fid", 40.0),
            (16, "recall", 0.5),
            (24, "fid", 45.0),
            (24, "recall", 0.2),
        ];
    }

    /// The files in `dir`, by name, sorted.
    fn names_in(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The checkpoints moved to the run's one `collapsed-*` directory; the grids drawn after the
    /// step the run went back to went with them.
    fn set_aside(cfg: &RunConfig, grids: &[&str]) -> Vec<String> {
        let collapsed: Vec<_> = std::fs::read_dir(cfg.run_dir())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("collapsed-"))
            .collect();
        assert_eq!(collapsed.len(), 1, "{collapsed:?}");
        assert_eq!(names_in(&collapsed[0].join("samples")), grids);
        let moved = names_in(&collapsed[0].join("checkpoints"));
        assert!(moved.iter().all(|name| verify(&collapsed[0].join("checkpoints").join(name)).is_ok()));
        moved
    }

    /// Recall rises to 0.6 at step 8 (FID 30, the best) and 0.5 at step 16 (FID 40), then falls to
    /// 0.2 at step 24: G is dropping modes. The run goes back to step 8, the best FID, not to the
    /// latest checkpoint (16); 16 is moved aside, and training ends at 32 on fresh streams. Without
    /// the option, the same evaluations only warn.
    #[test]
    fn mode_dropping_rolls_back_to_the_best_fid_checkpoint() {
        let _lock = TORCH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
        let cfg = evaluating(dirs[0].path(), true, false);
        inject_collapse_at_24();
        let outcome = run(&cfg, u64::MAX).unwrap();
        assert!(INJECTED.lock().unwrap().is_empty(), "every injected score was reported");
        let steps: Vec<u64> = outcome.ticks.iter().map(|t| t.step).collect();
        assert_eq!(steps, [16, 24, 32], "the last start resumed at step 8");
        let state = latest(&cfg).state;
        assert_eq!((state.step, state.rollbacks), (32, 1));
        assert_eq!(state.ranks[0].seed, rollback_seed(config::rank_seed(cfg.run.seed, 0), 1));
        assert!(state.best_metrics["recall"] >= 0.6, "the best recall of step 8 carried on: {state:?}");
        assert_eq!(set_aside(&cfg, &["fakes000000.512.png", "fakes000000.768.png"]), ["step-00000016"]);
        // eval.jsonl: step 8's line, then the evaluations trained again (16's FID is no longer
        // the injected 40).
        let text = std::fs::read_to_string(cfg.run_dir().join("eval.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let evaluated: Vec<u64> = lines.iter().map(|l| l["step"].as_u64().unwrap()).collect();
        assert_eq!(evaluated, [8, 16, 24, 32]);
        assert_eq!((lines[0]["fid"].as_f64(), lines[0]["recall"].as_f64()), (Some(30.0), Some(0.6)));
        assert_ne!(lines[1]["fid"].as_f64(), Some(40.0));

        let cfg = evaluating(dirs[1].path(), false, false);
        inject_collapse_at_24();
        let outcome = run(&cfg, u64::MAX).unwrap();
        assert_eq!(outcome.ticks.iter().map(|t| t.step).collect::<Vec<_>>(), [8, 16, 24, 32]);
        assert_eq!(latest(&cfg).state.rollbacks, 0, "only a warning without the option");
    }

    /// In the background (the default) the evaluation of step 24 reports at a later tick, by the
    /// end at the latest, after the checkpoint of step 24 was taken: the run still goes back to
    /// step 8, the best FID before 24, and both newer checkpoints move aside.
    #[test]
    fn mode_dropping_found_in_the_background_rolls_back_too() {
        let _lock = TORCH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let cfg = evaluating(dir.path(), true, true);
        inject_collapse_at_24();
        let outcome = run(&cfg, u64::MAX).unwrap();
        assert!(INJECTED.lock().unwrap().is_empty(), "every injected score was reported");
        assert_eq!(outcome.ticks.iter().map(|t| t.step).collect::<Vec<_>>(), [16, 24, 32]);
        assert_eq!((latest(&cfg).state.step, latest(&cfg).state.rollbacks), (32, 1));
        assert_eq!(
            set_aside(&cfg, &["fakes000000.512.png", "fakes000000.768.png", "fakes000001.024.png"]),
            ["step-00000016", "step-00000024"]
        );
    }

    /// Two ranks (threads on a loopback ring): only rank 0 sees the scores, and rank 1 goes back
    /// with it, to the same checkpoint, at the same tick.
    #[test]
    fn every_rank_follows_rank_0_back_after_mode_dropping() {
        use gan_core::comm::RingGroup;
        use gan_core::rendezvous::{StoreClient, StoreServer};
        let _lock = TORCH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = evaluating(dir.path(), true, false);
        cfg.dist.gpus = 2;
        *INJECTED.lock().unwrap() =
            vec![(8, "fid", 30.0), (8, "recall", 0.6), (16, "fid", 40.0), (16, "recall", 0.25)];
        let server = StoreServer::bind("127.0.0.1:0", "t").unwrap();
        let addr = server.local_addr().to_string();
        let timeout = std::time::Duration::from_secs(60);
        let ranks: Vec<_> = (0..2u32)
            .map(|rank| {
                let (addr, cfg) = (addr.clone(), cfg.clone());
                std::thread::spawn(move || {
                    let mut store =
                        StoreClient::connect(&addr, "t", "dp", &format!("rank {rank}"), timeout).unwrap();
                    let ring =
                        RingGroup::connect(&mut store, rank, 2, "127.0.0.1", "127.0.0.1", timeout).unwrap();
                    let plan = config::plan(&cfg, HostFacts { gpus: 0, cpus: 2 }).remove(rank as usize);
                    let setup = Setup::new(cfg, plan, Box::new(ring), 0, false).unwrap();
                    train_with_rollbacks(setup, &AtomicUsize::new(0), &mut |_| Ok(None)).unwrap()
                })
            })
            .collect();
        let outcomes: Vec<TrainOutcome> = ranks.into_iter().map(|r| r.join().unwrap()).collect();
        for outcome in &outcomes {
            let steps: Vec<u64> = outcome.ticks.iter().map(|t| t.step).collect();
            assert_eq!(steps, [16, 24, 32], "each rank resumed at step 8 and trained to the end");
        }
        let state = latest(&cfg).state;
        assert_eq!((state.step, state.rollbacks), (32, 1));
        assert_eq!(state.ranks.len(), 2);
        for (rank, saved) in state.ranks.iter().enumerate() {
            assert_eq!(saved.seed, rollback_seed(config::rank_seed(cfg.run.seed, rank as u32), 1));
        }
    }
}
