//! Differentiable augmentation of every image D sees (reals and fakes, in D and G phases and
//! the R1 pass), so D cannot memorise a small dataset while G still learns the un-augmented
//! distribution. `diffaugment`: DiffAugment (Zhao et al. 2020). ADA is the other family the
//! config will offer.
mod diffaugment;

#[cfg(test)]
mod tests;

use tch::Tensor;

use gan_core::config::{Augment, DiffAugmentOp, TrainSection};

/// The augmentation a run applies before D.
pub enum Augmenter {
    None,
    DiffAugment(Vec<DiffAugmentOp>),
}

impl Augmenter {
    pub fn from_config(t: &TrainSection) -> Self {
        match t.augment {
            Augment::None => Augmenter::None,
            Augment::DiffAugment => Augmenter::DiffAugment(t.diffaugment_policy.clone()),
        }
    }

    /// The images D is shown: augmented with fresh randomness from torch's generator (reseeded
    /// every step, so a resumed run augments identically).
    pub fn apply(&self, x: &Tensor) -> Tensor {
        match self {
            Augmenter::None => x.shallow_clone(),
            Augmenter::DiffAugment(ops) => diffaugment::apply(x, ops),
        }
    }
}
