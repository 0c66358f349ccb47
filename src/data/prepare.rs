//! Building a prepared dataset from a source: the built-in generated shapes, an image folder
//! (PNG/JPEG, labelled as `folder` says), a StyleGAN dataset zip (labels from its dataset.json) or
//! CIFAR-10's python batches. Every image is centre-cropped to a square and box-resized to the
//! target resolution; images are decoded in parallel, a batch at a time, and written in a fixed
//! order, so the same folder always gives the same dataset (and content hash).
use std::path::{Path, PathBuf};

use super::folder::{self, Labels};
use super::generated::GeneratedShapes;
use super::provenance::Provenance;
use super::resize::{centre_crop, resize, ResizeFilter};
use super::shards::{DatasetIndex, ShardWriter};
use super::ImageSource;
use super::{cifar, stylegan_zip};
use crate::error::{Error, Result};

/// Where images come from.
#[derive(Clone, Debug)]
pub enum PrepareSource {
    Generated {
        count: u64,
        num_classes: u32,
        seed: u64,
    },
    ImageFolder(PathBuf),
    /// A StyleGAN dataset zip (labels from its dataset.json).
    StyleganZip(PathBuf),
    /// CIFAR-10's python batches (`cifar-10-batches-py`).
    Cifar10(PathBuf),
}

impl PrepareSource {
    /// What the file or folder at `path` is: a zip archive, a folder of CIFAR-10 python batches,
    /// or an image folder.
    pub fn detect(path: &Path) -> Result<Self> {
        let bad = |message: &str| Error::Dataset { path: path.to_path_buf(), message: message.into() };
        if path.is_dir() {
            let cifar = ["data_batch_1", "test_batch"].iter().any(|f| path.join(f).is_file());
            return Ok(if cifar { Self::Cifar10(path.into()) } else { Self::ImageFolder(path.into()) });
        }
        if !path.exists() {
            return Err(bad("does not exist"));
        }
        let mut magic = [0u8; 4];
        let is_zip = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok_and(|()| magic == *b"PK\x03\x04");
        let named_zip = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip"));
        if is_zip || named_zip {
            return Ok(Self::StyleganZip(path.into()));
        }
        Err(bad("is a file but not a zip archive; --from takes an image folder, a StyleGAN dataset zip, \
             a folder of CIFAR-10 python batches, or `generated`"))
    }

    /// What was read, for the dataset's provenance: the kind of source and its absolute path.
    fn describe(&self) -> String {
        let absolute =
            |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
        match self {
            Self::Generated { count, num_classes, seed } => {
                format!("generated shapes ({count} images, {num_classes} classes, seed {seed})")
            }
            Self::ImageFolder(dir) => format!("image folder {}", absolute(dir)),
            Self::StyleganZip(path) => format!("StyleGAN zip {}", absolute(path)),
            Self::Cifar10(dir) => format!("CIFAR-10 batches {}", absolute(dir)),
        }
    }

    /// Refuses a `--labels` choice this source cannot follow.
    fn check_labels(&self, labels: Labels) -> Result<()> {
        let (fits, path, allowed) = match self {
            Self::ImageFolder(_) => return Ok(()),
            Self::Generated { .. } => {
                (labels == Labels::Auto, Path::new("generated"), "auto (set the classes with --classes)")
            }
            Self::StyleganZip(path) => {
                (labels != Labels::Folders, path.as_path(), "auto, dataset-json or none")
            }
            Self::Cifar10(path) => {
                (matches!(labels, Labels::Auto | Labels::None), path.as_path(), "auto or none")
            }
        };
        if fits {
            return Ok(());
        }
        Err(Error::config("--labels", labels.name(), format!("{allowed} for {}", path.display())))
    }
}

#[derive(Clone, Debug)]
pub struct PrepareOptions {
    pub resolution: u32,
    pub images_per_shard: u64,
    /// Replace the prepared dataset in the output directory (never anything else).
    pub force: bool,
    /// Skip unreadable or unsuitable images (and report them) instead of stopping at the first.
    pub skip_bad: bool,
    /// Convert images that are not 8-bit RGB (grayscale, with alpha, 16-bit) to it, as
    /// PIL's `convert("RGB")` does for torchvision's ImageFolder, instead of refusing them.
    pub convert: bool,
    /// Where an image folder's labels come from; `None` also drops a zip's or CIFAR's labels.
    pub labels: Labels,
    /// How images are shrunk to the resolution.
    pub resize_filter: ResizeFilter,
    pub threads: usize,
}

impl PrepareOptions {
    /// `data prepare`'s defaults: shards of 4096 images, stop at the first bad image, labels as
    /// the source has them, an empty output directory.
    pub fn new(resolution: u32, threads: usize) -> Self {
        PrepareOptions {
            resolution,
            images_per_shard: 4096,
            force: false,
            skip_bad: false,
            convert: false,
            labels: Labels::Auto,
            resize_filter: ResizeFilter::Box,
            threads,
        }
    }
}

/// What `prepare` did.
#[derive(Debug)]
pub struct PrepareReport {
    pub index: DatasetIndex,
    /// Images left out with `skip_bad`, and why.
    pub skipped: Vec<(PathBuf, String)>,
    /// How the labels were chosen, when the user should hear about it.
    pub notice: Option<String>,
}

impl PrepareReport {
    /// A source whose images all went in as they were (the generated shapes, CIFAR's batches).
    fn every_image(index: DatasetIndex) -> Self {
        PrepareReport { index, skipped: Vec::new(), notice: None }
    }
}

/// An image ready for a shard, and the colour type it was converted from, if it was.
struct Decoded {
    pixels: Vec<u8>,
    converted_from: Option<String>,
    /// Its centre crop was larger than the resolution: the filter shrank it.
    resized: bool,
}

/// Decoded images are processed this many at a time (bounds memory on big folders).
const BATCH: usize = 256;

/// Builds the dataset in `out`; `progress` is called with (done, total) after each batch.
pub fn prepare(
    source: &PrepareSource,
    out: &Path,
    opts: &PrepareOptions,
    progress: &dyn Fn(u64, u64),
) -> Result<PrepareReport> {
    source.check_labels(opts.labels)?;
    let provenance = Provenance::new(source.describe(), opts.labels.name(), opts.resize_filter.name());
    match source {
        PrepareSource::Generated { count, num_classes, seed } => {
            let shapes = GeneratedShapes {
                seed: *seed,
                len: *count,
                resolution: opts.resolution,
                channels: 3,
                num_classes: *num_classes,
            };
            let mut writer = ShardWriter::create(out, opts.resolution, 3, opts.images_per_shard, opts.force)?;
            let mut pixels = vec![0u8; shapes.image_bytes()];
            for i in 0..*count {
                let label = shapes.read(i, &mut pixels).label;
                writer.push(&pixels, label)?;
                if (i + 1) % BATCH as u64 == 0 || i + 1 == *count {
                    progress(i + 1, *count);
                }
            }
            // Drawn at the resolution: nothing is resized.
            let names = super::generated::class_names(*num_classes);
            Ok(PrepareReport::every_image(writer.finish(names, provenance)?))
        }
        PrepareSource::ImageFolder(dir) => prepare_folder(dir, out, opts, provenance, progress),
        PrepareSource::StyleganZip(path) => prepare_zip(path, out, opts, provenance, progress),
        PrepareSource::Cifar10(dir) => prepare_cifar(dir, out, opts, provenance, progress),
    }
}

fn prepare_cifar(
    dir: &Path,
    out: &Path,
    opts: &PrepareOptions,
    mut provenance: Provenance,
    progress: &dyn Fn(u64, u64),
) -> Result<PrepareReport> {
    if opts.resolution > cifar::SIDE {
        return Err(Error::Dataset {
            path: dir.to_path_buf(),
            message: format!(
                "CIFAR-10 images are 32x32; --resolution {} would need upscaling",
                opts.resolution
            ),
        });
    }
    let files = cifar::batch_files(dir)?;
    let keep_labels = opts.labels != Labels::None;
    let class_names = if keep_labels { cifar::class_names(dir)? } else { Vec::new() };
    let mut writer = ShardWriter::create(out, opts.resolution, 3, opts.images_per_shard, opts.force)?;
    let mut count = 0;
    for (done, file) in files.iter().enumerate() {
        for (pixels, label) in cifar::read_batch(file)? {
            let label = if keep_labels { label } else { 0 };
            writer.push(&resize(&pixels, cifar::SIDE, 3, opts.resolution, opts.resize_filter), label)?;
            count += 1;
        }
        progress(done as u64 + 1, files.len() as u64);
    }
    provenance.resized = if opts.resolution < cifar::SIDE { count } else { 0 };
    Ok(PrepareReport::every_image(writer.finish(class_names, provenance)?))
}

fn prepare_zip(
    path: &Path,
    out: &Path,
    opts: &PrepareOptions,
    provenance: Provenance,
    progress: &dyn Fn(u64, u64),
) -> Result<PrepareReport> {
    let mut listing = stylegan_zip::list(path)?;
    match opts.labels {
        Labels::None => listing.drop_labels(),
        Labels::DatasetJson if !listing.has_dataset_json => {
            return Err(Error::Dataset {
                path: path.join("dataset.json"),
                message: "not in the archive (--labels dataset-json reads labels from it)".into(),
            })
        }
        _ => {}
    }
    let mut images_out = Collector::create(out, opts, provenance)?;
    let total = listing.names.len() as u64;
    for (batch_no, names) in listing.names.chunks(BATCH).enumerate() {
        let images = stylegan_zip::read(path, &listing, names)?;
        let decoded = parallel_map(&images, opts.threads, |img| decode_bytes(&img.bytes, opts));
        for (image, decoded) in images.iter().zip(decoded) {
            images_out.accept(&image.path, image.label, decoded)?;
        }
        progress(((batch_no * BATCH) + names.len()) as u64, total);
    }
    let names = (0..listing.num_classes).map(|c| c.to_string()).collect();
    images_out.finish(total, path, names)
}

fn prepare_folder(
    dir: &Path,
    out: &Path,
    opts: &PrepareOptions,
    provenance: Provenance,
    progress: &dyn Fn(u64, u64),
) -> Result<PrepareReport> {
    let folder::FolderListing { files, class_names, notice } = folder::list(dir, opts.labels)?;
    let mut images_out = Collector::create(out, opts, provenance)?;
    let total = files.len() as u64;
    for (batch_no, batch) in files.chunks(BATCH).enumerate() {
        let decoded = parallel_map(batch, opts.threads, |(path, _)| decode(path, opts));
        for ((path, label), decoded) in batch.iter().zip(decoded) {
            images_out.accept(path, *label, decoded)?;
        }
        progress(((batch_no * BATCH) + batch.len()) as u64, total);
    }
    let report = images_out.finish(total, dir, class_names)?;
    Ok(PrepareReport { notice, ..report })
}

/// Decoded images on their way into the shards, with what was skipped or converted.
struct Collector {
    writer: ShardWriter,
    skip_bad: bool,
    skipped: Vec<(PathBuf, String)>,
    /// Counts images resized and converted as they come.
    provenance: Provenance,
}

impl Collector {
    fn create(out: &Path, opts: &PrepareOptions, provenance: Provenance) -> Result<Self> {
        let writer = ShardWriter::create(out, opts.resolution, 3, opts.images_per_shard, opts.force)?;
        Ok(Collector { writer, skip_bad: opts.skip_bad, skipped: Vec::new(), provenance })
    }

    /// Writes a decoded image, or records (with `skip_bad`) or reports why it cannot be used.
    fn accept(
        &mut self,
        path: &Path,
        label: u32,
        decoded: std::result::Result<Decoded, String>,
    ) -> Result<()> {
        match decoded {
            Ok(image) => {
                if let Some(kind) = image.converted_from {
                    *self.provenance.converted.entry(kind).or_default() += 1;
                }
                self.provenance.resized += u64::from(image.resized);
                self.writer.push(&image.pixels, label)
            }
            Err(why) if self.skip_bad => {
                self.skipped.push((path.to_path_buf(), why));
                Ok(())
            }
            Err(why) => Err(Error::Dataset {
                path: path.to_path_buf(),
                message: format!("{why} (or pass --skip-bad)"),
            }),
        }
    }

    fn finish(self, total: u64, source: &Path, class_names: Vec<String>) -> Result<PrepareReport> {
        if self.skipped.len() as u64 == total {
            return Err(Error::Dataset {
                path: source.to_path_buf(),
                message: format!("all {total} images were bad"),
            });
        }
        let mut provenance = self.provenance;
        provenance.skipped = self.skipped.len() as u64;
        let index = self.writer.finish(class_names, provenance)?;
        Ok(PrepareReport { index, skipped: self.skipped, notice: None })
    }
}

/// Applies `f` to `items` on `threads` threads, keeping the order.
fn parallel_map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let per_thread = items.len().div_ceil(threads.max(1)).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(per_thread)
            .map(|chunk| scope.spawn(move || chunk.iter().map(f).collect::<Vec<_>>()))
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a decode thread does not panic")).collect()
    })
}

/// One image file as `resolution x resolution` RGB bytes, or why it cannot be used.
fn decode(path: &Path, opts: &PrepareOptions) -> std::result::Result<Decoded, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    decode_bytes(&bytes, opts)
}

/// An encoded image (PNG, JPEG) as `resolution x resolution` RGB bytes: 8-bit RGB, or with
/// `convert` anything the decoder reads (grayscale replicated, alpha dropped, 16 bits rounded; CMYK
/// JPEGs come out of the decoder as RGB already), centre-cropped and box-resized; never upscaled.
fn decode_bytes(bytes: &[u8], opts: &PrepareOptions) -> std::result::Result<Decoded, String> {
    let resolution = opts.resolution;
    let image =
        image::load_from_memory(bytes).map_err(|e| format!("cannot decode (corrupt or truncated?): {e}"))?;
    let (rgb, converted_from) = match image {
        image::DynamicImage::ImageRgb8(rgb) => (rgb, None),
        other if opts.convert => (other.to_rgb8(), Some(format!("{:?}", other.color()))),
        other => {
            return Err(format!(
                "is {:?}; only 8-bit RGB images are accepted (pass --convert to convert such images to it)",
                other.color()
            ))
        }
    };
    let (width, height) = rgb.dimensions();
    if width.min(height) < resolution {
        return Err(format!(
            "is {width}x{height}, smaller than the target {resolution}x{resolution} (no upscaling)"
        ));
    }
    let (square, side) = centre_crop(rgb.as_raw(), width, height, 3, opts.resize_filter);
    let pixels = resize(&square, side, 3, resolution, opts.resize_filter);
    Ok(Decoded { pixels, converted_from, resized: side > resolution })
}
