//! The model section's rules, per family: what a conditional model needs of the data, StyleGAN2's
//! minibatch-stddev groups against each rank's batch, its regularisation and FreezeD settings,
//! and BigGAN's attention and spectral-norm settings.
use super::{finite_positive, positive};
use crate::config::model::{Arch, DArchitecture};
use crate::config::plan::{per_rank_batches, world_size};
use crate::config::schema::RunConfig;
use crate::error::{Error, Result};

pub(super) fn validate_model(cfg: &RunConfig) -> Result<()> {
    let m = &cfg.model;
    if m.conditional && cfg.data.num_classes < 2 {
        return Err(Error::config(
            "model.conditional",
            true,
            format!(
                "false, or data.num_classes >= 2 (labels are needed to condition; it is {})",
                cfg.data.num_classes
            ),
        ));
    }
    positive("model.z_dim", m.z_dim)?;
    positive("model.channel_max", m.channel_max)?;
    if m.channel_base < cfg.data.resolution {
        return Err(Error::config(
            "model.channel_base",
            m.channel_base,
            format!("at least data.resolution ({}), so every layer has a channel", cfg.data.resolution),
        ));
    }
    match m.arch {
        Arch::Dcgan => Ok(()),
        Arch::Biggan => validate_biggan(cfg),
        Arch::Stylegan2 => validate_stylegan2(cfg),
    }
}

/// StyleGAN2 builds any power-of-two resolution from 4x4 up; minibatch-stddev groups must tile
/// each rank's forward batch.
fn validate_stylegan2(cfg: &RunConfig) -> Result<()> {
    let m = &cfg.model;
    if cfg.data.resolution < 8 {
        return Err(Error::config(
            "data.resolution",
            cfg.data.resolution,
            "8 or more with model.arch stylegan2",
        ));
    }
    positive("model.w_dim", m.w_dim)?;
    positive("model.mapping_layers", m.mapping_layers)?;
    finite_positive("model.mapping_lr_mult", m.mapping_lr_mult)?;
    positive("model.mbstd_group_size", m.mbstd_group_size)?;
    let shares = per_rank_batches(cfg);
    if let Some(&per_rank) = shares.iter().find(|&&b| !tiles(b, m.mbstd_group_size)) {
        return Err(Error::config(
            "model.mbstd_group_size",
            m.mbstd_group_size,
            format!(
                "a divisor of the per-rank batch {per_rank} (minibatch-stddev groups tile it); {}",
                mbstd_fixes(cfg, &shares)
            ),
        ));
    }
    if let Some(clamp) = m.conv_clamp {
        finite_positive("model.conv_clamp", clamp)?;
    }
    Ok(())
}

/// Minibatch stddev takes groups of min(group, batch) images, which must tile the batch.
fn tiles(per_rank: u32, group: u32) -> bool {
    per_rank == 0 || per_rank.is_multiple_of(group.min(per_rank))
}

/// What would fit: the largest smaller group that tiles every share, and, when the shares come
/// from splitting the batch, the nearest batch sizes that give every rank whole groups.
fn mbstd_fixes(cfg: &RunConfig, shares: &[u32]) -> String {
    let group = cfg.model.mbstd_group_size;
    let fitting = (1..group).rev().find(|&g| shares.iter().all(|&b| tiles(b, g))).unwrap_or(1);
    let smaller = format!("model.mbstd_group_size={fitting} fits (smaller groups see less of the batch)");
    if cfg.train.batch_per_rank.is_some() {
        return format!("train.batch_per_rank a multiple of {group} keeps groups of {group}, or {smaller}");
    }
    let step = world_size(cfg) * group;
    let below = cfg.train.batch_size / step * step;
    let above = below + step;
    let batches = if below > 0 { format!("{below} or {above}") } else { above.to_string() };
    format!(
        "train.batch_size={batches} ({} ranks x {group}) keeps groups of {group} on every rank, or {smaller}",
        world_size(cfg)
    )
}

/// Path-length regularisation and style mixing need StyleGAN2's mapping network.
pub(super) fn validate_style_training(cfg: &RunConfig) -> Result<()> {
    let t = &cfg.train;
    for (key, value) in [("train.pl_weight", t.pl_weight), ("train.style_mixing_prob", t.style_mixing_prob)] {
        if !(value >= 0.0 && value.is_finite()) {
            return Err(Error::config(key, value, "a finite number >= 0"));
        }
        if value > 0.0 && cfg.model.arch != Arch::Stylegan2 {
            return Err(Error::config(
                key,
                value,
                "0 unless model.arch is stylegan2 (it needs the mapping network's w)",
            ));
        }
    }
    validate_freeze_d(cfg)?;
    if t.style_mixing_prob > 1.0 {
        return Err(Error::config("train.style_mixing_prob", t.style_mixing_prob, "a probability in [0, 1]"));
    }
    positive("train.pl_interval", t.pl_interval)?;
    positive("train.pl_batch_shrink", t.pl_batch_shrink)?;
    if !(t.pl_decay > 0.0 && t.pl_decay <= 1.0) {
        return Err(Error::config("train.pl_decay", t.pl_decay, "a rate in (0, 1], e.g. 0.01"));
    }
    let per_rank = per_rank_batches(cfg).into_iter().min().unwrap_or(0);
    if t.pl_weight > 0.0 && per_rank > 0 && per_rank < t.pl_batch_shrink {
        return Err(Error::config(
            "train.pl_batch_shrink",
            t.pl_batch_shrink,
            format!("at most the per-rank batch {per_rank} (path length needs one fake per rank)"),
        ));
    }
    Ok(())
}

/// FreezeD counts StyleGAN2 D's layers above the epilogue: FromRGB, then conv0, conv1 (and a
/// resnet block's skip) per block from the full resolution down to 8x8.
fn validate_freeze_d(cfg: &RunConfig) -> Result<()> {
    let n = cfg.train.freeze_d;
    if n == 0 {
        return Ok(());
    }
    if cfg.model.arch != Arch::Stylegan2 {
        return Err(Error::config(
            "train.freeze_d",
            n,
            "0 unless model.arch is stylegan2 (FreezeD counts its D's layers)",
        ));
    }
    let blocks = cfg.data.resolution.trailing_zeros().saturating_sub(2);
    let per_block = if cfg.model.d_architecture == DArchitecture::Resnet { 3 } else { 2 };
    let layers = 1 + blocks * per_block;
    if n > layers {
        return Err(Error::config(
            "train.freeze_d",
            n,
            format!(
                "at most {layers}: the layers of D above its 4x4 epilogue at {}x{}",
                cfg.data.resolution, cfg.data.resolution
            ),
        ));
    }
    Ok(())
}

/// BigGAN's reference architectures exist for 32, 64, 128 and 256 pixels, always class-conditional.
fn validate_biggan(cfg: &RunConfig) -> Result<()> {
    let m = &cfg.model;
    let res = cfg.data.resolution;
    let blocks = match res {
        32 => 3,
        64 => 4,
        128 => 5,
        256 => 6,
        _ => return Err(Error::config("data.resolution", res, "32, 64, 128 or 256 with model.arch biggan")),
    };
    if !m.conditional {
        return Err(Error::config(
            "model.conditional",
            false,
            "true with model.arch biggan (its BN and D are class-conditional)",
        ));
    }
    positive("model.ch", m.ch)?;
    if m.hier && m.shared_dim == 0 {
        return Err(Error::config(
            "model.hier",
            true,
            "false, or a model.shared_dim > 0 (z chunks join the shared embedding)",
        ));
    }
    if m.hier && !m.z_dim.is_multiple_of(blocks + 1) {
        return Err(Error::config(
            "model.z_dim",
            m.z_dim,
            format!("a multiple of {} with model.hier at {res}x{res} ({blocks} blocks + 1)", blocks + 1),
        ));
    }
    let block_res: Vec<u32> = (0..blocks).map(|i| 8 << i).collect();
    if let Some(bad) = m.attention_res.iter().find(|r| !block_res.contains(r)) {
        return Err(Error::config("model.attention_res", bad, format!("block resolutions {block_res:?}")));
    }
    if !(m.sn_eps > 0.0 && m.sn_eps.is_finite()) {
        return Err(Error::config("model.sn_eps", m.sn_eps, "a small positive number, e.g. 1e-8 or 1e-6"));
    }
    Ok(())
}
