//! Adam with its state in named tensors, so a checkpoint can save and restore it exactly (tch's
//! `nn::Optimizer` keeps its state out of reach). The update matches `torch.optim.Adam`
//! (no weight decay, no amsgrad): m, v moments, bias corrections, eps added after the square root.
use std::collections::BTreeMap;

use tch::{nn, Kind, Tensor};

use gan_core::config::AdamConfig;

pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Updates applied so far (the `t` of the bias corrections).
    pub step: i64,
    params: Vec<(String, Tensor)>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
}

impl Adam {
    /// Adam over every trainable variable of `vs`, in name order (a stable order across processes).
    pub fn new(vs: &nn::VarStore, cfg: &AdamConfig) -> Self {
        let params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect();
        let zeros = |p: &Tensor| p.zeros_like().detach();
        Adam {
            lr: cfg.lr,
            beta1: cfg.betas[0],
            beta2: cfg.betas[1],
            eps: cfg.eps,
            step: 0,
            exp_avg: params.iter().map(|(_, p)| zeros(p)).collect(),
            exp_avg_sq: params.iter().map(|(_, p)| zeros(p)).collect(),
            params,
        }
    }

    /// StyleGAN2's lazy-regularisation adjustment: when a regulariser runs every `interval` steps
    /// in its own phase, lr and betas are scaled so the optimiser sees the same overall dynamics.
    pub fn adjust_for_lazy_regularisation(&mut self, interval: u32) {
        let ratio = f64::from(interval) / f64::from(interval + 1);
        self.lr *= ratio;
        self.beta1 = self.beta1.powf(ratio);
        self.beta2 = self.beta2.powf(ratio);
    }

    /// The parameters this optimiser updates, in its order.
    pub fn params(&self) -> impl Iterator<Item = &Tensor> {
        self.params.iter().map(|(_, p)| p)
    }

    /// The parameters with their VarStore names, in order.
    pub fn named_params(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.params.iter().map(|(n, p)| (n.as_str(), p))
    }

    /// Clears gradients before a phase accumulates new ones.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut grad = p.grad();
            if grad.defined() {
                let _ = grad.detach_().zero_();
            }
        }
    }

    /// One update from the current gradients; parameters without a gradient are left alone.
    pub fn step(&mut self) {
        self.step += 1;
        let bias1 = 1.0 - self.beta1.powi(self.step as i32);
        let bias2 = 1.0 - self.beta2.powi(self.step as i32);
        let step_size = self.lr / bias1;
        tch::no_grad(|| {
            for (i, (_, p)) in self.params.iter_mut().enumerate() {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let m = &mut self.exp_avg[i];
                let v = &mut self.exp_avg_sq[i];
                let _ = m.g_mul_scalar_(self.beta1).g_add_(&(&grad * (1.0 - self.beta1)));
                let _ = v.g_mul_scalar_(self.beta2).g_add_(&(grad.square() * (1.0 - self.beta2)));
                let denom = v.sqrt() / bias2.sqrt() + self.eps;
                let _ = p.g_sub_(&(&*m / denom * step_size));
            }
        });
    }

    /// Named state: `exp_avg.<param>`, `exp_avg_sq.<param>` and `step` (int64 scalar).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("step".to_string(), Tensor::from(self.step))];
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("exp_avg.{name}"), self.exp_avg[i].shallow_clone()));
            out.push((format!("exp_avg_sq.{name}"), self.exp_avg_sq[i].shallow_clone()));
        }
        out
    }

    /// Restores state saved by [`Adam::state`]. A parameter the state has no moments for (one
    /// that was frozen when it was saved: `train.freeze_d` changed) starts from zero moments, as a
    /// new parameter would; their names are returned. Moments of another shape are an error.
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<Vec<String>, String> {
        let map: BTreeMap<&str, &Tensor> = state.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let step = map.get("step").ok_or("optimizer state has no `step`")?;
        let mut restored = Vec::new();
        let mut fresh = Vec::new();
        for (name, p) in &self.params {
            let saved = ["exp_avg", "exp_avg_sq"].map(|prefix| {
                let key = format!("{prefix}.{name}");
                map.get(key.as_str()).map(|t| (key, *t))
            });
            let [Some((avg_key, avg)), Some((sq_key, sq))] = saved else {
                fresh.push(name.clone());
                restored.extend([p.zeros_like().detach(), p.zeros_like().detach()]);
                continue;
            };
            for (key, t) in [(avg_key, avg), (sq_key, sq)] {
                if t.size() != p.size() {
                    return Err(format!("`{key}` has shape {:?}, the parameter {:?}", t.size(), p.size()));
                }
                restored.push(t.to_device(p.device()).to_kind(Kind::Float));
            }
        }
        self.step = step.int64_value(&[]);
        let mut it = restored.into_iter();
        for i in 0..self.params.len() {
            self.exp_avg[i] = it.next().expect("two tensors per parameter");
            self.exp_avg_sq[i] = it.next().expect("two tensors per parameter");
        }
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /* Reference from PyTorch 2.11:
        p = torch.tensor([1.0, -2.0], requires_grad=True)
        opt = torch.optim.Adam([p], lr=0.1, betas=(0.5, 0.9), eps=1e-8)
        for _ in range(3):
            opt.zero_grad(); (p ** 2).sum().backward(); opt.step()
        print(p.tolist())  # [0.7059824466705322, -1.702728509902954]
    */
    #[test]
    fn matches_torch_adam_on_a_quadratic() {
        let vs = nn::VarStore::new(Device::Cpu);
        let p = vs.root().var_copy("p", &Tensor::from_slice(&[1.0f32, -2.0]));
        let mut opt = Adam::new(&vs, &AdamConfig { lr: 0.1, betas: [0.5, 0.9], eps: 1e-8 });
        for _ in 0..3 {
            opt.zero_grad();
            p.square().sum(Kind::Float).backward();
            opt.step();
        }
        let got: Vec<f32> = Vec::try_from(&p).unwrap();
        assert!((got[0] - 0.705_982_4).abs() < 1e-6 && (got[1] + 1.702_728_5).abs() < 1e-6, "{got:?}");
    }

    /// SPECS 4.4: G (interval 4) lr 0.0025 -> 0.0020, beta2 0.99 -> 0.991992; D (interval 16)
    /// lr -> 0.0023529, beta2 -> 0.990585; beta1 0 stays 0.
    #[test]
    fn lazy_regularisation_adjustment_matches_the_reference_values() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = vs.root().var("w", &[1], nn::Init::Const(0.0));
        let cfg = AdamConfig { lr: 0.0025, betas: [0.0, 0.99], eps: 1e-8 };
        let (mut g, mut d) = (Adam::new(&vs, &cfg), Adam::new(&vs, &cfg));
        g.adjust_for_lazy_regularisation(4);
        d.adjust_for_lazy_regularisation(16);
        assert!((g.lr - 0.0020).abs() < 1e-9 && (g.beta2 - 0.991992).abs() < 1e-6 && g.beta1 == 0.0);
        assert!((d.lr - 0.0023529).abs() < 1e-7 && (d.beta2 - 0.990585).abs() < 1e-6 && d.beta1 == 0.0);
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let run = |restore_after: Option<usize>| {
            let vs = nn::VarStore::new(Device::Cpu);
            let p = vs.root().var_copy("w", &Tensor::from_slice(&[0.5f32, 3.0, -1.0]));
            let cfg = AdamConfig { lr: 0.05, betas: [0.0, 0.99], eps: 1e-8 };
            let mut opt = Adam::new(&vs, &cfg);
            for i in 0..6 {
                if restore_after == Some(i) {
                    // Save through safetensors, rebuild a fresh optimiser, load.
                    let dir = tempfile::tempdir().unwrap();
                    let path = dir.path().join("opt.safetensors");
                    Tensor::write_safetensors(&opt.state(), &path).unwrap();
                    opt = Adam::new(&vs, &cfg);
                    assert!(opt.load_state(&Tensor::read_safetensors(&path).unwrap()).unwrap().is_empty());
                }
                opt.zero_grad();
                (p.pow_tensor_scalar(4)).sum(Kind::Float).backward();
                opt.step();
            }
            Vec::<f32>::try_from(&p).unwrap()
        };
        assert_eq!(run(None), run(Some(3)));
    }

    /// State saved while a parameter was frozen (no moments for it) loads with zero moments for
    /// it, named; the other parameters get theirs back. A wrong shape is still an error.
    #[test]
    fn a_parameter_frozen_when_the_state_was_saved_starts_from_zero_moments() {
        let vs = nn::VarStore::new(Device::Cpu);
        let a = vs.root().var_copy("a", &Tensor::from_slice(&[1.0f32, 2.0]));
        let b = vs.root().var_copy("b", &Tensor::from_slice(&[3.0f32]));
        let cfg = AdamConfig { lr: 0.1, betas: [0.5, 0.9], eps: 1e-8 };
        let _ = b.set_requires_grad(false);
        let mut frozen_b = Adam::new(&vs, &cfg);
        a.square().sum(Kind::Float).backward();
        frozen_b.step();
        let saved = frozen_b.state();
        let _ = b.set_requires_grad(true);
        let mut all = Adam::new(&vs, &cfg);
        assert_eq!(all.load_state(&saved).unwrap(), ["b"]);
        assert_eq!(all.step, 1);
        assert!(all.exp_avg[0].equal(&frozen_b.exp_avg[0]) && all.exp_avg[1].equal(&b.zeros_like()));
        let wrong: Vec<_> = saved
            .iter()
            .map(|(k, t)| {
                (
                    k.clone(),
                    if k == "exp_avg.a" {
                        Tensor::zeros([3], (Kind::Float, Device::Cpu))
                    } else {
                        t.shallow_clone()
                    },
                )
            })
            .collect();
        assert!(all.load_state(&wrong).unwrap_err().contains("`exp_avg.a` has shape [3]"));
    }
}
