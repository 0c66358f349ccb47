//! The labels of the fakes G trains on. StyleGAN2-ADA's training loop gives each fake the label
//! of a random training image (`all_gen_c` in `training_loop.py`); BigGAN-PyTorch draws labels
//! uniformly (SPECS.md 3.4). The two agree on balanced data; on an imbalanced dataset each
//! architecture trains as its reference does.
use tch::{Device, Kind, Tensor};

use gan_core::config::{Arch, RunConfig};
use gan_core::data::classes::ClassDistribution;

pub enum FakeLabels {
    /// Unconditional: every label is 0.
    Unconditional,
    /// Uniform over `num_classes`.
    Uniform { num_classes: i64 },
    /// The label of a random one of `num_images` dataset images sorted by label, whose
    /// cumulative class counts sit on the device.
    OfRandomImages { cumulative: Tensor, num_images: i64 },
}

impl FakeLabels {
    /// The drawing `cfg` asks for; `mix` is the dataset's class mix (counted when conditional).
    pub fn new(cfg: &RunConfig, mix: Option<&ClassDistribution>, device: Device) -> Self {
        match mix {
            _ if !cfg.model.conditional => FakeLabels::Unconditional,
            Some(mix) if cfg.model.arch == Arch::Stylegan2 => {
                let cumulative: Vec<i64> = mix.cumulative().iter().map(|&c| c as i64).collect();
                FakeLabels::OfRandomImages {
                    cumulative: Tensor::from_slice(&cumulative).to_device(device),
                    num_images: mix.num_images() as i64,
                }
            }
            _ => FakeLabels::Uniform { num_classes: i64::from(cfg.data.num_classes) },
        }
    }

    /// `n` labels on `device`, drawn from torch's generator of `draw_on` (the host, when a GPU
    /// step must match a CPU one).
    pub fn draw(&self, n: i64, draw_on: Device, device: Device) -> Tensor {
        match self {
            FakeLabels::Unconditional => Tensor::zeros([n], (Kind::Int64, draw_on)),
            FakeLabels::Uniform { num_classes } => Tensor::randint(*num_classes, [n], (Kind::Int64, draw_on)),
            FakeLabels::OfRandomImages { cumulative, num_images } => {
                let image = Tensor::randint(*num_images, [n], (Kind::Int64, draw_on));
                class_of_images(cumulative, &image.to_device(device))
            }
        }
        .to_device(device)
    }
}

/// The labels of images of the dataset sorted by label: class k for cumulative[k - 1] <= image <
/// cumulative[k].
fn class_of_images(cumulative: &Tensor, images: &Tensor) -> Tensor {
    images.searchsorted(cumulative, false, true, "right", None::<Tensor>)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_labels_are_those_of_random_images() {
        let cumulative = Tensor::from_slice(&[2i64, 2, 5]); // class 1 has no images
        let classes = class_of_images(&cumulative, &Tensor::arange(5, (Kind::Int64, Device::Cpu)));
        assert_eq!(Vec::<i64>::try_from(&classes).unwrap(), [0, 0, 2, 2, 2]);
    }
}
