//! `gan-launch data prepare`: builds a prepared dataset (shards + index) from an image folder or
//! the built-in generated shapes.
use std::path::PathBuf;

use clap::{Args, Subcommand};
use gan_core::data::prepare::{self, PrepareOptions, PrepareSource};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Subcommand, Debug)]
pub enum Data {
    /// Decode, centre-crop and box-resize images into shards with a checksummed index.
    Prepare(PrepareArgs),
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// An image folder (class = sub-folder name; unlabelled when the images are at the top level),
    /// a StyleGAN dataset zip (`*.zip`, labels from its dataset.json), CIFAR-10's python batches (a
    /// folder with data_batch_N / test_batch), or `generated`.
    #[arg(long)]
    from: String,
    /// Output directory (must be empty unless --force).
    #[arg(long)]
    out: PathBuf,
    /// Side of the square output images.
    #[arg(long)]
    resolution: u32,
    /// Images per shard file.
    #[arg(long, default_value_t = 4096)]
    shard_images: u64,
    /// Overwrite a non-empty output directory.
    #[arg(long)]
    force: bool,
    /// Skip unreadable or unsuitable images (corrupt, not 8-bit RGB, smaller than --resolution) and
    /// report them, instead of stopping at the first.
    #[arg(long)]
    skip_bad: bool,
    /// Convert images that are not 8-bit RGB (grayscale, with alpha, 16-bit) to it, as
    /// torchvision's ImageFolder does, instead of refusing them; the summary counts them.
    #[arg(long)]
    convert: bool,
    /// Decoding threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Generated source: number of images.
    #[arg(long, default_value_t = 8192)]
    count: u64,
    /// Generated source: number of classes (shapes), 0 for unlabelled.
    #[arg(long, default_value_t = 4)]
    classes: u32,
    /// Generated source: seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn prepare(args: &PrepareArgs) -> anyhow::Result<()> {
    if !args.resolution.is_power_of_two() || args.resolution < 4 {
        return Err(
            gan_core::Error::config("--resolution", args.resolution, "a power of two, at least 4").into()
        );
    }
    let source = match args.from.as_str() {
        "generated" => {
            PrepareSource::Generated { count: args.count, num_classes: args.classes, seed: args.seed }
        }
        path => PrepareSource::ImageFolder(PathBuf::from(path)),
    };
    let opts = PrepareOptions {
        resolution: args.resolution,
        images_per_shard: args.shard_images,
        force: args.force,
        skip_bad: args.skip_bad,
        convert: args.convert,
        threads: args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} images  {elapsed}  eta {eta}")
            .expect("a valid template"),
    );
    let started = std::time::Instant::now();
    let report = prepare::prepare(&source, &args.out, &opts, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    for (path, why) in &report.skipped {
        eprintln!("skipped {}: {why}", path.display());
    }
    if !report.converted.is_empty() {
        let kinds: Vec<String> = report.converted.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
        eprintln!(
            "converted to 8-bit RGB: {} image(s) ({})",
            report.converted.values().sum::<u64>(),
            kinds.join(", ")
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let index = &report.index;
    println!(
        "prepared {} images ({}x{}, {}) in {} shard(s) at {} in {secs:.1} s ({:.0} images/s); skipped {}; content hash {}",
        index.count,
        index.resolution,
        index.resolution,
        match index.num_classes {
            0 => "unlabelled".to_string(),
            n => format!("{n} classes"),
        },
        index.shards.len(),
        args.out.display(),
        index.count as f64 / secs.max(1e-9),
        report.skipped.len(),
        index.content_hash
    );
    Ok(())
}
