use tch::{nn, Device, Kind, Tensor};

use super::*;
use crate::models::reference_fixtures::{load_named, max_rel_err};
use crate::models::{Discriminator as _, Generator as _};

/// Trainable parameters (buffers such as w_avg and noise_const excluded, as `parameters()`).
fn trainable(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}

fn build(spec: &StyleGan2Spec) -> (nn::VarStore, nn::VarStore, Generator, Discriminator) {
    let (g_vs, d_vs) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
    let g = Generator::new(spec, g_vs.root());
    let d = Discriminator::new(spec, d_vs.root());
    (g_vs, d_vs, g, d)
}

/// SPECS.md 4.1's counts, derived from the reference networks.
#[test]
fn parameter_counts_equal_the_reference_models() {
    let _lock = crate::train::tests_lock();
    for (name, spec, g_count, d_count) in [
        ("cifar conditional", StyleGan2Spec::cifar(10), 20_215_315, 23_089_664),
        ("cifar unconditional", StyleGan2Spec::cifar(0), 19_947_539, 20_720_641),
        ("paper256 unconditional", StyleGan2Spec::paper256(0), 24_767_458, 24_001_089),
    ] {
        let (g_vs, d_vs, g, _d) = build(&spec);
        assert_eq!((trainable(&g_vs), trainable(&d_vs)), (g_count, d_count), "{name}");
        let mapping: i64 = g_vs
            .variables()
            .iter()
            .filter(|(k, _)| k.starts_with("mapping."))
            .map(|(_, t)| t.numel() as i64)
            .sum();
        let w_avg = 512;
        let expected_mapping = if spec.mapping_layers == 8 { 2_101_248 } else { 793_088 };
        if spec.c_dim > 0 || spec.mapping_layers == 8 {
            assert_eq!(mapping - w_avg, expected_mapping, "{name}: mapping network");
        }
        assert_eq!(g.num_ws(), 2 * (spec.resolution as f64).log2() as i64 - 2);
    }
}

/// The shipped recipes build the reference models, and the full-size networks run at batch 2:
/// G's images have the recipe's shape and an O(1) spread (StyleGAN2 has no output squashing: the
/// ToRGB outputs of every resolution add up, about 1.4 at 256x256 at init; training sets the
/// scale), and D gives one finite logit per image.
#[test]
fn shipped_recipes_build_the_reference_models() {
    let _lock = crate::train::tests_lock();
    tch::manual_seed(7);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    for (file, g_count, d_count) in
        [("stylegan2.yaml", 24_767_458, 24_001_089), ("stylegan2-cifar.yaml", 20_215_315, 23_089_664)]
    {
        let cfg = gan_core::config::load_with_env(&root.join(file), &[], std::iter::empty()).unwrap();
        let spec = StyleGan2Spec::from_config(&cfg);
        let (g_vs, d_vs, g, d) = build(&spec);
        assert_eq!((trainable(&g_vs), trainable(&d_vs)), (g_count, d_count), "{file}");
        let z = Tensor::randn([2, spec.z_dim], (Kind::Float, Device::Cpu));
        let c = Tensor::from_slice(&[1i64, 7]);
        let (img, logits) = tch::no_grad(|| {
            let img = g.forward(&z, &c);
            let logits = d.forward(&img, &c);
            (img, logits)
        });
        let res = spec.resolution;
        assert_eq!(img.size(), [2, 3, res, res], "{file}");
        let std = img.std(false).double_value(&[]);
        assert!(
            std > 0.1 && std < 10.0 && img.isfinite().all().int64_value(&[]) == 1,
            "{file}: image std {std}"
        );
        assert_eq!(logits.size(), [2], "{file}");
        assert!(logits.isfinite().all().int64_value(&[]) == 1, "{file}");
    }
}

#[test]
fn state_dict_names_follow_the_reference() {
    let _lock = crate::train::tests_lock();
    let spec =
        StyleGan2Spec { resolution: 16, channel_base: 256, channel_max: 32, ..StyleGan2Spec::paper256(10) };
    let (g_vs, d_vs, _g, _d) = build(&spec);
    let g_names = g_vs.variables();
    for name in [
        "mapping.embed.weight",
        "mapping.fc0.weight",
        "mapping.fc7.bias",
        "mapping.w_avg",
        "synthesis.b4.const",
        "synthesis.b4.conv1.affine.bias",
        "synthesis.b4.conv1.noise_strength",
        "synthesis.b4.conv1.noise_const",
        "synthesis.b8.conv0.weight",
        "synthesis.b16.torgb.weight",
    ] {
        assert!(g_names.contains_key(name), "G lacks {name}");
    }
    let d_names = d_vs.variables();
    for name in [
        "b16.fromrgb.weight",
        "b16.skip.weight",
        "b8.conv1.bias",
        "b4.conv.weight",
        "b4.fc.weight",
        "b4.out.bias",
        "mapping.fc7.weight",
    ] {
        assert!(d_names.contains_key(name), "D lacks {name}");
    }
    assert!(!d_names.contains_key("b8.fromrgb.weight"), "resnet D has FromRGB only at the input");
    assert!(!d_names.contains_key("b16.skip.bias"), "the skip conv has no bias");
}

fn small(c_dim: i64, arch: gan_core::config::DArchitecture) -> StyleGan2Spec {
    StyleGan2Spec {
        resolution: 16,
        z_dim: 32,
        w_dim: 32,
        channel_base: 256,
        channel_max: 32,
        d_architecture: arch,
        mbstd_group_size: 4,
        ..StyleGan2Spec::paper256(c_dim)
    }
}

#[test]
fn outputs_have_the_expected_shapes_and_are_finite() {
    let _lock = crate::train::tests_lock();
    tch::manual_seed(1);
    for (c_dim, arch) in
        [(0, gan_core::config::DArchitecture::Resnet), (10, gan_core::config::DArchitecture::Orig)]
    {
        let spec = small(c_dim, arch);
        let (_g_vs, _d_vs, g, d) = build(&spec);
        let z = Tensor::randn([8, 32], (Kind::Float, Device::Cpu));
        let c = Tensor::arange(8, (Kind::Int64, Device::Cpu));
        let img = g.forward(&z, &c);
        assert_eq!(img.size(), [8, 3, 16, 16]);
        let logits = d.forward(&img, &c);
        assert_eq!(logits.size(), [8]);
        for t in [&img, &logits] {
            assert!(t.isfinite().all().int64_value(&[]) == 1);
        }
        // Sampling is deterministic (stored noise, fixed w_avg) and truncation at psi 0 gives
        // every latent of a class the same image.
        let a = g.forward_eval(&z, &c);
        assert!(a.equal(&g.forward_eval(&z, &c)));
        let t0 = g.forward_truncated(&z, &Tensor::zeros([8], (Kind::Int64, Device::Cpu)), 0.0);
        let spread = (&t0 - t0.get(0)).abs().max().double_value(&[]);
        assert!(spread < 1e-5, "psi 0 collapses onto w_avg: spread {spread}");
    }
}

/// With unit-variance inputs and any styles, demodulation gives every output channel unit
/// variance (what replaced StyleGAN's AdaIN); without it the variance follows the styles.
#[test]
fn demodulation_normalises_output_variance() {
    let _lock = crate::train::tests_lock();
    tch::manual_seed(2);
    let (n, c_in, c_out) = (4, 64, 48);
    let x = Tensor::randn([n, c_in, 32, 32], (Kind::Float, Device::Cpu));
    let weight = Tensor::randn([c_out, c_in, 3, 3], (Kind::Float, Device::Cpu));
    let styles = Tensor::rand([n, c_in], (Kind::Float, Device::Cpu)) * 3.0 + 0.1;
    let y = modulated_conv2d(&x, &weight, &styles, true, None);
    // Interior pixels only: zero padding lowers the variance at the border.
    let inner = y.narrow(2, 1, 30).narrow(3, 1, 30);
    let var = inner.var_dim([0, 2, 3].as_slice(), false, false);
    let (lo, hi) = (var.min().double_value(&[]), var.max().double_value(&[]));
    assert!(lo > 0.85 && hi < 1.15, "per-channel variance in [{lo:.3}, {hi:.3}]");
    let plain = modulated_conv2d(&x, &weight, &styles, false, None).narrow(2, 1, 30).narrow(3, 1, 30);
    assert!(
        plain.var(false).double_value(&[]) > 10.0,
        "without demodulation the variance scales with the styles"
    );
}

/// Demodulation coefficients computed without building per-sample weights equal the reference's
/// explicit form 1/sqrt(sum (s_i w_oik)^2 + eps); and the upsampling path doubles the size.
#[test]
fn modulated_conv_matches_the_explicit_per_sample_weights() {
    let _lock = crate::train::tests_lock();
    tch::manual_seed(3);
    let x = Tensor::randn([2, 5, 8, 8], (Kind::Double, Device::Cpu));
    let weight = Tensor::randn([4, 5, 3, 3], (Kind::Double, Device::Cpu));
    let styles = Tensor::randn([2, 5], (Kind::Double, Device::Cpu));
    let ours = modulated_conv2d(&x, &weight, &styles, true, None);
    for i in 0..2 {
        let w = &weight * styles.get(i).view([1, 5, 1, 1]);
        let d = (w.square().sum_dim_intlist([1, 2, 3].as_slice(), true, Kind::Double) + 1e-8).rsqrt();
        let explicit = x.get(i).unsqueeze(0).conv2d(&(w * d), None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
        let diff = (ours.get(i).unsqueeze(0) - explicit).abs().max().double_value(&[]);
        assert!(diff < 1e-10, "sample {i}: {diff}");
    }
    let filter = resample::fir_filter(Device::Cpu).to_kind(Kind::Double);
    let up = modulated_conv2d(&x, &weight, &styles, true, Some(&filter));
    assert_eq!(up.size(), [2, 4, 16, 16]);
}

/// The FIR resampling keeps a constant image constant (the filter sums to 1, upsampling's gain 4
/// makes up for the inserted zeros) away from the zero-padded border.
#[test]
fn fir_resampling_preserves_constants() {
    let _lock = crate::train::tests_lock();
    let f = resample::fir_filter(Device::Cpu);
    let x = Tensor::ones([1, 2, 8, 8], (Kind::Float, Device::Cpu)) * 3.0;
    let up = resample::upsample2d(&x, &f);
    assert_eq!(up.size(), [1, 2, 16, 16]);
    let inner = up.narrow(2, 2, 12).narrow(3, 2, 12);
    assert!((inner - 3.0).abs().max().double_value(&[]) < 1e-5);
    let down = resample::downsample2d(&x, &f);
    assert_eq!(down.size(), [1, 2, 4, 4]);
    assert!((down.narrow(2, 1, 2).narrow(3, 1, 2) - 3.0).abs().max().double_value(&[]) < 1e-5);
    let w = Tensor::ones([3, 2, 3, 3], (Kind::Float, Device::Cpu));
    assert_eq!(resample::conv_down(&x, &w, &f).size(), [1, 3, 4, 4]);
    assert_eq!(resample::conv3x3_up(&x, &w, &f).size(), [1, 3, 16, 16]);
}

/// Minibatch stddev: groups are samples i, i + N/G, ...; a group of identical samples has zero
/// spread, a group of 0s and 2s has spread 1.
#[test]
fn minibatch_stddev_groups_like_the_reference() {
    let _lock = crate::train::tests_lock();
    // 4 samples, group 2: groups {0, 2} and {1, 3}.
    let x = Tensor::from_slice(&[0.0f32, 5.0, 2.0, 5.0]).view([4, 1, 1, 1]).repeat([1, 3, 2, 2]);
    let y = minibatch_std(&x, 2);
    assert_eq!(y.size(), [4, 4, 2, 2]);
    let stat: Vec<f32> = Vec::try_from(y.select(1, 3).mean_dim([1, 2].as_slice(), false, None)).unwrap();
    for (got, want) in stat.iter().zip([1.0, 0.0, 1.0, 0.0]) {
        assert!((got - want).abs() < 1e-3, "{stat:?}");
    }
}

/// Style mixing: with probability 1, some layers' ws come from a second latent; w_avg moves
/// toward the batch in training and stays put in sampling.
#[test]
fn style_mixing_and_w_avg_tracking() {
    let _lock = crate::train::tests_lock();
    tch::manual_seed(4);
    let spec = StyleGan2Spec { style_mixing_prob: 1.0, ..small(0, gan_core::config::DArchitecture::Resnet) };
    let (_g_vs, _d_vs, g, _d) = build(&spec);
    let z = Tensor::randn([4, 32], (Kind::Float, Device::Cpu));
    let c = Tensor::zeros([4], (Kind::Int64, Device::Cpu));
    let w_avg = g.mapping.w_avg.as_ref().unwrap();
    assert_eq!(w_avg.abs().sum(Kind::Float).double_value(&[]), 0.0);
    let ws = g.training_ws(&z, &c);
    let moved = w_avg.copy();
    assert!(moved.abs().sum(Kind::Float).double_value(&[]) > 0.0, "training moves w_avg");
    let first = ws.select(1, 0);
    let last = ws.select(1, g.num_ws() - 1);
    assert!(
        (first - last).abs().max().double_value(&[]) > 1e-4,
        "the last layer takes the second latent's w"
    );
    let _ = g.forward_eval(&z, &c);
    assert!(w_avg.equal(&moved), "sampling leaves w_avg alone");
}

/// Metric sampling draws fresh noise per image from (seed, image index): the same images
/// whatever the batch split, other images for another seed, and not the stored noise.
#[test]
fn seeded_noise_depends_on_the_image_not_the_batch() {
    let _lock = crate::train::tests_lock();
    tch::manual_seed(5);
    let (g_vs, _d_vs, g, _d) = build(&small(0, gan_core::config::DArchitecture::Resnet));
    // Noise strengths start at 0 (as in the reference); give the noise a visible effect.
    tch::no_grad(|| {
        for (name, mut t) in g_vs.variables() {
            if name.ends_with("noise_strength") {
                let _ = t.fill_(1.0);
            }
        }
    });
    let z = Tensor::randn([4, 32], (Kind::Float, Device::Cpu));
    let c = Tensor::zeros([4], (Kind::Int64, Device::Cpu));
    let whole = g.sample_seeded(&z, &c, 7, 10, 1.0);
    let halves = Tensor::cat(
        &[
            g.sample_seeded(&z.narrow(0, 0, 2), &c.narrow(0, 0, 2), 7, 10, 1.0),
            g.sample_seeded(&z.narrow(0, 2, 2), &c.narrow(0, 2, 2), 7, 12, 1.0),
        ],
        0,
    );
    let gap = (&whole - &halves).abs().max().double_value(&[]);
    assert!(gap < 1e-4, "split batches draw the same noise: {gap}");
    let differ = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]) > 1e-3;
    assert!(differ(&whole, &g.sample_seeded(&z, &c, 8, 10, 1.0)), "another seed, other noise");
    assert!(differ(&whole, &g.sample(&z, &c, 1.0)), "not the stored noise");
}

/// The small pair of `testdata/reference-*.safetensors`: every part of the full networks (three
/// synthesis blocks, two D blocks and the epilogue, a conditional mapping in G and in D) at a size
/// that keeps the files small.
fn reference_spec(arch: DArchitecture, conv_clamp: f64) -> StyleGan2Spec {
    StyleGan2Spec {
        resolution: 16,
        z_dim: 16,
        w_dim: 16,
        channel_base: 128,
        channel_max: 16,
        mapping_layers: 2,
        d_architecture: arch,
        mbstd_group_size: 2,
        conv_clamp: Some(conv_clamp),
        ..StyleGan2Spec::cifar(3)
    }
}

/// G and D against the reference networks themselves: the fixtures hold weights (our init, then
/// every tensor perturbed, so biases, noise strengths, `noise_const` and `w_avg` all count) under
/// the reference's state-dict names, with latents, labels and the outputs that
/// NVlabs/stylegan2-ada-pytorch @375a436 (`training/networks.py` forward passes with the
/// reference paths of `torch_utils.ops`, CPU fp32, eval mode) computed from them: images with
/// `noise_mode='const'` at psi 1 and 0.7, and D's logits of the psi-1 images. One fixture has a
/// resnet D and conv_clamp 256, the other an orig D and conv_clamp 0.6, which clamps.
#[test]
fn outputs_equal_the_reference_networks_on_the_same_weights() {
    let _lock = crate::train::tests_lock();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/trainer/models/stylegan2/testdata");
    for (file, arch, clamp) in
        [("reference-resnet", DArchitecture::Resnet, 256.0), ("reference-orig", DArchitecture::Orig, 0.6)]
    {
        let fixture = crate::models::reference_fixtures::read(&dir.join(format!("{file}.safetensors")));
        let get = |name: &str| fixture[name].shallow_clone();
        let (g_vs, d_vs, g, d) = build(&reference_spec(arch, clamp));
        load_named(&g_vs, &fixture, "G.");
        load_named(&d_vs, &fixture, "D.");
        let (z, c) = (get("z"), get("c"));
        tch::no_grad(|| {
            let img = g.sample(&z, &c, 1.0);
            let err = max_rel_err(&img, &get("img"));
            assert!(err < 1e-5, "{file}: G at psi 1 differs by {err:e}");
            let err = max_rel_err(&g.sample(&z, &c, 0.7), &get("img_psi0.7"));
            assert!(err < 1e-5, "{file}: G at psi 0.7 differs by {err:e}");
            let logits = crate::models::Discriminator::forward(&d, &get("img"), &c);
            let err = max_rel_err(&logits.view([-1, 1]), &get("logits"));
            assert!(err < 1e-5, "{file}: D differs by {err:e}");
        });
    }
}

/// FreezeD takes D's first layers out of training in the reference's order (FromRGB, then each
/// block's conv0, conv1 and skip, from the input down): they get no gradient, and an optimizer
/// over D leaves them out. The epilogue and D's label mapping always train.
#[test]
fn freeze_d_takes_ds_first_layers_out_of_training() {
    let _lock = crate::train::tests_lock();
    let frozen_of = |arch, freeze_d| {
        let spec = StyleGan2Spec { freeze_d, ..small(4, arch) };
        let (_g_vs, d_vs, _g, d) = build(&spec);
        let img = Tensor::randn([4, 3, 16, 16], (Kind::Float, Device::Cpu));
        let c = Tensor::arange(4, (Kind::Int64, Device::Cpu));
        d.forward(&img, &c).sum(Kind::Float).backward();
        // The frozen layers: each frozen parameter's layer, once.
        let mut frozen: Vec<String> = Vec::new();
        for (name, t) in d_vs.variables() {
            assert_eq!(t.requires_grad(), t.grad().defined(), "{name}: a gradient exactly when trained");
            if !t.requires_grad() {
                frozen.push(name.rsplit_once('.').unwrap().0.to_string());
            }
        }
        frozen.sort();
        frozen.dedup();
        frozen
    };
    assert!(frozen_of(DArchitecture::Resnet, 0).is_empty());
    // Resnet at 16x16: b16.fromrgb (0), b16.conv0 (1), b16.conv1 (2), b16.skip (3), b8.conv0 (4).
    let resnet = ["b16.conv0", "b16.conv1", "b16.fromrgb", "b16.skip", "b8.conv0"];
    assert_eq!(frozen_of(DArchitecture::Resnet, 5), resnet);
    // Orig: no skip, so the fourth layer is b8.conv0.
    assert_eq!(frozen_of(DArchitecture::Orig, 4), ["b16.conv0", "b16.conv1", "b16.fromrgb", "b8.conv0"]);
}
