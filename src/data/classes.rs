//! The class distribution of a labelled dataset, for drawing the labels of fakes as the
//! reference does: the label of a uniformly random training image (StyleGAN2-ADA's
//! `get_label(np.random.randint(len(dataset)))`, in its metrics (SPECS.md 1.3) and its training
//! loop). On a balanced dataset that is uniform over the classes; on an imbalanced one,
//! fakes follow the real data's mix, which FID against the real statistics assumes.
use super::ImageSource;
use crate::config::DataSection;
use crate::error::{Error, Result};
use crate::rng::SplitMix64;

/// Cumulative class counts: `cumulative[k]` images have a label of at most k.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassDistribution {
    cumulative: Vec<u64>,
}

impl ClassDistribution {
    /// Counts the labels of every image of `source`, the dataset `data` names (labels only; no
    /// pixels are decoded where the source stores labels apart).
    pub fn of(data: &DataSection, source: &dyn ImageSource) -> Result<Self> {
        let fail = |message: String| Error::Dataset {
            path: data.path.clone().unwrap_or_else(|| "generated data".into()),
            message,
        };
        let classes = source.num_classes();
        if classes == 0 || source.is_empty() {
            return Err(fail("fake labels follow the dataset's labels, but it has none".into()));
        }
        let mut counts = vec![0u64; classes as usize];
        for index in 0..source.len() {
            let label = source.label(index);
            let slot = counts.get_mut(label as usize).ok_or_else(|| {
                fail(format!("image {index} has label {label}, but the dataset has {classes} classes"))
            })?;
            *slot += 1;
        }
        Ok(Self::from_counts(&counts))
    }

    /// From per-class image counts.
    pub fn from_counts(counts: &[u64]) -> Self {
        let cumulative = counts
            .iter()
            .scan(0u64, |total, &c| {
                *total += c;
                Some(*total)
            })
            .collect();
        ClassDistribution { cumulative }
    }

    /// Images counted (the length of the dataset).
    pub fn num_images(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// `cumulative[k]`: images with a label of at most k (for drawing on a device).
    pub fn cumulative(&self) -> &[u64] {
        &self.cumulative
    }

    /// The label of image `image` (< `num_images`) of the dataset sorted by label.
    pub fn class_of_sorted_image(&self, image: u64) -> u32 {
        self.cumulative.partition_point(|&c| c <= image) as u32
    }

    /// A label drawn as the reference draws one: that of a uniformly random image.
    pub fn draw(&self, rng: &mut SplitMix64) -> u32 {
        self.class_of_sorted_image(rng.below(self.num_images()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generated::GeneratedShapes;

    #[test]
    fn labels_follow_the_dataset_mix() {
        let dist = ClassDistribution::from_counts(&[1, 0, 3]);
        let classes: Vec<u32> = (0..4).map(|i| dist.class_of_sorted_image(i)).collect();
        assert_eq!(classes, [0, 2, 2, 2], "an empty class is never drawn");
        let mut rng = SplitMix64::new(9);
        let mut seen = [0u32; 3];
        (0..40_000).for_each(|_| seen[dist.draw(&mut rng) as usize] += 1);
        assert_eq!(seen[1], 0);
        let share = f64::from(seen[2]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.01, "class 2 holds 3 of 4 images: drawn {share}");
    }

    #[test]
    fn counts_come_from_the_source_labels() {
        let shapes = GeneratedShapes { seed: 1, len: 10, resolution: 8, channels: 3, num_classes: 4 };
        let data: DataSection = serde_norway::from_str("{source: generated, resolution: 8}").unwrap();
        let dist = ClassDistribution::of(&data, &shapes).unwrap();
        assert_eq!(dist.cumulative(), [3, 6, 8, 10]);
        for index in 0..10 {
            let mut pixels = vec![0; shapes.image_bytes()];
            assert_eq!(
                shapes.label(index),
                shapes.read(index, &mut pixels).label,
                "label() agrees with read()"
            );
        }
        let unlabelled = GeneratedShapes { num_classes: 0, ..shapes };
        let err = ClassDistribution::of(&data, &unlabelled).unwrap_err().to_string();
        assert!(err.contains("generated data") && err.contains("has none"), "{err}");
    }
}
