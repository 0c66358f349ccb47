//! `gan-launch data prepare`: builds a prepared dataset (shards + index) from an image folder, a
//! StyleGAN dataset zip, CIFAR-10's python batches or the built-in generated shapes. `data info`:
//! what a prepared dataset holds and how it was made.
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use gan_core::data::folder::Labels;
use gan_core::data::prepare::{self, PrepareOptions, PrepareSource};
use gan_core::data::resize::ResizeFilter;
use gan_core::data::shards::PreparedDataset;
use gan_core::data::ImageSource;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Subcommand, Debug)]
pub enum Data {
    /// Decode, centre-crop and box-resize images into shards with a checksummed index.
    Prepare(PrepareArgs),
    /// What a prepared dataset holds (images, classes and their sizes) and how it was prepared
    /// (source, labels, resize filter, tool); --verify checks every shard's checksum.
    Info(InfoArgs),
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A prepared dataset's directory (what `data prepare --out` wrote, a config's data.path).
    dir: PathBuf,
    /// Also check every shard's BLAKE3 checksum (reads the whole dataset).
    #[arg(long)]
    verify: bool,
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// An image folder (labelled as --labels says), a StyleGAN dataset zip (labels from its
    /// dataset.json), CIFAR-10's python batches (a folder with data_batch_N / test_batch), or
    /// `generated`.
    #[arg(long)]
    from: String,
    /// Where labels come from. auto: a folder's dataset.json, else its sub-folders as classes
    /// when there are two or more, else none; folders: each sub-folder is a class (images at any
    /// depth inside); dataset-json: StyleGAN's dataset.json; none: every image, unlabelled (also
    /// drops a zip's or CIFAR's labels).
    #[arg(long, value_enum, default_value_t = LabelsArg::Auto)]
    labels: LabelsArg,
    /// How images are shrunk to --resolution, as Pillow does it, byte for byte. box: what the
    /// StyleGAN papers' numbers used (FFHQ at 256 with lanczos scores about 1 FID worse);
    /// lanczos: the default of StyleGAN2-ADA's dataset_tool.py; bilinear: torchvision's Resize,
    /// BigGAN-PyTorch's ImageNet preprocessing.
    #[arg(long, value_enum, default_value_t = FilterArg::Box)]
    resize_filter: FilterArg,
    /// Output directory (must be empty unless --force).
    #[arg(long)]
    out: PathBuf,
    /// Side of the square output images.
    #[arg(long)]
    resolution: u32,
    /// Images per shard file.
    #[arg(long, default_value_t = 4096)]
    shard_images: u64,
    /// Replace the prepared dataset already in --out. Nothing else is ever deleted: an --out that
    /// holds other files is refused.
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

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LabelsArg {
    Auto,
    Folders,
    DatasetJson,
    None,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FilterArg {
    Box,
    Lanczos,
    Bilinear,
}

impl From<FilterArg> for ResizeFilter {
    fn from(arg: FilterArg) -> Self {
        match arg {
            FilterArg::Box => ResizeFilter::Box,
            FilterArg::Lanczos => ResizeFilter::Lanczos,
            FilterArg::Bilinear => ResizeFilter::Bilinear,
        }
    }
}

impl From<LabelsArg> for Labels {
    fn from(arg: LabelsArg) -> Self {
        match arg {
            LabelsArg::Auto => Labels::Auto,
            LabelsArg::Folders => Labels::Folders,
            LabelsArg::DatasetJson => Labels::DatasetJson,
            LabelsArg::None => Labels::None,
        }
    }
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
        path => PrepareSource::detect(&PathBuf::from(path))?,
    };
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let opts = PrepareOptions {
        images_per_shard: args.shard_images,
        force: args.force,
        skip_bad: args.skip_bad,
        convert: args.convert,
        labels: args.labels.into(),
        resize_filter: args.resize_filter.into(),
        ..PrepareOptions::new(args.resolution, threads)
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
    if let Some(notice) = &report.notice {
        eprintln!("note: {notice}");
    }
    for (path, why) in &report.skipped {
        eprintln!("skipped {}: {why}", path.display());
    }
    if let Some(converted) = report.index.prepared.as_ref().and_then(|p| p.converted_summary()) {
        eprintln!("converted to 8-bit RGB: {converted}");
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

pub fn info(args: &InfoArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let dataset = PreparedDataset::open(&args.dir, args.verify)?;
    let index = &dataset.index;
    let bytes: u64 = index.shards.iter().map(|s| s.bytes).sum();
    println!(
        "{}: {} images of {}x{}x{} in {} shard(s), {:.1} MB; content hash {}",
        args.dir.display(),
        index.count,
        index.resolution,
        index.resolution,
        index.channels,
        index.shards.len(),
        bytes as f64 / 1e6,
        index.content_hash
    );
    println!("classes: {}", describe_classes(&dataset));
    match &index.prepared {
        Some(prepared) => println!("prepared: {}", prepared.describe()),
        None => println!("prepared: not recorded (by a gan-launch from before index.json recorded it)"),
    }
    if args.verify {
        println!(
            "checksums: all {} shard(s) match the index ({:.1} MB read in {:.1} s)",
            index.shards.len(),
            bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// "unlabelled", or each class with its image count; with more than 12 classes, the range of
/// counts and the smallest and largest class (an imbalanced dataset shows at once).
fn describe_classes(dataset: &PreparedDataset) -> String {
    let names = &dataset.index.class_names;
    if names.is_empty() {
        return "unlabelled".into();
    }
    let mut counts = vec![0u64; names.len()];
    for i in 0..dataset.len() {
        if let Some(count) = counts.get_mut(dataset.label(i) as usize) {
            *count += 1;
        }
    }
    let named = |k: usize| format!("{} {}", names[k], counts[k]);
    if names.len() <= 12 {
        let all: Vec<String> = (0..names.len()).map(named).collect();
        return format!("{} ({})", names.len(), all.join(", "));
    }
    let smallest = (0..names.len()).min_by_key(|&k| counts[k]).expect("classes");
    let largest = (0..names.len()).max_by_key(|&k| counts[k]).expect("classes");
    format!(
        "{}, {} to {} images each (smallest: {}; largest: {})",
        names.len(),
        counts[smallest],
        counts[largest],
        named(smallest),
        named(largest)
    )
}
