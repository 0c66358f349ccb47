use tch::{Device, Kind, Tensor};

use super::diffaugment::apply;
use gan_core::config::DiffAugmentOp;

fn images(n: i64) -> Tensor {
    Tensor::rand([n, 3, 16, 16], (Kind::Float, Device::Cpu)) * 2.0 - 1.0
}

#[test]
fn translation_shifts_by_at_most_an_eighth_and_keeps_the_shape() {
    let _lock = crate::train::tests_lock();
    tch::manual_seed(0);
    // An image with a single bright pixel: after translation it moves by at most 2 (= 16 / 8).
    let x = Tensor::zeros([8, 1, 16, 16], (Kind::Float, Device::Cpu));
    let _ = x.narrow(2, 8, 1).narrow(3, 8, 1).fill_(1.0);
    let y = apply(&x, &[DiffAugmentOp::Translation]);
    assert_eq!(y.size(), x.size());
    for i in 0..8 {
        let flat = y.get(i).view([-1]);
        assert_eq!(flat.sum(Kind::Float).double_value(&[]), 1.0, "the pixel stays inside");
        let pos = flat.argmax(0, false).int64_value(&[]);
        let (r, c) = (pos / 16, pos % 16);
        assert!((r - 8).abs() <= 2 && (c - 8).abs() <= 2, "moved to ({r}, {c})");
    }
}

#[test]
fn cutout_zeroes_at_most_a_quarter_and_gradients_flow() {
    let _lock = crate::train::tests_lock();
    tch::manual_seed(1);
    let x = Tensor::ones([16, 3, 16, 16], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let y = apply(&x, &[DiffAugmentOp::Cutout]);
    for i in 0..16 {
        let zeroed = 256.0 - y.get(i).get(0).sum(Kind::Float).double_value(&[]);
        assert!((16.0..=64.0).contains(&zeroed), "an 8x8 square, clipped at the border: {zeroed}");
    }
    let grad = Tensor::run_backward(&[y.sum(Kind::Float)], &[&x], false, false).remove(0);
    assert_eq!(grad.sum(Kind::Float).double_value(&[]), y.sum(Kind::Float).double_value(&[]), "d/dx = mask");
}

#[test]
fn color_changes_images_differently_and_the_full_policy_is_deterministic_per_seed() {
    let _lock = crate::train::tests_lock();
    let policy = [DiffAugmentOp::Color, DiffAugmentOp::Translation, DiffAugmentOp::Cutout];
    tch::manual_seed(2);
    let x = images(4);
    tch::manual_seed(3);
    let a = apply(&x, &policy);
    tch::manual_seed(3);
    let b = apply(&x, &policy);
    assert!(a.equal(&b), "same seed, same augmentation");
    let colored = apply(&x, &[DiffAugmentOp::Color]);
    let shift = (&colored - &x).mean_dim(&[1i64, 2, 3][..], false, Kind::Float);
    assert!(shift.std(true).double_value(&[]) > 1e-3, "per-image brightness: {shift}");
}

#[test]
fn ada_at_p0_is_the_identity_and_at_p1_changes_every_image_keeping_shape() {
    let _lock = crate::train::tests_lock();
    tch::manual_seed(4);
    let x = images(6);
    assert!(super::ada::apply(&x, 0.0).equal(&x));
    let y = super::ada::apply(&x, 1.0);
    assert_eq!(y.size(), x.size());
    let changed = (&y - &x).abs().amax(&[1i64, 2, 3][..], false);
    assert!(changed.min().double_value(&[]) > 1e-3, "every image changed: {changed}");
    // Gradients reach the input through every transform (R1 needs them).
    let xg = x.copy().set_requires_grad(true);
    let grad =
        Tensor::run_backward(&[super::ada::apply(&xg, 1.0).sum(Kind::Float)], &[&xg], false, false).remove(0);
    assert!(grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

/// SPECS 4.5: p moves by batch x interval / (ada_kimg x 1000) toward r_t = target.
#[test]
fn ada_controller_follows_the_reference_rule() {
    let mut ctrl = super::AdaController {
        p: 0.0,
        target: 0.6,
        interval: 4,
        ada_kimg: 500.0,
        sign_sum: 0.0,
        sign_count: 0.0,
        steps: 0,
    };
    // D is sure about reals (every sign +1): r_t = 1 > 0.6, p rises by 64 x 4 / 500k per adjustment.
    for step in 0..4 {
        let r = ctrl.observe(64.0, 64.0, 64);
        assert_eq!(r.is_some(), step == 3);
    }
    assert!((ctrl.p - 64.0 * 4.0 / 500_000.0).abs() < 1e-15);
    // Then D is unsure (r_t = 0): p goes back down, and never below 0.
    for _ in 0..8 {
        ctrl.observe(0.0, 64.0, 64);
    }
    assert_eq!(ctrl.p, 0.0);
    let saved: std::collections::BTreeMap<String, f64> = ctrl.state().into_iter().collect();
    let mut other = super::AdaController { p: 0.5, steps: 2, ..ctrl.clone() };
    other.restore(&saved);
    assert_eq!(other, ctrl);
}
