//! Adversarial losses and regularisers as pure functions of D's logits (and, for R1, of the
//! images they came from). Means over the batch; callers scale for accumulation.
use tch::{Kind, Tensor};

use gan_core::config::Loss;

/// D's loss on real and fake logits.
pub fn d_loss(loss: Loss, real_logits: &Tensor, fake_logits: &Tensor) -> Tensor {
    match loss {
        // BigGAN: mean(relu(1 - D(x))) + mean(relu(1 + D(G(z)))).
        Loss::Hinge => {
            (-real_logits + 1.0).relu().mean(Kind::Float) + (fake_logits + 1.0).relu().mean(Kind::Float)
        }
        // StyleGAN: softplus(-D(x)) + softplus(D(G(z))).
        Loss::NsLogistic => {
            (-real_logits).softplus().mean(Kind::Float) + fake_logits.softplus().mean(Kind::Float)
        }
    }
}

/// G's loss on fake logits.
pub fn g_loss(loss: Loss, fake_logits: &Tensor) -> Tensor {
    match loss {
        Loss::Hinge => -fake_logits.mean(Kind::Float),
        Loss::NsLogistic => (-fake_logits).softplus().mean(Kind::Float),
    }
}

/// R1 penalty (Mescheder et al. 2018): (gamma / 2) E[|grad_x D(x)|^2] on real images. `reals`
/// must require grad and `real_logits` must come from them.
pub fn r1_penalty(real_logits: &Tensor, reals: &Tensor, r1_gamma: f64) -> Tensor {
    let grads = Tensor::run_backward(&[real_logits.sum(Kind::Float)], &[reals], true, true);
    let penalty = grads[0].square().sum_dim_intlist([1, 2, 3].as_slice(), false, None);
    penalty.mean(Kind::Float) * (r1_gamma / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    #[test]
    fn loss_values() {
        let (real, fake) = (t(&[2.0, 0.0]), t(&[-2.0, 0.5]));
        // hinge D: mean(relu(1-2), relu(1-0)) + mean(relu(1-2), relu(1.5)) = 0.5 + 0.75
        assert!((d_loss(Loss::Hinge, &real, &fake).double_value(&[]) - 1.25).abs() < 1e-6);
        assert!((g_loss(Loss::Hinge, &fake).double_value(&[]) - 0.75).abs() < 1e-6);
        let sp = |x: f64| (1.0 + x.exp()).ln();
        let want = (sp(-2.0) + sp(0.0)) / 2.0 + (sp(-2.0) + sp(0.5)) / 2.0;
        assert!((d_loss(Loss::NsLogistic, &real, &fake).double_value(&[]) - want).abs() < 1e-6);
        assert!(
            (g_loss(Loss::NsLogistic, &fake).double_value(&[]) - (sp(2.0) + sp(-0.5)) / 2.0).abs() < 1e-6
        );
    }

    #[test]
    fn r1_of_a_linear_critic_is_its_weight_norm() {
        // D(x) = sum(w * x): grad_x = w for every image, so R1 = gamma/2 |w|^2.
        let x = Tensor::ones([3, 1, 2, 2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let w = Tensor::from_slice(&[1.0f32, 2.0, 0.0, -1.0]).view([1, 1, 2, 2]);
        let logits = (&x * &w).sum_dim_intlist([1, 2, 3].as_slice(), false, None);
        let r1 = r1_penalty(&logits, &x, 10.0);
        assert!((r1.double_value(&[]) - 30.0).abs() < 1e-5);
    }
}
