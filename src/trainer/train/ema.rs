//! G_ema: an exponential moving average of G's weights, the network that is sampled and scored.
//! Half-life in images as in StyleGAN2-ADA: beta = 0.5^(batch / ema_nimg), with an optional
//! ramp-up that shortens the half-life early in training (ema_nimg <= cur_nimg x rampup).
use tch::{nn, Tensor};

/// G_ema's decay for a G step at `cur_nimg`: 0 (copy G) before `ema_start_kimg`, then the fixed
/// `ema_beta` when set (BigGAN), else the half-life rule over the images of one G step.
pub fn ema_beta(t: &gan_core::config::TrainSection, cur_nimg: u64) -> f64 {
    if (cur_nimg as f64) < t.ema_start_kimg * 1000.0 {
        return 0.0;
    }
    match t.ema_beta {
        Some(beta) => beta,
        None => half_life_beta(t.ema_kimg, t.ema_rampup, cur_nimg, t.batch_size * t.d_steps),
    }
}

/// EMA coefficient for one G step of `batch_size` images at `cur_nimg`.
pub fn half_life_beta(ema_kimg: f64, rampup: Option<f64>, cur_nimg: u64, batch_size: u32) -> f64 {
    let mut ema_nimg = ema_kimg * 1000.0;
    if let Some(rampup) = rampup {
        ema_nimg = ema_nimg.min(cur_nimg as f64 * rampup);
    }
    0.5f64.powf(f64::from(batch_size) / ema_nimg.max(1e-8))
}

/// What G_ema does with G's buffers (non-trainable variables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffers {
    /// Averaged like the weights (BigGAN-PyTorch's `ema` walks the whole state dict).
    Average,
    /// Copied from G (StyleGAN2-ADA: `w_avg` and the stored noise follow G exactly).
    Copy,
}

/// Pairs of (G variable, G_ema variable), matched by name.
pub struct Ema {
    averaged: Vec<(Tensor, Tensor)>,
    copied: Vec<(Tensor, Tensor)>,
}

impl Ema {
    /// Matches every variable of `g` to the same-named one of `g_ema` and copies G into G_ema.
    pub fn new(g: &nn::VarStore, g_ema: &nn::VarStore, buffers: Buffers) -> Self {
        let ema_vars = g_ema.variables();
        let trainable: std::collections::HashSet<usize> =
            g.trainable_variables().iter().map(|t| t.data_ptr() as usize).collect();
        let mut named: Vec<(String, Tensor)> = g.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let mut ema = Ema { averaged: Vec::new(), copied: Vec::new() };
        for (name, p) in named {
            let e = ema_vars.get(&name).unwrap_or_else(|| panic!("G_ema lacks {name}")).shallow_clone();
            let is_buffer = !trainable.contains(&(p.data_ptr() as usize));
            match (is_buffer, buffers) {
                (true, Buffers::Copy) => ema.copied.push((p, e)),
                _ => ema.averaged.push((p, e)),
            }
        }
        ema.copy_from_g();
        ema
    }

    /// G_ema := G.
    pub fn copy_from_g(&self) {
        tch::no_grad(|| {
            for (p, e) in self.averaged.iter().chain(&self.copied) {
                e.shallow_clone().copy_(p);
            }
        });
    }

    /// G_ema := G + beta (G_ema - G) for the weights (and averaged buffers); copied buffers := G's.
    pub fn update(&self, beta: f64) {
        tch::no_grad(|| {
            for (p, e) in &self.averaged {
                let _ = e.shallow_clone().lerp_(p, 1.0 - beta);
            }
            for (p, e) in &self.copied {
                e.shallow_clone().copy_(p);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_has_the_configured_half_life() {
        // After ema_kimg worth of images the old weights have half their weight.
        let beta = half_life_beta(10.0, None, 1_000_000, 64);
        let steps = 10_000.0 / 64.0;
        assert!((beta.powf(steps) - 0.5).abs() < 1e-9);
        // Ramp-up: at 1000 images with rampup 0.05 the half-life is 50 images.
        let early = half_life_beta(10.0, Some(0.05), 1000, 50);
        assert!((early - 0.5).abs() < 1e-12);
        assert_eq!(half_life_beta(0.0, None, 0, 64), 0.0, "ema_kimg 0 means G_ema follows G");
        // SPECS 4.4's examples: 20 kimg at batch 64 -> 0.997784; cifar 500 kimg at 64 -> 0.999911.
        assert!((half_life_beta(20.0, None, 10_000_000, 64) - 0.997784).abs() < 1e-6);
        assert!((half_life_beta(500.0, Some(0.05), 100_000_000, 64) - 0.999911).abs() < 1e-6);
    }

    /// BigGAN: G_ema copies G until ema_start, then decays by the fixed beta per G step.
    #[test]
    fn fixed_beta_after_the_start() {
        let yaml = "batch_size: 50\ntotal_kimg: 1\nloss: hinge\ng_opt: {lr: 0.0002}\nd_opt: {lr: 0.0002}\n\
                    ema_beta: 0.9999\nema_start_kimg: 200\nd_steps: 4\n";
        let t: gan_core::config::TrainSection = serde_norway::from_str(yaml).unwrap();
        assert_eq!(ema_beta(&t, 199_999), 0.0);
        assert_eq!(ema_beta(&t, 200_000), 0.9999);
    }

    #[test]
    fn update_moves_toward_g() {
        let g = nn::VarStore::new(tch::Device::Cpu);
        let e = nn::VarStore::new(tch::Device::Cpu);
        let w = g.root().var_copy("w", &Tensor::from_slice(&[1.0f32]));
        let _ = e.root().var_copy("w", &Tensor::from_slice(&[0.0f32]));
        let buf = g.root().zeros_no_train("w_avg", &[1]);
        let _ = e.root().zeros_no_train("w_avg", &[1]);
        let ema = Ema::new(&g, &e, Buffers::Copy);
        tch::no_grad(|| {
            w.shallow_clone().copy_(&Tensor::from_slice(&[3.0f32]));
            buf.shallow_clone().copy_(&Tensor::from_slice(&[8.0f32]));
        });
        ema.update(0.75);
        let v: Vec<f32> = Vec::try_from(&e.variables()["w"]).unwrap();
        assert!((v[0] - 1.5).abs() < 1e-6, "1 + 0.25 (3 - 1) = 1.5, got {v:?}");
        let b: Vec<f32> = Vec::try_from(&e.variables()["w_avg"]).unwrap();
        assert_eq!(b[0], 8.0, "StyleGAN2 copies buffers instead of averaging them");
    }
}
