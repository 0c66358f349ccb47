//! `gan-train eval fid|kid|is|pr|dc CHECKPOINT`: a metric of a checkpoint's G_ema against the
//! run's dataset or a folder of images (what `gan-launch eval` runs after resolving and verifying
//! the checkpoint); `eval fid|kid|pr|dc FOLDER --against FOLDER`: between two folders of images, as pytorch-fid's
//! CLI, the second folder taking the place of the real images; and `eval is FOLDER`.
use std::path::PathBuf;

use clap::Args;
use tch::{nn, Device};

use super::extract::Extracted;
use super::inception::FidInception;
use super::manifold;
use super::stats::{frechet_distance, inception_score, kernel_inception_distance};
use super::weights::{self, FeatureNet};
use super::{extract, folders};
use crate::ckpt;
use crate::models::{self, NetSpec};
use gan_core::config;
use gan_core::data::identity::DatasetIdentity;
use gan_core::eval_options::{EvalMetric, EvalOptions};
use gan_core::sample_options::check_truncation;
use gan_core::Error;

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[arg(value_enum)]
    pub metric: EvalMetric,
    /// A checkpoint directory (step-NNNNNNNN; gan-launch eval also takes a run directory), a
    /// G_ema file, or a folder of images (its IS; with --against, a metric between two folders).
    pub checkpoint: PathBuf,
    /// A folder of reference images, in place of the run's dataset (or of the second folder).
    #[arg(long)]
    pub against: Option<PathBuf>,
    #[command(flatten)]
    pub options: EvalOptions,
}

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let folder = gan_core::images::is_image_folder(&args.checkpoint);
    check_options(args, folder)?;
    let (weights_path, net_id) =
        weights::resolve(args.options.weights.as_deref().map(|path| (path, "--weights")), true)?;
    let device = if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu };
    let inception_vs = nn::VarStore::new(device);
    let net = FidInception::new(&inception_vs.root());
    weights::load_into(&inception_vs, &weights_path)?;
    match (folder, &args.against) {
        (true, Some(other)) => between_folders(args, other, &net, &net_id, device),
        (true, None) => of_folder(args, &net, &net_id, device),
        (false, _) => of_checkpoint(args, &net, &net_id, device),
    }
}

/// Refuses options that do not go together, before any network is loaded. `folder`: the images
/// scored are a folder's, not a checkpoint's.
fn check_options(args: &EvalArgs, folder: bool) -> gan_core::Result<()> {
    let opts = &args.options;
    if opts.num < 2 || opts.batch == 0 {
        return Err(Error::config("--num", opts.num, "at least 2 images, with --batch >= 1"));
    }
    if let Some(gen_batch) = opts.gen_batch.filter(|&g| g == 0 || g > opts.batch) {
        return Err(Error::config("--gen-batch", gen_batch, format!("from 1 to --batch ({})", opts.batch)));
    }
    check_truncation(opts.truncation)?;
    if let (Some(psi), true) = (opts.truncation, folder) {
        return Err(Error::config(
            "--truncation",
            psi,
            "none for a folder of images: it draws a checkpoint's",
        ));
    }
    match (&args.against, args.metric) {
        (Some(other), EvalMetric::Is) => {
            Err(Error::config("--against", other.display(), "none for IS, which scores one set"))
        }
        _ => Ok(()),
    }
}

/// A metric of a checkpoint's G_ema: against the run's dataset, or the folder `--against` names.
fn of_checkpoint(
    args: &EvalArgs,
    net: &FidInception,
    net_id: &FeatureNet,
    device: Device,
) -> anyhow::Result<()> {
    let opts = &args.options;
    let source = ckpt::GeneratorSource::open(&args.checkpoint)?;
    let cfg = source.config()?;
    let spec = NetSpec::from_config(&cfg);
    let g_vs = nn::VarStore::new(device);
    let g_ema = models::generator(cfg.model.arch, &spec, g_vs.root());
    source.load(&g_vs)?;
    let labels =
        extract::label_mix_or_uniform(&cfg, args.metric == EvalMetric::Is || args.against.is_some())?;
    let started = std::time::Instant::now();
    let gen_batch = opts.gen_batch.unwrap_or(cfg.eval.gen_batch().min(opts.batch));
    let share = extract::Share { first: 0, n: opts.num, batch: opts.batch, gen_batch, seed: opts.seed };
    let truncation = opts.truncation.map(|psi| (psi, g_ema.truncation()));
    let fake =
        extract::generated(net, g_ema.as_ref(), labels.as_ref(), truncation, share, device, &mut || Ok(()))?;
    let fake_secs = started.elapsed().as_secs_f64();
    let (values, reals) = match (args.metric, &args.against) {
        (EvalMetric::Is, _) => {
            let (mean, std) = inception_score(&fake.logits, 10.min(opts.num as i64));
            (vec![("is", format!("{mean:.4} ± {std:.4}"))], String::new())
        }
        (_, Some(other)) => {
            let real = folders::extract(net, other, opts.batch, device)?;
            let values = between(args.metric, &real, &fake, opts.seed, device)?.expect("IS is scored above");
            (values, format!(" vs {} images of {}", real.stats.count, other.display()))
        }
        (_, None) => {
            warn_if_other_dataset(&source, &cfg);
            let n_real = extract::real_count(&cfg, opts.num_real)?;
            let real = extract::real(net, &net_id.label(), &cfg, n_real, opts.batch, device)?;
            let values = between(args.metric, &real, &fake, opts.seed, device)?.expect("IS is scored above");
            (values, reals_note(&cfg, n_real))
        }
    };
    let truncated = opts.truncation.map(|psi| format!(" with truncation psi {psi}")).unwrap_or_default();
    for (name, value) in values {
        println!(
            "{name} = {value}  [{} generated images{truncated}{reals}, feature network {}{}, {:.1} imgs/s]",
            opts.num,
            net_id.label(),
            standard_note(net_id),
            opts.num as f64 / fake_secs
        );
    }
    Ok(())
}

/// " vs 70000 reals of data/ffhq256 (shrunk with box)": what the score compares against. How the
/// reals were resized moves FID by about a point on FFHQ (SPECS 1.4), so a number set beside a
/// paper's says it, as the dataset's index records it.
fn reals_note(cfg: &config::RunConfig, n_real: u64) -> String {
    let Some(dir) = cfg.data.path.as_deref().filter(|_| cfg.data.source == config::DataSource::Prepared)
    else {
        return format!(" vs {n_real} reals (the generated shapes)");
    };
    let how = match gan_core::data::shards::read_index(dir).ok().and_then(|index| index.prepared) {
        Some(p) if p.resized > 0 => format!(" (shrunk with {})", p.resize_filter),
        Some(_) => " (not resized)".to_string(),
        None => String::new(),
    };
    format!(" vs {n_real} reals of {}{how}", dir.display())
}

/// The reals come from the dataset the checkpoint's config names; when that is no longer the
/// dataset it was trained on (`data.path` now holds other images), the score compares against
/// other data, which is worth a loud warning.
fn warn_if_other_dataset(source: &ckpt::GeneratorSource, cfg: &config::RunConfig) {
    let (Some(saved), Ok(now)) = (source.dataset(), DatasetIdentity::of(&cfg.data, cfg.run.seed)) else {
        return;
    };
    if let Some(why) = saved.differs_from(&now) {
        tracing::warn!("the reals are not the checkpoint's training data: {why}");
    }
}

/// A metric between a reference (real) set and a generated one, formatted by name; None for IS,
/// which scores one set. KID, precision/recall and density/coverage use the rows kept (up to
/// `extract::REAL_ROWS` of a dataset, every image of a folder or of a generated set).
fn between(
    metric: EvalMetric,
    real: &Extracted,
    fake: &Extracted,
    seed: u64,
    device: Device,
) -> gan_core::error::Result<Option<Vec<(&'static str, String)>>> {
    let manifold = |wanted| -> gan_core::error::Result<Vec<(&'static str, String)>> {
        let scores = manifold::scores(&real.rows, &fake.rows, device, wanted)?;
        Ok(scores.into_iter().map(|(name, value)| (name, format!("{value:.4}"))).collect())
    };
    Ok(Some(match metric {
        EvalMetric::Fid => {
            let ((mu1, cov1), (mu2, cov2)) = (fake.stats.mean_cov(), real.stats.mean_cov());
            vec![("fid", format!("{:.4}", frechet_distance(&mu1, &cov1, &mu2, &cov2)))]
        }
        EvalMetric::Kid => {
            vec![(
                "kid",
                format!("{:.6}", kernel_inception_distance(&real.rows, &fake.rows, 100, 1000, seed)),
            )]
        }
        EvalMetric::Pr => manifold((true, false))?,
        EvalMetric::Dc => manifold((false, true))?,
        EvalMetric::Is => return Ok(None),
    }))
}

fn standard_note(net_id: &FeatureNet) -> &'static str {
    if *net_id == FeatureNet::Standard {
        ""
    } else {
        " (NOT the standard FID network)"
    }
}

/// IS of the images of one folder (say, `sample --num`'s); the other metrics compare two sets.
fn of_folder(args: &EvalArgs, net: &FidInception, net_id: &FeatureNet, device: Device) -> anyhow::Result<()> {
    if args.metric != EvalMetric::Is {
        let allowed = "a folder of reference images to compare with (FID, KID, PR and DC compare two sets)";
        return Err(Error::config("--against", "none", allowed).into());
    }
    let images = folders::extract(net, &args.checkpoint, args.options.batch, device)?;
    let (mean, std) = inception_score(&images.logits, 10.min(images.stats.count as i64));
    println!(
        "is = {mean:.4} ± {std:.4}  [{} images of {}, feature network {}{}]",
        images.stats.count,
        args.checkpoint.display(),
        net_id.label(),
        standard_note(net_id)
    );
    Ok(())
}

/// A metric between the images of two folders (`other` as the reference set).
fn between_folders(
    args: &EvalArgs,
    other: &std::path::Path,
    net: &FidInception,
    net_id: &FeatureNet,
    device: Device,
) -> anyhow::Result<()> {
    let batch = args.options.batch;
    let fake = folders::extract(net, &args.checkpoint, batch, device)?;
    let real = folders::extract(net, other, batch, device)?;
    let values = between(args.metric, &real, &fake, args.options.seed, device)?.expect("IS is refused above");
    for (name, value) in values {
        println!(
            "{name} = {value}  [{} vs {} images, feature network {}{}]",
            fake.stats.count,
            real.stats.count,
            net_id.label(),
            standard_note(net_id)
        );
    }
    Ok(())
}
