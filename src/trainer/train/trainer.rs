//! The training loop. Each step runs the due phases (D main, D reg, G main) on this rank's
//! batch; each phase accumulates gradients over `accumulation` rounds, synchronises them across
//! ranks, and steps its optimizer. After the phases G_ema follows G. Every `kimg_per_tick` the
//! tick maintenance runs: statistics reduced across ranks and reported, sample grids written
//! (checkpointing and evaluation hook in there too).
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tch::{Kind, Tensor};

use super::checkpointing::{append_stats, checkpoint, Position};
use super::ema::ema_beta;
use super::losses::{d_loss, g_loss, gradient_penalty, ortho_gradient, r1_penalty};
use super::progress::{Progress, TickReport};
use super::setup::Setup;
use super::sync::{all_reduce_gradients, check_parameters_agree};
use super::telemetry::TickRates;
use gan_core::data::Batch;
use gan_core::error::{Error, Result};
use gan_core::metrics::StepParts;

/// What a phase trains and how often it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// D on real vs fake images.
    DMain,
    /// D's lazy regulariser (R1), every `r1_interval` steps.
    DReg { interval: u32 },
    /// G through D, after every `d_steps`-th D step. (G's lazy regulariser, path length,
    /// becomes a `GReg` phase with StyleGAN2.)
    GMain { d_steps: u32 },
}

impl Phase {
    /// Whether the phase runs at `step`: D every step, R1 at multiples of its interval, G after
    /// each group of `d_steps` D steps.
    pub fn due(self, step: u64) -> bool {
        match self {
            Phase::DMain => true,
            Phase::DReg { interval } => step.is_multiple_of(u64::from(interval)),
            Phase::GMain { d_steps } => (step + 1).is_multiple_of(u64::from(d_steps)),
        }
    }

    /// Index of the phase's timing statistic: D main, regularisation, G main.
    fn timing_slot(self) -> usize {
        match self {
            Phase::DMain => 0,
            Phase::DReg { .. } => 1,
            Phase::GMain { .. } => 2,
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOutcome {
    pub step: u64,
    pub cur_nimg: u64,
    pub ticks: Vec<TickReport>,
    /// The signal that stopped training early, if one did.
    pub stopped_by_signal: Option<i32>,
}

/// Runs training until `total_kimg` or until `stop` holds a signal number.
pub fn train(mut s: Setup, stop: &AtomicUsize) -> Result<TrainOutcome> {
    let total_nimg = (s.cfg.train.total_kimg * 1000.0).round() as u64;
    let tick_nimg = (s.cfg.train.kimg_per_tick * 1000.0).round().max(1.0) as u64;
    let progress = Progress::new(s.cfg.log.progress && s.is_rank0(), total_nimg);
    let start = s.start;
    let mut outcome = TrainOutcome {
        step: start.step,
        cur_nimg: start.cur_nimg,
        ticks: Vec::new(),
        stopped_by_signal: None,
    };
    let mut tick_start = (Instant::now(), start.cur_nimg);
    let mut next_tick = start.tick;
    // Nothing new to save at the step a run resumed at.
    let mut last_checkpoint = s.resumed.as_ref().map(|_| start.step);
    let mut last_beta = 0.0;
    let started = Instant::now();
    s.write_start_files()?;
    s.heartbeat.beat(start.step, start.cur_nimg)?;
    tracing::info!(device = %s.device_name(), world = s.pg.world_size(), "training {} kimg", s.cfg.train.total_kimg);
    loop {
        let signal = agree_on_stop(s.pg.as_mut(), stop.load(Ordering::SeqCst))?;
        let done = outcome.cur_nimg >= total_nimg || signal != 0;
        if done || outcome.cur_nimg >= tick_start.1 + tick_nimg {
            let report = tick_report(&mut s, &outcome, next_tick, tick_start)?;
            next_tick += 1;
            progress.tick(&report);
            if let Some(t) = &s.telemetry {
                let rates =
                    TickRates { g_lr: s.g_opt.lr, d_lr: s.d_opt.lr, ema_beta: last_beta, augment_p: 0.0 };
                t.tick(&report, outcome.cur_nimg, rates, s.device);
            }
            maintenance(&mut s, &report, done)?;
            let every = u64::from(s.cfg.checkpoint.every_ticks);
            let due = done || (every > 0 && next_tick.is_multiple_of(every));
            if due && last_checkpoint != Some(outcome.step) {
                let pos = Position { step: outcome.step, cur_nimg: outcome.cur_nimg, tick: next_tick };
                checkpoint(&mut s, pos)?;
                last_checkpoint = Some(outcome.step);
            }
            outcome.ticks.push(report);
            tick_start = (Instant::now(), outcome.cur_nimg);
        }
        if done {
            outcome.stopped_by_signal = (signal != 0).then_some(signal as i32);
            break;
        }
        let g_stepped = run_step(&mut s, outcome.step)?;
        if outcome.step == 0 {
            tracing::info!("first step done");
        }
        outcome.step += 1;
        outcome.cur_nimg += u64::from(s.cfg.train.batch_size);
        s.heartbeat.beat(outcome.step, outcome.cur_nimg)?;
        progress.step(outcome.step, outcome.cur_nimg);
        if g_stepped {
            last_beta = ema_beta(&s.cfg.train, outcome.cur_nimg);
            s.ema.update(last_beta);
        }
    }
    progress.finish();
    s.ckpt_writer.finish()?;
    s.write_final_files()?;
    push_final_results(&s, &outcome, started.elapsed().as_secs_f64());
    Ok(outcome)
}

/// Rank 0 pushes the run's outcome to the Pushgateway, when one is configured (a failed push is
/// a warning: the run itself succeeded).
fn push_final_results(s: &Setup, outcome: &TrainOutcome, duration_seconds: f64) {
    let Some(url) = s.cfg.metrics.pushgateway.as_deref().filter(|_| s.is_rank0()) else { return };
    let results = gan_core::metrics::FinalResults {
        step: outcome.step,
        cur_nimg: outcome.cur_nimg,
        duration_seconds,
        completed: outcome.stopped_by_signal.is_none(),
    };
    match gan_core::metrics::push_to_gateway(url, s.cfg.name(), &results.render()) {
        Ok(()) => tracing::info!("pushed the final results to {url}"),
        Err(e) => tracing::warn!("{e}"),
    }
}

/// The signal any rank received, agreed by all ranks at this step boundary, so every rank stops
/// after the same step (a signal may reach the ranks of different nodes at different moments).
fn agree_on_stop(pg: &mut dyn gan_core::comm::ProcessGroup, local: usize) -> Result<usize> {
    if pg.world_size() == 1 {
        return Ok(local);
    }
    let mut flag = [local as f32];
    pg.all_reduce_f32(&mut flag, gan_core::comm::ReduceOp::Max)?;
    Ok(flag[0] as usize)
}

/// One optimizer step of every phase that is due; true when G stepped.
fn run_step(s: &mut Setup, step: u64) -> Result<bool> {
    let started = Instant::now();
    // The rank's random state is a function of (seed, step): what a checkpoint can restore.
    tch::manual_seed(gan_core::rng::step_seed(s.plan.seed, step) as i64);
    let batch = s.next_batch();
    let data_wait = started.elapsed().as_secs_f64();
    s.stats.report_host("Timing/data_secs", data_wait);
    let (reals, labels) = s.to_tensors(&batch);
    let rounds = s.plan.accumulation as i64;
    let (mut allreduce, mut optimizer) = (0.0, 0.0);
    let per_round = s.plan.batch_per_rank as i64;
    let mut g_stepped = false;
    // Seconds per phase kind this step (0 when it did not run), so tick means split the step.
    let mut phase_secs = [0.0f64; 3];
    for phase in s.phases.clone() {
        if !phase.due(step) {
            continue;
        }
        let phase_started = Instant::now();
        g_stepped |= matches!(phase, Phase::GMain { .. });
        begin_phase(s, phase);
        for round in 0..rounds {
            let real = reals.narrow(0, round * per_round, per_round);
            let c = labels.narrow(0, round * per_round, per_round);
            let loss = phase_loss(s, phase, &real, &c)?;
            (loss / rounds as f64).backward();
        }
        let (sync_secs, opt_secs) = end_phase(s, phase)?;
        allreduce += sync_secs;
        optimizer += opt_secs;
        phase_secs[phase.timing_slot()] += phase_started.elapsed().as_secs_f64();
    }
    for (name, secs) in
        ["Timing/phase_D_secs", "Timing/phase_reg_secs", "Timing/phase_G_secs"].iter().zip(phase_secs)
    {
        s.stats.report_host(name, secs);
    }
    let total = started.elapsed().as_secs_f64();
    s.stats.report_host("Timing/sync_secs", allreduce);
    s.stats.report_host("Timing/step_secs", total);
    if let Some(t) = &s.telemetry {
        let forward_backward = (total - data_wait - allreduce - optimizer).max(0.0);
        let parts = StepParts { data_wait, forward_backward, allreduce, optimizer };
        t.metrics.observe_step(parts, (s.plan.batch_per_rank * s.plan.accumulation).into());
    }
    Ok(g_stepped)
}

/// Freezes the network the phase does not train, so backward computes no gradients for it.
fn begin_phase(s: &mut Setup, phase: Phase) {
    match phase {
        Phase::DMain | Phase::DReg { .. } => {
            s.g_vs.freeze();
            s.d_vs.unfreeze();
            s.d_opt.zero_grad();
        }
        Phase::GMain { .. } => {
            s.d_vs.freeze();
            s.g_vs.unfreeze();
            s.g_opt.zero_grad();
        }
    }
}

/// Gradients agree across ranks here, between backward and the optimizer step. Returns the
/// seconds spent synchronising (CPU collectives are synchronous, so wall time is the cost) and
/// in the optimizer.
fn end_phase(s: &mut Setup, phase: Phase) -> Result<(f64, f64)> {
    let (opt, norm_stat, ortho) = match phase {
        Phase::DMain => (&mut s.d_opt, Some("GradNorm/D"), s.cfg.train.d_ortho),
        Phase::DReg { .. } => (&mut s.d_opt, None, 0.0),
        Phase::GMain { .. } => (&mut s.g_opt, Some("GradNorm/G"), s.cfg.train.g_ortho),
    };
    let bucket_bytes = (s.cfg.dist.bucket_mb * 1024.0 * 1024.0) as usize;
    let sync_started = Instant::now();
    all_reduce_gradients(s.pg.as_mut(), opt.params(), bucket_bytes)?;
    let sync_secs = sync_started.elapsed().as_secs_f64();
    if let Some(name) = norm_stat {
        // A device scalar added to the tick's sum: no host sync in the step.
        let norm = gradient_norm(opt.params());
        s.stats.report(name, &norm);
    }
    if ortho > 0.0 {
        add_ortho_gradients(opt, ortho);
    }
    let opt_started = Instant::now();
    opt.step();
    Ok((sync_secs, opt_started.elapsed().as_secs_f64()))
}

/// BigGAN's orthogonal regularisation, added to the (already averaged, so identical on every
/// rank) gradients of every weight with 2 or more dimensions, except G's shared class embedding.
fn add_ortho_gradients(opt: &super::optim::Adam, beta: f64) {
    tch::no_grad(|| {
        for (name, p) in opt.named_params() {
            let mut grad = p.grad();
            if p.dim() < 2 || name == "shared.weight" || !grad.defined() {
                continue;
            }
            let _ = grad.g_add_(&ortho_gradient(p, beta));
        }
    });
}

/// L2 norm over all gradients of `params` (the averaged ones, after the all-reduce).
fn gradient_norm<'a>(params: impl Iterator<Item = &'a Tensor>) -> Tensor {
    let squares: Vec<Tensor> =
        params.map(|p| p.grad()).filter(|g| g.defined()).map(|g| g.square().sum(Kind::Float)).collect();
    if squares.is_empty() {
        return Tensor::from(0.0f32);
    }
    Tensor::stack(&squares, 0).sum(Kind::Float).sqrt()
}

/// The loss of one round of one phase; reports its statistics.
fn phase_loss(s: &mut Setup, phase: Phase, real: &Tensor, c: &Tensor) -> Result<Tensor> {
    let loss_kind = s.cfg.train.loss;
    match phase {
        Phase::DMain => {
            let (z, c_fake) = s.latents(real.size()[0]);
            let fake = tch::no_grad(|| s.g.forward(&z, &c_fake));
            let real_logits = s.d.forward(real, c);
            let fake_logits = s.d.forward(&fake, &c_fake);
            let mut loss = d_loss(loss_kind, &real_logits, &fake_logits);
            s.stats.report("Loss/D", &loss);
            if loss_kind == gan_core::config::Loss::WganGp {
                // Penalty at random interpolates of reals and fakes (one mixing weight per image).
                let n = real.size()[0];
                let eps = Tensor::rand([n, 1, 1, 1], (Kind::Float, real.device()));
                let mix: Tensor = real * &eps + &fake * (-&eps + 1.0);
                let x_hat = mix.detach().set_requires_grad(true);
                let gp = gradient_penalty(&s.d.forward(&x_hat, c), &x_hat, s.cfg.train.gp_lambda);
                s.stats.report("Loss/gradient_penalty", &gp);
                loss += gp;
            }
            s.stats.report("D/real", &real_logits.mean(Kind::Float));
            s.stats.report("D/fake", &fake_logits.mean(Kind::Float));
            // Sign accuracy: how often D puts a real above 0 and a fake below.
            let acc = (real_logits.gt(0.0).to_kind(Kind::Float).mean(Kind::Float)
                + fake_logits.lt(0.0).to_kind(Kind::Float).mean(Kind::Float))
                / 2.0;
            s.stats.report("D/accuracy", &acc);
            Ok(loss)
        }
        Phase::DReg { interval } => {
            let real = real.detach().set_requires_grad(true);
            let logits = s.d.forward(&real, c);
            let r1 = r1_penalty(&logits, &real, s.cfg.train.r1_gamma);
            s.stats.report("Loss/R1", &r1);
            // Lazy regularisation: the penalty runs every `interval` steps, so it weighs `interval` times.
            Ok(r1 * f64::from(interval))
        }
        Phase::GMain { .. } => {
            let (z, c_fake) = s.latents(real.size()[0]);
            let fake_logits = s.d.forward(&s.g.forward(&z, &c_fake), &c_fake);
            let loss = g_loss(loss_kind, &fake_logits);
            s.stats.report("Loss/G", &loss);
            Ok(loss)
        }
    }
}

fn tick_report(
    s: &mut Setup,
    outcome: &TrainOutcome,
    tick: u64,
    tick_start: (Instant, u64),
) -> Result<TickReport> {
    let stats = s.stats.reduce(s.pg.as_mut())?;
    if let Some((name, _)) = stats.iter().find(|(name, v)| name.starts_with("Loss/") && !v.is_finite()) {
        return Err(Error::NonFinite { what: name.clone(), step: outcome.step });
    }
    let seconds = tick_start.0.elapsed().as_secs_f64().max(1e-9);
    let nimg = (outcome.cur_nimg - tick_start.1) as f64;
    Ok(TickReport {
        tick,
        step: outcome.step,
        kimg: outcome.cur_nimg as f64 / 1000.0,
        imgs_per_sec: nimg / seconds,
        sec_per_kimg: if nimg > 0.0 { seconds / nimg * 1000.0 } else { 0.0 },
        stats,
    })
}

/// Per-tick work besides statistics and checkpoints. Evaluation will hook in here (long work
/// should beat the heartbeat as it goes).
fn maintenance(s: &mut Setup, report: &TickReport, done: bool) -> Result<()> {
    s.heartbeat.beat(report.step, (report.kimg * 1000.0).round() as u64)?;
    if s.is_rank0() {
        append_stats(s, report)?;
    }
    let check_every = u64::from(s.cfg.dist.param_check_ticks);
    if done || (check_every > 0 && report.tick.is_multiple_of(check_every)) {
        check_parameters_agree(s.pg.as_mut(), &[&s.g_vs, &s.d_vs], report.step)?;
    }
    let every = u64::from(s.cfg.train.sample_ticks);
    if s.is_rank0() && (done || (every > 0 && report.tick.is_multiple_of(every))) {
        s.write_sample_grid(report.kimg)?;
    }
    Ok(())
}

/// Converts a batch of uint8 HWC pixels to the [-1, 1] NCHW floats D sees. On CUDA the uint8
/// batch goes through pinned memory with a non-blocking copy (4x fewer bytes than floats), and
/// the conversion runs on the device.
pub fn batch_to_tensors(batch: &Batch, device: tch::Device) -> (Tensor, Tensor) {
    let (res, ch) = (i64::from(batch.resolution), i64::from(batch.channels));
    let n = batch.len() as i64;
    let host = Tensor::from_slice(&batch.pixels).view([n, res, res, ch]);
    let pixels = match device {
        tch::Device::Cuda(_) => host.pin_memory(device).to_device_(device, Kind::Uint8, true, false),
        _ => host,
    };
    let images = pixels.permute([0, 3, 1, 2]).to_kind(Kind::Float).contiguous() / 127.5 - 1.0;
    let labels: Vec<i64> = batch.labels.iter().map(|&l| i64::from(l)).collect();
    (images, Tensor::from_slice(&labels).to_device(device))
}
