//! pytorch-fid's Inception-v3 (SPECS.md 1.1): torchvision's `Inception3` with 1008 classes and
//! the FID patches (pool branches of Mixed_5b..6e and 7b average without counting padding, as
//! TensorFlow does; Mixed_7c's pool branch is a max pool, a quirk of the 2015 TF graph). Variables
//! carry the torchvision state-dict names, so `pt_inception-2015-12-05-6726825d.pth` loads by
//! name. Input: images in [0, 1]; resized to 299x299 (bilinear, half-pixel) and scaled to [-1, 1]
//! inside, as pytorch-fid's wrapper does.
use tch::{nn, Tensor};

/// Conv (no bias) -> BatchNorm (eps 0.001, running statistics) -> ReLU (`BasicConv2d`).
struct BasicConv {
    weight: Tensor,
    bn_weight: Tensor,
    bn_bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    stride: i64,
    padding: [i64; 2],
}

impl BasicConv {
    fn new(p: nn::Path, c_in: i64, c_out: i64, kernel: [i64; 2], stride: i64, padding: [i64; 2]) -> Self {
        let conv = &p / "conv";
        let bn = &p / "bn";
        let init = nn::Init::Randn { mean: 0.0, stdev: 0.1 };
        BasicConv {
            weight: conv.var("weight", &[c_out, c_in, kernel[0], kernel[1]], init),
            bn_weight: bn.ones_no_train("weight", &[c_out]),
            bn_bias: bn.zeros_no_train("bias", &[c_out]),
            running_mean: bn.zeros_no_train("running_mean", &[c_out]),
            running_var: bn.ones_no_train("running_var", &[c_out]),
            stride,
            padding,
        }
    }

    fn k(p: nn::Path, c_in: i64, c_out: i64, k: i64) -> Self {
        Self::new(p, c_in, c_out, [k, k], 1, [k / 2, k / 2])
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.conv2d(&self.weight, None::<Tensor>, [self.stride, self.stride], self.padding, [1, 1], 1);
        let y = y.batch_norm(
            Some(&self.bn_weight),
            Some(&self.bn_bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            false,
            0.1,
            1e-3,
            false,
        );
        y.relu()
    }
}

/// 3x3 stride-1 pooling of the pool branches: TF-style average (padding not counted) or max.
#[derive(Clone, Copy)]
enum BranchPool {
    Avg,
    Max,
}

fn branch_pool(x: &Tensor, pool: BranchPool) -> Tensor {
    match pool {
        BranchPool::Avg => x.avg_pool2d([3, 3], [1, 1], [1, 1], false, false, None),
        BranchPool::Max => x.max_pool2d([3, 3], [1, 1], [1, 1], [1, 1], false),
    }
}

fn max_pool_s2(x: &Tensor) -> Tensor {
    x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false)
}

/// InceptionA (FIDInceptionA): 1x1, 5x5, double 3x3, pool.
struct BlockA {
    b1: BasicConv,
    b5: [BasicConv; 2],
    b3: [BasicConv; 3],
    pool: BasicConv,
}

impl BlockA {
    fn new(p: nn::Path, c_in: i64, pool_features: i64) -> Self {
        BlockA {
            b1: BasicConv::k(&p / "branch1x1", c_in, 64, 1),
            b5: [BasicConv::k(&p / "branch5x5_1", c_in, 48, 1), BasicConv::k(&p / "branch5x5_2", 48, 64, 5)],
            b3: [
                BasicConv::k(&p / "branch3x3dbl_1", c_in, 64, 1),
                BasicConv::k(&p / "branch3x3dbl_2", 64, 96, 3),
                BasicConv::k(&p / "branch3x3dbl_3", 96, 96, 3),
            ],
            pool: BasicConv::k(&p / "branch_pool", c_in, pool_features, 1),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let b5 = chain(&self.b5, x);
        let b3 = chain(&self.b3, x);
        let pool = self.pool.forward(&branch_pool(x, BranchPool::Avg));
        Tensor::cat(&[self.b1.forward(x), b5, b3, pool], 1)
    }
}

/// InceptionB (Mixed_6a, unpatched): strided 3x3, strided double 3x3, max pool.
struct BlockB {
    b3: BasicConv,
    b3dbl: [BasicConv; 3],
}

impl BlockB {
    fn new(p: nn::Path, c_in: i64) -> Self {
        BlockB {
            b3: BasicConv::new(&p / "branch3x3", c_in, 384, [3, 3], 2, [0, 0]),
            b3dbl: [
                BasicConv::k(&p / "branch3x3dbl_1", c_in, 64, 1),
                BasicConv::k(&p / "branch3x3dbl_2", 64, 96, 3),
                BasicConv::new(&p / "branch3x3dbl_3", 96, 96, [3, 3], 2, [0, 0]),
            ],
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        Tensor::cat(&[self.b3.forward(x), chain(&self.b3dbl, x), max_pool_s2(x)], 1)
    }
}

fn conv_1x7(p: nn::Path, c_in: i64, c_out: i64) -> BasicConv {
    BasicConv::new(p, c_in, c_out, [1, 7], 1, [0, 3])
}

fn conv_7x1(p: nn::Path, c_in: i64, c_out: i64) -> BasicConv {
    BasicConv::new(p, c_in, c_out, [7, 1], 1, [3, 0])
}

/// InceptionC (FIDInceptionC): 1x1, factorised 7x7, double factorised 7x7, pool.
struct BlockC {
    b1: BasicConv,
    b7: [BasicConv; 3],
    b7dbl: [BasicConv; 5],
    pool: BasicConv,
}

impl BlockC {
    fn new(p: nn::Path, c_in: i64, c7: i64) -> Self {
        BlockC {
            b1: BasicConv::k(&p / "branch1x1", c_in, 192, 1),
            b7: [
                BasicConv::k(&p / "branch7x7_1", c_in, c7, 1),
                conv_1x7(&p / "branch7x7_2", c7, c7),
                conv_7x1(&p / "branch7x7_3", c7, 192),
            ],
            b7dbl: [
                BasicConv::k(&p / "branch7x7dbl_1", c_in, c7, 1),
                conv_7x1(&p / "branch7x7dbl_2", c7, c7),
                conv_1x7(&p / "branch7x7dbl_3", c7, c7),
                conv_7x1(&p / "branch7x7dbl_4", c7, c7),
                conv_1x7(&p / "branch7x7dbl_5", c7, 192),
            ],
            pool: BasicConv::k(&p / "branch_pool", c_in, 192, 1),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let pool = self.pool.forward(&branch_pool(x, BranchPool::Avg));
        Tensor::cat(&[self.b1.forward(x), chain(&self.b7, x), chain(&self.b7dbl, x), pool], 1)
    }
}

/// InceptionD (Mixed_7a, unpatched): strided 3x3, strided 7x7x3, max pool.
struct BlockD {
    b3: [BasicConv; 2],
    b7x3: [BasicConv; 4],
}

impl BlockD {
    fn new(p: nn::Path, c_in: i64) -> Self {
        BlockD {
            b3: [
                BasicConv::k(&p / "branch3x3_1", c_in, 192, 1),
                BasicConv::new(&p / "branch3x3_2", 192, 320, [3, 3], 2, [0, 0]),
            ],
            b7x3: [
                BasicConv::k(&p / "branch7x7x3_1", c_in, 192, 1),
                conv_1x7(&p / "branch7x7x3_2", 192, 192),
                conv_7x1(&p / "branch7x7x3_3", 192, 192),
                BasicConv::new(&p / "branch7x7x3_4", 192, 192, [3, 3], 2, [0, 0]),
            ],
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        Tensor::cat(&[chain(&self.b3, x), chain(&self.b7x3, x), max_pool_s2(x)], 1)
    }
}

/// InceptionE (FIDInceptionE_1 / _2): 1x1, split 3x3, double split 3x3, pool (average / max).
struct BlockE {
    b1: BasicConv,
    b3_1: BasicConv,
    b3_2: [BasicConv; 2],
    b3dbl: [BasicConv; 2],
    b3dbl_3: [BasicConv; 2],
    pool: BasicConv,
    pool_kind: BranchPool,
}

impl BlockE {
    fn new(p: nn::Path, c_in: i64, pool_kind: BranchPool) -> Self {
        let split = |name_a: &str, name_b: &str, c: i64| {
            [
                BasicConv::new(&p / name_a, c, 384, [1, 3], 1, [0, 1]),
                BasicConv::new(&p / name_b, c, 384, [3, 1], 1, [1, 0]),
            ]
        };
        BlockE {
            b1: BasicConv::k(&p / "branch1x1", c_in, 320, 1),
            b3_1: BasicConv::k(&p / "branch3x3_1", c_in, 384, 1),
            b3_2: split("branch3x3_2a", "branch3x3_2b", 384),
            b3dbl: [
                BasicConv::k(&p / "branch3x3dbl_1", c_in, 448, 1),
                BasicConv::k(&p / "branch3x3dbl_2", 448, 384, 3),
            ],
            b3dbl_3: split("branch3x3dbl_3a", "branch3x3dbl_3b", 384),
            pool: BasicConv::k(&p / "branch_pool", c_in, 192, 1),
            pool_kind,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let y = self.b3_1.forward(x);
        let b3 = Tensor::cat(&[self.b3_2[0].forward(&y), self.b3_2[1].forward(&y)], 1);
        let y = chain(&self.b3dbl, x);
        let b3dbl = Tensor::cat(&[self.b3dbl_3[0].forward(&y), self.b3dbl_3[1].forward(&y)], 1);
        let pool = self.pool.forward(&branch_pool(x, self.pool_kind));
        Tensor::cat(&[self.b1.forward(x), b3, b3dbl, pool], 1)
    }
}

fn chain(layers: &[BasicConv], x: &Tensor) -> Tensor {
    layers.iter().fold(x.shallow_clone(), |y, layer| layer.forward(&y))
}

/// pool3 features and the 1008 logits of the TF graph.
pub struct Features {
    /// [N, 2048], after Mixed_7c and global average pooling.
    pub pool3: Tensor,
    /// [N, 1008] = pool3 · fc.weightᵀ, without fc.bias (the "unbiased" logits of the Inception Score).
    pub logits_unbiased: Tensor,
}

pub struct FidInception {
    stem: [BasicConv; 5],
    mixed_5: [BlockA; 3],
    mixed_6a: BlockB,
    mixed_6: [BlockC; 4],
    mixed_7a: BlockD,
    mixed_7b: BlockE,
    mixed_7c: BlockE,
    fc_weight: Tensor,
}

impl FidInception {
    /// The network under `p`, with placeholder weights (load the real ones by name).
    pub fn new(p: &nn::Path) -> Self {
        let c = |name: &str| p / name;
        // fc.bias is in the weights file but in no metric (IS uses the unbiased logits); it is a
        // variable anyway so loading stays strict about the file's contents.
        let _ = c("fc").zeros_no_train("bias", &[1008]);
        FidInception {
            stem: [
                BasicConv::new(c("Conv2d_1a_3x3"), 3, 32, [3, 3], 2, [0, 0]),
                BasicConv::new(c("Conv2d_2a_3x3"), 32, 32, [3, 3], 1, [0, 0]),
                BasicConv::k(c("Conv2d_2b_3x3"), 32, 64, 3),
                BasicConv::k(c("Conv2d_3b_1x1"), 64, 80, 1),
                BasicConv::new(c("Conv2d_4a_3x3"), 80, 192, [3, 3], 1, [0, 0]),
            ],
            mixed_5: [
                BlockA::new(c("Mixed_5b"), 192, 32),
                BlockA::new(c("Mixed_5c"), 256, 64),
                BlockA::new(c("Mixed_5d"), 288, 64),
            ],
            mixed_6a: BlockB::new(c("Mixed_6a"), 288),
            mixed_6: [
                BlockC::new(c("Mixed_6b"), 768, 128),
                BlockC::new(c("Mixed_6c"), 768, 160),
                BlockC::new(c("Mixed_6d"), 768, 160),
                BlockC::new(c("Mixed_6e"), 768, 192),
            ],
            mixed_7a: BlockD::new(c("Mixed_7a"), 768),
            mixed_7b: BlockE::new(c("Mixed_7b"), 1280, BranchPool::Avg),
            mixed_7c: BlockE::new(c("Mixed_7c"), 2048, BranchPool::Max),
            fc_weight: c("fc").zeros_no_train("weight", &[1008, 2048]),
        }
    }

    /// Features of images in [0, 1] (NCHW, 3 channels, any size), as pytorch-fid: bilinear
    /// resize to 299 (align_corners false), then 2x - 1.
    pub fn features(&self, images01: &Tensor) -> Features {
        let x = images01.upsample_bilinear2d([299, 299], false, None, None) * 2.0 - 1.0;
        let mut x = self.stem[0].forward(&x);
        x = self.stem[1].forward(&x);
        x = max_pool_s2(&self.stem[2].forward(&x));
        x = self.stem[3].forward(&x);
        x = max_pool_s2(&self.stem[4].forward(&x));
        for block in &self.mixed_5 {
            x = block.forward(&x);
        }
        x = self.mixed_6a.forward(&x);
        for block in &self.mixed_6 {
            x = block.forward(&x);
        }
        x = self.mixed_7c.forward(&self.mixed_7b.forward(&self.mixed_7a.forward(&x)));
        let pool3 = x.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        let logits_unbiased = pool3.matmul(&self.fc_weight.tr());
        Features { pool3, logits_unbiased }
    }
}
