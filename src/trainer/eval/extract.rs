//! Feature extraction for the metrics: real images from a dataset (statistics cached per dataset
//! content, feature network and count) and G_ema's images, quantised to uint8 first as the reals
//! are (x · 127.5 + 128, clamped, truncated), so both sides take the same path into the network.
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use super::inception::FidInception;
use super::stats::FeatureStats;
use crate::models::{Generator, Truncation};
use gan_core::config::RunConfig;
use gan_core::data::{self, classes::ClassDistribution, identity::DatasetIdentity};
use gan_core::error::{Error, Result};
use gan_core::rng::SplitMix64;

/// Real features kept as rows (besides the moments) for KID, precision/recall and
/// density/coverage, which need the samples themselves: those of the dataset's first images, so
/// they do not depend on how many ranks computed them.
pub const REAL_ROWS: u64 = 10_000;

/// What the metrics need of one side: moments of the pool3 features, up to `rows` pool3
/// features, and all unbiased logits (for IS).
pub struct Extracted {
    pub stats: FeatureStats,
    pub rows: Tensor,
    pub logits: Tensor,
}

/// Features of uint8 NCHW images.
pub fn features_u8(net: &FidInception, images: &Tensor, device: Device) -> (Tensor, Tensor) {
    let x = images.to_device(device).to_kind(Kind::Float) / 255.0;
    let f = tch::no_grad(|| net.features(&x));
    (f.pool3.to_device(Device::Cpu), f.logits_unbiased.to_device(Device::Cpu))
}

/// G's output in [-1, 1] to uint8 exactly as saved images would be: x * 127.5 + 128, clamped to
/// [0, 255], truncated (StyleGAN's).
pub fn quantise(images: &Tensor) -> Tensor {
    (images * 127.5 + 128.0).clamp(0.0, 255.0).to_kind(Kind::Uint8)
}

/// Accumulates batches of uint8 images.
pub struct Accumulator {
    stats: FeatureStats,
    rows: Vec<Tensor>,
    kept: u64,
    keep: u64,
    logits: Vec<Tensor>,
}

impl Accumulator {
    pub fn new(keep: u64) -> Self {
        Accumulator { stats: FeatureStats::new(2048), rows: Vec::new(), kept: 0, keep, logits: Vec::new() }
    }

    /// Adds one batch; `on_batch` runs first and may stop the work (an error ends it).
    pub fn add(
        &mut self,
        net: &FidInception,
        images: &Tensor,
        device: Device,
        on_batch: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        on_batch()?;
        let (pool3, logits) = features_u8(net, images, device);
        self.stats.add(&pool3);
        let take = (self.keep - self.kept).min(pool3.size()[0] as u64) as i64;
        if take > 0 {
            self.rows.push(pool3.narrow(0, 0, take));
            self.kept += take as u64;
        }
        self.logits.push(logits);
        Ok(())
    }

    pub fn finish(self) -> Extracted {
        let cat = |v: Vec<Tensor>, cols| {
            if v.is_empty() {
                Tensor::zeros([0, cols], (Kind::Float, Device::Cpu))
            } else {
                Tensor::cat(&v, 0)
            }
        };
        Extracted { stats: self.stats, rows: cat(self.rows, 2048), logits: cat(self.logits, 1008) }
    }
}

/// Which images of a metric a process computes: `n` of them from `first` on, `batch` per
/// forward of the feature network, generated `gen_batch` at a time. Image i's latent (and label,
/// and noise) is drawn from (`seed`, i) alone, so the images, and the metric, do not depend on
/// how the indices are split between ranks or forward passes.
#[derive(Clone, Copy, Debug)]
pub struct Share {
    pub first: u64,
    pub n: u64,
    pub batch: u32,
    pub gen_batch: u32,
    pub seed: u64,
}

/// A share of images from G_ema; when conditional, `labels` is the dataset's class mix and each
/// image's label is drawn from it; optionally truncated ([`images`]). `on_batch` runs before
/// every batch (ranks beat their heartbeat there; the background evaluator stops there when
/// cancelled).
pub fn generated(
    net: &FidInception,
    g: &dyn Generator,
    labels: Option<&ClassDistribution>,
    truncation: Option<(f64, Truncation)>,
    share: Share,
    device: Device,
    on_batch: &mut dyn FnMut() -> Result<()>,
) -> Result<Extracted> {
    let mut acc = Accumulator::new(share.n);
    let mut done = 0u64;
    while done < share.n {
        let b = (share.n - done).min(u64::from(share.batch));
        let batch = images(g, labels, share, share.first + done, b, device, truncation);
        acc.add(net, &batch, device, on_batch)?;
        done += b;
    }
    Ok(acc.finish())
}

/// Images `first..first + n` of a share as uint8, generated `share.gen_batch` at a time (only the
/// uint8 images of the earlier chunks wait for the feature network's batch); optionally with the
/// truncation trick at psi in the family's way (`gan-launch sample --num --truncation`): latents
/// truncated entry by entry from each image's own stream, or w pulled toward w_avg in G.
pub fn images(
    g: &dyn Generator,
    labels: Option<&ClassDistribution>,
    share: Share,
    first: u64,
    n: u64,
    device: Device,
    truncation: Option<(f64, Truncation)>,
) -> Tensor {
    let latent_psi = truncation.filter(|(_, space)| *space == Truncation::Latent).map(|(psi, _)| psi);
    let chunks: Vec<Tensor> = (first..first + n)
        .step_by(share.gen_batch.max(1) as usize)
        .map(|start| {
            let b = (first + n - start).min(u64::from(share.gen_batch.max(1))) as i64;
            let z = latents(share.seed, start, b, g.z_dim(), latent_psi).to_device(device);
            let c = fake_labels(labels, share.seed, start, b).to_device(device);
            let x = tch::no_grad(|| match truncation {
                Some((psi, Truncation::TowardWAvg)) => {
                    g.forward_metric_truncated(&z, &c, share.seed, start, psi)
                }
                _ => g.forward_metric(&z, &c, share.seed, start),
            });
            quantise(&x)
        })
        .collect();
    Tensor::cat(&chunks, 0)
}

/// Latents of images `first..first + n`, each from its own (seed, index) stream, optionally with
/// latent truncation at `psi`.
fn latents(seed: u64, first: u64, n: i64, z_dim: i64, psi: Option<f64>) -> Tensor {
    let values: Vec<f32> = (first..first + n as u64)
        .flat_map(|i| {
            let mut rng = SplitMix64::for_item(seed, i);
            (0..z_dim).map(move |_| crate::train::samples::latent_entry(&mut rng, psi) as f32)
        })
        .collect();
    Tensor::from_slice(&values).view([n, z_dim])
}

/// Keys the labels' streams apart from the latents' ("LABELS").
const LABEL_STREAM: u64 = 0x4C41_4245_4C53;

/// Labels of images `first..first + n`: 0 when unconditional, else each drawn from the dataset's
/// class mix with its own (seed, index) stream (as the reference's metrics draw
/// `dataset.get_label(random index)`, SPECS.md 1.3).
fn fake_labels(labels: Option<&ClassDistribution>, seed: u64, first: u64, n: i64) -> Tensor {
    let values: Vec<i64> = (first..first + n as u64)
        .map(|i| {
            labels.map_or(0, |dist| i64::from(dist.draw(&mut SplitMix64::for_item(seed ^ LABEL_STREAM, i))))
        })
        .collect();
    Tensor::from_slice(&values)
}

/// The class mix fakes are drawn from when the run is conditional (None otherwise).
pub fn label_mix(cfg: &RunConfig) -> Result<Option<ClassDistribution>> {
    if !cfg.model.conditional {
        return Ok(None);
    }
    let source = data::open(&cfg.data, cfg.run.seed, false)?;
    ClassDistribution::of(&cfg.data, source.as_ref()).map(Some)
}

/// [`label_mix`], or without the dataset (a G_ema file copied elsewhere) and when its reals are
/// not needed (`may_guess`: IS, reals from a folder, `sample --num`), every class alike, with a
/// warning (the same mix for a balanced dataset).
pub fn label_mix_or_uniform(cfg: &RunConfig, may_guess: bool) -> Result<Option<ClassDistribution>> {
    match label_mix(cfg) {
        Ok(labels) => Ok(labels),
        Err(e) if may_guess => {
            tracing::warn!(
                "{e}: the fakes' labels are drawn uniformly instead of from the dataset's class mix"
            );
            Ok(Some(ClassDistribution::from_counts(&vec![1; cfg.data.num_classes as usize])))
        }
        Err(e) => Err(e),
    }
}

/// The number of real images a metric uses: `n`, at most the dataset.
pub fn real_count(cfg: &RunConfig, n: Option<u64>) -> Result<u64> {
    let len = data::open(&cfg.data, cfg.run.seed, false)?.len();
    Ok(n.unwrap_or(len).min(len))
}

/// Statistics of the first `n` images of the run's dataset in one process, from the cache when
/// present (and cached after).
pub fn real(
    net: &FidInception,
    net_label: &str,
    cfg: &RunConfig,
    n: u64,
    batch: u32,
    device: Device,
) -> Result<Extracted> {
    let cache = cache_path(cfg, net_label, n)?;
    if let Some(hit) = read_cache(&cache) {
        tracing::info!(path = %cache.display(), "real statistics from the cache");
        return Ok(hit);
    }
    let out = real_share(net, cfg, n, batch, (0, 1), device, &mut || Ok(()))?;
    write_cache(&cache, &out)?;
    Ok(out)
}

/// Features of one rank's contiguous share of the first `n` real images (with batches that line
/// up with a single process's whenever `batch` divides the share, so the features are the same);
/// the rows of those among the first `REAL_ROWS`.
pub fn real_share(
    net: &FidInception,
    cfg: &RunConfig,
    n: u64,
    batch: u32,
    (rank, world): (u32, u32),
    device: Device,
    on_batch: &mut dyn FnMut() -> Result<()>,
) -> Result<Extracted> {
    let source = data::open(&cfg.data, cfg.run.seed, false)?;
    tracing::info!(images = n, "computing real statistics (cached afterwards)");
    let indices: Vec<u64> = gan_core::config::rank_share(n, rank, world).collect();
    let mut acc = Accumulator::new(REAL_ROWS.saturating_sub(indices.first().copied().unwrap_or(0)));
    let (res, ch) = (i64::from(source.resolution()), i64::from(source.channels()));
    let mut pixels = vec![0u8; source.image_bytes()];
    for chunk in indices.chunks(batch.max(1) as usize) {
        let mut buf = Vec::with_capacity(source.image_bytes() * chunk.len());
        for &i in chunk {
            source.read(i, &mut pixels);
            buf.extend_from_slice(&pixels);
        }
        let images = Tensor::from_slice(&buf).view([chunk.len() as i64, res, res, ch]).permute([0, 3, 1, 2]);
        // Grayscale datasets go in as RGB, as PIL's convert("RGB") does for pytorch-fid.
        let images = if ch == 1 { images.repeat([1, 3, 1, 1]) } else { images };
        acc.add(net, &images, device, on_batch)?;
    }
    Ok(acc.finish())
}

/// `<cache>/fid-stats/<key>.safetensors` (see [`gan_core::cache`]), the key hashing the
/// dataset's identity (a prepared dataset's content hash over every shard's BLAKE3, its size and
/// classes; the generator's parameters), the feature network, the preprocessing and the count.
/// Not the dataset's path, so a moved dataset or another node's copy of it finds the same file.
pub fn cache_path(cfg: &RunConfig, net_label: &str, n: u64) -> Result<PathBuf> {
    let identity = DatasetIdentity { path: None, ..DatasetIdentity::of(&cfg.data, cfg.run.seed)? };
    let mut hasher = blake3::Hasher::new();
    hasher.update(&serde_json::to_vec(&identity).expect("a dataset identity serialises"));
    hasher.update(format!("|{net_label}|pytorch-fid bilinear-299 [-1,1]|{n}|rows 0..{REAL_ROWS}").as_bytes());
    Ok(gan_core::cache::dir()
        .join("fid-stats")
        .join(format!("{}.safetensors", &hasher.finalize().to_hex()[..32])))
}

pub fn read_cache(path: &Path) -> Option<Extracted> {
    let tensors = Tensor::read_safetensors(path).ok()?;
    let get = |name: &str| tensors.iter().find(|(k, _)| k == name).map(|(_, t)| t.shallow_clone());
    let count = get("count")?.double_value(&[]);
    Some(Extracted {
        stats: FeatureStats { count, sum: get("sum")?, sum_outer: get("sum_outer")? },
        rows: get("rows")?,
        logits: Tensor::zeros([0, 1008], (Kind::Float, Device::Cpu)),
    })
}

/// Writes the statistics through a temporary file of this writer's own and a rename: nodes
/// sharing the cache may compute the same statistics at once, and each must publish a whole file
/// (process ids alone repeat across containers, hence the host and the time in the name).
pub fn write_cache(path: &Path, e: &Extracted) -> Result<()> {
    let dir = path.parent().expect("cache files live in a directory");
    std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
    let count = Tensor::from(e.stats.count);
    let named =
        [("count", &count), ("sum", &e.stats.sum), ("sum_outer", &e.stats.sum_outer), ("rows", &e.rows)];
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let tmp = path.with_extension(format!("{host}.{}.{nanos}.tmp", std::process::id()));
    let written = Tensor::write_safetensors(&named, &tmp)
        .map_err(|err| Error::Tensor(format!("writing {}: {err}", tmp.display())))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(Error::io("rename", &tmp)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::stylegan2::{Generator as StyleGan2, StyleGan2Spec};

    /// A small StyleGAN2 G at 16x16 with `c_dim` classes, from torch's seed 3 (callers hold
    /// the tests' lock).
    fn small_g(c_dim: i64) -> (tch::nn::VarStore, StyleGan2) {
        tch::manual_seed(3);
        let spec = StyleGan2Spec {
            resolution: 16,
            channel_base: 256,
            channel_max: 32,
            ..StyleGan2Spec::paper256(c_dim)
        };
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let g = StyleGan2::new(&spec, vs.root());
        (vs, g)
    }

    /// Image i is the same however many images a generator pass makes (its latent, label and
    /// per-pixel noise come from i), so `eval.gen_batch` saves memory without changing a metric.
    #[test]
    fn metric_images_do_not_depend_on_the_generation_batch() {
        let _lock = crate::train::tests_lock();
        let (_vs, g) = small_g(3);
        let mix = ClassDistribution::from_counts(&[2, 1, 1]);
        let at_gen_batch = |gen_batch| {
            let share = Share { first: 0, n: 7, batch: 7, gen_batch, seed: 11 };
            images(&g, Some(&mix), share, 2, 5, Device::Cpu, None)
        };
        let whole = at_gen_batch(7);
        assert_eq!(whole.size(), [5, 3, 16, 16]);
        assert_eq!(whole.kind(), Kind::Uint8);
        for gen_batch in [1, 2, 4] {
            let chunked = at_gen_batch(gen_batch);
            // Convolutions may sum in another order at another batch: at most a rounding step.
            let diff = (chunked.to_kind(Kind::Int16) - whole.to_kind(Kind::Int16)).abs();
            assert!(diff.max().int64_value(&[]) <= 1, "gen_batch {gen_batch}");
            assert!(
                diff.to_kind(Kind::Float).mean(Kind::Float).double_value(&[]) < 0.01,
                "gen_batch {gen_batch}"
            );
        }
        // Another share of the same indices gives the same images too.
        let later = images(
            &g,
            Some(&mix),
            Share { first: 0, n: 7, batch: 7, gen_batch: 3, seed: 11 },
            4,
            3,
            Device::Cpu,
            None,
        );
        let diff = (later.to_kind(Kind::Int16) - whole.narrow(0, 2, 3).to_kind(Kind::Int16)).abs();
        assert!(diff.max().int64_value(&[]) <= 1);
    }

    /// `sample --num --truncation`: psi 1 is no truncation; a smaller psi pulls StyleGAN2's images
    /// toward the average one, so they vary less; latent truncation keeps every |z| within 2 psi.
    #[test]
    fn truncation_pulls_the_images_together() {
        let _lock = crate::train::tests_lock();
        let (vs, g) = small_g(0);
        // w_avg away from zero, as after training (it starts at zero).
        let w_avg = vs.variables().into_iter().find(|(name, _)| name.ends_with("w_avg")).unwrap().1;
        tch::no_grad(|| w_avg.shallow_clone().copy_(&Tensor::randn_like(&w_avg)));
        let share = Share { first: 0, n: 8, batch: 8, gen_batch: 8, seed: 1 };
        let at = |t| images(&g, None, share, 0, 8, Device::Cpu, t).to_kind(Kind::Float);
        let spread = |x: &Tensor| x.std_dim(0, true, false).mean(Kind::Float).double_value(&[]);
        let plain = at(None);
        assert!(at(Some((1.0, Truncation::TowardWAvg))).equal(&plain));
        let (near, plain_spread) = (spread(&at(Some((0.2, Truncation::TowardWAvg)))), spread(&plain));
        assert!(near < 0.5 * plain_spread, "psi 0.2: {near} vs {plain_spread}");
        let z = Vec::<f32>::try_from(&latents(5, 0, 4, 64, Some(0.5)).reshape([-1])).unwrap();
        assert!(z.iter().all(|v| v.abs() <= 1.0) && z.iter().any(|v| v.abs() > 0.5), "{z:?}");
    }

    /// A metric's labels follow the dataset's mix, and image i's label is the same however the
    /// images are split.
    #[test]
    fn metric_labels_follow_the_mix_per_image() {
        let mix = ClassDistribution::from_counts(&[1, 0, 3]);
        let labels = |first, n| Vec::<i64>::try_from(&fake_labels(Some(&mix), 5, first, n)).unwrap();
        let whole = labels(0, 4000);
        assert_eq!([labels(0, 1500), labels(1500, 2500)].concat(), whole);
        assert!(!whole.contains(&1), "an empty class is never drawn");
        let share = whole.iter().filter(|&&c| c == 2).count() as f64 / 4000.0;
        assert!((share - 0.75).abs() < 0.03, "class 2 holds 3 of 4 images: drawn {share}");
        assert_ne!(labels(0, 64), Vec::<i64>::try_from(&fake_labels(Some(&mix), 6, 0, 64)).unwrap());
        assert_eq!(Vec::<i64>::try_from(&fake_labels(None, 5, 0, 3)).unwrap(), [0, 0, 0]);
    }
}
