//! `gan-launch data prepare` and training from a prepared dataset, through the real binaries.
mod common;

use common::*;

#[test]
fn prepare_then_train_from_the_prepared_dataset() {
    gan_train_path();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shapes16");
    let out = gan_launch()
        .args([
            "data",
            "prepare",
            "--from",
            "generated",
            "--resolution",
            "16",
            "--count",
            "600",
            "--classes",
            "4",
        ])
        .args(["--shard-images", "256", "--out"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("prepared 600 images (16x16, 4 classes) in 3 shard(s)"),
        "{}",
        stdout(&out)
    );
    // `data info` says what it holds and how it was made; `plan` repeats the latter.
    let info = gan_launch().args(["data", "info"]).arg(&data).output().unwrap();
    let text = stdout(&info);
    assert!(info.status.success(), "{}", stderr(&info));
    assert!(text.contains(": 600 images of 16x16x3 in 3 shard(s), "), "{text}");
    assert!(text.contains("\nclasses: 4 (disc 150, square 150, triangle 150, ring 150)\n"), "{text}");
    let made = "prepared: from generated shapes (600 images, 4 classes, seed 0), labels auto; no image resized; by gan-launch ";
    assert!(text.contains(made), "{text}");
    let plan = gan_launch()
        .args(["plan", &shipped_config("ci-tiny.yaml").display().to_string()])
        .args(["--set", "data.source=prepared", "--set", &format!("data.path={}", data.display())])
        .output()
        .unwrap();
    assert!(stdout(&plan).contains(&format!("# data {made}")), "{}", stdout(&plan));
    let run = |extra: &[&str]| {
        gan_launch()
            .arg(shipped_config("ci-tiny.yaml"))
            .args(["--set", &format!("run.dir={}", dir.path().join("runs").display())])
            .args(["--set", "data.source=prepared", "--set", &format!("data.path={}", data.display())])
            .args(extra)
            .output()
            .unwrap()
    };
    let trained = run(&[]);
    assert!(trained.status.success(), "{}", stderr(&trained));
    let mismatch = run(&["--set", "data.resolution=32"]);
    assert_eq!(mismatch.status.code(), Some(2), "{}", stderr(&mismatch));
    assert!(
        stderr(&mismatch).contains("`data.resolution`")
            && stderr(&mismatch).contains("16, as the prepared dataset has")
    );
    // Writing over it needs --force.
    let again = gan_launch()
        .args(["data", "prepare", "--from", "generated", "--resolution", "16", "--out"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));

    let weights = random_inception_weights(dir.path());
    let eval = |metric: &str| {
        gan_launch()
            .env("HOME", dir.path())
            .args(["eval", metric, &dir.path().join("runs/ci-tiny").display().to_string()])
            .args(["--num", "20", "--batch", "10", "--weights", &weights.display().to_string()])
            .output()
            .unwrap()
    };
    // The score says what it compares against, and how the reals were resized.
    let fid = eval("fid");
    assert!(fid.status.success(), "{}", stderr(&fid));
    let reals = format!("[20 generated images vs 600 reals of {} (not resized), ", data.display());
    assert!(stdout(&fid).contains(&reals), "{}", stdout(&fid));

    // Scoring the run after its dataset is gone: IS needs no real images, so it runs on uniform
    // labels and says so; FID needs the dataset and names it.
    std::fs::rename(&data, dir.path().join("moved")).unwrap();
    let is = eval("is");
    assert!(is.status.success(), "{}", stderr(&is));
    assert!(stderr(&is).contains("drawn uniformly"), "{}", stderr(&is));
    let fid = eval("fid");
    assert_eq!(fid.status.code(), Some(2), "{}", stderr(&fid));
    assert!(stderr(&fid).contains(&data.display().to_string()), "{}", stderr(&fid));

    // `data info --verify` reads every shard: a damaged one is named, exit 2.
    let moved = dir.path().join("moved");
    let shard = moved.join("shard-00001.bin");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&shard, bytes).unwrap();
    let quick = gan_launch().args(["data", "info"]).arg(&moved).output().unwrap();
    assert!(quick.status.success(), "without --verify only sizes are checked: {}", stderr(&quick));
    let verify = gan_launch().args(["data", "info", "--verify"]).arg(&moved).output().unwrap();
    assert_eq!(verify.status.code(), Some(2), "{}", stderr(&verify));
    assert!(stderr(&verify).contains("shard-00001.bin: checksum mismatch"), "{}", stderr(&verify));
}

#[test]
fn a_missing_dataset_is_named_before_any_rank_starts() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let missing = ["--set", "data.source=prepared", "--set", "data.path=/nonexistent/ds"];
    let out = gan_launch()
        .arg(shipped_config("ci-tiny.yaml"))
        .args(missing)
        .args(["--set", &format!("run.dir={}", run_dir.display())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("/nonexistent/ds/index.json") && err.contains("gan-launch data prepare"), "{err}");
    assert!(!run_dir.exists(), "no rank started and nothing was written");
    // `plan` shows the plan all the same, then refuses as the launch does.
    let out = gan_launch().arg("plan").arg(shipped_config("ci-tiny.yaml")).args(missing).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stdout(&out).contains("# plan: 1 node(s)"), "{}", stdout(&out));
    assert!(stderr(&out)
        .contains("a launch of this plan would refuse to start: dataset /nonexistent/ds/index.json"));
    let out = gan_launch()
        .arg("plan")
        .arg(shipped_config("ci-tiny.yaml"))
        .args(["--set", "data.source=prepared"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`data.path`"), "{}", stderr(&out));
}

/// A 4x4 PNG file's bytes.
fn png_bytes(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(4, 4, |x, y| image::Rgb([seed, (x * 40) as u8, (y * 40) as u8]));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    png.into_inner()
}

fn prepare(from: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    gan_launch()
        .args(["data", "prepare", "--resolution", "4", "--force", "--from"])
        .arg(from)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn prepare_takes_folders_zips_and_cifar_batches_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    // FFHQ's layout: images in numbered folders of 1000, which are chunks, not classes.
    let ffhq = dir.path().join("ffhq");
    let mut archive = zip::ZipWriter::new(std::fs::File::create(dir.path().join("ffhq.zip")).unwrap());
    for (i, name) in ["00000/00000.png", "00000/00001.png", "01000/01000.png"].iter().enumerate() {
        let bytes = png_bytes(i as u8);
        std::fs::create_dir_all(ffhq.join(name).parent().unwrap()).unwrap();
        std::fs::write(ffhq.join(name), &bytes).unwrap();
        archive.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut archive, &bytes).unwrap();
    }
    archive.finish().unwrap();

    let out = prepare(&ffhq, &dir.path().join("a"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("prepared 3 images (4x4, 2 classes)"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("note: took the 2 sub-folders (00000 ... 01000) as classes"),
        "{}",
        stderr(&out)
    );
    let folder = prepare(&ffhq, &dir.path().join("b"), &["--labels", "none"]);
    assert!(stdout(&folder).contains("prepared 3 images (4x4, unlabelled)"), "{}", stderr(&folder));
    let zipped = prepare(&dir.path().join("ffhq.zip"), &dir.path().join("c"), &[]);
    assert!(stdout(&zipped).contains("prepared 3 images (4x4, unlabelled)"), "{}", stderr(&zipped));
    let hash = |out: &std::process::Output| stdout(out).rsplit(' ').next().unwrap().trim().to_string();
    assert_eq!(hash(&folder), hash(&zipped), "the same images in the same order, from a folder or a zip");

    let cifar = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/data/testdata/cifar10");
    let out = prepare(&cifar, &dir.path().join("d"), &[]);
    assert!(stdout(&out).contains("prepared 10 images (4x4, 10 classes)"), "{}", stderr(&out));
    // Shrunk as dataset_tool.py's --resize-filter does it: box (the default) or lanczos.
    let noise = dir.path().join("noise");
    std::fs::create_dir_all(&noise).unwrap();
    let mut state = 7u32;
    let img = image::RgbImage::from_fn(32, 32, |_, _| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        image::Rgb([(state >> 24) as u8, (state >> 16) as u8, (state >> 8) as u8])
    });
    img.save(noise.join("a.png")).unwrap();
    let shrink = |filter: &str, out: &str| {
        let done = gan_launch()
            .args(["data", "prepare", "--resolution", "16", "--resize-filter", filter, "--from"])
            .arg(&noise)
            .arg("--out")
            .arg(dir.path().join(out))
            .output()
            .unwrap();
        assert!(done.status.success(), "{}", stderr(&done));
        hash(&done)
    };
    assert_ne!(shrink("box", "box16"), shrink("lanczos", "lanczos16"), "the filters give other pixels");
    let out = prepare(&cifar, &dir.path().join("e"), &["--labels", "folders"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`--labels`: got folders, allowed: auto or none"), "{}", stderr(&out));

    let not_data = prepare(&ffhq.join("00000/00000.png"), &dir.path().join("f"), &[]);
    assert_eq!(not_data.status.code(), Some(2));
    assert!(stderr(&not_data).contains("is a file but not a zip archive"), "{}", stderr(&not_data));
}
