//! `gan-launch plan --memory`: one rank's memory from the real trainer (sizes counted, working
//! memory measured on the CPU and extrapolated), whether it fits a GPU, and the batch per round
//! that does when it does not.
mod common;

use common::*;
use gan_core::config::memory::MemoryMeasurement;

/// The tests of this file run one at a time: peak resident sizes are what they measure, and
/// glibc makes more malloc arenas when threads of processes that share the cores contend.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A small StyleGAN2 (16x16, up to 128 channels) with R1, ADA and background FID: every part of
/// the estimate, measured in seconds.
const SMALL_STYLEGAN2: &str = "
data: { source: generated, resolution: 16 }
model: { arch: stylegan2, channel_base: 4096, channel_max: 128, mapping_layers: 2, mbstd_group_size: 4 }
train:
  device: cpu
  batch_size: 16
  total_kimg: 1
  loss: ns_logistic
  g_opt: { lr: 0.0025, betas: [0.0, 0.99] }
  d_opt: { lr: 0.0025, betas: [0.0, 0.99] }
  r1_gamma: 0.01
  r1_interval: 16
  augment: ada
eval: { every_kimg: 1, batch: 8 }
";

#[test]
fn plan_memory_counts_measures_and_says_whether_a_rank_fits() {
    let _serial = one_at_a_time();
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), SMALL_STYLEGAN2);
    let plan =
        |args: &[&str]| gan_launch().arg("plan").arg(&config).arg("--memory").args(args).output().unwrap();

    let out = plan(&["--gpu-memory-gib", "80"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    let section = text.split("# memory per rank").nth(1).unwrap_or_else(|| panic!("{text}"));
    assert!(section.starts_with(" (16 images a round, 1 round(s) a step;"), "{section}");
    for row in ["G weights (", "G_ema weights", "D weights (", "gradients (G, D)", "Adam moments (G, D)"] {
        assert!(section.contains(&format!("\n  {row}")), "{row}: {section}");
    }
    assert!(section.contains("evaluation weights"), "Inception and the G_ema snapshot: {section}");
    assert!(
        section.contains("working memory at batch 16, peak in ")
            && section.contains("+ background evaluation")
            && section.contains("\n    of which evaluation (eval.gen_batch, eval.batch) "),
        "{section}"
    );
    assert!(
        section.contains("\n# fits a 80 GiB GPU (--gpu-memory-gib): ")
            && section.contains("% of it (plans keep within 80%"),
        "{section}"
    );

    // No GPU here and none named: the estimate without a verdict.
    let out = plan(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("# no GPU here to check the fit on: pass --gpu-memory-gib"),
        "{}",
        stdout(&out)
    );

    // A GPU whose 80% holds 90% of what 16 images a round need (about 390 MiB), which is more than
    // 1 needs (about 310 MiB, most of it evaluation's fixed batch of 8): a config error naming the
    // batch that fits.
    let total_mib: f64 = section
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("total")?.trim().strip_suffix(" MiB")?.parse().ok())
        .unwrap_or_else(|| panic!("a total in MiB: {section}"));
    let gpu_gib = format!("{:.2}", total_mib * 0.9 / 0.8 / 1024.0);
    let out = plan(&["--gpu-memory-gib", &gpu_gib]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("config error at `train.batch_per_rank`: one rank needs about "), "{err}");
    assert!(
        err.contains("of it evaluation's, which eval.gen_batch and eval.batch lower) with 16 images"),
        "{err}"
    );
    assert!(err.contains(&format!("but 80% of a {gpu_gib} GiB GPU (--gpu-memory-gib) is ")), "{err}");
    let advised: u32 = err
        .split("set train.batch_per_rank=")
        .nth(1)
        .and_then(|rest| rest.split(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("a batch per round is advised: {err}"));
    assert!(advised < 16 && 16 % advised == 0, "{err}");
    assert!(err.contains(&format!("{} rounds of {advised} keep train.batch_size 16", 16 / advised)), "{err}");

    let out =
        gan_launch().arg("plan").arg(&config).args(["--gpu-memory-gib", "0", "--memory"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("a positive number of GiB"), "{}", stderr(&out));
}

/// The trainer's report: sizes that agree with each other, and working memory that grows along
/// a line, so that two small batches predict a large one.
#[test]
fn measured_working_memory_at_two_batches_predicts_a_larger_one() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &SMALL_STYLEGAN2.replace("every_kimg: 1", "every_kimg: 0"));
    let out = std::process::Command::new(gan_train_path())
        .arg("memory")
        .arg(&config)
        .args(["--batches", "2,4,8"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let m: MemoryMeasurement = serde_json::from_slice(&out.stdout).unwrap();
    let net = |name: &str| m.nets.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("{name}: {m:?}"));
    let (g, d) = (net("G"), net("D"));
    assert!(g.params > 100_000 && d.params > 100_000, "{m:?}");
    assert_eq!(net("G_ema").params, g.params);
    assert_eq!(m.gradient_bytes, 4 * (g.params + d.params), "one f32 gradient per parameter");
    let moments = 2 * m.gradient_bytes;
    assert!((moments..moments + 64).contains(&m.optimizer_bytes), "Adam's two f32 moments and step counts");
    assert_eq!(m.eval_weight_bytes, 0, "evaluation off");
    let names: Vec<&str> = m.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["D main", "D reg", "G main"], "path length is off (pl_weight 0)");
    for phase in &m.phases {
        let mut two = phase.clone();
        two.points.retain(|p| p.0 <= 4);
        let measured = phase.points.iter().find(|p| p.0 == 8).unwrap().1 as f64;
        let predicted = two.at(8) as f64;
        assert!(measured > 2.0 * two.points[0].1 as f64, "{}: grows with the batch: {phase:?}", phase.name);
        assert!(
            (predicted / measured - 1.0).abs() < 0.25,
            "{}: {predicted} predicted, {measured} measured",
            phase.name
        );
    }
}

/// A run is sized from its config alone: before its dataset is prepared (here 1000 classes, more
/// than the generated source draws), `plan --memory` prints the plan and the memory, then exits 2
/// naming the missing dataset, as a launch would. The networks are the dataset's: G's class
/// embedding grows by w_dim parameters a class.
#[test]
fn a_run_is_sized_before_its_dataset_is_prepared() {
    let _serial = one_at_a_time();
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("imagenet");
    let yaml = |classes: u32| {
        SMALL_STYLEGAN2
            .replace(
                "data: { source: generated, resolution: 16 }",
                &format!(
                    "data: {{ source: prepared, path: {}, resolution: 16, num_classes: {classes} }}",
                    data.display()
                ),
            )
            .replace("arch: stylegan2,", "arch: stylegan2, conditional: true,")
            .replace("every_kimg: 1", "every_kimg: 0")
    };
    let config = write_config(dir.path(), &yaml(1000));
    let out =
        gan_launch().arg("plan").arg(&config).args(["--memory", "--gpu-memory-gib", "80"]).output().unwrap();
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(text.contains("# plan: 1 node(s) x 1 rank(s)") && text.contains("# memory per rank"), "{text}");
    assert!(text.contains("\n# fits a 80 GiB GPU"), "{text}");
    assert!(err.contains("a launch of this plan would refuse to start: dataset "), "{err}");
    assert!(err.contains(&format!("{}", data.join("index.json").display())), "{err}");

    let g_params = |classes: u32| {
        let sub = dir.path().join(classes.to_string());
        std::fs::create_dir_all(&sub).unwrap();
        let out = std::process::Command::new(gan_train_path())
            .arg("memory")
            .arg(write_config(&sub, &yaml(classes)))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let m: MemoryMeasurement = serde_json::from_slice(&out.stdout).unwrap();
        m.nets.iter().find(|n| n.name == "G").unwrap().params
    };
    assert_eq!(g_params(1000) - g_params(10), 990 * 512, "one w_dim embedding row a class");
}
