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

/// The general transforms against the reference's own execution: the fixture holds images, six
/// drawn maps (every transform at p = 1) and what stylegan2-ada-pytorch @375a436's geometric pass
/// (`augment.py`: reflect padding, sym6 2x upsampling, `affine_grid` + `grid_sample`, sym6 2x
/// downsampling; CPU fp32) made of them. The identity map leaves images exactly alone.
#[test]
fn the_geometric_pass_equals_the_reference_and_the_identity_is_exact() {
    let _lock = crate::train::tests_lock();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/trainer/augment/testdata/reference-geometry.safetensors");
    let fixture = crate::models::reference_fixtures::read(&path);
    let get = |name: &str| fixture[name].shallow_clone();
    let x = get("x");
    let g = super::geometry::InverseAffine { m: get("m"), t: get("t") };
    let err = (super::geometry::apply(&x, &g) - get("y")).abs().max().double_value(&[]);
    assert!(err < 1e-5, "differs from the reference by {err:e}");
    let n = x.size()[0];
    assert!(super::geometry::apply(&x, &super::geometry::InverseAffine::identity(n, Device::Cpu)).equal(&x));
}

#[test]
fn colour_matrices_do_what_their_parameters_say() {
    let _lock = crate::train::tests_lock();
    tch::manual_seed(6);
    let x = images(1);
    let at = |brightness: f32, contrast: f32, flip: f32, hue: f64, saturation: f32| {
        let v = |a: f32| Tensor::from_slice(&[a]).view([1, 1, 1]);
        let q = super::color::ColorParams {
            brightness: v(brightness),
            contrast: v(contrast),
            luma_flip: v(flip),
            hue: v(hue as f32),
            saturation: v(saturation),
        };
        super::color::apply(&x, &super::color::matrix(&q, true, Device::Cpu))
    };
    let close = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]) < 1e-5;
    assert!(close(&at(0.0, 1.0, 0.0, 0.0, 1.0), &x), "identity parameters");
    assert!(close(&at(0.25, 1.0, 0.0, 0.0, 1.0), &(&x + 0.25)), "brightness adds");
    assert!(close(&at(0.0, 2.0, 0.0, 0.0, 1.0), &(&x * 2.0)), "contrast scales about mid-grey");
    // Saturation 0: every channel becomes the pixel's channel mean.
    let grey = x.mean_dim(1, true, Kind::Float).expand_as(&x);
    assert!(close(&at(0.0, 1.0, 0.0, 0.0, 0.0), &grey));
    // Luma flip inverts the grey part and keeps the colour: x - 2 mean.
    assert!(close(&at(0.0, 1.0, 1.0, 0.0, 1.0), &(&x - &grey * 2.0)));
    // A third of a turn about the grey axis moves each channel to the next (r -> g -> b).
    let turned = at(0.0, 1.0, 0.0, 2.0 * std::f64::consts::PI / 3.0, 1.0);
    assert!(close(&turned, &Tensor::cat(&[x.narrow(1, 2, 1), x.narrow(1, 0, 2)], 1)), "hue");
}

#[test]
fn the_full_ada_pipe_changes_images_and_is_twice_differentiable() {
    let _lock = crate::train::tests_lock();
    tch::manual_seed(7);
    for channels in [3, 1] {
        let x = (Tensor::rand([8, channels, 16, 16], (Kind::Float, Device::Cpu)) * 2.0 - 1.0)
            .set_requires_grad(true);
        let y = super::ada::apply(&x, 1.0);
        assert_eq!(y.size(), x.size());
        // R1 takes the gradient through the pipe and differentiates it again.
        let grad = Tensor::run_backward(&[y.square().sum(Kind::Float)], &[&x], true, true).remove(0);
        let second = Tensor::run_backward(&[grad.square().sum(Kind::Float)], &[&x], false, false).remove(0);
        assert!(second.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{channels} channel(s)");
    }
    // At p = 1 the colour statistics move: per-image means spread (brightness, contrast, flips).
    let x = images(64);
    let means = super::ada::apply(&x, 1.0).mean_dim(&[1i64, 2, 3][..], false, Kind::Float);
    assert!(means.std(true).double_value(&[]) > 0.1, "{means}");
}
