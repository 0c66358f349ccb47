//! Round trips and bad input for the prepared-dataset format and the prepare tool.
use std::path::Path;

use super::prepare::{prepare, PrepareOptions, PrepareSource};
use super::shards::PreparedDataset;
use super::ImageSource;
use crate::error::Error;

fn opts(resolution: u32) -> PrepareOptions {
    PrepareOptions { images_per_shard: 3, ..PrepareOptions::new(resolution, 2) }
}

fn no_progress(_: u64, _: u64) {}

/// A deterministic RGB image with pixel values from (seed, x, y).
fn rgb(seed: u8, w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([seed.wrapping_mul(37), (x * 7) as u8, (y * 11) as u8]))
}

fn write_png(path: &Path, img: &image::RgbImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

/// The path and message of a dataset error (any other error fails the test).
pub(super) fn dataset_error(err: Error) -> (std::path::PathBuf, String) {
    match err {
        Error::Dataset { path, message } => (path, message),
        other => panic!("expected a dataset error, got {other}"),
    }
}

#[test]
fn image_folder_round_trips_pixels_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    // Two classes; images already at the target size, so pixels must come back exactly.
    let mut expected = Vec::new();
    for (class, name) in ["cat", "dog"].iter().enumerate() {
        for i in 0..4u8 {
            let img = rgb(i + 10 * class as u8, 8, 8);
            write_png(&src.join(name).join(format!("{i}.png")), &img);
            expected.push((img.into_raw(), class as u32));
        }
    }
    let out = dir.path().join("out");
    let report = prepare(&PrepareSource::ImageFolder(src), &out, &opts(8), &no_progress).unwrap();
    assert_eq!(report.index.count, 8);
    assert_eq!(report.index.class_names, ["cat", "dog"]);
    assert_eq!(report.index.shards.len(), 3, "8 images in shards of 3");
    let ds = PreparedDataset::open(&out, true).unwrap();
    let mut pixels = vec![0u8; ds.image_bytes()];
    for (i, (want_pixels, want_label)) in expected.iter().enumerate() {
        let label = ds.read(i as u64, &mut pixels).label;
        assert_eq!((&pixels, label), (want_pixels, *want_label), "image {i}");
    }
}

#[test]
fn generated_source_round_trips_and_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let source = PrepareSource::Generated { count: 10, num_classes: 4, seed: 7 };
    let a = prepare(&source, &dir.path().join("a"), &opts(16), &no_progress).unwrap();
    let b = prepare(&source, &dir.path().join("b"), &opts(16), &no_progress).unwrap();
    assert_eq!(a.index.content_hash, b.index.content_hash, "same source, same content hash");
    let shapes =
        super::generated::GeneratedShapes { seed: 7, len: 10, resolution: 16, channels: 3, num_classes: 4 };
    let ds = PreparedDataset::open(&dir.path().join("a"), true).unwrap();
    let (mut x, mut y) = (vec![0u8; 768], vec![0u8; 768]);
    for i in 0..10 {
        assert_eq!(ds.read(i, &mut x), shapes.read(i, &mut y));
        assert_eq!(x, y);
    }
}

#[test]
fn larger_images_are_centre_cropped_and_box_resized() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("flat");
    // 12x8 constant-colour image: crop to 8x8, resize to 4x4, colour unchanged.
    write_png(&src.join("a.png"), &image::RgbImage::from_pixel(12, 8, image::Rgb([10, 20, 30])));
    prepare(&PrepareSource::ImageFolder(src), &dir.path().join("out"), &opts(4), &no_progress).unwrap();
    let ds = PreparedDataset::open(&dir.path().join("out"), true).unwrap();
    let mut pixels = vec![0u8; 48];
    assert_eq!(ds.read(0, &mut pixels).label, 0);
    assert!(pixels.chunks(3).all(|p| p == [10, 20, 30]));
    assert_eq!(ds.num_classes(), 0, "top-level images are unlabelled");
    // So are the images of a single class folder: one class cannot condition a model.
    let one = dir.path().join("one");
    write_png(&one.join("faces/a.png"), &image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3])));
    write_png(&one.join("faces/b.png"), &image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3])));
    let report =
        prepare(&PrepareSource::ImageFolder(one), &dir.path().join("out1"), &opts(4), &no_progress).unwrap();
    assert_eq!((report.index.count, report.index.num_classes), (2, 0));
    assert!(report.index.class_names.is_empty());
}

#[test]
fn bad_images_name_the_file_or_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_png(&src.join("good.png"), &rgb(1, 8, 8));
    std::fs::write(src.join("corrupt.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    image::GrayImage::from_pixel(8, 8, image::Luma([3])).save(src.join("gray.png")).unwrap();
    image::RgbaImage::from_pixel(8, 8, image::Rgba([1, 2, 3, 4])).save(src.join("rgba.png")).unwrap();
    image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_pixel(8, 8, image::Rgb([1, 2, 3]))
        .save(src.join("deep.png"))
        .unwrap();
    write_png(&src.join("tiny.png"), &rgb(2, 4, 4));
    let (path, message) = dataset_error(
        prepare(&PrepareSource::ImageFolder(src.clone()), &dir.path().join("o1"), &opts(8), &no_progress)
            .unwrap_err(),
    );
    assert!(path.ends_with("corrupt.png") && message.contains("--skip-bad"), "{path:?}: {message}");
    let skip = PrepareOptions { skip_bad: true, ..opts(8) };
    let report =
        prepare(&PrepareSource::ImageFolder(src), &dir.path().join("o2"), &skip, &no_progress).unwrap();
    assert_eq!(report.index.count, 1);
    let reasons: Vec<(String, String)> = report
        .skipped
        .iter()
        .map(|(p, why)| (p.file_name().unwrap().to_string_lossy().into_owned(), why.clone()))
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    let why = |name: &str| reasons.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert!(why("gray.png").contains("L8"), "{}", why("gray.png"));
    assert!(why("rgba.png").contains("Rgba8"));
    assert!(why("deep.png").contains("Rgb16") && why("deep.png").contains("pass --convert"));
    assert!(why("tiny.png").contains("smaller than the target"));

    // With --convert they come in as 8-bit RGB: grey replicated, alpha dropped, 16 bits scaled.
    let convert = PrepareOptions { skip_bad: true, convert: true, ..opts(8) };
    let out = dir.path().join("o3");
    let report =
        prepare(&PrepareSource::ImageFolder(dir.path().join("src")), &out, &convert, &no_progress).unwrap();
    assert_eq!(report.index.count, 4, "good, deep, gray and rgba; corrupt and tiny are still skipped");
    let prepared = report.index.prepared.clone().unwrap();
    let kinds: Vec<(&str, u64)> = prepared.converted.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    assert_eq!(kinds, [("L8", 1), ("Rgb16", 1), ("Rgba8", 1)]);
    let ds = PreparedDataset::open(&out, true).unwrap();
    let mut px = vec![0u8; 8 * 8 * 3];
    // Files in name order: deep, good, gray, rgba.
    let pixel = |i: u64, px: &mut Vec<u8>| {
        ds.read(i, px);
        px[..3].to_vec()
    };
    assert_eq!(pixel(0, &mut px), [0, 0, 0], "16-bit 1, 2, 3 of 65535 round to 0");
    assert_eq!(pixel(2, &mut px), [3, 3, 3]);
    assert_eq!(pixel(3, &mut px), [1, 2, 3]);
    // The index records what was converted and skipped.
    assert_eq!(ds.index.prepared.as_ref(), Some(&prepared));
    assert_eq!((prepared.skipped, prepared.resized), (2, 0), "{prepared:?}");
    assert_eq!(prepared.converted_summary().as_deref(), Some("3 image(s) (1 L8, 1 Rgb16, 1 Rgba8)"));
}

#[test]
fn the_index_records_how_the_dataset_was_prepared_outside_its_content_hash() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_png(&src.join("big.png"), &rgb(1, 16, 12));
    write_png(&src.join("exact.png"), &rgb(2, 8, 8));
    let out = dir.path().join("out");
    let lanczos = PrepareOptions {
        labels: super::folder::Labels::None,
        resize_filter: super::resize::ResizeFilter::Lanczos,
        ..opts(8)
    };
    let report = prepare(&PrepareSource::ImageFolder(src.clone()), &out, &lanczos, &no_progress).unwrap();
    let prepared = report.index.prepared.clone().unwrap();
    let absolute = std::fs::canonicalize(&src).unwrap();
    assert_eq!(prepared.source, format!("image folder {}", absolute.display()));
    assert_eq!((prepared.labels.as_str(), prepared.resize_filter.as_str()), ("none", "lanczos"));
    assert_eq!(prepared.resized, 1, "only the 16x12 image went through the filter");
    assert!(prepared.tool.starts_with(&format!("gan-launch {}", crate::rundir::CRATE_VERSION)));
    // Read back as written; an index from before the record still reads, with the same hash.
    let index = super::shards::read_index(&out).unwrap();
    assert_eq!(index.prepared.as_ref(), Some(&prepared));
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("prepared");
    std::fs::write(out.join("index.json"), serde_json::to_vec(&json).unwrap()).unwrap();
    let old = super::shards::read_index(&out).unwrap();
    assert_eq!((old.prepared, &old.content_hash), (None, &index.content_hash));
    // The same pixels prepared again, at another time, are the same dataset.
    let again = dir.path().join("again");
    let report2 = prepare(&PrepareSource::ImageFolder(src), &again, &lanczos, &no_progress).unwrap();
    assert_eq!(report2.index.content_hash, index.content_hash);
}

#[test]
fn empty_folders_and_existing_output_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("empty/classA")).unwrap();
    let (path, message) = dataset_error(
        prepare(
            &PrepareSource::ImageFolder(dir.path().join("empty")),
            &dir.path().join("o"),
            &opts(8),
            &no_progress,
        )
        .unwrap_err(),
    );
    assert!(path.ends_with("empty") && message.contains("no PNG or JPEG"), "{message}");
    let source = PrepareSource::Generated { count: 2, num_classes: 2, seed: 0 };
    prepare(&source, &dir.path().join("out"), &opts(8), &no_progress).unwrap();
    let (_, message) =
        dataset_error(prepare(&source, &dir.path().join("out"), &opts(8), &no_progress).unwrap_err());
    assert!(message.contains("--force"), "{message}");
    let force = PrepareOptions { force: true, ..opts(8) };
    prepare(&source, &dir.path().join("out"), &force, &no_progress).unwrap();
    // --force replaces a dataset with a smaller one: no shard of the old one is left behind.
    let big = PrepareSource::Generated { count: 20, num_classes: 2, seed: 0 };
    prepare(&big, &dir.path().join("out"), &force, &no_progress).unwrap();
    prepare(&source, &dir.path().join("out"), &force, &no_progress).unwrap();
    let files = std::fs::read_dir(dir.path().join("out")).unwrap().count();
    assert_eq!(files, 2, "index.json and the one shard of 2 images");
    // An interrupted preparation (shards, no index yet) is named as such.
    std::fs::remove_file(dir.path().join("out/index.json")).unwrap();
    let (_, message) =
        dataset_error(prepare(&source, &dir.path().join("out"), &opts(8), &no_progress).unwrap_err());
    assert!(
        message.contains("shards of an unfinished preparation (no index.json: interrupted?)"),
        "{message}"
    );
    prepare(&source, &dir.path().join("out"), &force, &no_progress).unwrap();

    // A mistyped --out that holds anything else, here the source images themselves, is refused
    // with --force too, and nothing in it is deleted.
    let photos = dir.path().join("photos");
    write_png(&photos.join("a.png"), &rgb(1, 8, 8));
    write_png(&photos.join("b.png"), &rgb(2, 8, 8));
    let (path, message) = dataset_error(
        prepare(&PrepareSource::ImageFolder(photos.clone()), &photos, &force, &no_progress).unwrap_err(),
    );
    assert!(
        path == photos && message.contains("holds 2 entries that no prepared dataset has (e.g. a.png)"),
        "{path:?}: {message}"
    );
    assert!(photos.join("a.png").is_file() && photos.join("b.png").is_file(), "nothing deleted");
    let (_, message) = dataset_error(prepare(&source, dir.path(), &force, &no_progress).unwrap_err());
    assert!(message.contains("deletes nothing else"), "{message}");
    assert!(dir.path().join("out/index.json").is_file(), "a parent of datasets is not a dataset");
}

#[test]
fn damaged_datasets_are_found_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = |name: &str| {
        let out = dir.path().join(name);
        let source = PrepareSource::Generated { count: 7, num_classes: 2, seed: 1 };
        prepare(&source, &out, &opts(8), &no_progress).unwrap();
        out
    };
    // Missing shard.
    let out = fresh("missing");
    std::fs::remove_file(out.join("shard-00001.bin")).unwrap();
    let (path, message) = dataset_error(PreparedDataset::open(&out, true).err().unwrap());
    assert!(path.ends_with("shard-00001.bin") && message.contains("missing"), "{message}");
    // Truncated shard.
    let out = fresh("truncated");
    let shard = out.join("shard-00000.bin");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 5]).unwrap();
    let (path, message) = dataset_error(PreparedDataset::open(&out, true).err().unwrap());
    assert!(path.ends_with("shard-00000.bin") && message.contains("truncated"), "{message}");
    // Same size, different content: only the checksum sees it.
    let out = fresh("flipped");
    let shard = out.join("shard-00002.bin");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&shard, &bytes).unwrap();
    assert!(PreparedDataset::open(&out, false).is_ok(), "a size-only check cannot see it");
    let (path, message) = dataset_error(PreparedDataset::open(&out, true).err().unwrap());
    assert!(path.ends_with("shard-00002.bin") && message.contains("checksum"), "{message}");
    // An index edited by hand no longer matches its content hash.
    let out = fresh("edited");
    let index =
        std::fs::read_to_string(out.join("index.json")).unwrap().replace("\"count\": 7", "\"count\": 6");
    std::fs::write(out.join("index.json"), index).unwrap();
    let (path, _) = dataset_error(PreparedDataset::open(&out, true).err().unwrap());
    assert!(path.ends_with("index.json"));
}

/// Writes a StyleGAN-style zip: PNGs under 00000/ and, when given, dataset.json labels.
fn write_zip(path: &Path, images: &[(String, image::RgbImage)], labels: Option<&str>) {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    for (name, img) in images {
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png).unwrap();
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(png.get_ref()).unwrap();
    }
    if let Some(json) = labels {
        zip.start_file("dataset.json", options).unwrap();
        zip.write_all(json.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn stylegan_zip_round_trips_with_its_labels() {
    let dir = tempfile::tempdir().unwrap();
    let images: Vec<(String, image::RgbImage)> =
        (0..5u8).map(|i| (format!("00000/img{i:08}.png"), rgb(i, 8, 8))).collect();
    let labels = r#"{"labels": [["00000/img00000000.png", 2], ["00000/img00000001.png", 0], ["00000/img00000002.png", 1], ["00000/img00000003.png", 2], ["00000/img00000004.png", 0]]}"#;
    let archive = dir.path().join("ds.zip");
    // A zip made on a Mac holds resource forks under __MACOSX/: not images of the dataset.
    let mut zipped = images.clone();
    zipped.push(("__MACOSX/00000/._img00000000.png".into(), rgb(9, 8, 8)));
    write_zip(&archive, &zipped, Some(labels));
    let out = dir.path().join("out");
    let report = prepare(&PrepareSource::StyleganZip(archive.clone()), &out, &opts(8), &no_progress).unwrap();
    assert_eq!((report.index.count, report.index.num_classes), (5, 3));
    let ds = PreparedDataset::open(&out, true).unwrap();
    let mut pixels = vec![0u8; ds.image_bytes()];
    for (i, want) in [2u32, 0, 1, 2, 0].iter().enumerate() {
        assert_eq!(ds.read(i as u64, &mut pixels).label, *want);
        assert_eq!(ds.label(i as u64), *want, "the label alone, without the pixels");
        assert_eq!(pixels, images[i].1.as_raw().as_slice());
    }
    // An imbalanced mix: fakes would draw class 2 with probability 2/5.
    let data = crate::config::DataSection {
        path: Some(out.clone()),
        ..serde_norway::from_str("{source: prepared, resolution: 8}").unwrap()
    };
    let dist = crate::data::classes::ClassDistribution::of(&data, &ds).unwrap();
    assert_eq!(dist.cumulative(), [2, 3, 5]);
    // Unlabelled when dataset.json says so.
    let plain = dir.path().join("plain.zip");
    write_zip(&plain, &images, Some(r#"{"labels": null}"#));
    let report =
        prepare(&PrepareSource::StyleganZip(plain), &dir.path().join("o2"), &opts(8), &no_progress).unwrap();
    assert_eq!(report.index.num_classes, 0);
    // And when every label is 0: one class conditions nothing.
    let zeros = dir.path().join("zeros.zip");
    let all_zero: Vec<String> = images.iter().map(|(name, _)| format!(r#"["{name}", 0]"#)).collect();
    write_zip(&zeros, &images, Some(&format!(r#"{{"labels": [{}]}}"#, all_zero.join(", "))));
    let report =
        prepare(&PrepareSource::StyleganZip(zeros), &dir.path().join("o3"), &opts(8), &no_progress).unwrap();
    assert_eq!((report.index.count, report.index.num_classes), (5, 0));
}

#[test]
fn stylegan_zip_label_mismatch_names_dataset_json() {
    let dir = tempfile::tempdir().unwrap();
    let images: Vec<(String, image::RgbImage)> =
        (0..3u8).map(|i| (format!("img{i}.png"), rgb(i, 8, 8))).collect();
    let archive = dir.path().join("ds.zip");
    write_zip(&archive, &images, Some(r#"{"labels": [["img0.png", 1], ["img1.png", 0]]}"#));
    let (path, message) = dataset_error(
        prepare(&PrepareSource::StyleganZip(archive), &dir.path().join("o"), &opts(8), &no_progress)
            .unwrap_err(),
    );
    assert!(
        path.ends_with("ds.zip/dataset.json") && message.contains("2 labels for 3 images"),
        "{path:?} {message}"
    );
    std::fs::write(dir.path().join("broken.zip"), b"PK not a zip").unwrap();
    let (path, message) = dataset_error(
        prepare(
            &PrepareSource::StyleganZip(dir.path().join("broken.zip")),
            &dir.path().join("o3"),
            &opts(8),
            &no_progress,
        )
        .unwrap_err(),
    );
    assert!(path.ends_with("broken.zip") && message.contains("zip"), "{message}");
}

/// The fixture holds 6 training and 4 test images written by scripts/make_cifar_fixture.py:
/// image i has red = i, green = x * 8, blue = y * 8 and label i mod 10.
#[test]
fn cifar10_python_batches_round_trip() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/data/testdata/cifar10");
    let dir = tempfile::tempdir().unwrap();
    let report =
        prepare(&PrepareSource::Cifar10(fixture), &dir.path().join("out"), &opts(32), &no_progress).unwrap();
    assert_eq!((report.index.count, report.index.num_classes), (10, 10));
    assert_eq!(report.index.class_names[3], "cat");
    let ds = PreparedDataset::open(&dir.path().join("out"), true).unwrap();
    let mut pixels = vec![0u8; ds.image_bytes()];
    for i in 0..10u64 {
        assert_eq!(ds.read(i, &mut pixels).label, (i % 10) as u32);
        let (x, y) = (5usize, 7usize);
        assert_eq!(&pixels[(y * 32 + x) * 3..][..3], &[i as u8, (x * 8) as u8, (y * 8) as u8], "image {i}");
    }
}

#[test]
fn damaged_cifar_batches_name_the_file() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/data/testdata/cifar10");
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("cifar");
    std::fs::create_dir_all(&broken).unwrap();
    let bytes = std::fs::read(fixture.join("data_batch_1")).unwrap();
    std::fs::write(broken.join("data_batch_1"), &bytes[..bytes.len() / 2]).unwrap();
    let (path, message) = dataset_error(
        prepare(&PrepareSource::Cifar10(broken.clone()), &dir.path().join("o"), &opts(32), &no_progress)
            .unwrap_err(),
    );
    assert!(path.ends_with("data_batch_1") && message.contains("truncated"), "{path:?} {message}");
    let (path, _) = dataset_error(
        prepare(
            &PrepareSource::Cifar10(dir.path().to_path_buf()),
            &dir.path().join("o2"),
            &opts(32),
            &no_progress,
        )
        .unwrap_err(),
    );
    assert_eq!(path, dir.path());
}
