//! BigGAN's G: z (split into chunks with `hier`) -> SN linear -> 4x4 -> residual up-blocks with
//! class-conditional BN (attention after the blocks at configured resolutions) -> BN, ReLU,
//! SN conv 3x3 -> tanh.
use tch::{nn, Tensor};

use super::layers::{Attention, BatchNorm, CondBatchNorm, SnConv2d, SnLinear};
use super::{g_arch, BigGanSpec, BN_EPS};
use crate::models::layers::upsample2;

/// `GBlock`: h = conv2(relu(bn2(conv1(up(relu(bn1(x, y)))), y))); out = h + conv_sc(up(x)).
struct GBlock {
    bn1: CondBatchNorm,
    conv1: SnConv2d,
    bn2: CondBatchNorm,
    conv2: SnConv2d,
    conv_sc: SnConv2d,
}

impl GBlock {
    fn new(p: nn::Path, c_in: i64, c_out: i64, cond_dim: i64, spec: &BigGanSpec) -> Self {
        let (init, eps) = (spec.init, spec.sn_eps);
        GBlock {
            bn1: CondBatchNorm::new(&p / "bn1", c_in, cond_dim, spec.classes, init, eps, BN_EPS),
            conv1: SnConv2d::new(&p / "conv1", c_in, c_out, 3, true, init, eps),
            bn2: CondBatchNorm::new(&p / "bn2", c_out, cond_dim, spec.classes, init, eps, BN_EPS),
            conv2: SnConv2d::new(&p / "conv2", c_out, c_out, 3, true, init, eps),
            // Upsampling makes the shortcut learnable in every G block.
            conv_sc: SnConv2d::new(&p / "conv_sc", c_in, c_out, 1, true, init, eps),
        }
    }

    fn forward(&self, x: &Tensor, y: &Tensor, train: bool) -> Tensor {
        let h = upsample2(&self.bn1.forward(x, y, train).relu());
        let h = self.conv1.forward(&h, train);
        let h = self.conv2.forward(&self.bn2.forward(&h, y, train).relu(), train);
        h + self.conv_sc.forward(&upsample2(x), train)
    }
}

pub struct Generator {
    spec: BigGanSpec,
    z_chunk: i64,
    shared: Option<nn::Embedding>,
    linear: SnLinear,
    bottom_channels: i64,
    blocks: Vec<(GBlock, Option<Attention>)>,
    out_bn: BatchNorm,
    out_conv: SnConv2d,
}

impl Generator {
    pub fn new(spec: &BigGanSpec, p: nn::Path) -> Self {
        let (ins, outs) = g_arch(spec.resolution);
        let ch = spec.ch;
        // hier: one z chunk for the input and one per block (z_dim 120, 5 blocks -> 6 x 20).
        let z_chunk = if spec.hier { spec.z_dim / (ins.len() as i64 + 1) } else { 0 };
        let cond_dim = if spec.shared_dim > 0 { spec.shared_dim + z_chunk } else { 0 };
        let shared = (spec.shared_dim > 0).then(|| {
            let cfg = nn::EmbeddingConfig { ws_init: spec.init.init(), ..Default::default() };
            nn::embedding(&p / "shared", spec.classes, spec.shared_dim, cfg)
        });
        let linear_in = if spec.hier { z_chunk } else { spec.z_dim };
        let bottom_channels = ins[0] * ch;
        let linear =
            SnLinear::new(&p / "linear", linear_in, bottom_channels * 16, true, spec.init, spec.sn_eps);
        let blocks = ins
            .iter()
            .zip(outs)
            .enumerate()
            .map(|(i, (&c_in, &c_out))| {
                let bp = &p / "blocks" / i;
                let res = 8 << i;
                let block = GBlock::new(&bp / 0, c_in * ch, c_out * ch, cond_dim, spec);
                let attn = spec
                    .attention_res
                    .contains(&res)
                    .then(|| Attention::new(&bp / 1, c_out * ch, spec.init, spec.sn_eps));
                (block, attn)
            })
            .collect();
        let last = outs[outs.len() - 1] * ch;
        let op = &p / "output_layer";
        Generator {
            out_bn: BatchNorm::new(&op / 0, last, BN_EPS),
            out_conv: SnConv2d::new(&op / 2, last, spec.img_channels, 3, true, spec.init, spec.sn_eps),
            spec: spec.clone(),
            z_chunk,
            shared,
            linear,
            bottom_channels,
            blocks,
        }
    }

    fn run(&self, z: &Tensor, c: &Tensor, train: bool) -> Tensor {
        use tch::nn::Module;
        let n = z.size()[0];
        let y = self.shared.as_ref().map(|s| s.forward(c));
        // Per block: [shared(c) | z chunk] (hier), shared(c), or the class labels themselves.
        let (z0, conds): (Tensor, Vec<Tensor>) = match (&y, self.spec.hier) {
            (Some(y), true) => {
                let chunks = z.split(self.z_chunk, 1);
                let conds = chunks[1..].iter().map(|zi| Tensor::cat(&[y, zi], 1)).collect();
                (chunks[0].shallow_clone(), conds)
            }
            (Some(y), false) => (z.shallow_clone(), self.blocks.iter().map(|_| y.shallow_clone()).collect()),
            (None, _) => (z.shallow_clone(), self.blocks.iter().map(|_| c.shallow_clone()).collect()),
        };
        let mut h = self.linear.forward(&z0, train).view([n, self.bottom_channels, 4, 4]);
        for ((block, attn), cond) in self.blocks.iter().zip(&conds) {
            h = block.forward(&h, cond, train);
            if let Some(attn) = attn {
                h = attn.forward(&h, train);
            }
        }
        self.out_conv.forward(&self.out_bn.forward(&h, train).relu(), train).tanh()
    }
}

impl crate::models::Generator for Generator {
    fn forward(&self, z: &Tensor, c: &Tensor) -> Tensor {
        self.run(z, c, true)
    }

    /// Sampling uses BN's running statistics and leaves the SN state alone (`--G_eval_mode`).
    fn forward_eval(&self, z: &Tensor, c: &Tensor) -> Tensor {
        self.run(z, c, false)
    }

    fn z_dim(&self) -> i64 {
        self.spec.z_dim
    }
}
