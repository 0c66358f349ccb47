//! The metrics from Inception features, in float64 (SPECS.md 1.1, 2.1, 2.2):
//! - FID: ‖μ₁ − μ₂‖² + Tr Σ₁ + Tr Σ₂ − 2 Tr √(Σ₁Σ₂), with Σ unbiased (N − 1) and the trace of
//!   the square root from symmetric eigen-decompositions: Tr √(Σ₁^½ Σ₂ Σ₁^½) (libtorch has no
//!   sqrtm; this form stays within 1e-6 of scipy's in float64, SPECS 1.1), numerically zero
//!   eigenvalues treated as zero so singular covariances (fewer samples than 2048) stay exact.
//! - KID: unbiased MMD² with the cubic polynomial kernel (xᵀy / d + 1)³, averaged over subsets.
//! - IS: exp(E KL(p(y|x) ‖ p(y))) per split over the 1008 unbiased logits; mean and std of splits.
use tch::{Device, Kind, Tensor};

/// First and second moments of a feature set, accumulated in float64 so that shards (batches,
/// ranks) add up exactly in any order: N, Σx and Σxxᵀ.
pub struct FeatureStats {
    pub count: f64,
    pub sum: Tensor,
    pub sum_outer: Tensor,
}

impl FeatureStats {
    pub fn new(dim: i64) -> Self {
        let opts = (Kind::Double, Device::Cpu);
        FeatureStats {
            count: 0.0,
            sum: Tensor::zeros([dim], opts),
            sum_outer: Tensor::zeros([dim, dim], opts),
        }
    }

    /// Adds a batch of features [N, dim].
    pub fn add(&mut self, features: &Tensor) {
        let x = features.to_device(Device::Cpu).to_kind(Kind::Double);
        self.count += x.size()[0] as f64;
        self.sum += x.sum_dim_intlist([0].as_slice(), false, None);
        self.sum_outer += x.tr().matmul(&x);
    }

    /// μ and the unbiased covariance (divides by N − 1, as numpy's `cov`).
    pub fn mean_cov(&self) -> (Tensor, Tensor) {
        let n = self.count;
        let mu = &self.sum / n;
        let cov = (&self.sum_outer - mu.outer(&mu) * n) / (n - 1.0);
        (mu, cov)
    }
}

/// Eigenvalues of a PSD matrix with the numerically zero ones set to 0: below
/// max|λ| · dim · ε (numpy's rank tolerance). With fewer samples than dimensions most
/// eigenvalues are zero up to rounding, and the square roots of that rounding noise (~√ε each)
/// would otherwise add up to a visible error in Tr √.
fn psd_eigenvalues(eigenvalues: &Tensor) -> Tensor {
    let dim = eigenvalues.size()[0] as f64;
    let tol = eigenvalues.abs().max().double_value(&[]) * dim * f64::EPSILON;
    let zeros = eigenvalues.zeros_like();
    eigenvalues.where_self(&eigenvalues.gt(tol), &zeros)
}

/// Symmetric square root of a positive semi-definite matrix.
fn sqrt_psd(m: &Tensor) -> Tensor {
    let (eigenvalues, vectors) = m.linalg_eigh("L");
    let root = psd_eigenvalues(&eigenvalues).sqrt();
    (&vectors * root.unsqueeze(0)).matmul(&vectors.tr())
}

/// `m` distinct indices of `0..n`, uniformly (a partial Fisher-Yates shuffle).
fn subset(rng: &mut gan_core::rng::SplitMix64, n: i64, m: i64) -> Tensor {
    let mut idx: Vec<i64> = (0..n).collect();
    for i in 0..m as usize {
        let j = i + (rng.next_u64() % (n as u64 - i as u64)) as usize;
        idx.swap(i, j);
    }
    Tensor::from_slice(&idx[..m as usize])
}

/// Fréchet distance between two Gaussians (μ, Σ), float64.
pub fn frechet_distance(mu1: &Tensor, cov1: &Tensor, mu2: &Tensor, cov2: &Tensor) -> f64 {
    let diff = (mu1 - mu2).square().sum(Kind::Double).double_value(&[]);
    let root1 = sqrt_psd(cov1);
    let m = root1.matmul(cov2).matmul(&root1);
    // m is symmetric up to rounding; symmetrise so the symmetric solver sees exactly that.
    let m = (&m + m.tr()) / 2.0;
    let tr_sqrt = psd_eigenvalues(&m.linalg_eigvalsh("L")).sqrt().sum(Kind::Double).double_value(&[]);
    let tr = |c: &Tensor| c.trace().double_value(&[]);
    diff + tr(cov1) + tr(cov2) - 2.0 * tr_sqrt
}

/// KID (unbiased MMD², cubic polynomial kernel) from feature matrices [N, d], averaged over
/// `num_subsets` subsets of min(N_real, N_fake, `max_subset_size`) rows drawn without
/// replacement from `seed`'s own stream (not torch's global generator, which a training step on
/// another thread may be using).
pub fn kernel_inception_distance(
    real: &Tensor,
    fake: &Tensor,
    num_subsets: i64,
    max_subset_size: i64,
    seed: u64,
) -> f64 {
    let real = real.to_kind(Kind::Double);
    let fake = fake.to_kind(Kind::Double);
    let d = real.size()[1] as f64;
    let m = real.size()[0].min(fake.size()[0]).min(max_subset_size);
    let kernel = |a: &Tensor, b: &Tensor| (a.matmul(&b.tr()) / d + 1.0).pow_tensor_scalar(3);
    let mut rng = gan_core::rng::SplitMix64::new(seed);
    let mut t = 0.0;
    for _ in 0..num_subsets {
        let x = fake.index_select(0, &subset(&mut rng, fake.size()[0], m));
        let y = real.index_select(0, &subset(&mut rng, real.size()[0], m));
        let a = kernel(&x, &x) + kernel(&y, &y);
        let b = kernel(&x, &y);
        let off_diagonal = a.sum(Kind::Double).double_value(&[]) - a.trace().double_value(&[]);
        t += off_diagonal / (m as f64 - 1.0) - b.sum(Kind::Double).double_value(&[]) * 2.0 / m as f64;
    }
    t / num_subsets as f64 / m as f64
}

/// Inception Score from logits [N, classes]: mean and standard deviation over `splits` equal
/// consecutive splits.
pub fn inception_score(logits: &Tensor, splits: i64) -> (f64, f64) {
    // In logs throughout: a confident network's probabilities underflow to 0, and p log p would
    // then be 0 x -inf = NaN, where its limit is 0.
    let log_p = logits.to_kind(Kind::Double).log_softmax(1, Kind::Double);
    let n = log_p.size()[0];
    let per = n / splits;
    let scores: Vec<f64> = (0..splits)
        .map(|i| {
            let log_part = log_p.narrow(0, i * per, per);
            // log of the split's marginal, mean_i p_ij, without leaving logs.
            let log_marginal = log_part.logsumexp([0].as_slice(), true) - (per as f64).ln();
            let kl =
                (log_part.exp() * (&log_part - log_marginal)).sum_dim_intlist([1].as_slice(), false, None);
            kl.mean(Kind::Double).exp().double_value(&[])
        })
        .collect();
    let mean = scores.iter().sum::<f64>() / splits as f64;
    let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / splits as f64;
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> (Kind, Device) {
        (Kind::Double, Device::Cpu)
    }

    /// Diagonal covariances: Tr √(Σ₁Σ₂) = Σ √(a_i b_i), so the distance has a closed form.
    #[test]
    fn frechet_distance_matches_the_diagonal_closed_form() {
        let mu1 = Tensor::from_slice(&[0.0f64, 1.0, 2.0]);
        let mu2 = Tensor::from_slice(&[1.0f64, 1.0, 0.0]);
        let a = [1.0f64, 4.0, 0.25];
        let b = [9.0f64, 1.0, 0.25];
        let cov1 = Tensor::from_slice(&a).diag(0);
        let cov2 = Tensor::from_slice(&b).diag(0);
        let expected: f64 =
            1.0 + 4.0 + a.iter().zip(&b).map(|(x, y)| x + y - 2.0 * (x * y).sqrt()).sum::<f64>();
        let got = frechet_distance(&mu1, &cov1, &mu2, &cov2);
        assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
    }

    /// A rotated (non-diagonal) pair against the commuting closed form: with Σ₂ = c Σ₁,
    /// Tr √(Σ₁Σ₂) = √c Tr Σ₁.
    #[test]
    fn frechet_distance_of_scaled_covariances() {
        tch::manual_seed(1);
        let a = Tensor::randn([6, 6], opts());
        let cov1 = a.matmul(&a.tr()) + Tensor::eye(6, opts());
        let cov2 = &cov1 * 4.0;
        let mu = Tensor::zeros([6], opts());
        let tr = cov1.trace().double_value(&[]);
        let expected = tr + 4.0 * tr - 2.0 * 2.0 * tr;
        let got = frechet_distance(&mu, &cov1, &mu, &cov2);
        assert!((got - expected).abs() < 1e-9 * tr, "{got} vs {expected}");
    }

    /// FID(x, x) = 0 for real features (2048-d, more samples than dimensions).
    #[test]
    fn fid_of_a_set_with_itself_is_zero() {
        tch::manual_seed(2);
        let x = Tensor::randn([3000, 2048], (Kind::Float, Device::Cpu)).abs();
        let mut stats = FeatureStats::new(2048);
        stats.add(&x.narrow(0, 0, 1000));
        stats.add(&x.narrow(0, 1000, 2000));
        let (mu, cov) = stats.mean_cov();
        let fid = frechet_distance(&mu, &cov, &mu, &cov);
        assert!(fid.abs() < 1e-6, "FID(x, x) = {fid}");
        // And the accumulated moments equal the direct ones (numpy's mean and unbiased cov).
        let xd = x.to_kind(Kind::Double);
        let direct_mu = xd.mean_dim(0, false, None);
        let centred = &xd - &direct_mu;
        let direct_cov = centred.tr().matmul(&centred) / 2999.0;
        assert!((mu - direct_mu).abs().max().double_value(&[]) < 1e-12);
        assert!((cov - direct_cov).abs().max().double_value(&[]) < 1e-9);
    }

    #[test]
    fn kid_is_near_zero_for_one_distribution_and_positive_for_two() {
        // Torch's global generator is checked below: no other test may draw meanwhile.
        let _torch = crate::train::tests_lock();
        tch::manual_seed(3);
        let a = Tensor::randn([400, 16], opts());
        let b = Tensor::randn([400, 16], opts());
        let same = kernel_inception_distance(&a, &b, 20, 200, 7);
        let shifted = kernel_inception_distance(&a, &(&b + 1.0), 20, 200, 7);
        assert!(same.abs() < 0.05, "same distribution: {same}");
        assert!(shifted > 1.0, "shifted by 1 in every feature: {shifted}");
        // Repeatable from its seed, and torch's global stream is left alone.
        tch::manual_seed(9);
        let before = Tensor::randn([4], opts());
        tch::manual_seed(9);
        assert_eq!(kernel_inception_distance(&a, &b, 20, 200, 7), same);
        assert!(Tensor::randn([4], opts()).equal(&before), "KID drew from torch's generator");
        assert_ne!(kernel_inception_distance(&a, &b, 20, 200, 8), same);
    }

    /// A classifier that is certain and uniform over k classes scores k; one that always says
    /// the same thing scores 1.
    #[test]
    fn inception_score_extremes() {
        let k = 8;
        let confident = Tensor::eye(k, opts()).repeat([10, 1]) * 50.0;
        let (mean, std) = inception_score(&confident, 2);
        assert!((mean - k as f64).abs() < 1e-6 && std < 1e-9, "{mean} ± {std}");
        let constant = Tensor::zeros([80, k], opts());
        assert!((inception_score(&constant, 4).0 - 1.0).abs() < 1e-12);
        // So certain that the other classes' probabilities underflow to 0 (e^-1000): still k.
        let (mean, _) = inception_score(&(Tensor::eye(k, opts()).repeat([10, 1]) * 1000.0), 2);
        assert!((mean - k as f64).abs() < 1e-6, "{mean}");
    }

    /// Where nothing underflows, the score is the textbook exp E[KL(p(y|x) || p(y))] of the
    /// probabilities themselves.
    #[test]
    fn inception_score_is_the_textbook_formula() {
        let logits = (Tensor::arange(640, opts()) * 0.37).sin().view([40, 16]) * 3.0;
        let p = logits.softmax(1, Kind::Double);
        let per_split: Vec<f64> = (0..4)
            .map(|i| {
                let part = p.narrow(0, i * 10, 10);
                let kl = (&part * (part.log() - part.mean_dim(0, true, None).log()))
                    .sum_dim_intlist(1, false, None);
                kl.mean(Kind::Double).exp().double_value(&[])
            })
            .collect();
        let textbook = per_split.iter().sum::<f64>() / 4.0;
        let (mean, _) = inception_score(&logits, 4);
        assert!((mean - textbook).abs() < 1e-12 * textbook, "{mean} vs {textbook}");
    }
}
