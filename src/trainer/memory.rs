//! `gan-train memory CONFIG`: what one rank of a run holds in memory, for `gan-launch plan
//! --memory`. Weights, gradients, optimizer moments and gradient buckets are counted from the
//! built networks. The working memory of each phase (activations autograd saves for backward, R1's
//! and the path length's double backward, temporaries) is measured: each phase runs on the CPU at
//! small batches while the kernel tracks the process's peak resident size (VmHWM, reset through
//! /proc/self/clear_refs). Autograd saves the same tensors whatever the device, so the figures
//! carry over to a GPU up to library workspaces; the launcher extrapolates them to the rank's
//! batch (`gan_core::config::memory`).
use std::path::PathBuf;

use anyhow::{ensure, Context};
use tch::{nn, Tensor};

use crate::eval::extract;
use crate::train::step::run_phase;
use crate::train::{sync, Setup};
use gan_core::comm::SingleRank;
use gan_core::config::memory::{MemoryMeasurement, NetSize, PhasePeak, EVAL_FEATURES, EVAL_GENERATE};
use gan_core::config::{self, Device, HostFacts, Precision, RunConfig, SetOverride};

#[derive(clap::Args, Debug)]
pub struct MemoryArgs {
    /// Recipe (YAML).
    config: PathBuf,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<SetOverride>,
    /// CONFIG is already resolved (written by gan-launch): no overrides, no environment.
    #[arg(long)]
    resolved: bool,
    /// Batches each phase is measured at (at least two, for the line through them). 2 and 4
    /// rather than 1 and 2: the allocator's noise of a MB or two is then spread over a slope
    /// of two images, and batch 1 is where per-batch overheads (minibatch stddev groups) bend the line.
    #[arg(long, value_delimiter = ',', default_values_t = [2u32, 4])]
    batches: Vec<u32>,
}

pub fn run(args: &MemoryArgs) -> anyhow::Result<()> {
    let mut batches = args.batches.clone();
    batches.sort_unstable();
    batches.dedup();
    ensure!(batches.len() >= 2 && batches[0] > 0, "--batches needs two or more different positive sizes");
    // Blocks of 64 KiB and more come straight from mmap and go back on free; otherwise glibc
    // raises that threshold after the first frees and keeps freed tensors resident, and the
    // resident size would follow the allocator rather than the live tensors.
    // M_MMAP_MAX and M_TRIM_THRESHOLD go back to glibc's defaults: the training ranks' tunables
    // (gan_core::host_malloc) turn mmap and trimming off, and a shell that exported them must
    // not reach this measurement.
    // SAFETY: mallopt only changes the allocator's parameters; it is called before any thread
    // of this process allocates.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 65536);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
    let cfg = if args.resolved {
        config::load_resolved(&args.config)?
    } else {
        config::load(&args.config, &args.sets)?
    };
    let scratch = std::env::temp_dir().join(format!("gan-memory-{}", std::process::id()));
    let measured = measure(&cfg, &batches, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    println!("{}", serde_json::to_string(&measured?)?);
    Ok(())
}

/// The run as one CPU rank at the largest measured batch, with nothing written or served. Its
/// images come from the generated source at the dataset's resolution, channels and classes: the
/// networks and phases are the same whatever the pixels, so a run can be sized before its dataset
/// is prepared or on a machine that cannot see it. Read one batch ahead, so the loader allocates
/// next to nothing while a phase is measured.
fn measuring_config(cfg: &RunConfig, batch: u32, scratch: &std::path::Path) -> RunConfig {
    let mut m = cfg.clone();
    m.run.dir = scratch.to_path_buf();
    (m.dist.nodes, m.dist.gpus) = (1, 1);
    (m.data.source, m.data.path) = (config::DataSource::Generated, None);
    m.data.num_images = u64::from(batch);
    m.data.verify_checksums = false;
    m.data.prefetch = 1;
    m.train.device = Device::Cpu;
    m.train.precision = Precision::Fp32;
    (m.train.batch_size, m.train.batch_per_rank) = (batch, Some(batch));
    m.train.sample_ticks = 0;
    m.eval.every_kimg = 0.0;
    m.checkpoint.every_ticks = 0;
    m.metrics.enabled = false;
    m.log.progress = false;
    m
}

fn measure(cfg: &RunConfig, batches: &[u32], scratch: &std::path::Path) -> anyhow::Result<MemoryMeasurement> {
    let largest = *batches.last().expect("two or more");
    let m = measuring_config(cfg, largest, scratch);
    let plan = config::plan(&m, HostFacts::detect()).swap_remove(0);
    let mut s = Setup::new(m, plan, Box::new(SingleRank), 0, false)?;
    s.host_latents = true;
    // ADA computes every transform (masked per image) once p > 0, which it is for most of a run;
    // at p = 0 it would be skipped and the measurement too low.
    if let crate::augment::Augmenter::Ada(ada) = &mut s.augment {
        ada.p = ada.p.max(0.5);
    }
    let batch = s.next_batch();
    let (reals, labels) = s.to_tensors(&batch);
    let bucket_bytes = (cfg.dist.bucket_mb * 1024.0 * 1024.0) as usize;
    let gradients: Vec<Tensor> =
        s.g_opt.params().chain(s.d_opt.params()).map(Tensor::shallow_clone).collect();
    let largest_bucket_bytes =
        sync::buckets(&gradients, bucket_bytes).iter().map(|b| b.iter().map(bytes).sum()).max().unwrap_or(0);
    let mut phases = phase_peaks(&mut s, (&reals, &labels), batches)?;
    let mut eval_weight_bytes = 0;
    if cfg.eval.every_kimg > 0.0 {
        let (evaluation_phases, weights) = evaluation(&s, cfg, batches)?;
        phases.extend(evaluation_phases);
        eval_weight_bytes = weights;
    }
    Ok(MemoryMeasurement {
        nets: vec![
            net_size("G", &s.g_vs, s.g_opt.params()),
            net_size("G_ema", &s.g_ema_vs, s.g_opt.params()),
            net_size("D", &s.d_vs, s.d_opt.params()),
        ],
        gradient_bytes: gradients.iter().map(bytes).sum(),
        optimizer_bytes: [&s.g_opt, &s.d_opt].iter().flat_map(|o| o.state()).map(|(_, t)| bytes(&t)).sum(),
        largest_bucket_bytes,
        eval_weight_bytes,
        phases,
    })
}

/// Each training phase's working memory at each batch, after a first run that allocates what
/// stays (gradients, lazily built kernels' caches) unmeasured.
fn phase_peaks(
    s: &mut Setup,
    (reals, labels): (&Tensor, &Tensor),
    batches: &[u32],
) -> anyhow::Result<Vec<PhasePeak>> {
    let mut phases = Vec::new();
    for phase in s.phases.clone() {
        let mut points = Vec::new();
        for b in batches.iter().take(1).chain(batches).map(|&b| i64::from(b)) {
            let (real, c) = (reals.narrow(0, 0, b), labels.narrow(0, 0, b));
            let peak =
                peak_above_now(|| run_phase(s, phase, &real, &c, 1, b).map(|_| ()).map_err(Into::into))?;
            points.push((b as u32, peak));
        }
        points.remove(0); // the first run
        phases.push(PhasePeak { name: phase.name().into(), points, concurrent: false });
    }
    Ok(phases)
}

/// The evaluator's forward passes at the measured batches, G_ema's metric images (seeded noise)
/// and the Inception features of uint8 images apart, since they run at batches of their own
/// (`eval.gen_batch`, `eval.batch`); and the weights it holds: Inception's, plus a copy of G_ema
/// when it runs in the background (it scores a snapshot while training moves on, on the same
/// device).
fn evaluation(s: &Setup, cfg: &RunConfig, batches: &[u32]) -> anyhow::Result<(Vec<PhasePeak>, u64)> {
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let inception = crate::eval::inception::FidInception::new(&vs.root());
    let generate = |b: u32| {
        let (z, c) = s.latents(i64::from(b));
        tch::no_grad(|| extract::quantise(&s.g_ema.forward_metric(&z, &c, 0, 0)))
    };
    let (mut g_points, mut features_points) = (Vec::new(), Vec::new());
    for &b in batches.iter().take(1).chain(batches) {
        // The measured pass's images are kept as the feature pass's input: its output is part
        // of its peak either way, and generating them again would double the measuring time.
        let mut images = None;
        let generated = peak_above_now(|| {
            images = Some(generate(b));
            Ok(())
        })?;
        let images = images.expect("the generation pass ran");
        let features = peak_above_now(|| {
            let _ = extract::features_u8(&inception, &images, tch::Device::Cpu);
            Ok(())
        })?;
        g_points.push((b, generated));
        features_points.push((b, features));
    }
    // The first round is the warm-up.
    g_points.remove(0);
    features_points.remove(0);
    let store_bytes = |vs: &nn::VarStore| vs.variables().values().map(bytes).sum::<u64>();
    let snapshot = if cfg.eval.background { store_bytes(&s.g_ema_vs) } else { 0 };
    let phase = |name: &str, points| PhasePeak { name: name.into(), points, concurrent: cfg.eval.background };
    let phases = vec![phase(EVAL_GENERATE, g_points), phase(EVAL_FEATURES, features_points)];
    Ok((phases, store_bytes(&vs) + snapshot))
}

/// How far the process's resident size rose above its size before `f` while `f` ran.
fn peak_above_now(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<u64> {
    std::fs::write("/proc/self/clear_refs", "5").context("resetting the peak resident size")?;
    let before = status_kib("VmRSS")?;
    f()?;
    let peak = status_kib("VmHWM")?;
    Ok(peak.saturating_sub(before) * 1024)
}

/// A size field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> anyhow::Result<u64> {
    crate::host_memory::proc_status(field)
        .and_then(|value| value.strip_suffix(" kB")?.parse().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))
}

/// A network's size: the parameters its optimizer trains (G_ema: G's), and the bytes of every
/// variable of its store (buffers too).
fn net_size<'a>(name: &str, vs: &nn::VarStore, trained: impl Iterator<Item = &'a Tensor>) -> NetSize {
    let params = trained.map(|t| t.numel() as u64).sum();
    NetSize { name: name.into(), params, bytes: vs.variables().values().map(bytes).sum() }
}

fn bytes(t: &Tensor) -> u64 {
    (t.numel() * t.kind().elt_size_in_bytes()) as u64
}
