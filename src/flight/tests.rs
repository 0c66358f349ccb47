//! The launcher's reading of a node's records, on records as ranks write them.
use std::time::Duration;

use super::*;

const GRADS: Collective =
    Collective { op: CollectiveOp::AllReduce, dtype: "f32", elems: 4096, on_device: false };

/// A rank that has made `done` train collectives, in `activity`, and is in one more when `waiting`.
fn rank(r: u32, activity: Activity, done: u64, waiting: Option<Collective>) -> RankView {
    let rec = Recorder::new(r);
    let train = rec.track("train");
    rec.enter(activity, 12);
    for _ in 0..done {
        train.begin(GRADS);
        train.end();
    }
    if let Some(c) = waiting {
        train.begin(c);
    }
    RankView { rank: r, record: Some((rec.snapshot(), Duration::from_millis(500))), process: Process::Live }
}

#[test]
fn the_rank_that_has_not_reached_the_collective_is_named_with_its_activity() {
    let views = [
        rank(0, Activity::GMain, 56, Some(GRADS)),
        rank(1, Activity::GMain, 56, None),
        rank(2, Activity::GMain, 56, Some(GRADS)),
    ];
    let d = diagnose(&views);
    assert_eq!(d.culprit, Some(1));
    assert!(
        d.finding.contains("rank 1 has not reached train collective #57, which rank(s) 0, 2 wait in")
            && d.finding.contains("it is in G main for"),
        "{}",
        d.finding
    );
    assert!(d.table[0].contains("train: in collective #57 (all_reduce of 4096 f32)"), "{}", d.table[0]);
    assert!(d.table[1].contains("step 12, in G main") && d.table[1].contains("train: 56 collectives done"));
}

#[test]
fn the_rank_furthest_behind_is_named_when_several_are() {
    let views = [
        rank(0, Activity::DMain, 80, Some(GRADS)),
        rank(1, Activity::Data, 79, None),
        rank(2, Activity::Checkpointing, 70, None),
    ];
    let d = diagnose(&views);
    assert_eq!(d.culprit, Some(2), "{}", d.finding);
    assert!(d.finding.contains("it is checkpointing for"), "{}", d.finding);
}

#[test]
fn different_calls_in_the_same_collective_are_a_mismatch() {
    let bcast = Collective { op: CollectiveOp::Broadcast, dtype: "f64", elems: 3, on_device: false };
    let views = [rank(0, Activity::Tick, 9, Some(GRADS)), rank(1, Activity::Tick, 9, Some(bcast))];
    let d = diagnose(&views);
    assert_eq!(d.culprit, None);
    assert!(
        d.finding.contains("rank 0 all_reduce of 4096 f32, rank 1 broadcast of 3 f64")
            && d.finding.contains("a bug"),
        "{}",
        d.finding
    );
}

#[test]
fn all_waiting_in_the_same_collective_points_off_the_node() {
    let views = [rank(0, Activity::DMain, 5, Some(GRADS)), rank(1, Activity::DMain, 5, Some(GRADS))];
    let d = diagnose(&views);
    assert_eq!(d.culprit, None);
    assert!(d.finding.contains("waits in train collective #6 (all_reduce of 4096 f32)"), "{}", d.finding);
    assert!(d.finding.contains("on another node"), "{}", d.finding);
}

#[test]
fn a_stopped_or_frozen_process_comes_first() {
    let mut views = [rank(0, Activity::DMain, 5, Some(GRADS)), rank(1, Activity::DMain, 5, None)];
    views[1].record.as_mut().unwrap().1 = Duration::from_secs(40);
    views[1].process = Process::Exited;
    let d = diagnose(&views);
    assert_eq!(d.culprit, Some(1), "a rank that exited is gone, not frozen: {}", d.finding);
    assert_eq!(d.finding, "rank 1's process exited without a last record (killed?)");
    assert!(d.table[1].ends_with("[exited]"), "{}", d.table[1]);
    views[1].process = Process::Live;
    let d = diagnose(&views);
    assert_eq!(d.culprit, Some(1));
    assert!(d.finding.contains("whole process has not run for 40s"), "{}", d.finding);
    assert!(d.table[1].ends_with("[record 40s old: the process is not running]"), "{}", d.table[1]);
    views[0].process = Process::Stopped;
    let d = diagnose(&views);
    assert_eq!(d.culprit, Some(0));
    assert!(d.finding.contains("rank 0 is stopped"), "{}", d.finding);
}

#[test]
fn no_waiting_rank_says_so_and_names_nobody() {
    let views = [rank(0, Activity::Data, 5, None), rank(1, Activity::Evaluating, 5, None)];
    let d = diagnose(&views);
    assert_eq!(d.culprit, None);
    assert!(d.finding.contains("stuck in its own work"), "{}", d.finding);
    let none = [RankView { rank: 0, record: None, process: Process::Live }];
    let d = diagnose(&none);
    assert!(d.table[0].contains("no flight record"), "{:?}", d.table);
}

/// With NCCL the ranks that are ahead queued the collective on the GPU and block later, outside
/// any host collective: the rank that started fewer collectives is the one they wait for.
#[test]
fn with_device_collectives_the_rank_with_fewer_started_is_named() {
    let on_gpu = Collective { on_device: true, ..GRADS };
    let mut views = [
        rank(0, Activity::DMain, 57, None),
        rank(1, Activity::Data, 56, None),
        rank(2, Activity::DMain, 57, None),
    ];
    for v in &mut views {
        v.record.as_mut().unwrap().0.tracks[0].last = Some(CollectiveRecord::new(on_gpu, 1.0));
    }
    let d = diagnose(&views);
    assert_eq!(d.culprit, Some(1), "{}", d.finding);
    assert!(
        d.finding.contains("rank 1 has started 56 train collectives and rank(s) 0, 2 57")
            && d.finding.contains("rank 1 is waiting for data for"),
        "{}",
        d.finding
    );
    assert!(d.table[0].contains("train: 57 collectives done"), "{}", d.table[0]);
}

/// Background evaluation runs its collectives on a group of its own, in a thread of its own:
/// when no rank waits in a training collective, a rank waiting in an evaluation collective that
/// another has not reached is what the finding names.
#[test]
fn a_wait_in_the_evaluation_group_is_diagnosed_like_training() {
    let feats = Collective { op: CollectiveOp::AllReduce, dtype: "f64", elems: 2048, on_device: false };
    let views: Vec<RankView> = [(0u32, Some(feats)), (1, None)]
        .into_iter()
        .map(|(r, waiting)| {
            let rec = Recorder::new(r);
            let (train, eval) = (rec.track("train"), rec.track("eval"));
            rec.enter(Activity::Finishing, 40);
            train.begin(GRADS);
            train.end();
            for _ in 0..4 {
                eval.begin(feats);
                eval.end();
            }
            if let Some(c) = waiting {
                eval.begin(c);
            }
            RankView {
                rank: r,
                record: Some((rec.snapshot(), Duration::from_millis(300))),
                process: Process::Live,
            }
        })
        .collect();
    let d = diagnose(&views);
    assert_eq!(d.culprit, Some(1), "{}", d.finding);
    assert!(
        d.finding.contains(
            "rank 1 has not reached eval collective #5, which rank(s) 0 wait in; it is finishing for"
        ),
        "{}",
        d.finding
    );
    assert!(d.table[0].contains("; eval: in collective #5 (all_reduce of 2048 f64)"), "{}", d.table[0]);
}

#[test]
fn progress_is_the_last_activity_change_or_training_collective() {
    let rec = Recorder::new(0);
    let (train, eval) = (rec.track(TRAIN_TRACK), rec.track("eval"));
    rec.enter(Activity::GMain, 3);
    std::thread::sleep(Duration::from_millis(1000));
    let written = Duration::from_secs(2);
    let since = rec.snapshot().since_progress(written);
    assert!(since >= Duration::from_millis(3000), "activity age plus record age: {since:?}");
    // The evaluation thread's collectives say nothing of the training thread.
    eval.begin(GRADS);
    assert!(rec.snapshot().since_progress(written) >= Duration::from_millis(3000));
    // (The margins below allow for a loaded machine pausing this thread.)
    train.begin(GRADS);
    let since = rec.snapshot().since_progress(written);
    assert!(since < Duration::from_millis(2900), "a training collective started just now: {since:?}");
    train.end();
    rec.enter(Activity::StepBoundary, 4);
    assert!(rec.snapshot().since_progress(Duration::ZERO) < Duration::from_millis(900));
}

/// A rank's last record says how it ended: every rank finished is no hang; a failed rank is
/// named before the ranks waiting for it; a vanished rank (no last record) before one that
/// ended cleanly when the launcher stopped it.
#[test]
fn last_records_say_how_ranks_ended() {
    let ended = |r: u32, how: &str, age_secs: u64| {
        let mut v = rank(r, Activity::Finishing, 40, None);
        let rec = v.record.as_mut().unwrap();
        rec.0.exit = Some(how.to_string());
        rec.1 = Duration::from_secs(age_secs);
        v
    };
    let d = diagnose(&[ended(0, "finished at step 16", 60), ended(1, "finished at step 16", 60)]);
    assert_eq!((d.culprit, d.finding.as_str()), (None, "every rank has ended: finished at step 16"));
    assert!(
        d.table[1].starts_with("rank 1 (pid ")
            && d.table[1].ends_with("finished at step 16; the process has exited")
    );

    let d = diagnose(&[rank(0, Activity::GMain, 40, Some(GRADS)), ended(1, "failed: out of memory", 1)]);
    assert_eq!(d.culprit, Some(1));
    assert_eq!(d.finding, "rank 1 has ended (failed: out of memory); the others wait for it");

    let mut vanished = rank(1, Activity::DMain, 40, None);
    vanished.record.as_mut().unwrap().1 = Duration::from_secs(60);
    let stopped = ended(0, "stopped by signal 15 after a checkpoint at step 12", 1);
    let d = diagnose(&[stopped, vanished]);
    assert_eq!(d.culprit, Some(1), "{}", d.finding);
    assert!(d.finding.contains("rank 1's whole process has not run for"), "{}", d.finding);
    let mixed =
        [ended(0, "finished at step 16", 9), ended(1, "failed: x", 9), ended(2, "finished at step 16", 9)];
    assert_eq!(ends(&mixed), "rank(s) 0, 2: finished at step 16; rank(s) 1: failed: x");
}
