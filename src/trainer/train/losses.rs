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
        // WGAN: the critic's mean on fakes minus on reals (the gradient penalty is added apart).
        Loss::WganGp => fake_logits.mean(Kind::Float) - real_logits.mean(Kind::Float),
    }
}

/// G's loss on fake logits.
pub fn g_loss(loss: Loss, fake_logits: &Tensor) -> Tensor {
    match loss {
        Loss::Hinge => -fake_logits.mean(Kind::Float),
        Loss::NsLogistic => (-fake_logits).softplus().mean(Kind::Float),
        Loss::WganGp => -fake_logits.mean(Kind::Float),
    }
}

/// WGAN-GP's penalty: lambda E[(|grad D(x_hat)| - 1)^2] at `x_hat` (random interpolates of reals
/// and fakes, requiring grad), `logits` = D(x_hat).
pub fn gradient_penalty(logits: &Tensor, x_hat: &Tensor, lambda: f64) -> Tensor {
    let grads = Tensor::run_backward(&[logits.sum(Kind::Float)], &[x_hat], true, true);
    let norms = (grads[0].square().sum_dim_intlist([1, 2, 3].as_slice(), false, None) + 1e-12).sqrt();
    (norms - 1.0).square().mean(Kind::Float) * lambda
}

/// The gradient BigGAN-PyTorch adds for orthogonal regularisation (`utils.ortho`):
/// 2 beta ((W W^T) * (1 - I)) W, with W reshaped to [out, -1]. It is the gradient of
/// (beta / 2) |W W^T * (1 - I)|_F^2; the paper writes the penalty with beta, so the reference's
/// beta is twice the paper's for the same strength (we keep the reference's, as its configs do).
pub fn ortho_gradient(weight: &Tensor, beta: f64) -> Tensor {
    let w = weight.view([weight.size()[0], -1]);
    let rows = w.size()[0];
    let off_diagonal =
        Tensor::ones([rows, rows], (Kind::Float, w.device())) - Tensor::eye(rows, (Kind::Float, w.device()));
    (w.matmul(&w.tr()) * off_diagonal).matmul(&w).view_as(weight) * (2.0 * beta)
}

/// R1 penalty (Mescheder et al. 2018): (gamma / 2) E[|grad_x D(x)|^2] on real images. `reals`
/// must require grad and `real_logits` must come from them.
pub fn r1_penalty(real_logits: &Tensor, reals: &Tensor, r1_gamma: f64) -> Tensor {
    let grads = Tensor::run_backward(&[real_logits.sum(Kind::Float)], &[reals], true, true);
    let penalty = grads[0].square().sum_dim_intlist([1, 2, 3].as_slice(), false, None);
    penalty.mean(Kind::Float) * (r1_gamma / 2.0)
}

/// StyleGAN2's path lengths: per sample, |J_w^T y| with J the Jacobian of the images with
/// respect to the ws and y = `noise` (N(0, I) / sqrt(H W)), as sqrt(mean over the ws of the
/// squared gradient summed over w's features). The graph is kept, so the penalty on these lengths
/// trains G. `ws` [N, num_ws, w_dim] must be part of `images`' graph.
pub fn path_lengths(images: &Tensor, ws: &Tensor, noise: &Tensor) -> Tensor {
    let grads = Tensor::run_backward(&[(images * noise).sum(Kind::Float)], &[ws], true, true);
    // Under bf16 autocast the gradient comes back in bf16; the lengths are computed in fp32.
    let grads = match grads[0].kind() {
        Kind::BFloat16 | Kind::Half => grads[0].to_kind(Kind::Float),
        _ => grads[0].shallow_clone(),
    };
    grads.square().sum_dim_intlist([2].as_slice(), false, None).mean_dim(1, false, None).sqrt()
}

/// StyleGAN2's path-length penalty mean((l_i - m)^2) with m the running mean moved toward this
/// batch's mean length: m = lerp(`pl_mean`, mean(l), `decay`). As in the reference, the penalty
/// sees m before it is detached, so its gradient also pulls the batch mean toward the lengths
/// (a term of weight `decay`). Returns (penalty, the new running mean, detached).
pub fn path_length_penalty(lengths: &Tensor, pl_mean: &Tensor, decay: f64) -> (Tensor, Tensor) {
    let moved = pl_mean.lerp(&lengths.mean(Kind::Float), decay);
    let penalty = (lengths - &moved).square().mean(Kind::Float);
    (penalty, moved.detach())
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
    fn wgan_losses_and_the_gradient_penalty_of_a_linear_critic() {
        let (real, fake) = (t(&[2.0, 0.0]), t(&[-2.0, 0.5]));
        assert!((d_loss(Loss::WganGp, &real, &fake).double_value(&[]) - (-0.75 - 1.0)).abs() < 1e-6);
        assert!((g_loss(Loss::WganGp, &fake).double_value(&[]) - 0.75).abs() < 1e-6);
        // D(x) = sum(w * x) has |grad| = |w| = 3 everywhere: penalty = lambda (3 - 1)^2.
        let x = Tensor::ones([2, 1, 1, 3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let w = Tensor::from_slice(&[1.0f32, 2.0, 2.0]).view([1, 1, 1, 3]);
        let logits = (&x * &w).sum_dim_intlist([1, 2, 3].as_slice(), false, None);
        assert!((gradient_penalty(&logits, &x, 10.0).double_value(&[]) - 40.0).abs() < 1e-4);
    }

    /// The reference adds the gradient by hand; it must be the gradient of the penalty.
    #[test]
    fn ortho_gradient_is_the_gradient_of_the_orthogonal_penalty() {
        tch::manual_seed(3);
        let w = Tensor::randn([4, 2, 3, 3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let m = w.view([4, -1]);
        let off = Tensor::ones([4, 4], (Kind::Float, tch::Device::Cpu))
            - Tensor::eye(4, (Kind::Float, tch::Device::Cpu));
        // beta = 0.5: the penalty whose gradient the reference adds is (beta / 2) |...|^2.
        let penalty = (m.matmul(&m.tr()) * off).square().sum(Kind::Float) * 0.25;
        let autograd = Tensor::run_backward(&[penalty], &[&w], false, false).remove(0);
        let ours = ortho_gradient(&w.detach(), 0.5);
        let diff = (&autograd - &ours).abs().max().double_value(&[]);
        assert!(diff < 1e-4 * autograd.abs().max().double_value(&[]), "max difference {diff}");
    }

    /// R1 against a finite-difference estimate of |grad_x D|^2 on a small nonlinear D.
    #[test]
    fn r1_matches_finite_differences() {
        tch::manual_seed(5);
        let w1 = Tensor::randn([6, 8], (Kind::Double, tch::Device::Cpu));
        let w2 = Tensor::randn([1, 6], (Kind::Double, tch::Device::Cpu));
        let d = |x: &Tensor| x.view([-1, 8]).matmul(&w1.tr()).tanh().matmul(&w2.tr()).view([-1]);
        let x = Tensor::randn([2, 2, 2, 2], (Kind::Double, tch::Device::Cpu));
        let xg = x.copy().set_requires_grad(true);
        let r1 = r1_penalty(&d(&xg), &xg, 4.0).double_value(&[]);
        let h = 1e-6;
        let mut sq = 0.0;
        let flat = x.view([-1]);
        for i in 0..flat.size()[0] {
            let bump = |delta: f64| {
                let y = flat.copy();
                let _ = y.get(i).g_add_scalar_(delta);
                d(&y.view([2, 2, 2, 2])).sum(Kind::Double).double_value(&[])
            };
            let g = (bump(h) - bump(-h)) / (2.0 * h);
            sq += g * g;
        }
        let expected = 4.0 / 2.0 * sq / 2.0; // gamma/2 times the mean over the 2 images
        assert!((r1 - expected).abs() < 1e-6 * expected.max(1.0), "R1 {r1} vs finite differences {expected}");
    }

    /// For images linear in the ws, img = ws . M, the gradient is M y: check the lengths
    /// against that closed form, per sample.
    #[test]
    fn path_lengths_of_a_linear_generator() {
        tch::manual_seed(6);
        let opts = (Kind::Double, tch::Device::Cpu);
        let (n, num_ws, w_dim, pixels) = (3, 4, 5, 6);
        // M plays G's weights: the lengths must stay differentiable with respect to it.
        let m = Tensor::randn([w_dim, pixels], opts).set_requires_grad(true);
        let ws = Tensor::randn([n, num_ws, w_dim], opts).set_requires_grad(true);
        let images = ws.matmul(&m).sum_dim_intlist([1].as_slice(), false, None).view([n, 1, 2, 3]);
        let noise = Tensor::randn([n, 1, 2, 3], opts);
        let ours = path_lengths(&images, &ws, &noise);
        // d(sum img * y)/d ws[i, j] = M y_i for every layer j, so the mean over layers is |M y_i|^2.
        let expected = noise
            .view([n, pixels])
            .matmul(&m.tr())
            .square()
            .sum_dim_intlist([1].as_slice(), false, None)
            .sqrt();
        let diff = (&ours - &expected).abs().max().double_value(&[]);
        assert!(diff < 1e-10, "{ours:?} vs {expected:?}");
        assert!(ours.requires_grad(), "the penalty trains the weights");
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
    #[test]
    fn the_path_length_penalty_differentiates_through_the_moving_mean() {
        let lengths = t(&[1.0, 2.0, 4.0]).set_requires_grad(true);
        let (m0, decay) = (t(&[1.5]).squeeze(), 0.25);
        let (penalty, new_mean) = path_length_penalty(&lengths, &m0, decay);
        // m = 0.75 * 1.5 + 0.25 * 7/3; penalty = mean((l - m)^2).
        let m = 0.75 * 1.5 + 0.25 * 7.0 / 3.0;
        assert!((new_mean.double_value(&[]) - m).abs() < 1e-6);
        assert!(!new_mean.requires_grad());
        let ls = [1.0, 2.0, 4.0];
        let expected: f64 = ls.iter().map(|l| (l - m) * (l - m)).sum::<f64>() / 3.0;
        assert!((penalty.double_value(&[]) - expected).abs() < 1e-6);
        // d/dl_i = (2/N)(l_i - m) - (decay/N) (2/N) sum_j (l_j - m): the second term is the
        // gradient through m, which a detached mean would drop.
        let grad = Tensor::run_backward(&[penalty], &[&lengths], false, false)[0].shallow_clone();
        let through_mean = decay / 3.0 * 2.0 / 3.0 * ls.iter().map(|l| l - m).sum::<f64>();
        for (i, l) in ls.iter().enumerate() {
            let want = 2.0 / 3.0 * (l - m) - through_mean;
            assert!((grad.double_value(&[i as i64]) - want).abs() < 1e-6, "l_{i}");
        }
    }
}
