//! BigGAN's D: residual down-blocks (the first without pre-activation), self-attention at the
//! configured resolutions, ReLU, global sum pooling, then linear(h) + <SN embed(c), h>
//! (projection discriminator).
use tch::{nn, Tensor};

use super::layers::{Attention, SnConv2d, SnEmbedding, SnLinear};
use super::{d_arch, BigGanSpec};
use crate::models::layers::downsample2;

/// `DBlock` (wide: hidden = out channels).
struct DBlock {
    conv1: SnConv2d,
    conv2: SnConv2d,
    conv_sc: Option<SnConv2d>,
    preactivation: bool,
    downsample: bool,
}

impl DBlock {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let h = if self.preactivation { x.relu() } else { x.shallow_clone() };
        let h = self.conv2.forward(&self.conv1.forward(&h, train).relu(), train);
        let h = if self.downsample { downsample2(&h) } else { h };
        // The shortcut convolves before pooling after a pre-activated input, pools first otherwise.
        let shortcut = match (&self.conv_sc, self.preactivation) {
            (Some(sc), true) => {
                let s = sc.forward(x, train);
                if self.downsample {
                    downsample2(&s)
                } else {
                    s
                }
            }
            (Some(sc), false) => {
                sc.forward(&if self.downsample { downsample2(x) } else { x.shallow_clone() }, train)
            }
            (None, _) => {
                if self.downsample {
                    downsample2(x)
                } else {
                    x.shallow_clone()
                }
            }
        };
        h + shortcut
    }
}

pub struct Discriminator {
    blocks: Vec<(DBlock, Option<Attention>)>,
    linear: SnLinear,
    embed: Option<SnEmbedding>,
}

impl Discriminator {
    pub fn new(spec: &BigGanSpec, p: nn::Path) -> Self {
        let (ch, init, eps) = (spec.ch, spec.init, spec.sn_eps);
        let mut res = spec.resolution;
        let blocks: Vec<(DBlock, Option<Attention>)> = d_arch(spec.resolution)
            .iter()
            .enumerate()
            .map(|(i, &(m_in, m_out, downsample))| {
                let (c_in, c_out) = (if m_in == 0 { spec.img_channels } else { m_in * ch }, m_out * ch);
                let bp = &p / "blocks" / i;
                let b0 = &bp / 0;
                let block = DBlock {
                    conv1: SnConv2d::new(&b0 / "conv1", c_in, c_out, 3, true, init, eps),
                    conv2: SnConv2d::new(&b0 / "conv2", c_out, c_out, 3, true, init, eps),
                    conv_sc: (c_in != c_out || downsample)
                        .then(|| SnConv2d::new(&b0 / "conv_sc", c_in, c_out, 1, true, init, eps)),
                    preactivation: i > 0,
                    downsample,
                };
                if downsample {
                    res /= 2;
                }
                let attn =
                    spec.attention_res.contains(&res).then(|| Attention::new(&bp / 1, c_out, init, eps));
                (block, attn)
            })
            .collect();
        let last = d_arch(spec.resolution).last().expect("non-empty arch").1 * ch;
        Discriminator {
            blocks,
            linear: SnLinear::new(&p / "linear", last, 1, true, init, eps),
            embed: (spec.classes > 0).then(|| SnEmbedding::new(&p / "embed", spec.classes, last, init, eps)),
        }
    }
}

impl crate::models::Discriminator for Discriminator {
    /// No batch statistics in D (spectral norm only); the power iteration advances once per
    /// forward, so one joint pass per D step is what the reference does.
    fn per_image(&self) -> bool {
        true
    }
    fn forward(&self, x: &Tensor, c: &Tensor) -> Tensor {
        let mut h = x.shallow_clone();
        for (block, attn) in &self.blocks {
            h = block.forward(&h, true);
            if let Some(attn) = attn {
                h = attn.forward(&h, true);
            }
        }
        let h = h.relu().sum_dim_intlist(&[2i64, 3][..], false, None);
        let mut out = self.linear.forward(&h, true);
        if let Some(embed) = &self.embed {
            out += (embed.forward(c, true) * &h).sum_dim_intlist(&[1i64][..], true, None);
        }
        out.squeeze_dim(1)
    }
}
