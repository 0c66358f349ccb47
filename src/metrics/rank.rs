//! The series one training rank exports. Per-step work is a handful of local histogram
//! observations and counter increments (nanoseconds each); everything that needs the other
//! ranks (losses, D outputs, gradient norms) is set once per tick from the statistics the
//! ranks reduce anyway.
use std::collections::BTreeMap;

use prometheus::{Gauge, GaugeVec, Histogram, HistogramVec, IntCounter, Registry};

use super::builder::{exponential, labels, Builder};

/// Durations of one step's parts, in seconds. They add up to the step's duration.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepParts {
    pub data_wait: f64,
    pub forward_backward: f64,
    pub allreduce: f64,
    pub optimizer: f64,
}

/// Checkpoint series; only rank 0 writes checkpoints, so only rank 0 has them.
#[derive(Clone)]
pub struct CheckpointMetrics {
    pub duration_seconds: Histogram,
    pub pause_seconds: Histogram,
    pub size_bytes: Gauge,
    pub last_success_timestamp_seconds: Gauge,
    pub step: Gauge,
    /// Checkpoint writes that failed (a full disk, say); training goes on without them.
    pub failures_total: IntCounter,
}

pub struct RankMetrics {
    pub registry: Registry,
    names: Vec<String>,
    pub steps_total: IntCounter,
    pub images_total: IntCounter,
    pub cur_images: Gauge,
    pub images_per_second: Gauge,
    pub step_duration_seconds: Histogram,
    step_part_duration_seconds: HistogramVec,
    pub loss: GaugeVec,
    pub d_output: GaugeVec,
    pub d_sign_accuracy_ratio: Gauge,
    pub gradient_norm: GaugeVec,
    /// The largest singular value of a spectrally normalised network's weights (BigGAN).
    pub spectral_norm_max: GaugeVec,
    pub learning_rate: GaugeVec,
    pub augment_probability: Gauge,
    pub ema_beta: Gauge,
    pub attempt: Gauge,
    pub rollbacks: Gauge,
    pub resident_memory_bytes: Gauge,
    pub cuda_memory_used_bytes: Gauge,
    /// Evaluation: FID, KID, IS, precision/recall and density/coverage by feature network and
    /// sample count.
    pub fid: GaugeVec,
    pub kid: GaugeVec,
    pub inception_score: GaugeVec,
    pub precision: GaugeVec,
    pub recall: GaugeVec,
    pub density: GaugeVec,
    pub coverage: GaugeVec,
    /// Consecutive evaluations whose FID was worse than the best so far.
    pub fid_worse_evaluations: Gauge,
    /// What the last evaluation cost: its own time, and the training loop's wait for it.
    pub eval_duration_seconds: GaugeVec,
    pub eval_pause_seconds: GaugeVec,
    pub checkpoint: Option<CheckpointMetrics>,
    /// How varied G_ema's sample grid is next to the reals grid (`gan_core::diversity`); only
    /// rank 0 draws grids, so only rank 0 has it.
    pub sample_diversity_ratio: Option<Gauge>,
}

/// Loss terms by their statistics name.
const LOSS_TERMS: [(&str, &str); 5] = [
    ("Loss/G", "G"),
    ("Loss/D", "D"),
    ("Loss/R1", "R1"),
    ("Loss/path_length", "path_length"),
    ("Loss/gradient_penalty", "gradient_penalty"),
];

impl RankMetrics {
    /// The registry of rank `rank` on node `node` of run `run`; rank 0 also gets the checkpoint series.
    pub fn new(run: &str, rank: u32, node: u32, build: &[(&str, &str)]) -> Self {
        let mut b = Builder::new(labels(&[
            ("run", run.into()),
            ("rank", rank.to_string()),
            ("node", node.to_string()),
        ]));
        let step_buckets = exponential(0.001, 2.0, 16); // 1 ms .. 33 s
        b.info("gan_build_info", "Build of the trainer (value 1).", build);
        let checkpoint = (rank == 0).then(|| CheckpointMetrics {
            duration_seconds: b.histogram(
                "gan_checkpoint_duration_seconds",
                "Time to write and commit a checkpoint (background).",
                exponential(0.01, 2.0, 14),
            ),
            pause_seconds: b.histogram(
                "gan_checkpoint_pause_seconds",
                "Time training paused for a checkpoint (state copy).",
                exponential(0.001, 2.0, 16),
            ),
            size_bytes: b.gauge("gan_checkpoint_size_bytes", "Size of the last committed checkpoint."),
            last_success_timestamp_seconds: b.gauge(
                "gan_checkpoint_last_success_timestamp_seconds",
                "Unix time of the last committed checkpoint (or of the start, before the first).",
            ),
            step: b.gauge("gan_checkpoint_step", "Training step of the last committed checkpoint."),
            failures_total: b.counter(
                "gan_checkpoint_failures_total",
                "Checkpoint writes that failed (training went on from the previous checkpoint).",
            ),
        });
        RankMetrics {
            steps_total: b.counter("gan_train_steps_total", "Optimizer steps done by this process."),
            images_total: b.counter("gan_train_images_total", "Real images this rank showed to D."),
            cur_images: b.gauge(
                "gan_train_cur_images",
                "Real images shown to D by all ranks since the run began (cur_nimg).",
            ),
            images_per_second: b
                .gauge("gan_train_images_per_second", "Throughput of the whole job over the last tick."),
            step_duration_seconds: b.histogram(
                "gan_train_step_duration_seconds",
                "Duration of one step.",
                step_buckets.clone(),
            ),
            step_part_duration_seconds: b.histogram_vec(
                "gan_train_step_part_duration_seconds",
                "Duration of a part of one step: data_wait, forward_backward, allreduce, optimizer.",
                &["part"],
                step_buckets,
            ),
            loss: b.gauge_vec("gan_train_loss", "Mean loss over the last tick, by term.", &["term"]),
            d_output: b.gauge_vec(
                "gan_discriminator_output",
                "Mean D logit over the last tick, by input.",
                &["input"],
            ),
            d_sign_accuracy_ratio: b.gauge(
                "gan_discriminator_sign_accuracy_ratio",
                "How often D puts reals above 0 and fakes below, over the last tick.",
            ),
            gradient_norm: b.gauge_vec(
                "gan_gradient_norm",
                "Mean L2 norm of the averaged gradients, by network.",
                &["network"],
            ),
            spectral_norm_max: b.gauge_vec(
                "gan_spectral_norm_max",
                "Largest top singular value (power-iteration estimate) of a spectrally normalised network's weights, by network.",
                &["network"],
            ),
            learning_rate: b.gauge_vec("gan_learning_rate", "Adam learning rate, by network.", &["network"]),
            augment_probability: b.gauge(
                "gan_augment_probability",
                "Augmentation probability p (ADA); 0 without augmentation.",
            ),
            ema_beta: b.gauge("gan_ema_beta", "G_ema decay at the last step."),
            attempt: b.gauge(
                "gan_rank_attempt",
                "Launcher restarts before this process started (0 for the first attempt).",
            ),
            rollbacks: b.gauge(
                "gan_train_rollbacks",
                "Rollbacks to an earlier checkpoint (non-finite loss, mode dropping) in this run's history.",
            ),
            resident_memory_bytes: b
                .gauge("gan_process_resident_memory_bytes", "Resident memory of this rank."),
            cuda_memory_used_bytes: b
                .gauge("gan_cuda_memory_used_bytes", "Memory in use on this rank's GPU (0 on CPU)."),
            fid: b.gauge_vec(
                "gan_fid",
                "Frechet Inception Distance of G_ema.",
                &["feature_network", "num_images"],
            ),
            kid: b.gauge_vec(
                "gan_kid",
                "Kernel Inception Distance of G_ema.",
                &["feature_network", "num_images"],
            ),
            inception_score: b.gauge_vec(
                "gan_inception_score",
                "Inception Score of G_ema.",
                &["feature_network", "num_images"],
            ),
            precision: b.gauge_vec(
                "gan_precision_ratio",
                "Improved precision of G_ema (share of fakes within the real manifold, k = 3).",
                &["feature_network", "num_images"],
            ),
            recall: b.gauge_vec(
                "gan_recall_ratio",
                "Improved recall of G_ema (share of reals within the fake manifold, k = 3).",
                &["feature_network", "num_images"],
            ),
            density: b.gauge_vec(
                "gan_density",
                "Density of G_ema's samples in the real manifold (k = 5; about 1 when matched).",
                &["feature_network", "num_images"],
            ),
            coverage: b.gauge_vec(
                "gan_coverage_ratio",
                "Share of real samples whose neighbourhood holds a fake (k = 5).",
                &["feature_network", "num_images"],
            ),
            fid_worse_evaluations: b.gauge(
                "gan_fid_worse_evaluations",
                "Consecutive evaluations whose FID was worse than the best so far.",
            ),
            eval_duration_seconds: b.gauge_vec(
                "gan_eval_duration_seconds",
                "Seconds the last evaluation took: generating, extracting features and computing the metrics.",
                &["feature_network", "num_images"],
            ),
            eval_pause_seconds: b.gauge_vec(
                "gan_eval_pause_seconds",
                "Seconds the training loop waited for the last evaluation (copying G_ema in the background).",
                &["feature_network", "num_images"],
            ),
            checkpoint,
            sample_diversity_ratio: (rank == 0).then(|| {
                b.gauge(
                    "gan_sample_diversity_ratio",
                    "Mean pairwise pixel distance of G_ema's grid images of a class over the reals' (1 = as varied as the data).",
                )
            }),
            registry: b.registry,
            names: b.names,
        }
    }

    /// Every metric name this registry exports.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// One step: its parts, images and the step counter.
    pub fn observe_step(&self, parts: StepParts, images: u64) {
        let total = parts.data_wait + parts.forward_backward + parts.allreduce + parts.optimizer;
        self.step_duration_seconds.observe(total);
        for (part, secs) in [
            ("data_wait", parts.data_wait),
            ("forward_backward", parts.forward_backward),
            ("allreduce", parts.allreduce),
            ("optimizer", parts.optimizer),
        ] {
            self.step_part_duration_seconds.with_label_values(&[part]).observe(secs);
        }
        self.steps_total.inc();
        self.images_total.inc_by(images);
    }

    /// Once per tick, from the statistics all ranks reduced.
    pub fn set_tick(&self, stats: &BTreeMap<String, f64>, cur_nimg: u64, images_per_second: f64) {
        self.cur_images.set(cur_nimg as f64);
        self.images_per_second.set(images_per_second);
        for (key, term) in LOSS_TERMS {
            if let Some(&v) = stats.get(key) {
                self.loss.with_label_values(&[term]).set(v);
            }
        }
        for (key, input) in [("D/real", "real"), ("D/fake", "fake")] {
            if let Some(&v) = stats.get(key) {
                self.d_output.with_label_values(&[input]).set(v);
            }
        }
        if let Some(&v) = stats.get("D/accuracy") {
            self.d_sign_accuracy_ratio.set(v);
        }
        for (key, network) in [("GradNorm/G", "G"), ("GradNorm/D", "D")] {
            if let Some(&v) = stats.get(key) {
                self.gradient_norm.with_label_values(&[network]).set(v);
            }
        }
        for (key, network) in [("SV0/G", "G"), ("SV0/D", "D")] {
            if let Some(&v) = stats.get(key) {
                self.spectral_norm_max.with_label_values(&[network]).set(v);
            }
        }
    }
}
