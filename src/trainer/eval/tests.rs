//! The port against pytorch-fid itself: `scripts/fid_reference.py` runs pytorch-fid's
//! InceptionV3 (from the venv) with seeded random weights on seeded images; ours loads the same
//! weights file and must give the same pool3 features and unbiased logits.
use std::path::{Path, PathBuf};
use std::process::Command;

use tch::{nn, Device, Tensor};

use super::inception::FidInception;
use super::weights::{identify, load_into, FeatureNet};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs Python code with the project's venv (torch 2.11.0, pytorch-fid) in the repository root.
fn python(args: &[&str]) {
    let python = repo().join(".venv/bin/python");
    let out = Command::new(&python)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", python.display()));
    assert!(out.status.success(), "python {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs the reference script into `dir`.
fn reference(dir: &Path) {
    python(&["scripts/fid_reference.py", dir.to_str().unwrap()]);
}

fn named(entries: Vec<(String, Tensor)>, name: &str) -> Tensor {
    entries.into_iter().find(|(k, _)| k == name).unwrap_or_else(|| panic!("no {name}")).1
}

fn relative_error(ours: &Tensor, theirs: &Tensor) -> f64 {
    let scale = theirs.abs().max().double_value(&[]);
    (ours - theirs).abs().max().double_value(&[]) / scale
}

#[test]
fn features_equal_pytorch_fid_with_the_same_weights() {
    let _lock = crate::train::tests_lock();
    let dir = tempfile::tempdir().unwrap();
    reference(dir.path());
    let vs = nn::VarStore::new(Device::Cpu);
    let net = FidInception::new(&vs.root());
    load_into(&vs, &dir.path().join("weights.pth")).unwrap();
    let expected = Tensor::loadz_multi(dir.path().join("expected.pth")).unwrap();
    let images = named(expected.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect(), "images");
    let features = tch::no_grad(|| net.features(&images));
    assert_eq!(features.pool3.size(), [4, 2048]);
    let pool3 = named(expected.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect(), "pool3");
    let logits = named(expected, "logits");
    let (e_pool3, e_logits) =
        (relative_error(&features.pool3, &pool3), relative_error(&features.logits_unbiased, &logits));
    eprintln!("relative error vs pytorch-fid: pool3 {e_pool3:.2e}, logits {e_logits:.2e}");
    assert!(e_pool3 < 1e-4, "pool3 relative error {e_pool3}");
    assert!(e_logits < 1e-4, "logits relative error {e_logits}");
    // Features differ between images (the check is not passing on constants).
    assert!((features.pool3.get(0) - features.pool3.get(1)).abs().max().double_value(&[]) > 1e-3);
    // These weights are not the standard ones, and say so.
    assert!(matches!(identify(&dir.path().join("weights.pth")).unwrap(), FeatureNet::Custom { .. }));
}

/// Strict loading: a missing tensor and a wrong shape are both named.
#[test]
fn the_loader_names_missing_and_misshapen_tensors() {
    let _lock = crate::train::tests_lock();
    let dir = tempfile::tempdir().unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = FidInception::new(&vs.root());
    // A torch.save'd state dict like the real file, one tensor short and one misshapen.
    let path = dir.path().join("bad.pth");
    let script = format!(
        "import sys, torch; sys.path.insert(0, 'scripts'); from fid_reference import random_state_dict; \
         sd = random_state_dict(1); del sd['Mixed_6b.branch7x7_2.conv.weight']; \
         sd['fc.weight'] = torch.zeros(1000, 2048); torch.save(sd, {:?})",
        path.display().to_string()
    );
    python(&["-c", &script]);
    let err = load_into(&vs, &path).unwrap_err().to_string();
    assert!(err.contains("missing 1 tensor(s): Mixed_6b.branch7x7_2.conv.weight"), "{err}");
    assert!(err.contains("fc.weight: file [1000, 2048], network [1008, 2048]"), "{err}");
    assert!(err.contains("bad.pth"), "{err}");
}

/// Precision, recall, density and coverage against Naeem et al.'s `prdc` package (numpy and
/// scikit-learn distances) on the same features; float64, where ties (the one place the two
/// differ: `<=` against `<`) do not occur.
#[test]
fn manifold_metrics_equal_the_prdc_package() {
    use super::manifold::{density_coverage, precision_recall, DC_K, PR_K};
    let _lock = crate::train::tests_lock();
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(21);
    let opts = (tch::Kind::Double, Device::Cpu);
    let real = Tensor::randn([300, 32], opts);
    let fake = Tensor::randn([250, 32], opts) * 0.8 + 0.3;
    let features = dir.path().join("features.safetensors");
    Tensor::write_safetensors(&[("real", &real), ("fake", &fake)], &features).unwrap();
    let out = dir.path().join("prdc.json");
    let script = format!(
        "import json; from safetensors.numpy import load_file; from prdc import compute_prdc; \
         f = load_file({:?}); \
         r = {{k: {{m: float(v) for m, v in compute_prdc(f['real'], f['fake'], nearest_k=k).items()}} \
         for k in ({PR_K}, {DC_K})}}; json.dump(r, open({:?}, 'w'))",
        features.display().to_string(),
        out.display().to_string()
    );
    python(&["-c", &script]);
    let theirs: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let pr = precision_recall(&real, &fake, PR_K).unwrap();
    let dc = density_coverage(&real, &fake, DC_K).unwrap();
    let (t_pr, t_dc) = (&theirs[PR_K.to_string()], &theirs[DC_K.to_string()]);
    let ours_theirs = [
        (pr.precision, &t_pr["precision"]),
        (pr.recall, &t_pr["recall"]),
        (dc.density, &t_dc["density"]),
        (dc.coverage, &t_dc["coverage"]),
    ];
    eprintln!("ours vs prdc: {ours_theirs:?}");
    for (ours, theirs) in ours_theirs {
        let theirs = theirs.as_f64().unwrap();
        assert!((ours - theirs).abs() < 1e-12, "ours {ours}, prdc {theirs}");
    }
    // Not a degenerate case where everything is 0 or 1.
    assert!(pr.precision < 1.0 && pr.recall > 0.0 && dc.coverage < 1.0 && dc.density > 0.0);
}
