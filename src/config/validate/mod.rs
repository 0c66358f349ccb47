//! Checks that span keys or sections, run once after loading. Each failure names the key whose
//! value has to change and says what would be accepted; settings a valid run ignores are named
//! too (`unused_settings`), as warnings.
mod eval;
mod model;
mod unused;

use self::eval::validate_eval;
use self::model::{validate_model, validate_style_training};
pub use self::unused::unused_settings;
use super::operations::ResumeFrom;
use super::plan::world_size;
use super::schema::{Backend, DataSource, RunConfig};
use super::train::Device;
use crate::data::generated::MAX_CLASSES;
use crate::error::{Error, Result};

/// Validates a loaded config as a whole. Only the config itself is looked at, never this
/// machine's files: a config may run elsewhere (`gan-launch k8s`), be a checkpoint's (read where
/// its run never ran), or name a checkpoint that is gone by the time a requeued job reads it.
/// The files a start needs are checked before any rank starts (`data::check`,
/// `checkpoint::check_start_paths`).
pub fn validate(cfg: &RunConfig) -> Result<()> {
    validate_run(cfg)?;
    validate_dist(cfg)?;
    validate_data(cfg)?;
    validate_model(cfg)?;
    validate_batch(cfg)?;
    validate_train(cfg)?;
    validate_checkpoint(cfg)?;
    validate_metrics(cfg)?;
    validate_eval(cfg)?;
    validate_log(cfg)
}

fn validate_run(cfg: &RunConfig) -> Result<()> {
    let name = cfg.run.name.as_deref().unwrap_or("");
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        return Err(Error::config("run.name", format!("{name:?}"), "letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

fn validate_dist(cfg: &RunConfig) -> Result<()> {
    positive("dist.nodes", cfg.dist.nodes)?;
    positive("dist.gpus", cfg.dist.gpus)?;
    if !(cfg.dist.bucket_mb > 0.0 && cfg.dist.bucket_mb.is_finite()) {
        return Err(Error::config("dist.bucket_mb", cfg.dist.bucket_mb, "a finite number of MiB > 0"));
    }
    if cfg.dist.master_port == 0 && cfg.dist.nodes > 1 {
        return Err(Error::config(
            "dist.master_port",
            0,
            "a fixed port when dist.nodes > 1 (other nodes must know it)",
        ));
    }
    let flight = cfg.dist.flight_record_secs;
    if !(0.0..=3600.0).contains(&flight) {
        let allowed = "seconds from 0 to 3600 (0 turns flight records off)";
        return Err(Error::config("dist.flight_record_secs", flight, allowed));
    }
    for (key, secs) in [
        ("dist.join_timeout_secs", cfg.dist.join_timeout_secs),
        ("dist.connect_timeout_secs", cfg.dist.connect_timeout_secs),
        ("dist.collective_timeout_secs", cfg.dist.collective_timeout_secs),
        ("dist.heartbeat_timeout_secs", cfg.dist.heartbeat_timeout_secs),
    ] {
        if secs == 0 {
            return Err(Error::config(key, 0, "at least 1 second"));
        }
    }
    if cfg.dist.backend == Backend::Nccl && cfg.train.device == Device::Cpu {
        return Err(Error::config(
            "dist.backend",
            "nccl",
            "auto or cpu when train.device is cpu (NCCL needs GPUs)",
        ));
    }
    Ok(())
}

fn validate_data(cfg: &RunConfig) -> Result<()> {
    let d = &cfg.data;
    if !d.resolution.is_power_of_two() || !(8..=1024).contains(&d.resolution) {
        return Err(Error::config("data.resolution", d.resolution, "a power of two from 8 to 1024"));
    }
    // An empty path (`--set data.path=`) names no directory either.
    if d.source == DataSource::Prepared && d.path.as_ref().is_none_or(|p| p.as_os_str().is_empty()) {
        return Err(Error::config(
            "data.path",
            "nothing",
            "the directory of a prepared dataset (gan-launch data prepare)",
        ));
    }
    if d.channels != 1 && d.channels != 3 {
        return Err(Error::config("data.channels", d.channels, "1 (grayscale) or 3 (RGB)"));
    }
    if d.num_classes == 1 {
        return Err(Error::config("data.num_classes", 1, "0 (unlabelled) or at least 2"));
    }
    if d.source == DataSource::Generated && d.num_classes > MAX_CLASSES {
        return Err(Error::config(
            "data.num_classes",
            d.num_classes,
            format!("at most {MAX_CLASSES} for the generated source (one shape per class)"),
        ));
    }
    if d.num_images < u64::from(world_size(cfg)) {
        return Err(Error::config("data.num_images", d.num_images, "at least one image per rank"));
    }
    if d.num_images == 0 {
        return Err(Error::config("data.num_images", 0, "at least 1"));
    }
    Ok(())
}

fn validate_batch(cfg: &RunConfig) -> Result<()> {
    let t = &cfg.train;
    let world = world_size(cfg);
    positive("train.batch_size", t.batch_size)?;
    if t.batch_size < world {
        return Err(Error::config(
            "train.batch_size",
            t.batch_size,
            format!("at least the world size {world} (one image per rank)"),
        ));
    }
    // Without batch_per_rank each rank takes its share of the batch in one round, and shares may
    // differ by one image (gradients are weighted by them). With it, every rank runs the same
    // rounds of the same size.
    let Some(per_rank) = t.batch_per_rank else { return Ok(()) };
    positive("train.batch_per_rank", per_rank)?;
    if !t.batch_size.is_multiple_of(world * per_rank) {
        // A recipe's batch_per_rank fits the GPU count it was written for; on other ranks a
        // smaller one that divides the share, or none (one round of the share), is the fix.
        let share = t.batch_size / world;
        let hint = if t.batch_size.is_multiple_of(world) {
            format!(" (or train.batch_per_rank a divisor of batch_size / ranks = {share}, e.g. {share})")
        } else {
            format!(
                " (or no train.batch_per_rank: each rank then takes {} or {share} images a step)",
                share + 1
            )
        };
        return Err(Error::config(
            "train.batch_size",
            t.batch_size,
            format!(
                "a multiple of ranks x batch_per_rank = {world} x {per_rank} = {}{hint}",
                world * per_rank
            ),
        ));
    }
    Ok(())
}

fn validate_train(cfg: &RunConfig) -> Result<()> {
    let t = &cfg.train;
    finite_positive("train.total_kimg", t.total_kimg)?;
    finite_positive("train.kimg_per_tick", t.kimg_per_tick)?;
    for (name, opt) in [("g_opt", &t.g_opt), ("d_opt", &t.d_opt)] {
        finite_positive(&format!("train.{name}.lr"), opt.lr)?;
        finite_positive(&format!("train.{name}.eps"), opt.eps)?;
        for (i, beta) in opt.betas.iter().enumerate() {
            if !(0.0..1.0).contains(beta) {
                return Err(Error::config(format!("train.{name}.betas[{i}]"), beta, "a number in [0, 1)"));
            }
        }
    }
    if !(t.r1_gamma >= 0.0 && t.r1_gamma.is_finite()) {
        return Err(Error::config("train.r1_gamma", t.r1_gamma, "a finite number >= 0 (0 turns R1 off)"));
    }
    positive("train.r1_interval", t.r1_interval)?;
    if !(t.rollback_lr_mult > 0.0 && t.rollback_lr_mult <= 1.0) {
        return Err(Error::config(
            "train.rollback_lr_mult",
            t.rollback_lr_mult,
            "a number in (0, 1] (1 keeps the learning rates after a rollback)",
        ));
    }
    if !(t.ema_kimg >= 0.0 && t.ema_kimg.is_finite()) {
        return Err(Error::config("train.ema_kimg", t.ema_kimg, "a finite number >= 0 (0 turns EMA off)"));
    }
    if let Some(rampup) = t.ema_rampup {
        finite_positive("train.ema_rampup", rampup)?;
    }
    if let Some(threads) = t.threads {
        positive("train.threads", threads)?;
    }
    if let Some(beta) = t.ema_beta {
        if !(0.0..1.0).contains(&beta) {
            return Err(Error::config("train.ema_beta", beta, "a decay in [0, 1), e.g. 0.9999"));
        }
    }
    positive("train.d_steps", t.d_steps)?;
    validate_style_training(cfg)?;
    positive("train.ada_interval", t.ada_interval)?;
    finite_positive("train.ada_kimg", t.ada_kimg)?;
    for (key, value) in [("train.ada_target", t.ada_target), ("train.ada_p_init", t.ada_p_init)] {
        if !(0.0..=1.0).contains(&value) {
            return Err(Error::config(key, value, "a number in [0, 1]"));
        }
    }
    for (key, value) in [
        ("train.ema_start_kimg", t.ema_start_kimg),
        ("train.g_ortho", t.g_ortho),
        ("train.d_ortho", t.d_ortho),
        ("train.gp_lambda", t.gp_lambda),
    ] {
        if !(value >= 0.0 && value.is_finite()) {
            return Err(Error::config(key, value, "a finite number >= 0"));
        }
    }
    Ok(())
}

fn validate_checkpoint(cfg: &RunConfig) -> Result<()> {
    positive("checkpoint.keep_last", cfg.checkpoint.keep_last)?;
    if let (Some(init), ResumeFrom::Path(_)) = (&cfg.checkpoint.init_from, cfg.checkpoint.resume_from()) {
        // Both would say where the start's weights come from.
        return Err(Error::config(
            "checkpoint.init_from",
            init.display(),
            "null while checkpoint.resume names a checkpoint (resume goes on with its whole state; init_from \
             starts a new run from its networks, with checkpoint.resume latest or none)",
        ));
    }
    Ok(())
}

fn validate_metrics(cfg: &RunConfig) -> Result<()> {
    let m = &cfg.metrics;
    if m.port != 0 && u32::from(m.port) + cfg.dist.gpus - 1 > u32::from(u16::MAX) {
        return Err(Error::config(
            "metrics.port",
            m.port,
            format!(
                "0, or at most {} for {} ranks per node",
                u32::from(u16::MAX) + 1 - cfg.dist.gpus,
                cfg.dist.gpus
            ),
        ));
    }
    if m.launcher_port != 0
        && m.port != 0
        && (m.port..m.port.saturating_add(cfg.dist.gpus as u16)).contains(&m.launcher_port)
    {
        return Err(Error::config(
            "metrics.launcher_port",
            m.launcher_port,
            format!("a port outside the ranks' {}..{}", m.port, u32::from(m.port) + cfg.dist.gpus - 1),
        ));
    }
    if let Some(url) = &m.pushgateway {
        if !url.starts_with("http://") {
            return Err(Error::config(
                "metrics.pushgateway",
                url,
                "an http:// URL, e.g. http://pushgateway:9091",
            ));
        }
    }
    Ok(())
}

fn validate_log(cfg: &RunConfig) -> Result<()> {
    const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
    if !LEVELS.contains(&cfg.log.level.as_str()) {
        return Err(Error::config("log.level", format!("{:?}", cfg.log.level), LEVELS.join(", ")));
    }
    Ok(())
}

fn positive(key: &str, value: u32) -> Result<()> {
    if value == 0 {
        return Err(Error::config(key, value, "at least 1"));
    }
    Ok(())
}

fn finite_positive(key: &str, value: f64) -> Result<()> {
    if !(value > 0.0 && value.is_finite()) {
        return Err(Error::config(key, value, "a finite number > 0"));
    }
    Ok(())
}
