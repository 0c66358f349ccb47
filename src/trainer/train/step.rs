//! One training step: the phases that are due (D main, D reg, G main, G reg), each accumulating
//! gradients over the rank's rounds, synchronising them across ranks (plus BigGAN's orthogonal
//! regularisation), and stepping its optimizer; then the running means every rank updates from
//! its own batch (w_avg, the path-length mean) are averaged; with the timing split and statistics.
use std::time::Instant;

use tch::{Kind, Tensor};

use super::losses::{
    d_loss, g_loss, gradient_penalty, ortho_gradient, path_length_penalty, path_lengths, r1_penalty,
};
use super::setup::Setup;
use super::sync::{all_reduce_gradients, average_running_means};
use gan_core::data::Batch;
use gan_core::error::Result;
use gan_core::flight::Activity;
use gan_core::metrics::StepParts;

/// What a phase trains and how often it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// D on real vs fake images.
    DMain,
    /// D's lazy regulariser (R1), every `r1_interval` steps.
    DReg { interval: u32 },
    /// G through D, after every `d_steps`-th D step.
    GMain { d_steps: u32 },
    /// G's lazy regulariser (StyleGAN2's path length), at every `interval`-th G step.
    GReg { d_steps: u32, interval: u32 },
}

impl Phase {
    /// Whether the phase runs at `step`: D every step, R1 at multiples of its interval, G after
    /// each group of `d_steps` D steps.
    pub fn due(self, step: u64) -> bool {
        match self {
            Phase::DMain => true,
            Phase::DReg { interval } => step.is_multiple_of(u64::from(interval)),
            Phase::GMain { d_steps } => (step + 1).is_multiple_of(u64::from(d_steps)),
            Phase::GReg { d_steps, interval } => {
                let g_steps_before = (step + 1) / u64::from(d_steps);
                Phase::GMain { d_steps }.due(step) && (g_steps_before - 1).is_multiple_of(u64::from(interval))
            }
        }
    }

    /// How the flight record names the phase.
    fn activity(self) -> Activity {
        match self {
            Phase::DMain => Activity::DMain,
            Phase::DReg { .. } => Activity::DReg,
            Phase::GMain { .. } => Activity::GMain,
            Phase::GReg { .. } => Activity::GReg,
        }
    }

    /// The phase as reports name it: "D main", "D reg", "G main", "G reg".
    pub fn name(self) -> &'static str {
        match self {
            Phase::DMain => "D main",
            Phase::DReg { .. } => "D reg",
            Phase::GMain { .. } => "G main",
            Phase::GReg { .. } => "G reg",
        }
    }

    /// Index of the phase's timing statistic in [`PHASE_TIMING`].
    fn timing_slot(self) -> usize {
        match self {
            Phase::DMain => 0,
            Phase::DReg { .. } => 1,
            Phase::GMain { .. } => 2,
            Phase::GReg { .. } => 3,
        }
    }
}

/// Seconds per phase kind in a step (0 in a step where it did not run), so tick means split the step.
pub const PHASE_TIMING: [&str; 4] =
    ["Timing/phase_D_secs", "Timing/phase_Dreg_secs", "Timing/phase_G_secs", "Timing/phase_Greg_secs"];

/// Tests make this step's D loss non-finite (in a run not yet rolled back) to exercise recovery.
#[cfg(test)]
pub static POISON_STEP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);

/// One optimizer step of every phase that is due; true when G stepped.
pub fn run_step(s: &mut Setup, step: u64) -> Result<bool> {
    let started = Instant::now();
    // The rank's random state is a function of (seed, step): what a checkpoint can restore.
    tch::manual_seed(gan_core::rng::step_seed(s.plan.seed, step) as i64);
    s.flight.enter(Activity::Data, step);
    let batch = s.next_batch();
    let data_wait = started.elapsed().as_secs_f64();
    s.stats.report_host("Timing/data_secs", data_wait);
    let (reals, labels) = s.to_tensors(&batch);
    let rounds = s.plan.accumulation as i64;
    let (mut allreduce, mut optimizer) = (0.0, 0.0);
    let per_round = s.plan.batch_per_rank as i64;
    let mut g_stepped = false;
    let mut phase_secs = [0.0f64; PHASE_TIMING.len()];
    for phase in s.phases.clone() {
        if !phase.due(step) {
            continue;
        }
        let phase_started = Instant::now();
        s.flight.enter(phase.activity(), step);
        g_stepped |= matches!(phase, Phase::GMain { .. });
        let (sync_secs, opt_secs) = run_phase(s, phase, &reals, &labels, rounds, per_round)?;
        allreduce += sync_secs;
        optimizer += opt_secs;
        phase_secs[phase.timing_slot()] += phase_started.elapsed().as_secs_f64();
    }
    average_running_means(s)?;
    #[cfg(test)]
    if step == POISON_STEP.load(std::sync::atomic::Ordering::SeqCst) && s.rollbacks == 0 {
        s.stats.report_host("Loss/D", f64::NAN);
    }
    for (name, secs) in PHASE_TIMING.iter().zip(phase_secs) {
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

/// One phase over the step's batch in `rounds` rounds of `per_round` images: forward and
/// backward per round, then the gradient synchronisation and the optimizer step. Returns the
/// seconds spent synchronising and in the optimizer.
pub fn run_phase(
    s: &mut Setup,
    phase: Phase,
    reals: &Tensor,
    labels: &Tensor,
    rounds: i64,
    per_round: i64,
) -> Result<(f64, f64)> {
    begin_phase(s, phase);
    let weight = s.share_weight;
    for round in 0..rounds {
        let real = reals.narrow(0, round * per_round, per_round);
        let c = labels.narrow(0, round * per_round, per_round);
        // Forward passes (and the gradients R1 and path length take of them) under the run's
        // precision; backward outside autocast, as torch.autocast prescribes.
        let loss = s.precision.run(|| phase_loss(s, phase, &real, &c))??;
        if weight == 1.0 {
            (loss / rounds as f64).backward();
        } else {
            (loss * (weight / rounds as f64)).backward();
        }
    }
    let times = end_phase(s, phase)?;
    // A GPU runs the phase's kernels after the host has queued them: wait, so phase times (and
    // the benchmark's D/G split) measure the GPU's work, not the queueing.
    if let tch::Device::Cuda(index) = s.device {
        tch::Cuda::synchronize(index as i64);
    }
    Ok(times)
}

/// A rank's share of the step's images times the world size, over the batch: 1 when the batch
/// splits evenly. Each rank's loss is a mean over its own images and the synchronisation averages
/// gradients over ranks, so weighting each by its share makes the result the gradient of the
/// mean over the whole batch when shares differ by an image.
pub fn weight_of_share(share: u64, world: u64, batch: u64) -> f64 {
    if share * world == batch {
        1.0
    } else {
        (share * world) as f64 / batch as f64
    }
}

/// Freezes the network the phase does not train, so backward computes no gradients for it.
fn begin_phase(s: &mut Setup, phase: Phase) {
    match phase {
        Phase::DMain | Phase::DReg { .. } => {
            s.g_vs.freeze();
            s.d_vs.unfreeze();
            s.d_opt.zero_grad();
        }
        Phase::GMain { .. } | Phase::GReg { .. } => {
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
        Phase::GReg { .. } => (&mut s.g_opt, None, 0.0),
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
    if s.cfg.model.arch == gan_core::config::Arch::Stylegan2 {
        // StyleGAN2-ADA's guard: a non-finite gradient entry becomes 0 (NaN) or +-1e5 (inf), so
        // one bad sample cannot poison Adam's moments.
        tch::no_grad(|| {
            for p in opt.params() {
                let mut grad = p.grad();
                if grad.defined() {
                    let _ = grad.nan_to_num_(0.0, 1e5, -1e5);
                }
            }
        });
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
            let (real_logits, fake_logits) = if s.d.per_image() && !s.cfg.train.split_d {
                let n = real.size()[0];
                let x = Tensor::cat(&[real, &fake], 0);
                let logits = critic(s, &x, &Tensor::cat(&[c, &c_fake], 0));
                (logits.narrow(0, 0, n), logits.narrow(0, n, n))
            } else {
                (critic(s, real, c), critic(s, &fake, &c_fake))
            };
            let mut loss = d_loss(loss_kind, &real_logits, &fake_logits);
            s.stats.report("Loss/D", &loss);
            if loss_kind == gan_core::config::Loss::WganGp {
                // Penalty at random interpolates of reals and fakes (one mixing weight per image).
                let n = real.size()[0];
                let eps = Tensor::rand([n, 1, 1, 1], (Kind::Float, real.device()));
                let mix: Tensor = real * &eps + &fake * (-&eps + 1.0);
                let x_hat = mix.detach().set_requires_grad(true);
                let logits = critic(s, &x_hat, c);
                let gp = gradient_penalty(&logits, &x_hat, s.cfg.train.gp_lambda);
                s.stats.report("Loss/gradient_penalty", &gp);
                loss += gp;
            }
            s.stats.report("D/real", &real_logits.mean(Kind::Float));
            if matches!(s.augment, crate::augment::Augmenter::Ada(_)) {
                s.ada_signs.push(real_logits.detach().sign().sum(Kind::Float));
            }
            s.stats.report("D/fake", &fake_logits.mean(Kind::Float));
            // Sign accuracy: how often D puts a real above 0 and a fake below.
            let acc = (real_logits.gt(0.0).to_kind(Kind::Float).mean(Kind::Float)
                + fake_logits.lt(0.0).to_kind(Kind::Float).mean(Kind::Float))
                / 2.0;
            s.stats.report("D/accuracy", &acc);
            Ok(loss)
        }
        Phase::DReg { interval } => {
            // The gradient is taken with respect to the un-augmented reals, through the augmentation.
            let real = real.detach().set_requires_grad(true);
            let logits = critic(s, &real, c);
            let r1 = r1_penalty(&logits, &real, s.cfg.train.r1_gamma);
            s.stats.report("Loss/R1", &r1);
            // Lazy regularisation: the penalty runs every `interval` steps, so it weighs `interval` times.
            Ok(r1 * f64::from(interval))
        }
        Phase::GMain { .. } => {
            let (z, c_fake) = s.latents(real.size()[0]);
            let fake_logits = critic(s, &s.g.forward(&z, &c_fake), &c_fake);
            let loss = g_loss(loss_kind, &fake_logits);
            s.stats.report("Loss/G", &loss);
            Ok(loss)
        }
        Phase::GReg { interval, .. } => {
            let t = &s.cfg.train;
            let (weight, decay) = (t.pl_weight, t.pl_decay);
            let n = (real.size()[0] / i64::from(t.pl_batch_shrink)).max(1);
            let (z, c_fake) = s.latents(n);
            let g = s.g.with_ws().expect("path-length regularisation is validated to need StyleGAN2");
            let (img, ws) = g.forward_with_ws(&z, &c_fake);
            let (h, w) = (img.size()[2], img.size()[3]);
            let noise = img.randn_like() / ((h * w) as f64).sqrt();
            let lengths = path_lengths(&img, &ws, &noise);
            // The running mean moves toward this round's mean length; ranks average it after the step.
            let (penalty, pl_mean) = path_length_penalty(&lengths, &s.pl_mean, decay);
            s.pl_mean = pl_mean;
            s.stats.report("Loss/pl_penalty", &penalty);
            s.stats.report("Loss/pl_mean", &s.pl_mean);
            // Lazy regularisation: the penalty runs every `interval` G steps, so it weighs `interval` times.
            Ok(penalty * (weight * f64::from(interval)))
        }
    }
}

/// D's logits for images (augmented first, as every image D sees), in fp32 whatever the forward
/// precision, so losses and their statistics are computed in full precision.
fn critic(s: &Setup, x: &Tensor, c: &Tensor) -> Tensor {
    s.d.forward(&s.augment.apply(x), c).to_kind(Kind::Float)
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

#[cfg(test)]
mod share_tests {
    use super::weight_of_share;
    use gan_core::config::rank_share;
    use gan_core::rng::SplitMix64;

    /// Ranks average their weighted per-rank mean losses (as the gradient sync averages their
    /// gradients, which are linear in the losses): the result is the mean over the whole batch,
    /// for shares that split evenly or not.
    #[test]
    fn weighted_rank_means_average_to_the_batch_mean() {
        let mut rng = SplitMix64::new(7);
        for (batch, world) in [(32u64, 3u32), (50, 8), (64, 6), (32, 4), (5, 5)] {
            let losses: Vec<f64> = (0..batch).map(|_| rng.next_f64() * 10.0).collect();
            let batch_mean = losses.iter().sum::<f64>() / batch as f64;
            let synced = (0..world)
                .map(|rank| {
                    let mine = &losses[rank_share(batch, rank, world).start as usize..]
                        [..rank_share(batch, rank, world).count()];
                    let rank_mean = mine.iter().sum::<f64>() / mine.len() as f64;
                    rank_mean * weight_of_share(mine.len() as u64, u64::from(world), batch)
                })
                .sum::<f64>()
                / f64::from(world);
            assert!(
                (synced - batch_mean).abs() < 1e-12 * batch_mean,
                "{batch} on {world}: {synced} vs {batch_mean}"
            );
        }
        assert_eq!(weight_of_share(8, 4, 32), 1.0, "even shares: exactly 1, so nothing changes");
    }
}
