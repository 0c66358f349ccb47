use std::collections::BTreeMap;
use std::path::Path;

use super::*;

fn tensor(name: &str, values: &[f32]) -> RawTensor {
    RawTensor {
        name: name.into(),
        dtype: Dtype::F32,
        shape: vec![values.len()],
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn manifest() -> Manifest {
    Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        step: 0,
        cur_nimg: 0,
        created: "2026-11-29T00:00:00Z".into(),
        world_size: 1,
        arch: "dcgan".into(),
        git_commit: "test".into(),
        crate_version: "0".into(),
        libtorch_version: "2.11.0".into(),
        files: Vec::new(),
        metrics: Default::default(),
    }
}

/// Commits a checkpoint of `step` whose single weight is `step` itself.
fn commit(ckpts: &Checkpoints, step: u64, keep_last: usize) -> std::path::PathBuf {
    let mut pending = ckpts.begin(step).unwrap();
    pending.write_tensors("g.safetensors", &[tensor("w", &[step as f32, 1.0])], &BTreeMap::new()).unwrap();
    let state = TrainState { step, cur_nimg: step * 8, ..Default::default() };
    pending.write_json(STATE_FILE, &state).unwrap();
    pending.commit(Manifest { cur_nimg: step * 8, ..manifest() }, keep_last).unwrap()
}

fn newest_step(ckpts: &Checkpoints) -> (Option<u64>, Vec<String>) {
    let mut skipped = Vec::new();
    let found = ckpts.newest_valid(|dir, why| skipped.push(format!("{}: {why}", dir.display()))).unwrap();
    (found.map(|v| v.manifest.step), skipped)
}

#[test]
fn safetensors_round_trip_through_the_reference_parser() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.safetensors");
    let tensors = vec![
        tensor("b.bias", &[1.0, -2.5, 3.25]),
        RawTensor {
            name: "a.step".into(),
            dtype: Dtype::I64,
            shape: vec![],
            data: 7i64.to_le_bytes().to_vec(),
        },
        RawTensor { name: "c.mask".into(), dtype: Dtype::U8, shape: vec![2, 2], data: vec![0, 1, 2, 3] },
    ];
    let meta = BTreeMap::from([("arch".to_string(), "dcgan".to_string())]);
    let entry = write_tensors(&path, &tensors, &meta).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(entry.bytes, bytes.len() as u64);
    assert_eq!(entry.blake3, blake3::hash(&bytes).to_hex().as_str());
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    assert_eq!(header_len % 8, 0, "data starts 8-byte aligned");
    let mut back = read_tensors(&path).unwrap();
    back.sort_by(|a, b| a.name.cmp(&b.name));
    let mut expected = tensors.clone();
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(back, expected);
    assert_eq!(TensorFile::open(&path).unwrap().metadata().unwrap(), meta);
    // Same tensors in another order: the same bytes (a checkpoint's content decides its hash).
    let mut reversed = tensors.clone();
    reversed.reverse();
    let again = write_tensors(&dir.path().join("u.safetensors"), &reversed, &meta).unwrap();
    assert_eq!(again.blake3, entry.blake3);
}

#[test]
fn a_tensor_whose_bytes_do_not_match_its_shape_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = RawTensor { name: "w".into(), dtype: Dtype::F32, shape: vec![3], data: vec![0; 8] };
    let err = write_tensors(&dir.path().join("x.safetensors"), &[bad], &BTreeMap::new()).unwrap_err();
    assert!(err.to_string().contains("tensor w has 8 bytes"), "{err}");
}

#[test]
fn commit_lists_points_latest_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let ckpts = Checkpoints::of_run(dir.path());
    assert_eq!(newest_step(&ckpts).0, None);
    commit(&ckpts, 4, 3);
    let committed = commit(&ckpts, 12, 3);
    assert_eq!(committed, ckpts.step_dir(12));
    assert_eq!(ckpts.latest_name().as_deref(), Some("step-00000012"));
    let steps: Vec<u64> = ckpts.list().unwrap().into_iter().map(|(s, _)| s).collect();
    assert_eq!(steps, vec![4, 12]);
    let verified = verify(&committed).unwrap();
    assert_eq!((verified.manifest.step, verified.state.cur_nimg), (12, 96));
    assert_eq!(verified.manifest.files.len(), 2);
    assert_eq!(resolve_user_path(dir.path()).unwrap(), committed, "a run directory means its newest");
    assert_eq!(resolve_user_path(&ckpts.root).unwrap(), committed);
    assert_eq!(resolve_user_path(&ckpts.step_dir(4)).unwrap(), ckpts.step_dir(4));
}

fn corrupt_newest_then_expect_previous(damage: impl Fn(&Path), expect_in_reason: &str) {
    let dir = tempfile::tempdir().unwrap();
    let ckpts = Checkpoints::of_run(dir.path());
    commit(&ckpts, 4, 3);
    let newest = commit(&ckpts, 8, 3);
    damage(&newest);
    let (step, skipped) = newest_step(&ckpts);
    assert_eq!(step, Some(4), "the damaged newest is skipped");
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].contains("step-00000008") && skipped[0].contains(expect_in_reason), "{skipped:?}");
}

#[test]
fn a_flipped_byte_in_a_tensor_file_is_detected() {
    corrupt_newest_then_expect_previous(
        |dir| {
            let path = dir.join("g.safetensors");
            let mut bytes = std::fs::read(&path).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0x01;
            std::fs::write(&path, bytes).unwrap();
        },
        "g.safetensors fails its BLAKE3 check",
    );
}

#[test]
fn a_truncated_file_is_detected() {
    corrupt_newest_then_expect_previous(
        |dir| {
            let path = dir.join("g.safetensors");
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        },
        "truncated",
    );
}

#[test]
fn a_flipped_byte_in_the_manifest_is_detected() {
    corrupt_newest_then_expect_previous(
        |dir| {
            let path = dir.join(MANIFEST_FILE);
            let text =
                std::fs::read_to_string(&path).unwrap().replace("\"cur_nimg\": 64", "\"cur_nimg\": 65");
            std::fs::write(&path, text).unwrap();
        },
        "does not match manifest.blake3",
    );
}

#[test]
fn a_missing_manifest_means_a_partial_checkpoint() {
    corrupt_newest_then_expect_previous(
        |dir| std::fs::remove_file(dir.join(MANIFEST_FILE)).unwrap(),
        "partial",
    );
}

#[test]
fn temporary_directories_are_never_loaded_and_are_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let ckpts = Checkpoints::of_run(dir.path());
    commit(&ckpts, 4, 3);
    // A writer that died before its rename: complete-looking files in a .tmp directory.
    let mut pending = ckpts.begin(9).unwrap();
    pending.write_tensors("g.safetensors", &[tensor("w", &[9.0])], &BTreeMap::new()).unwrap();
    drop(pending);
    assert_eq!(newest_step(&ckpts).0, Some(4));
    let removed = ckpts.remove_partial().unwrap();
    assert_eq!(removed, vec![ckpts.root.join("step-00000009.tmp")]);
    assert!(!ckpts.root.join("step-00000009.tmp").exists());
}

#[test]
fn retention_keeps_exactly_the_newest_k() {
    let dir = tempfile::tempdir().unwrap();
    let ckpts = Checkpoints::of_run(dir.path());
    for step in [2, 4, 6, 8, 10] {
        commit(&ckpts, step, 2);
        assert!(ckpts.list().unwrap().len() <= 2);
    }
    let steps: Vec<u64> = ckpts.list().unwrap().into_iter().map(|(s, _)| s).collect();
    assert_eq!(steps, vec![8, 10]);
}

/// A checkpoint damaged after its commit does not take a place among the newest k: the good
/// ones before it stay, and it is left for inspection rather than deleted.
#[test]
fn a_damaged_checkpoint_does_not_count_toward_keep_last() {
    let dir = tempfile::tempdir().unwrap();
    let ckpts = Checkpoints::of_run(dir.path());
    for step in 1..=3 {
        commit(&ckpts, step, 2);
    }
    assert_eq!(ckpts.list().unwrap().into_iter().map(|(s, _)| s).collect::<Vec<_>>(), [2, 3]);
    let state = ckpts.step_dir(3).join(STATE_FILE);
    std::fs::write(&state, b"{}").unwrap();
    commit(&ckpts, 4, 2);
    // Newest two sound: 2 and 4; the damaged 3 stays too.
    assert_eq!(ckpts.list().unwrap().into_iter().map(|(s, _)| s).collect::<Vec<_>>(), [2, 3, 4]);
    commit(&ckpts, 5, 2);
    assert_eq!(ckpts.list().unwrap().into_iter().map(|(s, _)| s).collect::<Vec<_>>(), [3, 4, 5]);
}

/// keep_best: besides the newest k, the checkpoints with the lowest FID in their manifests
/// survive; checkpoints without an evaluation never count as best.
#[test]
fn retention_keeps_the_newest_and_the_best_by_fid() {
    let dir = tempfile::tempdir().unwrap();
    let ckpts = Checkpoints::of_run(dir.path());
    let retention = Retention { keep_last: 2, keep_best: 2, hold: None };
    // (step, FID at that step if evaluated)
    for (step, fid) in [
        (1, Some(50.0)),
        (2, Some(20.0)),
        (3, None),
        (4, Some(30.0)),
        (5, Some(25.0)),
        (6, None),
        (7, Some(40.0)),
    ] {
        let mut pending = ckpts.begin(step).unwrap();
        pending.write_json(STATE_FILE, &TrainState { step, ..Default::default() }).unwrap();
        let metrics = fid.map(|f| [("fid".to_string(), f)].into()).unwrap_or_default();
        pending.commit(Manifest { metrics, ..manifest() }, retention).unwrap();
    }
    let steps: Vec<u64> = ckpts.list().unwrap().into_iter().map(|(s, _)| s).collect();
    // Newest two (6, 7) and the two best FIDs (2: 20, 5: 25).
    assert_eq!(steps, vec![2, 5, 6, 7]);
    assert_eq!(verify(&ckpts.step_dir(2)).unwrap().manifest.metrics["fid"], 20.0);

    // A rollback to the best FID: the newer checkpoints move aside, untouched, and the best is
    // the newest again (also for `latest`).
    assert_eq!(ckpts.lowest_before("fid", 8).unwrap(), Some((2, 20.0)));
    assert_eq!(ckpts.lowest_before("fid", 2).unwrap(), None, "none before step 2 is left");
    assert_eq!(ckpts.lowest_before("kid", 8).unwrap(), None, "no checkpoint has a KID");
    let aside = dir.path().join("collapsed/checkpoints");
    let moved = ckpts.set_aside_after(2, &aside).unwrap();
    assert_eq!(moved, [5, 6, 7].map(|s| aside.join(step_dir_name(s))));
    assert!(moved.iter().all(|dir| verify(dir).is_ok()));
    assert_eq!(ckpts.list().unwrap().into_iter().map(|(s, _)| s).collect::<Vec<_>>(), [2]);
    assert_eq!(ckpts.latest_name().as_deref(), Some("step-00000002"));
    assert!(ckpts.set_aside_after(2, &aside).unwrap().is_empty(), "nothing newer left");
}

/// Set-asides in the same second get directories of their own.
#[test]
fn set_asides_in_one_second_get_directories_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut made = Vec::new();
    for _ in 0..3 {
        let aside = SetAside::Replaced.new_dir(dir.path());
        std::fs::create_dir(&aside).unwrap();
        made.push(aside);
    }
    made.dedup();
    assert_eq!(made.len(), 3, "{made:?}");
}

/// A background evaluation: its checkpoint is held while the score is pending, then the score
/// lands in eval.json (the committed manifest is left alone) and counts for keep_best.
#[test]
fn a_held_checkpoint_survives_until_its_late_score_ranks_it() {
    let dir = tempfile::tempdir().unwrap();
    let ckpts = Checkpoints::of_run(dir.path());
    let commit_with = |step: u64, fid: Option<f64>, hold: Option<u64>| {
        let mut pending = ckpts.begin(step).unwrap();
        pending.write_json(STATE_FILE, &TrainState { step, ..Default::default() }).unwrap();
        let metrics = fid.map(|f| [("fid".to_string(), f)].into()).unwrap_or_default();
        pending.commit(Manifest { metrics, ..manifest() }, Retention { keep_last: 1, keep_best: 1, hold })
    };
    commit_with(1, Some(30.0), None).unwrap();
    // Step 2 is being evaluated while steps 3 and 4 are written: held, so not removed.
    commit_with(2, None, Some(2)).unwrap();
    commit_with(3, None, Some(2)).unwrap();
    commit_with(4, None, Some(2)).unwrap();
    let steps = || ckpts.list().unwrap().into_iter().map(|(s, _)| s).collect::<Vec<u64>>();
    assert_eq!(steps(), vec![1, 2, 4]);
    let manifest_before = std::fs::read(ckpts.step_dir(2).join(crate::checkpoint::MANIFEST_FILE)).unwrap();
    assert!(ckpts.record_metrics(2, &[("fid".to_string(), 10.0)].into()).unwrap());
    assert!(!ckpts.record_metrics(3, &[("fid".to_string(), 5.0)].into()).unwrap(), "step 3 is gone");
    assert_eq!(
        std::fs::read(ckpts.step_dir(2).join(crate::checkpoint::MANIFEST_FILE)).unwrap(),
        manifest_before
    );
    assert!(verify(&ckpts.step_dir(2)).is_ok(), "eval.json does not disturb verification");
    assert_eq!(crate::checkpoint::metric_of(&ckpts.step_dir(2), "fid"), Some(10.0));
    // Released: the best is now step 2 (10 < 30), so step 1 goes.
    ckpts.retain(Retention { keep_last: 1, keep_best: 1, hold: None }, 4).unwrap();
    assert_eq!(steps(), vec![2, 4]);
}

#[test]
fn committing_a_step_again_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let ckpts = Checkpoints::of_run(dir.path());
    commit(&ckpts, 5, 3);
    let again = commit(&ckpts, 5, 3);
    assert!(verify(&again).is_ok());
    assert_eq!(ckpts.list().unwrap().len(), 1);
    assert!(!ckpts.root.join("step-00000005.old").exists());
}

/// Every way a start can go, decided without changing anything, then carried out: `latest` and a
/// restart resume the newest; a restart wins over a named path and `none`; an earlier checkpoint
/// of the run sets the later ones aside; another run's checkpoint and `none` set them all aside.
#[test]
fn a_start_is_planned_before_anything_moves() {
    use crate::config::ResumeFrom;
    let (run, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ckpts = Checkpoints::of_run(run.path());
    for step in [4, 8, 12] {
        commit(&ckpts, step, 3);
    }
    let elsewhere = commit(&Checkpoints::of_run(other.path()), 20, 3);
    let step_of = |plan: &StartPlan| plan.from.as_ref().map(|v| v.state.step);
    let plan = |resume: ResumeFrom, restarted: bool| plan_start(&resume, run.path(), restarted).unwrap();

    let latest = plan(ResumeFrom::Latest, false);
    assert_eq!((step_of(&latest), &latest.aside), (Some(12), &Aside::Nothing));
    for restarted_from in [ResumeFrom::Fresh, ResumeFrom::Path(elsewhere.clone())] {
        let p = plan(restarted_from, true);
        assert_eq!(
            (step_of(&p), &p.aside),
            (Some(12), &Aside::Nothing),
            "a restart goes on from the run's own"
        );
    }
    let fresh = plan(ResumeFrom::Fresh, false);
    assert_eq!((step_of(&fresh), &fresh.aside), (None, &Aside::All("checkpoint.resume is none")));
    let foreign = plan(ResumeFrom::Path(elsewhere.clone()), false);
    assert_eq!(step_of(&foreign), Some(20));
    assert_eq!(foreign.aside, Aside::All("checkpoint.resume names another run's checkpoint"));

    let back = plan(ResumeFrom::Path(ckpts.step_dir(4)), false);
    assert_eq!((step_of(&back), &back.aside), (Some(4), &Aside::After(4)));
    assert!(back
        .describe(run.path())
        .ends_with("moves the run's later checkpoints (step 8, 12) to replaced-<time>/"));
    assert_eq!(ckpts.list().unwrap().len(), 3, "planning moved nothing");
    let moved = back.carry_out(run.path()).unwrap().unwrap();
    let aside = moved.dir.join("checkpoints");
    let moved_to = Checkpoints::new(&aside);
    assert_eq!(moved.checkpoints, [moved_to.step_dir(8), moved_to.step_dir(12)]);
    assert!(moved.outputs.is_empty(), "{:?}", moved.outputs);
    assert_eq!(Checkpoints::new(&aside).list().unwrap().iter().map(|(s, _)| *s).collect::<Vec<_>>(), [8, 12]);
    assert_eq!(step_of(&plan(ResumeFrom::Latest, false)), Some(4), "latest is the new line's");
    assert_eq!(SetAside::list(run.path()).unwrap(), [(aside, vec![8, 12])]);

    // A corrupt newest checkpoint is passed over, and said.
    commit(&ckpts, 16, 3);
    std::fs::remove_file(ckpts.step_dir(16).join("g.safetensors")).unwrap();
    let p = plan(ResumeFrom::Latest, false);
    assert_eq!((step_of(&p), p.skipped.len()), (Some(4), 1));
    assert!(p.describe(run.path()).contains("; skips "), "{}", p.describe(run.path()));

    // `resume: none` takes every checkpoint (the corrupt one too) and the statistics along.
    std::fs::write(run.path().join("stats.jsonl"), b"{}\n").unwrap();
    let moved = plan(ResumeFrom::Fresh, false).carry_out(run.path()).unwrap().unwrap();
    let moved_to = Checkpoints::new(moved.dir.join("checkpoints"));
    assert_eq!(moved.checkpoints, [moved_to.step_dir(4), moved_to.step_dir(16)]);
    assert!(moved.checkpoints.iter().all(|p| p.is_dir()));
    assert_eq!(moved.outputs, [moved.dir.join("stats.jsonl")]);
    assert!(ckpts.list().unwrap().is_empty());
}
