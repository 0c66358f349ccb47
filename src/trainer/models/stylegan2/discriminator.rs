//! D (`Discriminator`): FromRGB at full resolution, one block per resolution down to 8x8 (two
//! 3x3 convs, the second downsampling; resnet blocks add a 1x1 downsampling skip, both paths
//! scaled by sqrt(0.5)), and the 4x4 epilogue: minibatch standard deviation, a 3x3 conv, two
//! fully connected layers. Conditional D projects onto a label embedding from its own mapping
//! network: sum(out * cmap) / sqrt(cmap_dim).
use tch::{nn, Tensor};

use super::layers::{Act, Conv2d, ConvSpec, FullyConnected, Resample};
use super::mapping::{Mapping, MappingSpec};
use super::StyleGan2Spec;
use gan_core::config::DArchitecture;

/// D's label mapping network has the reference's default 8 layers (train.py sets only G's).
const D_MAPPING_LAYERS: i64 = 8;

struct Block {
    fromrgb: Option<Conv2d>,
    conv0: Conv2d,
    conv1: Conv2d,
    skip: Option<Conv2d>,
}

impl Block {
    fn forward(&self, x: Option<Tensor>, img: &Tensor) -> Tensor {
        let x = match (&self.fromrgb, x) {
            (Some(fromrgb), _) => fromrgb.forward(img),
            (None, Some(x)) => x,
            (None, None) => unreachable!("only the first block lacks an input, and it has FromRGB"),
        };
        match &self.skip {
            Some(skip) => {
                let half = std::f64::consts::FRAC_1_SQRT_2;
                let y = skip.forward_gain(&x, half);
                let x = self.conv1.forward_gain(&self.conv0.forward(&x), half);
                y + x
            }
            None => self.conv1.forward(&self.conv0.forward(&x)),
        }
    }
}

/// The minibatch-stddev feature (`MinibatchStdLayer`, one channel): per group of `group_size`
/// samples (sample i in group i mod N/G), the standard deviation of every feature over the
/// group, averaged to one number, appended as a constant channel.
pub fn minibatch_std(x: &Tensor, group_size: i64) -> Tensor {
    let (n, c, h, w) = x.size4().expect("NCHW features");
    let g = group_size.min(n);
    let y = x.reshape([g, -1, 1, c, h, w]);
    let y = &y - y.mean_dim(0, true, None);
    let y = (y.square().mean_dim(0, false, None) + 1e-8).sqrt();
    let y = y.mean_dim([2, 3, 4].as_slice(), false, None); // [N/G, 1]
    let y = y.reshape([-1, 1, 1, 1]).repeat([g, 1, h, w]);
    Tensor::cat(&[x, &y], 1)
}

pub struct Discriminator {
    blocks: Vec<Block>,
    mbstd_group_size: i64,
    conv: Conv2d,
    fc: FullyConnected,
    out: FullyConnected,
    mapping: Option<Mapping>,
    cmap_dim: i64,
}

impl Discriminator {
    pub fn new(spec: &StyleGan2Spec, p: nn::Path) -> Self {
        let synth = spec.synthesis();
        let ch = |res: i64| synth.channels_at(res);
        let conv = |path: nn::Path, c_in, c_out, kernel, resample, act, bias| {
            let conv_clamp = spec.conv_clamp;
            Conv2d::new(path, ConvSpec { c_in, c_out, kernel, bias, act, resample, conv_clamp })
        };
        // FreezeD counts layers in the reference's order: FromRGB, then each block's conv0,
        // conv1 and skip, from the highest resolution down; the epilogue is never frozen.
        let mut layer_idx = 0;
        let mut counted = |layer: Conv2d| {
            if layer_idx < spec.freeze_d {
                layer.freeze();
            }
            layer_idx += 1;
            layer
        };
        let mut blocks = Vec::new();
        let mut res = spec.resolution;
        while res > 4 {
            let bp = &p / format!("b{res}");
            let (tmp, out) = (ch(res), ch(res / 2));
            let fromrgb = (res == spec.resolution).then(|| {
                counted(conv(&bp / "fromrgb", spec.img_channels, tmp, 1, Resample::Same, Act::Lrelu, true))
            });
            let conv0 = counted(conv(&bp / "conv0", tmp, tmp, 3, Resample::Same, Act::Lrelu, true));
            let conv1 = counted(conv(&bp / "conv1", tmp, out, 3, Resample::Down, Act::Lrelu, true));
            let skip = (spec.d_architecture == DArchitecture::Resnet)
                .then(|| counted(conv(&bp / "skip", tmp, out, 1, Resample::Down, Act::Linear, false)));
            blocks.push(Block { fromrgb, conv0, conv1, skip });
            res /= 2;
        }
        let c4 = ch(4);
        let cmap_dim = if spec.c_dim > 0 { c4 } else { 0 };
        let b4 = &p / "b4";
        let mapping = (spec.c_dim > 0).then(|| {
            let mapping_spec = MappingSpec {
                z_dim: 0,
                c_dim: spec.c_dim,
                w_dim: cmap_dim,
                num_layers: D_MAPPING_LAYERS,
                lr_mult: spec.mapping_lr_mult,
                num_ws: 0,
                track_w_avg: false,
            };
            Mapping::new(&p / "mapping", mapping_spec)
        });
        Discriminator {
            blocks,
            mbstd_group_size: spec.mbstd_group_size,
            conv: conv(&b4 / "conv", c4 + 1, c4, 3, Resample::Same, Act::Lrelu, true),
            fc: FullyConnected::new(&b4 / "fc", c4 * 16, c4, Act::Lrelu, 1.0, 0.0),
            out: FullyConnected::new(&b4 / "out", c4, cmap_dim.max(1), Act::Linear, 1.0, 0.0),
            mapping,
            cmap_dim,
        }
    }
}

impl crate::models::Discriminator for Discriminator {
    fn forward(&self, img: &Tensor, c: &Tensor) -> Tensor {
        let mut x = None;
        for block in &self.blocks {
            x = Some(block.forward(x, img));
        }
        let x = x.expect("resolution 8 or more has at least one block");
        let x = self.conv.forward(&minibatch_std(&x, self.mbstd_group_size));
        let x = self.out.forward(&self.fc.forward(&x.flatten(1, -1)));
        match &self.mapping {
            Some(mapping) => {
                let cmap = mapping.forward(None, c, false, 1.0);
                (x * cmap).sum_dim_intlist([1].as_slice(), false, None) / (self.cmap_dim as f64).sqrt()
            }
            None => x.view([-1]),
        }
    }
}
