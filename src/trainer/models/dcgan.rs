//! Conditional DCGAN with a projection discriminator: the small network of the CPU demo and the
//! tests, structured like its big siblings (per-resolution blocks, channels from channel_base and
//! channel_max) so the training loop treats every family alike.
//!
//! G: [z, embed(c)] -> linear -> 4x4 -> per block: upsample x2, conv3x3, lrelu, pixel norm
//!    (twice) -> 1x1 conv to RGB -> tanh.
//! D: 1x1 conv from RGB -> per block: conv3x3, lrelu, conv3x3, lrelu, avg-pool x2 -> 4x4 ->
//!    linear -> lrelu -> logit + <embed(c), h> (projection, Miyato & Koyama 2018).
use tch::nn::{self, Module};
use tch::Tensor;

use super::layers::{downsample2, lrelu, pixel_norm, upsample2};
use super::NetSpec;

fn conv(path: nn::Path, c_in: i64, c_out: i64, kernel: i64) -> nn::Conv2D {
    nn::conv2d(path, c_in, c_out, kernel, nn::ConvConfig { padding: kernel / 2, ..Default::default() })
}

struct UpBlock {
    conv0: nn::Conv2D,
    conv1: nn::Conv2D,
}

pub struct Generator {
    z_dim: i64,
    embed: Option<nn::Embedding>,
    fc: nn::Linear,
    c4: i64,
    blocks: Vec<UpBlock>,
    torgb: nn::Conv2D,
}

impl Generator {
    pub fn new(spec: &NetSpec, p: nn::Path) -> Self {
        let c4 = spec.channels_at(4);
        let embed =
            (spec.c_dim > 0).then(|| nn::embedding(&p / "embed", spec.c_dim, spec.z_dim, Default::default()));
        let fc_in = if embed.is_some() { 2 * spec.z_dim } else { spec.z_dim };
        let fc = nn::linear(&p / "fc", fc_in, c4 * 16, Default::default());
        let mut c_in = c4;
        let blocks = spec
            .block_resolutions()
            .map(|res| {
                let c_out = spec.channels_at(res);
                let bp = &p / format!("b{res}");
                let block = UpBlock {
                    conv0: conv(&bp / "conv0", c_in, c_out, 3),
                    conv1: conv(&bp / "conv1", c_out, c_out, 3),
                };
                c_in = c_out;
                block
            })
            .collect();
        let torgb = conv(&p / "torgb", c_in, spec.channels, 1);
        Generator { z_dim: spec.z_dim, embed, fc, c4, blocks, torgb }
    }
}

impl super::Generator for Generator {
    fn forward(&self, z: &Tensor, c: &Tensor) -> Tensor {
        let mut x = pixel_norm(z);
        if let Some(embed) = &self.embed {
            x = Tensor::cat(&[x, pixel_norm(&embed.forward(c))], 1);
        }
        let n = z.size()[0];
        let mut h = pixel_norm(&lrelu(&self.fc.forward(&x)).view([n, self.c4, 4, 4]));
        for block in &self.blocks {
            h = upsample2(&h);
            h = pixel_norm(&lrelu(&block.conv0.forward(&h)));
            h = pixel_norm(&lrelu(&block.conv1.forward(&h)));
        }
        self.torgb.forward(&h).tanh()
    }

    fn z_dim(&self) -> i64 {
        self.z_dim
    }
}

struct DownBlock {
    conv0: nn::Conv2D,
    conv1: nn::Conv2D,
}

pub struct Discriminator {
    fromrgb: nn::Conv2D,
    blocks: Vec<DownBlock>,
    fc: nn::Linear,
    out: nn::Linear,
    embed: Option<nn::Embedding>,
}

impl Discriminator {
    pub fn new(spec: &NetSpec, p: nn::Path) -> Self {
        let c_top = spec.channels_at(spec.resolution);
        let fromrgb = conv(&p / "fromrgb", spec.channels, c_top, 1);
        let mut resolutions: Vec<i64> = spec.block_resolutions().collect();
        resolutions.reverse();
        let blocks = resolutions
            .iter()
            .map(|&res| {
                let (c_in, c_out) = (spec.channels_at(res), spec.channels_at(res / 2));
                let bp = &p / format!("b{res}");
                DownBlock {
                    conv0: conv(&bp / "conv0", c_in, c_in, 3),
                    conv1: conv(&bp / "conv1", c_in, c_out, 3),
                }
            })
            .collect();
        let c4 = spec.channels_at(4);
        let fc = nn::linear(&p / "fc", c4 * 16, c4, Default::default());
        let out = nn::linear(&p / "out", c4, 1, Default::default());
        let embed = (spec.c_dim > 0).then(|| nn::embedding(&p / "embed", spec.c_dim, c4, Default::default()));
        Discriminator { fromrgb, blocks, fc, out, embed }
    }
}

impl super::Discriminator for Discriminator {
    fn per_image(&self) -> bool {
        true
    }
    fn forward(&self, x: &Tensor, c: &Tensor) -> Tensor {
        let mut h = lrelu(&self.fromrgb.forward(x));
        for block in &self.blocks {
            h = lrelu(&block.conv0.forward(&h));
            h = downsample2(&lrelu(&block.conv1.forward(&h)));
        }
        let h = lrelu(&self.fc.forward(&h.flatten(1, -1)));
        let logit = self.out.forward(&h).squeeze_dim(1);
        match &self.embed {
            Some(embed) => logit + (embed.forward(c) * &h).sum_dim_intlist(1, false, None),
            None => logit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Discriminator as _, Generator as _};
    use tch::{Device, Kind};

    fn spec() -> NetSpec {
        NetSpec {
            z_dim: 16,
            resolution: 16,
            channels: 3,
            c_dim: 4,
            channel_base: 256,
            channel_max: 32,
            biggan: Default::default(),
            stylegan2: crate::models::stylegan2::StyleGan2Spec::cifar(0),
        }
    }

    #[test]
    fn shapes_and_parameter_names() {
        let vs = nn::VarStore::new(Device::Cpu);
        let g = Generator::new(&spec(), vs.root() / "G");
        let d = Discriminator::new(&spec(), vs.root() / "D");
        let z = Tensor::randn([5, 16], (Kind::Float, Device::Cpu));
        let c = Tensor::from_slice(&[0i64, 1, 2, 3, 0]);
        let img = g.forward(&z, &c);
        assert_eq!(img.size(), [5, 3, 16, 16]);
        assert!(img.abs().max().double_value(&[]) <= 1.0);
        assert_eq!(d.forward(&img, &c).size(), [5]);
        let names = vs.variables();
        for name in
            ["G.embed.weight", "G.b16.conv1.weight", "G.torgb.bias", "D.b8.conv0.weight", "D.embed.weight"]
        {
            assert!(names.contains_key(name), "missing {name}");
        }
    }

    #[test]
    fn labels_change_the_output() {
        let vs = nn::VarStore::new(Device::Cpu);
        let g = Generator::new(&spec(), vs.root() / "G");
        let z = Tensor::randn([1, 16], (Kind::Float, Device::Cpu));
        let a = g.forward(&z, &Tensor::from_slice(&[0i64]));
        let b = g.forward(&z, &Tensor::from_slice(&[1i64]));
        assert!((a - b).abs().sum(Kind::Float).double_value(&[]) > 1e-3);
    }
}
