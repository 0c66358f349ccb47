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
