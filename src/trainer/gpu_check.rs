//! `gan-train gpu-check nccl|step`: the parts of `scripts/gpu-check.sh` that need libtorch and a
//! GPU. `nccl` joins NCCL with world size 1 (the unique id through a real store, as a job does),
//! checks every collective returns its input, and times host-staged all-reduces, the path
//! training uses. `step` builds the same run on the CPU and on the GPU from the same weights,
//! takes the same steps on the same batches and latents, and prints how far the updated weights
//! (and the updates themselves) are apart.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use tch::{nn, Device, Kind, Tensor};

use crate::comm::nccl::NcclGroup;
use crate::precision;
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
    if !tch::Cuda::is_available() {
        return Err(Error::Env(
            "gpu-check: libtorch sees no CUDA device (no GPU, no driver, or a CPU-only libtorch)".into(),
        )
        .into());
    }
    match check {
        GpuCheck::Nccl(args) => nccl(args),
        GpuCheck::Step(args) => step(args),
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
    precision::set_allow_tf32(args.tf32, args.tf32)?;
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
