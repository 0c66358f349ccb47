use tch::{nn, Device, Kind, Tensor};

use super::*;
use crate::models::reference_fixtures::{load_named, max_rel_err};
use crate::models::{Discriminator as _, Generator as _};

/// Trainable parameters of a VarStore (buffers such as u0, sv0 and BN statistics excluded, as
/// in PyTorch's `parameters()`).
fn trainable(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}

fn imagenet128() -> BigGanSpec {
    BigGanSpec {
        resolution: 128,
        ch: 96,
        z_dim: 120,
        classes: 1000,
        hier: true,
        shared_dim: 128,
        attention_res: vec![64],
        ..BigGanSpec::default()
    }
}

#[test]
fn parameter_counts_equal_the_reference_models() {
    let _lock = crate::train::tests_lock();
    for (name, spec, g_count, d_count) in [
        ("ImageNet-128", imagenet128(), 70_433_988, 87_982_370),
        ("CIFAR-10", BigGanSpec::default(), 4_304_387, 4_207_361),
    ] {
        let (g_vs, d_vs) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
        let _g = Generator::new(&spec, g_vs.root());
        let _d = Discriminator::new(&spec, d_vs.root());
        assert_eq!((trainable(&g_vs), trainable(&d_vs)), (g_count, d_count), "{name}");
    }
}

/// The shipped recipes build exactly the reference models.
#[test]
fn shipped_recipes_build_the_reference_models() {
    let _lock = crate::train::tests_lock();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    for (file, g_count, d_count) in
        [("biggan.yaml", 70_433_988, 87_982_370), ("biggan-cifar.yaml", 4_304_387, 4_207_361)]
    {
        let cfg = gan_core::config::load_with_env(&root.join(file), &[], std::iter::empty()).unwrap();
        let spec = BigGanSpec { init: WeightInit::Normal002, ..BigGanSpec::from_config(&cfg) };
        let (g_vs, d_vs) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
        let _g = Generator::new(&spec, g_vs.root());
        let _d = Discriminator::new(&spec, d_vs.root());
        assert_eq!((trainable(&g_vs), trainable(&d_vs)), (g_count, d_count), "{file}");
    }
}

#[test]
fn state_dict_names_follow_the_reference() {
    let _lock = crate::train::tests_lock();
    let spec = BigGanSpec { ch: 8, ..imagenet128() };
    let (g_vs, d_vs) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
    let _g = Generator::new(&spec, g_vs.root());
    let _d = Discriminator::new(&spec, d_vs.root());
    let g = g_vs.variables();
    for name in [
        "shared.weight",
        "linear.weight",
        "linear.u0",
        "linear.sv0",
        "blocks.0.0.conv1.weight",
        "blocks.0.0.bn1.gain.weight",
        "blocks.0.0.bn1.stored_mean",
        "blocks.3.1.theta.weight",
        "blocks.3.1.gamma",
        "output_layer.0.gain",
        "output_layer.2.weight",
    ] {
        assert!(g.contains_key(name), "G lacks {name}");
    }
    let d = d_vs.variables();
    for name in [
        "blocks.0.0.conv_sc.weight",
        "blocks.0.1.o.weight",
        "blocks.5.0.conv2.bias",
        "linear.weight",
        "embed.weight",
        "embed.u0",
    ] {
        assert!(d.contains_key(name), "D lacks {name}");
    }
    assert!(!d.contains_key("blocks.5.0.conv_sc.weight"), "the last D block keeps its identity shortcut");
}

#[test]
fn outputs_have_the_right_shapes_and_ranges() {
    let _lock = crate::train::tests_lock();
    tch::manual_seed(0);
    for (spec, n) in
        [(BigGanSpec { ch: 16, ..imagenet128() }, 2), (BigGanSpec { ch: 8, ..BigGanSpec::default() }, 3)]
    {
        let (g_vs, d_vs) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
        let g = Generator::new(&spec, g_vs.root());
        let d = Discriminator::new(&spec, d_vs.root());
        let z = Tensor::randn([n, spec.z_dim], (Kind::Float, Device::Cpu));
        let c = Tensor::from_slice(&[1i64, 7, 3][..n as usize]);
        let x = g.forward(&z, &c);
        let r = spec.resolution;
        assert_eq!(x.size(), [n, 3, r, r]);
        assert!(x.abs().max().double_value(&[]) <= 1.0, "tanh output");
        assert_eq!(g.forward_eval(&z, &c).size(), [n, 3, r, r]);
        let logits = d.forward(&x, &c);
        assert_eq!(logits.size(), [n]);
        assert_eq!(logits.isfinite().all().int64_value(&[]), 1, "finite logits");
    }
}

/// After a few training forwards the power iteration has converged: W / sigma has top singular
/// value ~1.
#[test]
fn spectral_norm_drives_the_top_singular_value_to_one() {
    let _lock = crate::train::tests_lock();
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let layer = layers::SnLinear::new(vs.root() / "l", 32, 16, false, WeightInit::Normal002, 1e-8);
    let weight = vs.variables()["l.weight"].shallow_clone();
    // Largest singular value: the square root of W W^T's largest eigenvalue.
    let top_singular = |w: &Tensor| w.matmul(&w.tr()).linalg_eigvalsh("L").max().double_value(&[]).sqrt();
    let raw_top = top_singular(&weight);
    let x = Tensor::eye(32, (Kind::Float, Device::Cpu));
    for _ in 0..30 {
        let _ = layer.forward(&x, true);
    }
    // forward(I) = (W / sigma)^T: its singular values are W's divided by sigma.
    let normalised = tch::no_grad(|| layer.forward(&x, false));
    let top = top_singular(&normalised);
    assert!((top - 1.0).abs() < 1e-3, "top singular value {top} (raw {raw_top})");
    assert!((raw_top - 1.0).abs() > 0.1, "the raw weight was not normalised already: {raw_top}");
    // The monitored value: the raw weight's top singular value, as the iteration estimates it,
    // and the largest over the store's layers.
    let sv0 = largest_sv0(&vs).unwrap();
    assert!((sv0 - raw_top).abs() < 1e-3 * raw_top, "sv0 {sv0}, raw {raw_top}");
    let larger = layers::SnLinear::new(vs.root() / "k", 32, 16, false, WeightInit::Normal002, 1e-8);
    tch::no_grad(|| vs.variables()["k.weight"].shallow_clone().copy_(&(&weight * 3.0)));
    for _ in 0..30 {
        let _ = larger.forward(&x, true);
    }
    let sv0 = largest_sv0(&vs).unwrap();
    assert!((sv0 - 3.0 * raw_top).abs() < 3e-3 * raw_top, "sv0 {sv0}, larger layer's {}", 3.0 * raw_top);
    assert_eq!(largest_sv0(&nn::VarStore::new(Device::Cpu)), None, "no spectral norm, no value");
}

/// Orthogonal init (the ImageNet recipe's `--G_init ortho --D_init ortho`) keeps every weight's
/// shape, as `torch.nn.init.orthogonal_` does: the weight viewed as [rows, rest] has orthonormal
/// rows (or columns, when it has more rows than columns). The 128x128 model then runs forward.
#[test]
fn orthogonal_init_keeps_conv_weights_4d_and_orthogonal() {
    let _lock = crate::train::tests_lock();
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    for (name, dims) in [("wide", [16i64, 8, 3, 3]), ("tall", [100, 8, 1, 1])] {
        let w = WeightInit::Orthogonal.var(&(vs.root() / name), "weight", &dims);
        assert_eq!(w.size(), dims, "{name}");
        let m = w.view([dims[0], -1]);
        let gram = if dims[0] < 72 { m.matmul(&m.tr()) } else { m.tr().matmul(&m) };
        let eye = Tensor::eye(gram.size()[0], (Kind::Float, Device::Cpu));
        let off = (gram - eye).abs().max().double_value(&[]);
        assert!(off < 1e-5, "{name}: {off}");
    }
    let spec = BigGanSpec { ch: 8, classes: 4, init: WeightInit::Orthogonal, ..imagenet128() };
    let (g_vs, d_vs) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
    let (g, d) = (Generator::new(&spec, g_vs.root()), Discriminator::new(&spec, d_vs.root()));
    let conv = &g_vs.variables()["blocks.0.0.conv1.weight"];
    assert_eq!(conv.dim(), 4, "{:?}", conv.size());
    let c = Tensor::from_slice(&[0i64, 3]);
    let images = g.forward(&Tensor::randn([2, 120], (Kind::Float, Device::Cpu)), &c);
    assert_eq!(images.size(), [2, 3, 128, 128]);
    assert_eq!(d.forward(&images, &c).size()[0], 2);
}

/// The pairs of `testdata/reference-*.safetensors`: "shared" is the ImageNet model's form (shared
/// class embedding, hierarchical z, self-attention in G and D) at 64x64 and a width of 2;
/// "plain" the CIFAR model's (per-class BN embeddings, no attention) at a width of 2.
fn reference_specs() -> [(&'static str, BigGanSpec); 2] {
    let shared = BigGanSpec {
        resolution: 64,
        ch: 2,
        z_dim: 20,
        classes: 5,
        hier: true,
        shared_dim: 6,
        attention_res: vec![8],
        sn_eps: 1e-6,
        ..BigGanSpec::default()
    };
    let plain = BigGanSpec { resolution: 32, ch: 2, z_dim: 12, classes: 5, ..BigGanSpec::default() };
    [("reference-shared", shared), ("reference-plain", plain)]
}

/// G and D against BigGAN-PyTorch's own networks: the fixtures hold weights (our init, then every
/// tensor perturbed, running statistics and singular vectors included) under the reference's
/// state-dict names, with latents, labels and what the reference's `layers.py`/`BigGAN.py`
/// forward passes (CPU fp32) computed from them: G's images in eval mode (running BN statistics,
/// singular vectors left alone) and then in training mode (batch statistics; one power iteration
/// per layer moves u0 and sv0, and BN's running statistics move), D's logits of the training-mode
/// images, and every u0, sv0 and running statistic after those passes.
#[test]
fn outputs_and_updates_equal_the_reference_networks_on_the_same_weights() {
    let _lock = crate::train::tests_lock();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/trainer/models/biggan/testdata");
    for (file, spec) in reference_specs() {
        let fixture = crate::models::reference_fixtures::read(&dir.join(format!("{file}.safetensors")));
        let get = |name: &str| fixture[name].shallow_clone();
        let (g_vs, d_vs) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
        let g = Generator::new(&spec, g_vs.root());
        let d = Discriminator::new(&spec, d_vs.root());
        load_named(&g_vs, &fixture, "G.");
        load_named(&d_vs, &fixture, "D.");
        let (z, c) = (get("z"), get("c"));
        tch::no_grad(|| {
            let err = max_rel_err(&g.forward_eval(&z, &c), &get("img_eval"));
            assert!(err < 1e-5, "{file}: G in eval mode differs by {err:e}");
            let err = max_rel_err(&g.forward(&z, &c), &get("img_train"));
            assert!(err < 1e-5, "{file}: G in training mode differs by {err:e}");
            let err = max_rel_err(&d.forward(&get("img_train"), &c), &get("logits"));
            assert!(err < 1e-5, "{file}: D differs by {err:e}");
        });
        let mut checked = 0;
        for (prefix, vs) in [("after.G.", &g_vs), ("after.D.", &d_vs)] {
            for (name, var) in vs.variables() {
                let Some(theirs) = fixture.get(&format!("{prefix}{name}")) else {
                    continue;
                };
                let err = max_rel_err(&var, theirs);
                assert!(err < 1e-5, "{file}: {name} after the passes differs by {err:e}");
                checked += 1;
            }
        }
        let buffers = fixture.keys().filter(|k| k.starts_with("after.")).count();
        assert_eq!(checked, buffers, "{file}: every updated buffer of the reference is ours too");
    }
}
