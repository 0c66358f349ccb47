//! Differentiable augmentation of every image D sees (reals and fakes, in D and G phases and
//! the R1 pass), so D cannot memorise a small dataset while G still learns the un-augmented
//! distribution: DiffAugment (Zhao et al. 2020) with fixed transforms, or ADA (Karras et al.
//! 2020) with a probability p adapted to D's overfitting.
mod ada;
mod color;
mod diffaugment;
mod geometry;

pub use ada::AdaController;

#[cfg(test)]
mod tests;

use tch::Tensor;

use gan_core::config::{Augment, DiffAugmentOp, TrainSection};

/// The augmentation a run applies before D.
pub enum Augmenter {
    None,
    DiffAugment(Vec<DiffAugmentOp>),
    Ada(AdaController),
}

impl Augmenter {
    pub fn from_config(t: &TrainSection) -> Self {
        match t.augment {
            Augment::None => Augmenter::None,
            Augment::DiffAugment => Augmenter::DiffAugment(t.diffaugment_policy.clone()),
            Augment::Ada => Augmenter::Ada(AdaController {
                p: t.ada_p_init,
                target: t.ada_target,
                interval: t.ada_interval,
                ada_kimg: t.ada_kimg,
                sign_sum: 0.0,
                sign_count: 0.0,
                steps: 0,
            }),
        }
    }

    /// The current augmentation probability (ADA's p; 0 for the others).
    pub fn probability(&self) -> f64 {
        match self {
            Augmenter::Ada(ctrl) => ctrl.p,
            _ => 0.0,
        }
    }

    /// The images D is shown: augmented with fresh randomness from torch's generator (reseeded
    /// every step, so a resumed run augments identically).
    pub fn apply(&self, x: &Tensor) -> Tensor {
        match self {
            Augmenter::None => x.shallow_clone(),
            Augmenter::DiffAugment(ops) => diffaugment::apply(x, ops),
            Augmenter::Ada(ctrl) => ada::apply(x, ctrl.p),
        }
    }
}
