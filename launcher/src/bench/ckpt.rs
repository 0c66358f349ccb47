//! `gan-launch bench ckpt`: checkpoint write, verify and load throughput through the real
//! commit protocol (files fsynced, directory renamed, `latest` updated), next to the disk's own
//! sequential write speed measured with `dd ... conv=fsync` of random bytes in the same directory.
//!
//! The state is laid out like a real one with |G| = |D|: g, d, g_ema one seventh each, the two
//! Adam states (two moments each) two sevenths each, in 4 MiB tensors of random floats.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clap::Args;
use gan_core::checkpoint::{
    verify, Checkpoints, Dtype, Manifest, RawTensor, TensorFile, TrainState, FORMAT, FORMAT_VERSION,
    STATE_FILE,
};
use gan_core::rng::SplitMix64;

#[derive(Args, Debug)]
pub struct CkptArgs {
    /// State sizes to measure, in MB.
    #[arg(long, value_delimiter = ',', default_value = "100,700")]
    sizes_mb: Vec<u64>,
    /// Directory to write in (on the disk whose speed matters; default: ./runs).
    #[arg(long, default_value = "runs")]
    dir: PathBuf,
}

const TENSOR_BYTES: usize = 4 << 20;

pub fn run(args: &CkptArgs) -> anyhow::Result<()> {
    // Removed when dropped, so a failed measurement leaves nothing behind either.
    std::fs::create_dir_all(&args.dir)?;
    let scratch = tempfile::Builder::new().prefix(".bench-ckpt-").tempdir_in(&args.dir)?;
    let scratch = scratch.path();
    println!("checkpoint I/O in {} (page cache warm for reads)", scratch.display());
    println!(
        "{:>8} {:>12} {:>14} {:>14} {:>14} {:>14}",
        "MB", "copy s", "write MB/s", "verify MB/s", "load MB/s", "dd MB/s"
    );
    for &mb in &args.sizes_mb {
        let result = measure(scratch, mb);
        let _ = std::fs::remove_dir_all(scratch.join("checkpoints"));
        let (copy, write, verify, load, dd) = result?;
        println!("{mb:>8} {copy:>12.3} {write:>14.0} {verify:>14.0} {load:>14.0} {dd:>14.0}");
    }
    println!("copy s: the host copy rank 0 makes before handing the state to the writer thread");
    Ok(())
}

fn measure(scratch: &Path, mb: u64) -> anyhow::Result<(f64, f64, f64, f64, f64)> {
    let files = state((mb * 1_000_000) as usize);
    let total: usize = files.iter().flat_map(|(_, ts)| ts.iter().map(|t| t.data.len())).sum();
    let bytes = total as f64 / 1e6;
    let started = Instant::now();
    let copied: Vec<(&str, Vec<RawTensor>)> = files.iter().map(|(n, t)| (*n, t.clone())).collect();
    let copy_secs = started.elapsed().as_secs_f64();
    drop(files);

    let ckpts = Checkpoints::new(scratch.join("checkpoints"));
    let started = Instant::now();
    let mut pending = ckpts.begin(1)?;
    for (name, tensors) in &copied {
        pending.write_tensors(name, tensors, &BTreeMap::new())?;
    }
    pending.write_json(STATE_FILE, &TrainState { step: 1, ..Default::default() })?;
    let dir = pending.commit(manifest(), 3)?;
    let write_secs = started.elapsed().as_secs_f64();
    drop(copied);

    let started = Instant::now();
    verify(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let verify_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut loaded = 0usize;
    for name in ["g", "d", "g_ema", "g_opt", "d_opt"] {
        let file = TensorFile::open(&dir.join(format!("{name}.safetensors")))?;
        for view in file.tensors()? {
            // black_box: the copy is the work measured; the optimiser must not drop it.
            loaded += std::hint::black_box(view.data.to_vec()).len();
        }
    }
    let load_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(loaded == total, "loaded {loaded} of {total} bytes");
    let dd = dd_write_mb_per_sec(scratch, mb)?;
    Ok((copy_secs, bytes / write_secs, bytes / verify_secs, bytes / load_secs, dd))
}

/// A state of about `total` bytes split into the five tensor files.
fn state(total: usize) -> Vec<(&'static str, Vec<RawTensor>)> {
    let mut rng = SplitMix64::new(7);
    [
        ("g.safetensors", 1),
        ("d.safetensors", 1),
        ("g_ema.safetensors", 1),
        ("g_opt.safetensors", 2),
        ("d_opt.safetensors", 2),
    ]
    .into_iter()
    .map(|(name, sevenths)| {
        let count = (total * sevenths / 7 / TENSOR_BYTES).max(1);
        let tensors = (0..count)
            .map(|i| {
                let data: Vec<u8> =
                    (0..TENSOR_BYTES / 8).flat_map(|_| rng.next_u64().to_le_bytes()).collect();
                RawTensor {
                    name: format!("layer{i}.weight"),
                    dtype: Dtype::F32,
                    shape: vec![TENSOR_BYTES / 4],
                    data,
                }
            })
            .collect();
        (name, tensors)
    })
    .collect()
}

fn manifest() -> Manifest {
    Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        step: 1,
        cur_nimg: 0,
        created: String::new(),
        world_size: 1,
        arch: "bench".into(),
        git_commit: String::new(),
        crate_version: String::new(),
        libtorch_version: String::new(),
        files: Vec::new(),
        metrics: Default::default(),
    }
}

/// `dd bs=1M conv=fsync` of `mb` MB of random bytes (zeros would flatter a disk that dedups or
/// compresses) from a page-cached source file into the scratch directory; its rate.
fn dd_write_mb_per_sec(scratch: &Path, mb: u64) -> anyhow::Result<f64> {
    let source = scratch.join("dd.src");
    let mut rng = SplitMix64::new(11);
    let bytes: Vec<u8> = (0..mb * 1_000_000 / 8).flat_map(|_| rng.next_u64().to_le_bytes()).collect();
    gan_core::fsutil::write_synced(&source, &bytes)?;
    drop(bytes);
    let target = scratch.join("dd.bin");
    let started = Instant::now();
    let out = Command::new("dd")
        .arg(format!("if={}", source.display()))
        .arg(format!("of={}", target.display()))
        .args(["bs=1000000", "conv=fsync"])
        .output()?;
    let secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&target);
    let _ = std::fs::remove_file(&source);
    anyhow::ensure!(out.status.success(), "dd failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(mb as f64 / secs)
}
