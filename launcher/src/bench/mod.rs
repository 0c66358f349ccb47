//! `gan-launch bench`: figures for the distributed runtime, measured over real TCP on this
//! machine with ranks as threads (the same code paths ranks use).
//!
//! - `ring`: CPU ring all-reduce bus bandwidth, as nccl-tests defines it: algorithm bandwidth
//!   (bytes / time) x 2 (world - 1) / world, the traffic each rank's links carry.
//! - `rendezvous`: time for W ranks to connect to the store, pass a barrier and form the ring.
//! - `loader`, `prepare`: data pipeline throughput.
//! - `ckpt`: checkpoint write / verify / load throughput next to `dd` (in `ckpt.rs`).
//! - `train`: training throughput of recipes on CPU or a GPU with the phase split (in `train.rs`).
//! - `flight`: the cost of flight recording per collective and activity change (in `flight.rs`).
mod ckpt;
mod flight;
pub mod gpu_memory;
mod train;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use gan_core::comm::{ProcessGroup, ReduceOp, RingGroup};
use gan_core::rendezvous::{StoreClient, StoreServer};

#[derive(Subcommand, Debug)]
pub enum Bench {
    /// All-reduce bus bandwidth of the CPU ring.
    Ring(RingArgs),
    /// Join time: store connection, barrier, ring formation.
    Rendezvous(RendezvousArgs),
    /// Loader throughput from a prepared dataset (or generated shapes written to a temporary one).
    Loader(LoaderArgs),
    /// Prepare throughput from a folder of PNGs (written to a temporary folder first).
    Prepare(PrepareArgs),
    /// Checkpoint write, verify and load throughput next to the disk's dd speed.
    Ckpt(ckpt::CkptArgs),
    /// Training throughput (imgs/s, sec/kimg) of recipes on CPU or a GPU, with the D / G /
    /// regularisation split (and peak GPU memory).
    Train(train::TrainArgs),
    /// What flight recording (the stuck-job diagnosis) costs per collective and activity change.
    Flight(flight::FlightArgs),
}

#[derive(Args, Debug)]
pub struct LoaderArgs {
    /// A prepared dataset; default: 4096 generated images at --resolution in a temporary directory.
    #[arg(long)]
    data: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 32)]
    resolution: u32,
    #[arg(long, default_value_t = 64)]
    batch: u64,
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    #[arg(long, default_value_t = 1000)]
    images: u32,
    /// Side of the PNGs written first.
    #[arg(long, default_value_t = 64)]
    size: u32,
    /// Target resolution of the prepared dataset.
    #[arg(long, default_value_t = 32)]
    resolution: u32,
}

#[derive(Args, Debug)]
pub struct RingArgs {
    /// World sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "2,4")]
    ranks: Vec<u32>,
    /// Buffer sizes in MiB.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    sizes_mb: Vec<u64>,
    /// Timed all-reduces per size (after one warm-up).
    #[arg(long, default_value_t = 5)]
    iters: u32,
}

#[derive(Args, Debug)]
pub struct RendezvousArgs {
    #[arg(long, default_value_t = 8)]
    ranks: u32,
    /// Repetitions (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeat: u32,
}

const TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(bench: &Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Ring(args) => ring(args),
        Bench::Rendezvous(args) => rendezvous(args),
        Bench::Loader(args) => loader(args),
        Bench::Prepare(args) => prepare_bench(args),
        Bench::Ckpt(args) => ckpt::run(args),
        Bench::Train(args) => train::run(args),
        Bench::Flight(args) => flight::run(args),
    }
}

fn loader(args: &LoaderArgs) -> anyhow::Result<()> {
    use gan_core::data::loader::{Loader, LoaderSpec};
    use gan_core::data::prepare::{prepare, PrepareOptions, PrepareSource};
    use gan_core::data::{sampler::Sampler, shards::PreparedDataset, ImageSource};
    let scratch = scratch_dir()?;
    let scratch = scratch.path();
    let dir = match &args.data {
        Some(dir) => dir.clone(),
        None => {
            let dir = scratch.join("data");
            let source = PrepareSource::Generated { count: 4096, num_classes: 4, seed: 0 };
            let opts = PrepareOptions {
                images_per_shard: 1024,
                force: true,
                ..PrepareOptions::new(args.resolution, 1)
            };
            prepare(&source, &dir, &opts, &|_, _| {})?;
            dir
        }
    };
    let dataset: std::sync::Arc<dyn ImageSource> = std::sync::Arc::new(PreparedDataset::open(&dir, true)?);
    let res = dataset.resolution();
    let spec =
        LoaderSpec { global_batch: args.batch, rank: 0, world: 1, xflip: true, flip_seed: 1, prefetch: 4 };
    let mut loader = Loader::start(dataset, Sampler::new(0, 4096), spec);
    let started = Instant::now();
    let mut images = 0u64;
    while started.elapsed().as_secs_f64() < args.seconds {
        images += loader.next_batch().len() as u64;
    }
    let rate = images as f64 / started.elapsed().as_secs_f64();
    println!("loader: {rate:.0} images/s at {res}x{res} (batch {}, 1 loader thread, xflip on) = {rate:.0} images/s per core", args.batch);
    Ok(())
}

fn prepare_bench(args: &PrepareArgs) -> anyhow::Result<()> {
    use gan_core::data::generated::GeneratedShapes;
    use gan_core::data::prepare::{prepare, PrepareOptions, PrepareSource};
    use gan_core::data::ImageSource;
    let scratch = scratch_dir()?;
    let scratch = scratch.path();
    let pngs = scratch.join("pngs/all");
    std::fs::create_dir_all(&pngs)?;
    let shapes = GeneratedShapes {
        seed: 0,
        len: u64::from(args.images),
        resolution: args.size,
        channels: 3,
        num_classes: 4,
    };
    let mut pixels = vec![0u8; shapes.image_bytes()];
    for i in 0..u64::from(args.images) {
        shapes.read(i, &mut pixels);
        image::save_buffer(
            pngs.join(format!("{i:06}.png")),
            &pixels,
            args.size,
            args.size,
            image::ExtendedColorType::Rgb8,
        )?;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = PrepareOptions { force: true, ..PrepareOptions::new(args.resolution, threads) };
    let started = Instant::now();
    prepare(&PrepareSource::ImageFolder(scratch.join("pngs")), &scratch.join("out"), &opts, &|_, _| {})?;
    let rate = f64::from(args.images) / started.elapsed().as_secs_f64();
    println!(
        "prepare: {rate:.0} images/s from {}x{} PNGs to {}x{} ({threads} threads, {:.0} images/s per thread)",
        args.size,
        args.size,
        args.resolution,
        args.resolution,
        rate / threads as f64
    );
    Ok(())
}

/// A fresh scratch directory under the system temp dir, removed when dropped: also when the
/// benchmark fails half-way.
fn scratch_dir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix("gan-launch-bench-").tempdir()?)
}

fn ring(args: &RingArgs) -> anyhow::Result<()> {
    println!(
        "CPU ring all-reduce (f32, sum), {} timed iterations, ranks as threads over 127.0.0.1",
        args.iters
    );
    println!("{:>5} {:>9} {:>12} {:>14} {:>14}", "ranks", "size MiB", "time ms", "algbw GB/s", "busbw GB/s");
    for &world in &args.ranks {
        for &mb in &args.sizes_mb {
            let elems = (mb * 1024 * 1024 / 4) as usize;
            let iters = args.iters;
            let times = with_ranks(world, move |group, start| {
                let mut data = vec![1.0f32; elems];
                group.all_reduce_f32(&mut data, ReduceOp::Sum).unwrap(); // warm-up
                group.barrier().unwrap();
                start.wait();
                let t = Instant::now();
                for _ in 0..iters {
                    group.all_reduce_f32(&mut data, ReduceOp::Sum).unwrap();
                }
                t.elapsed().as_secs_f64() / f64::from(iters)
            })?;
            let secs = times.iter().cloned().fold(0.0, f64::max);
            let algbw = (elems * 4) as f64 / secs / 1e9;
            let busbw = algbw * 2.0 * f64::from(world - 1) / f64::from(world);
            println!("{world:>5} {mb:>9} {:>12.2} {algbw:>14.3} {busbw:>14.3}", secs * 1e3);
        }
    }
    Ok(())
}

fn rendezvous(args: &RendezvousArgs) -> anyhow::Result<()> {
    let mut samples = Vec::new();
    for _ in 0..args.repeat {
        let server = StoreServer::bind("127.0.0.1:0", "bench")?;
        let addr = server.local_addr().to_string();
        let world = args.ranks;
        let started = Instant::now();
        let threads: Vec<_> = (0..world)
            .map(|rank| {
                let addr = addr.clone();
                std::thread::spawn(move || -> gan_core::Result<()> {
                    let mut store =
                        StoreClient::connect(&addr, "bench", "bench", &format!("rank {rank}"), TIMEOUT)?;
                    store.barrier("join", world, TIMEOUT)?;
                    let mut ring =
                        RingGroup::connect(&mut store, rank, world, "127.0.0.1", "127.0.0.1", TIMEOUT)?;
                    ring.barrier()
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a rank thread panicked")?;
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    println!(
        "rendezvous join of {} ranks (connect, barrier, ring, first collective): median {:.2} ms over {} runs (min {:.2}, max {:.2})",
        args.ranks,
        median.as_secs_f64() * 1e3,
        samples.len(),
        samples[0].as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3
    );
    Ok(())
}

/// Runs `body` on `world` ring-connected ranks (threads); `start` lines them up before timing.
fn with_ranks<R: Send + 'static>(
    world: u32,
    body: impl Fn(&mut RingGroup, &Barrier) -> R + Send + Sync + Clone + 'static,
) -> anyhow::Result<Vec<R>> {
    let server = StoreServer::bind("127.0.0.1:0", "bench")?;
    let addr = server.local_addr().to_string();
    let start = Arc::new(Barrier::new(world as usize));
    let threads: Vec<_> = (0..world)
        .map(|rank| {
            let (addr, body, start) = (addr.clone(), body.clone(), Arc::clone(&start));
            std::thread::spawn(move || -> gan_core::Result<R> {
                let mut store =
                    StoreClient::connect(&addr, "bench", "bench", &format!("rank {rank}"), TIMEOUT)?;
                let mut ring =
                    RingGroup::connect(&mut store, rank, world, "127.0.0.1", "127.0.0.1", TIMEOUT)?;
                Ok(body(&mut ring, &start))
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in threads {
        out.push(t.join().expect("a rank thread panicked")?);
    }
    Ok(out)
}
