//! `gan-train sample CHECKPOINT --out grid.png`: a grid from a checkpoint's G_ema (or a G_ema
//! file), with optional truncation and a fixed class (what `gan-launch sample` runs after
//! resolving the checkpoint); with `--num N`, N images as separate PNGs, the ones evaluation
//! scores, for other tools.
use std::path::{Path, PathBuf};

use clap::Args;
use tch::{nn, Device};

use crate::ckpt;
use crate::eval::extract;
use crate::models::{self, Generator, NetSpec, Truncation};
use crate::train::samples::SampleGrid;
use gan_core::data::classes::ClassDistribution;
use gan_core::images::encode_png;
use gan_core::sample_options::{check_truncation, resolve_class, SampleOptions};
use gan_core::Error;

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// A checkpoint directory (step-NNNNNNNN; gan-launch sample also takes a run directory) or a
    /// G_ema file.
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub options: SampleOptions,
}

pub fn run(args: &SampleArgs) -> anyhow::Result<()> {
    let opts = &args.options;
    let source = ckpt::GeneratorSource::open(&args.checkpoint)?;
    let cfg = source.config()?;
    check_truncation(opts.truncation)?;
    let classes = if cfg.model.conditional { cfg.data.num_classes } else { 0 };
    let names = source.dataset().map(|d| d.classes).unwrap_or_default();
    let class = opts.class.as_deref().map(|arg| resolve_class(arg, classes, &names)).transpose()?;
    let device = if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu };
    let spec = NetSpec::from_config(&cfg);
    let vs = nn::VarStore::new(device);
    let g_ema = models::generator(cfg.model.arch, &spec, vs.root());
    source.load(&vs)?;
    let truncation = opts.truncation.map(|psi| (psi, g_ema.truncation()));
    if let Some(num) = opts.num {
        if num == 0 {
            return Err(Error::config("--num", num, "at least 1 image").into());
        }
        let labels = match class {
            Some(k) => Some(ClassDistribution::from_counts(&one_hot(k, classes))),
            None => extract::label_mix_or_uniform(&cfg, true)?,
        };
        // Generated the run's `eval.gen_batch` at a time; no feature network, so no `batch`.
        let share =
            extract::Share { first: 0, n: num, batch: 0, gen_batch: cfg.eval.gen_batch(), seed: opts.seed };
        let started = std::time::Instant::now();
        write_images(g_ema.as_ref(), labels.as_ref(), share, truncation, &opts.out, device)?;
        let secs = started.elapsed().as_secs_f64();
        println!("wrote {num} images to {} ({:.1} imgs/s)", opts.out.display(), num as f64 / secs);
        return Ok(());
    }
    let grid = SampleGrid::with_options(spec.z_dim, classes, opts.seed, device, truncation, class);
    grid.write(g_ema.as_ref(), &opts.out)?;
    println!("wrote {}", opts.out.display());
    Ok(())
}

fn one_hot(k: u32, classes: u32) -> Vec<u64> {
    (0..classes).map(|c| u64::from(c == k)).collect()
}

/// Images `0..share.n` as `NNNNNN.png` in `dir`, which must be new or empty (so images of two
/// calls never mix in one folder a metric then reads).
fn write_images(
    g: &dyn Generator,
    labels: Option<&ClassDistribution>,
    share: extract::Share,
    truncation: Option<(f64, Truncation)>,
    dir: &Path,
    device: Device,
) -> anyhow::Result<()> {
    let named_like_an_image = dir.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if named_like_an_image || std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        let allowed = "a new or empty directory for --num's images (empty it, or name another)";
        return Err(Error::config("--out", dir.display(), allowed).into());
    }
    gan_core::fsutil::create_dir_all(dir)?;
    let digits = share.n.saturating_sub(1).to_string().len().max(6);
    let mut first = 0;
    while first < share.n {
        let n = (share.n - first).min(u64::from(share.gen_batch));
        let batch = extract::images(g, labels, share, first, n, device, truncation);
        let [_, channels, res, _] = batch.size()[..] else { unreachable!("images are NCHW") };
        let pixels = Vec::<u8>::try_from(
            &batch.permute([0, 2, 3, 1]).contiguous().to_device(Device::Cpu).reshape([-1]),
        )?;
        let image_bytes = (channels * res * res) as usize;
        for (i, image) in pixels.chunks_exact(image_bytes).enumerate() {
            let path = dir.join(format!("{:0digits$}.png", first + i as u64));
            let png = encode_png(image, res as u32, res as u32, channels as u32)
                .map_err(|message| Error::Image { path: path.clone(), message })?;
            // Whole files (through a rename), but no fsync each: an interrupted dump is written
            // again into an emptied folder anyway, and 50,000 fsyncs would cost more than the images.
            gan_core::fsutil::write_replace(&path, &png)?;
        }
        first += n;
    }
    Ok(())
}
