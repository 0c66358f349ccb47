//! BigGAN's layers (BigGAN-PyTorch `layers.py`): spectrally normalised conv, linear and embedding
//! (one power iteration per training forward, `u0`/`sv0` buffers), class-conditional batch norm
//! with gains and biases predicted from the conditioning vector, plain batch norm with learned
//! gain and bias, and SAGAN self-attention. Parameter and buffer names follow the reference
//! state dict (`weight`, `bias`, `u0`, `sv0`, `gain`, `stored_mean`, `stored_var`, `gamma`).
use tch::{nn, Kind, Tensor};

/// Weight initialisation of BigGAN's `--G_init/--D_init`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightInit {
    Orthogonal,
    Normal002,
}

impl WeightInit {
    /// For 2-D weights only (see [`WeightInit::var`]).
    pub fn init(self) -> nn::Init {
        match self {
            WeightInit::Orthogonal => nn::Init::Orthogonal { gain: 1.0 },
            WeightInit::Normal002 => nn::Init::Randn { mean: 0.0, stdev: 0.02 },
        }
    }

    /// A trainable weight `name` of shape `dims`. Orthogonal as `torch.nn.init.orthogonal_`: the
    /// [dims[0], product of the rest] matrix made orthogonal, in the weight's own shape. (tch's
    /// `Init::Orthogonal` returns that matrix without reshaping it, so a conv weight would come
    /// out 2-D.)
    pub fn var(self, p: &nn::Path, name: &str, dims: &[i64]) -> Tensor {
        if self == WeightInit::Normal002 || dims.len() == 2 {
            return p.var(name, dims, self.init());
        }
        let weight = p.zeros(name, dims);
        let matrix = [dims[0], dims[1..].iter().product()];
        let q = nn::init::init(self.init(), &matrix, weight.device());
        tch::no_grad(|| weight.shallow_clone().copy_(&q.view(dims)));
        weight
    }
}

/// PyTorch's default bias init for a layer with `fan_in` inputs (the reference re-inits weights only).
fn default_bias(fan_in: i64) -> nn::Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    nn::Init::Uniform { lo: -bound, up: bound }
}

/// The power-iteration state of one spectrally normalised weight.
struct SpectralNorm {
    u0: Tensor,
    sv0: Tensor,
    eps: f64,
}

/// x / max(||x||, eps) along dim 1, as `F.normalize`.
fn l2_normalize(x: &Tensor, eps: f64) -> Tensor {
    x / x.norm_scalaropt_dim(2, [1], true).clamp_min(eps)
}

impl SpectralNorm {
    fn new(p: &nn::Path, rows: i64, eps: f64) -> Self {
        let u0 = p.zeros_no_train("u0", &[1, rows]);
        tch::no_grad(|| u0.shallow_clone().copy_(&Tensor::randn([1, rows], (Kind::Float, u0.device()))));
        let sv0 = p.ones_no_train("sv0", &[1]);
        SpectralNorm { u0, sv0, eps }
    }

    /// W / sigma(W), sigma from one power iteration; `u0` and `sv0` advance only in training.
    fn apply(&self, weight: &Tensor, train: bool) -> Tensor {
        let w_mat = weight.view([weight.size()[0], -1]);
        let (u, v) = tch::no_grad(|| {
            let v = l2_normalize(&self.u0.matmul(&w_mat), self.eps);
            let u = l2_normalize(&v.matmul(&w_mat.tr()), self.eps);
            (u, v)
        });
        let sv = v.matmul(&w_mat.tr()).matmul(&u.tr()).squeeze();
        if train {
            tch::no_grad(|| {
                self.u0.shallow_clone().copy_(&u);
                self.sv0.shallow_clone().copy_(&sv.detach().reshape([1]));
            });
        }
        weight / sv
    }
}

/// The largest `sv0` of a VarStore's spectrally normalised weights: the top singular value of a
/// layer's raw weight, as its power iteration last estimated it in training. BigGAN (Brock et
/// al. 2019, sec. 4.1) watches these: G's grow through training and explode when it collapses
/// (BigGAN-PyTorch logs them as `sv0`). None for a network without spectral norm.
pub fn largest_sv0(vs: &nn::VarStore) -> Option<f64> {
    let svs = vs.variables().into_iter().filter(|(name, _)| name.ends_with("sv0"));
    svs.map(|(_, sv)| sv.double_value(&[0])).reduce(f64::max)
}

pub struct SnConv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    sn: SpectralNorm,
    padding: i64,
}

impl SnConv2d {
    pub fn new(p: nn::Path, c_in: i64, c_out: i64, k: i64, bias: bool, init: WeightInit, eps: f64) -> Self {
        let weight = init.var(&p, "weight", &[c_out, c_in, k, k]);
        let bias = bias.then(|| p.var("bias", &[c_out], default_bias(c_in * k * k)));
        SnConv2d { weight, bias, sn: SpectralNorm::new(&p, c_out, eps), padding: k / 2 }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let w = self.sn.apply(&self.weight, train);
        x.conv2d(&w, self.bias.as_ref(), [1, 1], [self.padding, self.padding], [1, 1], 1)
    }
}

pub struct SnLinear {
    weight: Tensor,
    bias: Option<Tensor>,
    sn: SpectralNorm,
}

impl SnLinear {
    pub fn new(p: nn::Path, c_in: i64, c_out: i64, bias: bool, init: WeightInit, eps: f64) -> Self {
        let weight = init.var(&p, "weight", &[c_out, c_in]);
        let bias = bias.then(|| p.var("bias", &[c_out], default_bias(c_in)));
        SnLinear { weight, bias, sn: SpectralNorm::new(&p, c_out, eps) }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        x.linear(&self.sn.apply(&self.weight, train), self.bias.as_ref())
    }
}

/// The projection discriminator's class embedding, spectrally normalised as a [classes, dim] matrix.
pub struct SnEmbedding {
    weight: Tensor,
    sn: SpectralNorm,
}

impl SnEmbedding {
    pub fn new(p: nn::Path, classes: i64, dim: i64, init: WeightInit, eps: f64) -> Self {
        let weight = init.var(&p, "weight", &[classes, dim]);
        SnEmbedding { weight, sn: SpectralNorm::new(&p, classes, eps) }
    }

    pub fn forward(&self, c: &Tensor, train: bool) -> Tensor {
        Tensor::embedding(&self.sn.apply(&self.weight, train), c, -1, false, false)
    }
}

/// Running statistics of a batch norm (`stored_mean`, `stored_var`), momentum 0.1.
struct RunningStats {
    mean: Tensor,
    var: Tensor,
    eps: f64,
}

impl RunningStats {
    fn new(p: &nn::Path, c: i64, eps: f64) -> Self {
        RunningStats {
            mean: p.zeros_no_train("stored_mean", &[c]),
            var: p.ones_no_train("stored_var", &[c]),
            eps,
        }
    }

    /// Normalised x (no affine): batch statistics in training (updating the running ones), the
    /// running ones otherwise.
    fn normalize(&self, x: &Tensor, train: bool) -> Tensor {
        x.batch_norm(
            None::<&Tensor>,
            None::<&Tensor>,
            Some(&self.mean),
            Some(&self.var),
            train,
            0.1,
            self.eps,
            false,
        )
    }
}

/// Where a conditional BN's gain and bias come from.
pub enum CondSource {
    /// SN linear maps of the shared conditioning vector (`--G_shared`).
    Linear(SnLinear, SnLinear),
    /// Per-class embeddings (BigGAN's CIFAR model).
    Embedding(nn::Embedding, nn::Embedding),
}

/// `ccbn`: BN without affine, then x * (1 + gain(y)) + bias(y).
pub struct CondBatchNorm {
    stats: RunningStats,
    source: CondSource,
}

impl CondBatchNorm {
    /// `cond_dim` > 0: SN linears from a conditioning vector of that size; otherwise embeddings
    /// of `classes` classes.
    pub fn new(
        p: nn::Path,
        c: i64,
        cond_dim: i64,
        classes: i64,
        init: WeightInit,
        sn_eps: f64,
        bn_eps: f64,
    ) -> Self {
        let source = if cond_dim > 0 {
            CondSource::Linear(
                SnLinear::new(&p / "gain", cond_dim, c, false, init, sn_eps),
                SnLinear::new(&p / "bias", cond_dim, c, false, init, sn_eps),
            )
        } else {
            let cfg = nn::EmbeddingConfig { ws_init: init.init(), ..Default::default() };
            CondSource::Embedding(
                nn::embedding(&p / "gain", classes, c, cfg),
                nn::embedding(&p / "bias", classes, c, cfg),
            )
        };
        CondBatchNorm { stats: RunningStats::new(&p, c, bn_eps), source }
    }

    /// `y`: the conditioning vector [N, cond_dim], or class labels [N] with embeddings.
    pub fn forward(&self, x: &Tensor, y: &Tensor, train: bool) -> Tensor {
        use tch::nn::Module;
        let (gain, bias) = match &self.source {
            CondSource::Linear(g, b) => (g.forward(y, train), b.forward(y, train)),
            CondSource::Embedding(g, b) => (g.forward(y), b.forward(y)),
        };
        let n = x.size()[0];
        let out = self.stats.normalize(x, train);
        out * (gain.view([n, -1, 1, 1]) + 1.0) + bias.view([n, -1, 1, 1])
    }
}

/// Unconditional BN with learned `gain` and `bias` (G's output layer).
pub struct BatchNorm {
    stats: RunningStats,
    gain: Tensor,
    bias: Tensor,
}

impl BatchNorm {
    pub fn new(p: nn::Path, c: i64, eps: f64) -> Self {
        BatchNorm {
            gain: p.ones("gain", &[c]),
            bias: p.zeros("bias", &[c]),
            stats: RunningStats::new(&p, c, eps),
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.stats.normalize(x, train) * self.gain.view([1, -1, 1, 1]) + self.bias.view([1, -1, 1, 1])
    }
}

/// SAGAN self-attention: theta, phi (C/8, phi max-pooled), g (C/2, max-pooled), o back to C;
/// out = x + gamma * o, gamma starting at 0.
pub struct Attention {
    theta: SnConv2d,
    phi: SnConv2d,
    g: SnConv2d,
    o: SnConv2d,
    gamma: Tensor,
    c: i64,
}

impl Attention {
    pub fn new(p: nn::Path, c: i64, init: WeightInit, eps: f64) -> Self {
        Attention {
            theta: SnConv2d::new(&p / "theta", c, c / 8, 1, false, init, eps),
            phi: SnConv2d::new(&p / "phi", c, c / 8, 1, false, init, eps),
            g: SnConv2d::new(&p / "g", c, c / 2, 1, false, init, eps),
            o: SnConv2d::new(&p / "o", c / 2, c, 1, false, init, eps),
            gamma: p.zeros("gamma", &[]),
            c,
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let (n, h, w) = (x.size()[0], x.size()[2], x.size()[3]);
        let pool = |t: Tensor| t.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
        let theta = self.theta.forward(x, train).view([n, self.c / 8, h * w]);
        let phi = pool(self.phi.forward(x, train)).view([n, self.c / 8, h * w / 4]);
        let g = pool(self.g.forward(x, train)).view([n, self.c / 2, h * w / 4]);
        let beta = theta.transpose(1, 2).bmm(&phi).softmax(-1, Kind::Float);
        let o = g.bmm(&beta.transpose(1, 2)).view([n, self.c / 2, h, w]);
        x + &self.gamma * self.o.forward(&o, train)
    }
}
