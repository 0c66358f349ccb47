//! Everything a rank trains with, built once from the config and its plan: device, networks
//! (G, D, G_ema in their own VarStores), optimizers, data, process group and the run directory.
use std::sync::Arc;

use tch::{nn, Device, Kind, Tensor};

use super::checkpointing::{report_config_changes, report_resume, Position};
use super::data::{open_data, start_loader};
use super::ema::{Buffers, Ema};
use super::labels::FakeLabels;
use super::optim::Adam;
use super::samples::SampleGrid;
use super::stats::TickStats;
use super::step::weight_of_share;
use super::step::{batch_to_tensors, Phase};
use super::sync::broadcast_from_rank0;
use super::telemetry::Telemetry;
use crate::augment::Augmenter;
use crate::ckpt::{self, CheckpointWriter, NetTargets, RestoreTargets, Resumed};
use crate::models::{self, Discriminator, Generator, NetSpec};
use crate::precision::ForwardPrecision;
use gan_core::checkpoint::{Checkpoints, InitSource, Retention};
use gan_core::comm::ProcessGroup;
use gan_core::config::{Arch, RankPlan, RunConfig, TrainSection};
use gan_core::data::identity::DatasetIdentity;
use gan_core::data::loader::Loader;
use gan_core::data::{classes::ClassDistribution, Batch, ImageSource};
use gan_core::diversity;
use gan_core::error::{Error, Result};
use gan_core::flight::Recorder;
use gan_core::heartbeat::Heartbeat;
use gan_core::rundir::RunDir;

/// What a rollback keeps from the state it replaces: its count, and the dataset, already opened,
/// verified and counted (hashing a large dataset again could outlast the launcher's heartbeat
/// timeout).
pub struct Carried {
    pub rollbacks: u32,
    pub source: Arc<dyn ImageSource>,
    pub class_mix: Option<ClassDistribution>,
}

/// The libtorch this binary was built against (read from the wheel's version.py by build.rs).
pub const LIBTORCH_VERSION: &str = env!("GAN_BUILD_LIBTORCH_VERSION");

pub struct Setup {
    pub cfg: RunConfig,
    pub plan: RankPlan,
    pub device: Device,
    pub pg: Box<dyn ProcessGroup>,
    /// Draw latents and labels on the host (and copy them to the device).
    pub host_latents: bool,
    /// The background evaluator's own group (a second ring), joined by `main` when it is used.
    pub eval_pg: Option<Box<dyn ProcessGroup>>,
    /// Where this rank is, for the launcher when the job is stuck (`main` shares its recorder,
    /// which the process groups record into; tests get one of their own).
    pub flight: Arc<Recorder>,
    /// The dataset trained on, as checkpoints record it.
    pub dataset: DatasetIdentity,
    /// The dataset's class mix, when the run is conditional (metrics draw fake labels from it).
    pub class_mix: Option<ClassDistribution>,
    /// How training draws its fakes' labels.
    fake_labels: FakeLabels,
    pub g_vs: nn::VarStore,
    pub d_vs: nn::VarStore,
    pub g_ema_vs: nn::VarStore,
    pub g: Box<dyn Generator>,
    pub d: Box<dyn Discriminator>,
    pub g_ema: Box<dyn Generator>,
    pub g_opt: Adam,
    pub d_opt: Adam,
    pub ema: Ema,
    pub phases: Vec<Phase>,
    /// Applied to every image D sees.
    pub augment: Augmenter,
    /// ADA: this step's sums of sign(D(real)) (device scalars, one per round).
    pub ada_signs: Vec<Tensor>,
    /// The latest evaluation: its step and results by metric (for the checkpoint of that step).
    pub last_eval: Option<(u64, std::collections::BTreeMap<String, f64>)>,
    /// Best evaluation results so far (the lowest `fid`, the highest `recall` and `coverage`),
    /// and the highest `sample_diversity` of a grid, saved in checkpoints.
    pub best_metrics: std::collections::BTreeMap<String, f64>,
    /// Rank 0: the step of the best-FID checkpoint to go back to, once an evaluation found G
    /// dropping modes (`eval.rollback_on_mode_dropping`); the ranks agree on it at the tick.
    pub mode_dropping_rollback: Option<u64>,
    /// Arithmetic of the forward passes (train.precision on this device).
    pub precision: ForwardPrecision,
    /// StyleGAN2: running mean of the path lengths (a device scalar; 0 before the first).
    pub pl_mean: Tensor,
    pub stats: TickStats,
    /// This rank's share of the step's images times the world size, over the batch (1 when the
    /// batch splits evenly): its weight in the gradient average and the tick statistics.
    pub share_weight: f64,
    /// Tells the launcher this rank is making progress.
    pub heartbeat: Heartbeat,
    pub source: Arc<dyn ImageSource>,
    /// Rank 0 writes checkpoints through it (other ranks only take part in the agreement).
    pub ckpt_writer: CheckpointWriter,
    /// The checkpoint this start resumed from.
    pub resumed: Option<Resumed>,
    /// The checkpoint whose networks the run started from (`checkpoint.init_from`), this start
    /// or the run's first.
    pub init_source: Option<InitSource>,
    /// Where training starts: zero, or the resumed checkpoint's position.
    pub start: Position,
    /// Rollbacks (non-finite loss, mode dropping) so far in the run; `plan.seed` is keyed by it.
    pub rollbacks: u32,
    /// Prometheus series and endpoint (metrics.enabled).
    pub telemetry: Option<Telemetry>,
    loader: Loader,
    pub(super) grid: SampleGrid,
    /// Rank 0: the reals grid's diversity, which sample grids are measured against (set by
    /// `write_start_files`).
    pub(super) reals_diversity: Option<diversity::Reference>,
    pub(super) run_dir: RunDir,
    pub(super) restart_count: u32,
}

impl Setup {
    /// Builds a rank's training state. Weights are drawn from `run.seed` (identical on every
    /// rank), or loaded from the checkpoint the start resolves to; latents and flips come from
    /// the rank's own seed. `restarted`: this job ran before (launcher restart or requeue). Its
    /// flight record is its own, written nowhere: for tools and tests (a rank passes the one its
    /// record writer reads to [`Setup::build`]).
    pub fn new(
        cfg: RunConfig,
        plan: RankPlan,
        pg: Box<dyn ProcessGroup>,
        restart_count: u32,
        restarted: bool,
    ) -> Result<Self> {
        let flight = Arc::new(Recorder::new(plan.rank));
        Self::build(cfg, plan, pg, (restart_count, restarted), flight, None)
    }

    /// [`Setup::new`] with the rank's flight record, or after a rollback (`carried`): the ranks'
    /// streams are keyed by the rollback count (the checkpoint's, when it holds more) and the
    /// open dataset is reused.
    pub fn build(
        cfg: RunConfig,
        mut plan: RankPlan,
        pg: Box<dyn ProcessGroup>,
        (restart_count, restarted): (u32, bool),
        flight: Arc<Recorder>,
        carried: Option<Carried>,
    ) -> Result<Self> {
        let device = parse_device(&plan.device)?;
        if device.is_cuda() {
            // Process-wide switches, before the first convolution: every CUDA pass (evaluation
            // included) computes as the config says.
            crate::precision::set_allow_tf32(cfg.train.allow_tf32, cfg.train.allow_tf32)?;
            tch::Cuda::cudnn_set_benchmark(cfg.train.cudnn_benchmark);
        }
        tch::set_num_threads(plan.threads as i32);
        tch::manual_seed(cfg.run.seed as i64);
        let spec = NetSpec::from_config(&cfg);
        let (g_vs, d_vs, g_ema_vs) =
            (nn::VarStore::new(device), nn::VarStore::new(device), nn::VarStore::new(device));
        let g = models::generator(cfg.model.arch, &spec, g_vs.root());
        let d = models::discriminator(cfg.model.arch, &spec, d_vs.root());
        let g_ema = models::generator(cfg.model.arch, &spec, g_ema_vs.root());
        // Every rank starts from rank 0's weights (they agree already when seeded alike; this
        // makes it true by construction), then G_ema copies G.
        let mut pg = pg;
        broadcast_from_rank0(pg.as_mut(), &g_vs)?;
        broadcast_from_rank0(pg.as_mut(), &d_vs)?;
        // StyleGAN2-ADA copies G's buffers into G_ema; BigGAN-PyTorch averages them like weights.
        let buffers = if cfg.model.arch == Arch::Stylegan2 { Buffers::Copy } else { Buffers::Average };
        let ema = Ema::new(&g_vs, &g_ema_vs, buffers);
        let mut g_opt = Adam::new(&g_vs, &cfg.train.g_opt);
        let mut d_opt = Adam::new(&d_vs, &cfg.train.d_opt);
        let phases = phases(&cfg.train, &mut g_opt, &mut d_opt);
        let share = u64::from(plan.batch_per_rank * plan.accumulation);
        let share_weight =
            weight_of_share(share, u64::from(pg.world_size()), u64::from(cfg.train.batch_size));
        let load_started = std::time::Instant::now();
        let dataset = DatasetIdentity::of(&cfg.data, cfg.run.seed)?;
        let nets = NetTargets { g: &g_vs, d: &d_vs, g_ema: &g_ema_vs };
        let targets = RestoreTargets { nets, g_opt: &mut g_opt, d_opt: &mut d_opt };
        let (resumed, init_source) = load_start(pg.as_mut(), &cfg, restarted, &dataset, targets)?;
        let load_secs = load_started.elapsed().as_secs_f64();
        let saved_rollbacks = resumed.as_ref().map_or(0, |r| r.state.rollbacks);
        let rollbacks = carried.as_ref().map_or(0, |c| c.rollbacks).max(saved_rollbacks);
        plan.seed = gan_core::rng::rollback_seed(plan.seed, rollbacks);
        // Learning rates follow the rollback count (not stored: derived, like the streams).
        let lr_scale = cfg.train.rollback_lr_mult.powi(rollbacks as i32);
        g_opt.lr *= lr_scale;
        d_opt.lr *= lr_scale;
        let start = resumed.as_ref().map_or(Position::default(), |r| Position {
            step: r.state.step,
            cur_nimg: r.state.cur_nimg,
            tick: r.state.tick,
        });
        let data_consumed = resumed.as_ref().map_or(0, |r| r.state.data_consumed);
        let (source, class_mix) = match carried {
            Some(c) => (c.source, c.class_mix),
            None => open_data(&cfg, &plan)?,
        };
        let loader = start_loader(&cfg, &plan, pg.as_ref(), &source, data_consumed);
        let fake_labels = FakeLabels::new(&cfg, class_mix.as_ref(), device);
        let grid =
            SampleGrid::new(spec.z_dim, cfg.data.num_classes.min(spec.c_dim as u32), cfg.run.seed, device);
        let run_dir = RunDir::new(cfg.run_dir());
        let telemetry = Telemetry::start(&cfg, &plan, restart_count);
        if let Some(t) = &telemetry {
            t.metrics.rollbacks.set(f64::from(rollbacks));
        }
        let ckpt_writer = checkpoint_writer(&cfg, &run_dir, telemetry.as_ref(), resumed.as_ref(), start);
        let pl_mean =
            resumed.as_ref().and_then(|r| r.state.regularisers.get("pl_mean").copied()).map_or_else(
                || Tensor::zeros([], (Kind::Float, device)),
                |v| Tensor::from(v as f32).to_device(device),
            );
        let mut augment = Augmenter::from_config(&cfg.train);
        if let (Augmenter::Ada(ctrl), Some(r)) = (&mut augment, &resumed) {
            ctrl.restore(&r.state.augment);
        }
        let cfg_precision = cfg.train.precision;
        let setup = Setup {
            cfg,
            plan,
            device,
            pg,
            eval_pg: None,
            dataset,
            flight,
            host_latents: false,
            class_mix,
            fake_labels,
            g_vs,
            d_vs,
            g_ema_vs,
            g,
            d,
            g_ema,
            g_opt,
            d_opt,
            ema,
            phases,
            augment,
            ada_signs: Vec::new(),
            pl_mean,
            last_eval: None,
            best_metrics: resumed.as_ref().map(|r| r.state.best_metrics.clone()).unwrap_or_default(),
            mode_dropping_rollback: None,
            precision: ForwardPrecision::for_run(cfg_precision, device),
            stats: TickStats::weighted(share_weight),
            share_weight,
            heartbeat: Heartbeat::from_env(),
            source,
            ckpt_writer,
            resumed,
            init_source,
            start,
            rollbacks,
            telemetry,
            loader,
            grid,
            reals_diversity: None,
            run_dir,
            restart_count,
        };
        if let Some(r) = &setup.resumed {
            report_resume(&setup, r, load_secs);
        }
        Ok(setup)
    }

    /// How often the launcher has restarted this job.
    pub fn restart_count(&self) -> u32 {
        self.restart_count
    }

    /// Images of the data stream handed to training so far (all ranks together).
    pub fn data_consumed(&self) -> u64 {
        self.loader.consumed()
    }

    pub fn is_rank0(&self) -> bool {
        self.pg.rank() == 0
    }

    pub fn device_name(&self) -> String {
        self.plan.device.clone()
    }

    /// This rank's images for one step (all accumulation rounds), from the loader's queue.
    pub fn next_batch(&mut self) -> Batch {
        let batch = self.loader.next_batch();
        debug_assert_eq!(batch.len(), (self.plan.batch_per_rank * self.plan.accumulation) as usize);
        batch
    }

    pub fn to_tensors(&self, batch: &Batch) -> (Tensor, Tensor) {
        batch_to_tensors(batch, self.device)
    }

    /// Latents and labels for `n` fakes (labels as `FakeLabels` says).
    pub fn latents(&self, n: i64) -> (Tensor, Tensor) {
        // CPU and CUDA generators give different numbers from one seed; drawing on the host
        // makes a GPU step comparable with a CPU step (`gan-train gpu-check step`).
        let draw_on = if self.host_latents { Device::Cpu } else { self.device };
        let z = Tensor::randn([n, self.g.z_dim()], (Kind::Float, draw_on));
        (z.to_device(self.device), self.fake_labels.draw(n, draw_on, self.device))
    }
}

/// The phases of a training step, in order: D's main pass, R1 every `r1_interval` steps when
/// `r1_gamma` > 0, G's main pass, path length every `pl_interval` steps when `pl_weight` > 0.
/// A lazy regulariser's optimizer has its Adam settings adjusted as StyleGAN2 does (SPECS 4).
fn phases(t: &TrainSection, g_opt: &mut Adam, d_opt: &mut Adam) -> Vec<Phase> {
    let mut phases = vec![Phase::DMain];
    if t.r1_gamma > 0.0 {
        phases.push(Phase::DReg { interval: t.r1_interval });
        d_opt.adjust_for_lazy_regularisation(t.r1_interval);
    }
    phases.push(Phase::GMain { d_steps: t.d_steps });
    if t.pl_weight > 0.0 {
        phases.push(Phase::GReg { d_steps: t.d_steps, interval: t.pl_interval });
        g_opt.adjust_for_lazy_regularisation(t.pl_interval);
    }
    phases
}

/// Loads what this start begins from into `targets`: the checkpoint it resumes (its dataset
/// checked against the config's), else `checkpoint.init_from`'s networks, else nothing (the
/// seeded weights stay). Returns the checkpoint resumed and where the run's networks came from.
fn load_start(
    pg: &mut dyn ProcessGroup,
    cfg: &RunConfig,
    restarted: bool,
    dataset: &DatasetIdentity,
    targets: RestoreTargets,
) -> Result<(Option<Resumed>, Option<InitSource>)> {
    let resumed = ckpt::resolve_start(pg, cfg, restarted)?;
    let mut init_source = resumed.as_ref().and_then(|r| r.state.init_from.clone());
    match (&resumed, &cfg.checkpoint.init_from) {
        (Some(r), _) => {
            if pg.rank() == 0 {
                report_config_changes(&r.dir, cfg);
            }
            ckpt::check_dataset(r, cfg, dataset)?;
            ckpt::restore_into(r, cfg, targets)?;
        }
        (None, Some(path)) => {
            let from = ckpt::resolve_init(pg, path)?;
            ckpt::init_networks(&from, cfg, dataset, &targets.nets, pg.rank())?;
            init_source = Some(ckpt::init_source(&from));
        }
        (None, None) => {}
    }
    Ok((resumed, init_source))
}

/// The checkpoint writer with the config's retention, its metrics starting from the resumed
/// checkpoint: the age counts from the last checkpoint, or from this start before the first.
fn checkpoint_writer(
    cfg: &RunConfig,
    run_dir: &RunDir,
    telemetry: Option<&Telemetry>,
    resumed: Option<&Resumed>,
    start: Position,
) -> CheckpointWriter {
    let metrics = telemetry.and_then(|t| t.metrics.checkpoint.clone());
    if let Some(m) = &metrics {
        let last = resumed.map_or(chrono::Utc::now(), |r| {
            chrono::DateTime::parse_from_rfc3339(&r.manifest.created)
                .map_or(chrono::Utc::now(), |t| t.with_timezone(&chrono::Utc))
        });
        m.last_success_timestamp_seconds.set(last.timestamp_millis() as f64 / 1000.0);
        m.step.set(start.step as f64);
    }
    let retention = Retention {
        keep_last: cfg.checkpoint.keep_last as usize,
        keep_best: cfg.checkpoint.keep_best as usize,
        hold: None,
    };
    CheckpointWriter::new(Checkpoints::of_run(&run_dir.root), retention, cfg.checkpoint.background, metrics)
}

/// `cpu` or `cuda:N`; CUDA must be present when asked for.
fn parse_device(name: &str) -> Result<Device> {
    if name == "cpu" {
        return Ok(Device::Cpu);
    }
    let index: usize = name
        .strip_prefix("cuda:")
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| Error::Env(format!("device {name:?} is neither cpu nor cuda:N")))?;
    if !tch::Cuda::is_available() || index >= tch::Cuda::device_count() as usize {
        return Err(Error::Env(format!(
            "device {name} requested (train.device) but libtorch sees {} CUDA device(s); use train.device: cpu or auto",
            if tch::Cuda::is_available() { tch::Cuda::device_count() } else { 0 }
        )));
    }
    Ok(Device::Cuda(index))
}
