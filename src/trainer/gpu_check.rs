//! `gan-train gpu-check nccl|step|noise|manifold`: the parts of `scripts/gpu-check.sh` that need
//! libtorch and a GPU. `nccl` joins NCCL with world size 1 (the unique id through a real store, as
//! a job does), checks every collective returns its input, and times host-staged all-reduces, the
//! path training uses. `step` builds the same run on the CPU and on the GPU from the same weights,
//! takes the same steps on the same batches and latents, and prints how far the updated weights
//! (and the updates themselves) are apart. `noise` times StyleGAN2's seeded metric noise drawn on
//! the device against the host loop it replaced, and checks the two agree. `manifold` times
//! precision/recall and density/coverage at an evaluation's sizes.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use tch::{nn, Device, Kind, Tensor};

use crate::comm::nccl::NcclGroup;
use crate::train::{step::run_step, Setup};
use gan_core::comm::{ProcessGroup, ReduceOp, SingleRank};
use gan_core::config::{self, HostFacts, SetOverride};
use gan_core::rendezvous::{StoreClient, StoreServer};
use gan_core::Error;

#[derive(clap::Subcommand, Debug)]
pub enum GpuCheck {
    /// NCCL with world size 1: every collective returns its input; host-staged all-reduce speed.
    Nccl(NcclArgs),
    /// The same training steps on the CPU and on the GPU: relative differences of the results.
    Step(StepArgs),
    /// Writes randomly initialised FID Inception weights (safetensors, for timing the feature
    /// extraction where the standard file is absent; never standard FID). Needs no GPU.
    RandomInception {
        /// Output file (.safetensors).
        out: PathBuf,
    },
    /// StyleGAN2's seeded metric noise: the host stream next to the tensor form on a device, in
    /// ms per image, and the largest difference between the two.
    Noise(NoiseArgs),
    /// Precision/recall and density/coverage on random 2048-d features: seconds per evaluation.
    Manifold(ManifoldArgs),
}

#[derive(clap::Args, Debug)]
pub struct ManifoldArgs {
    /// Real feature rows (evaluation keeps up to 10,000).
    #[arg(long, default_value_t = 10_000)]
    reals: i64,
    /// Generated feature rows (eval.num; the paper recipes use 50,000).
    #[arg(long, default_value_t = 50_000)]
    fakes: i64,
    #[arg(long, default_value = "cuda", value_parser = ["cpu", "cuda"])]
    device: String,
}

#[derive(clap::Args, Debug)]
pub struct NoiseArgs {
    /// Image side: the noise of every synthesis layer up to it (256 = paper256's 13 layers).
    #[arg(long, default_value_t = 256)]
    resolution: i64,
    /// Images per batch.
    #[arg(long, default_value_t = 16)]
    images: i64,
    /// Where the tensor form runs (and where the host noise is copied to).
    #[arg(long, default_value = "cuda", value_parser = ["cpu", "cuda"])]
    device: String,
    /// Timed batches per form (after one warm-up).
    #[arg(long, default_value_t = 3)]
    iters: u64,
}

#[derive(clap::Args, Debug)]
pub struct NcclArgs {
    /// Largest all-reduce to time, in MiB (sizes double from 1 MiB).
    #[arg(long, default_value_t = 256)]
    max_mib: u64,
    /// Timed repetitions per size (after one warm-up).
    #[arg(long, default_value_t = 5)]
    iters: u32,
}

#[derive(clap::Args, Debug)]
pub struct StepArgs {
    /// Recipe (YAML).
    config: PathBuf,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<SetOverride>,
    /// Let convolutions and matmuls use TF32 on the GPU (off: a plain fp32 comparison).
    #[arg(long)]
    tf32: bool,
}

pub fn run(check: &GpuCheck) -> anyhow::Result<()> {
    if let GpuCheck::RandomInception { out } = check {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = crate::eval::inception::FidInception::new(&vs.root());
        vs.save(out)?;
        return Ok(());
    }
    if let GpuCheck::Noise(args) = check {
        if args.device == "cpu" {
            return noise(args, Device::Cpu);
        }
    }
    if let GpuCheck::Manifold(args) = check {
        if args.device == "cpu" {
            return manifold(args, Device::Cpu);
        }
    }
    if !tch::Cuda::is_available() {
        return Err(Error::Env(
            "gpu-check: libtorch sees no CUDA device (no GPU, no driver, or a CPU-only libtorch)".into(),
        )
        .into());
    }
    match check {
        GpuCheck::Nccl(args) => nccl(args),
        GpuCheck::Step(args) => step(args),
        GpuCheck::Noise(args) => noise(args, Device::Cuda(0)),
        GpuCheck::Manifold(args) => manifold(args, Device::Cuda(0)),
        GpuCheck::RandomInception { .. } => unreachable!("handled above"),
    }
}

const TIMEOUT: Duration = Duration::from_secs(60);

fn nccl(args: &NcclArgs) -> anyhow::Result<()> {
    let server = StoreServer::bind("127.0.0.1:0", "gpu-check")?;
    let address = server.local_addr().to_string();
    let mut store = StoreClient::connect(&address, "gpu-check", "gpu-check", "rank 0", TIMEOUT)?;
    let mut group = NcclGroup::connect(&mut store, 0, 1, 0, TIMEOUT)?;
    let x32: Vec<f32> = (0..4099).map(|i| i as f32 * 0.25 - 300.0).collect();
    let x64: Vec<f64> = x32.iter().map(|&v| f64::from(v) / 3.0).collect();
    for op in [ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max] {
        let (mut a, mut b) = (x32.clone(), x64.clone());
        group.all_reduce_f32(&mut a, op)?;
        group.all_reduce_f64(&mut b, op)?;
        ensure!(a == x32 && b == x64, "nccl all_reduce {op:?} with one rank changed its input");
    }
    let mut a = x32.clone();
    group.broadcast_f32(&mut a, 0)?;
    let mut gathered = vec![0f32; x32.len()];
    group.all_gather_f32(&x32, &mut gathered)?;
    ensure!(a == x32 && gathered == x32, "nccl broadcast/all_gather with one rank changed its input");
    group.barrier()?;
    println!(
        "nccl, world size 1: all_reduce (sum, avg, max; f32, f64), broadcast, all_gather, barrier: correct"
    );
    println!("{:>9} {:>10} {:>12}", "size MiB", "time ms", "algbw GB/s");
    let mut mib = 1;
    while mib <= args.max_mib {
        let mut data = vec![1.0f32; (mib << 20) as usize / 4];
        group.all_reduce_f32(&mut data, ReduceOp::Sum)?;
        let started = Instant::now();
        for _ in 0..args.iters {
            group.all_reduce_f32(&mut data, ReduceOp::Sum)?;
        }
        let secs = started.elapsed().as_secs_f64() / f64::from(args.iters.max(1));
        ensure!(data.iter().all(|&v| v == 1.0), "nccl all_reduce of {mib} MiB changed its input");
        println!("{mib:>9} {:>10.3} {:>12.2}", secs * 1e3, (mib << 20) as f64 / secs / 1e9);
        mib *= 2;
    }
    println!(
        "(host buffers staged through the GPU, as statistics and checks are: the time includes both copies)"
    );
    println!(
        "{:>9} {:>10} {:>12}   device-resident, as gradient buckets are",
        "size MiB", "time ms", "algbw GB/s"
    );
    let mut mib = 1;
    while mib <= args.max_mib {
        let n = (mib << 20) as usize / 4;
        let t = Tensor::ones([n as i64], (Kind::Float, Device::Cuda(0)));
        let reduce = |group: &mut NcclGroup| -> anyhow::Result<()> {
            // SAFETY: `t` is a live contiguous f32 CUDA tensor of n elements, untouched meanwhile.
            ensure!(unsafe { group.all_reduce_device_f32(t.data_ptr() as u64, n, ReduceOp::Sum)? });
            Ok(())
        };
        reduce(&mut group)?;
        tch::Cuda::synchronize(0);
        let started = Instant::now();
        for _ in 0..args.iters {
            reduce(&mut group)?;
        }
        tch::Cuda::synchronize(0);
        let secs = started.elapsed().as_secs_f64() / f64::from(args.iters.max(1));
        ensure!(
            t.eq(1.0).all().int64_value(&[]) == 1,
            "nccl device all_reduce of {mib} MiB changed its input"
        );
        println!("{mib:>9} {:>10.3} {:>12.2}", secs * 1e3, (mib << 20) as f64 / secs / 1e9);
        mib *= 2;
    }
    Ok(())
}

fn step(args: &StepArgs) -> anyhow::Result<()> {
    let scratch = std::env::temp_dir().join(format!("gan-gpu-check-{}", std::process::id()));
    let mut sets = args.sets.clone();
    for set in [
        format!("run.dir={}", scratch.display()),
        "dist.nodes=1".into(),
        "dist.gpus=1".into(),
        "metrics.enabled=false".into(),
        "checkpoint.every_ticks=0".into(),
        "train.sample_ticks=0".into(),
        "log.progress=false".into(),
        format!("train.allow_tf32={}", args.tf32),
    ] {
        sets.push(set.parse()?);
    }
    let cfg = config::load(&args.config, &sets)?;
    let mut cpu = build(&cfg, config::Device::Cpu)?;
    let mut gpu = build(&cfg, config::Device::Cuda)?;
    // The same starting point: the GPU run takes the CPU run's weights (the initialisers draw
    // from each device's own generator).
    for (dst, src) in
        [(&mut gpu.g_vs, &cpu.g_vs), (&mut gpu.d_vs, &cpu.d_vs), (&mut gpu.g_ema_vs, &cpu.g_ema_vs)]
    {
        dst.copy(src)?;
    }
    let before = [host(&cpu.g_vs), host(&cpu.d_vs)];
    let steps = cfg.train.d_steps.max(1);
    for step in 0..u64::from(steps) {
        run_step(&mut cpu, step)?;
        run_step(&mut gpu, step)?;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    println!(
        "{steps} step(s) of {} (batch {}, {}) on the CPU and on {}, from the same weights and batches:",
        args.config.display(),
        cfg.train.batch_size,
        if args.tf32 { "TF32 allowed" } else { "TF32 off" },
        gpu.device_name()
    );
    for (name, vs_cpu, vs_gpu, start) in
        [("G", &cpu.g_vs, &gpu.g_vs, &before[0]), ("D", &cpu.d_vs, &gpu.d_vs, &before[1])]
    {
        let (c, g) = (host(vs_cpu), host(vs_gpu));
        let rel = |a: &Tensor, b: &Tensor| {
            (a - b).norm().double_value(&[]) / b.norm().double_value(&[]).max(1e-300)
        };
        if c.size() != g.size() {
            bail!("{name}: the CPU and GPU runs have different parameters");
        }
        println!(
            "  {name}: weights relative difference {:.3e}, updates relative difference {:.3e}",
            rel(&g, &c),
            rel(&(&g - start), &(&c - start))
        );
    }
    Ok(())
}

fn noise(args: &NoiseArgs, device: Device) -> anyhow::Result<()> {
    use crate::models::stylegan2::noise::{layer_key, seeded_noise, seeded_noise_host};
    ensure!(args.resolution >= 4 && args.images > 0, "--resolution must be at least 4, --images at least 1");
    // (noise key, side) of each synthesis layer: the 4x4 block has one conv, every later block
    // an upsampling conv0 and a conv1.
    let mut layers = vec![(layer_key(4, false), 4i64)];
    let mut res = 8;
    while res <= args.resolution {
        layers.extend([(layer_key(res, true), res), (layer_key(res, false), res)]);
        res *= 2;
    }
    let per_image: i64 = layers.iter().map(|&(_, r)| r * r).sum();
    let sync = || synchronize(device);
    let n = args.images;
    // A form draws (first image, layer key, side) for n images of seed 7.
    type Form<'a> = &'a dyn Fn(u64, u64, i64) -> Tensor;
    let batch = |form: Form, first: u64| -> Vec<Tensor> {
        layers.iter().map(|&(key, r)| form(first, key, r)).collect()
    };
    let host_form = |first, key, r| seeded_noise_host(7, first, n, key, r).to_device(device);
    let tensor_form = |first, key, r| seeded_noise(7, first, n, key, r, device);
    let mut ms_per_image = [0.0; 2];
    for (form, ms) in [&host_form as Form, &tensor_form].into_iter().zip(&mut ms_per_image) {
        drop(batch(form, 0));
        sync();
        let started = Instant::now();
        for i in 1..=args.iters {
            drop(batch(form, i * n as u64));
        }
        sync();
        *ms = started.elapsed().as_secs_f64() * 1e3 / (args.iters * n as u64).max(1) as f64;
    }
    let gap = batch(&host_form, 0)
        .iter()
        .zip(batch(&tensor_form, 0))
        .map(|(a, b)| (a - b).abs().max().double_value(&[]))
        .fold(0.0, f64::max);
    println!(
        "seeded metric noise, {r}x{r}: {} layers, {per_image} values per image, batches of {n}",
        layers.len(),
        r = args.resolution
    );
    println!("  host stream, copied to {device:?}: {:.3} ms/image", ms_per_image[0]);
    println!("  tensor form on {device:?}:       {:.3} ms/image", ms_per_image[1]);
    println!("  largest difference: {gap:.2e}");
    ensure!(gap < 1e-5, "the tensor form differs from the host stream by {gap}");
    Ok(())
}

/// Times both nearest-neighbour metrics on random features shaped like pool3's (non-negative,
/// 2048-d). Half the fakes are reals moved a little, half are drawn afresh, so that neither
/// metric is trivially 0 or 1.
fn manifold(args: &ManifoldArgs, device: Device) -> anyhow::Result<()> {
    use crate::eval::manifold::{density_coverage, precision_recall, DC_K, PR_K};
    ensure!(args.reals > DC_K && args.fakes > DC_K, "--reals and --fakes must be above {DC_K}");
    tch::manual_seed(0);
    let opts = (Kind::Float, device);
    let real = Tensor::randn([args.reals, 2048], opts).abs();
    let near = Tensor::arange(args.fakes / 2, (Kind::Int64, device)).remainder(args.reals);
    let moved = real.index_select(0, &near) + Tensor::randn([args.fakes / 2, 2048], opts) * 0.3;
    let fresh = Tensor::randn([args.fakes - args.fakes / 2, 2048], opts).abs();
    let fake = Tensor::cat(&[moved, fresh], 0);
    // The features are drawn asynchronously on a GPU; the timings start once they exist (and
    // each metric ends by reading its result back, which waits for its work).
    synchronize(device);
    let started = Instant::now();
    let pr = precision_recall(&real, &fake, PR_K)?;
    let pr_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let dc = density_coverage(&real, &fake, DC_K)?;
    let dc_secs = started.elapsed().as_secs_f64();
    println!(
        "nearest-neighbour metrics, {} reals vs {} fakes, 2048-d, on {device:?}",
        args.reals, args.fakes
    );
    println!("  precision/recall (k = {PR_K}): {pr_secs:.2} s ({:.3} / {:.3})", pr.precision, pr.recall);
    println!("  density/coverage (k = {DC_K}): {dc_secs:.2} s ({:.3} / {:.3})", dc.density, dc.coverage);
    Ok(())
}

/// Waits for the device's queued work (nothing to wait for on a CPU), so a timing covers it.
fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn build(cfg: &config::RunConfig, device: config::Device) -> anyhow::Result<Setup> {
    let mut cfg = cfg.clone();
    cfg.train.device = device;
    let plan = config::plan(&cfg, HostFacts::detect()).swap_remove(0);
    let mut s = Setup::new(cfg, plan, Box::new(SingleRank), 0, false)?;
    s.host_latents = true;
    Ok(s)
}

/// Every variable of `vs` (sorted by name) as one float64 vector on the CPU.
fn host(vs: &nn::VarStore) -> Tensor {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let flat: Vec<Tensor> =
        vars.iter().map(|(_, t)| t.to_device(Device::Cpu).to_kind(Kind::Double).reshape([-1])).collect();
    Tensor::cat(&flat, 0)
}
