//! Sample diversity: how much G_ema's images of one class differ from each other, relative to
//! how much real images of that class do. It is measured on the sample grid (fixed latents, one
//! row per class) that rank 0 renders every `train.sample_ticks` anyway, so it costs no forward
//! pass and gives a collapse signal at every grid, between the rare evaluations whose recall
//! and coverage are the real measure. A collapsing G draws near-identical images whatever its
//! latent (BigGAN's late-training collapse): their pairwise distance falls toward 0.
//!
//! The distance is the mean absolute difference of two uint8 images' pixels, over 255. It is
//! crude (it sees colour and layout, not semantics), which is why it is only compared with
//! itself: with the reals of the same classes, and with the run's own best.
use serde::{Deserialize, Serialize};

/// A grid's images: rows (one class each when conditional) of uint8 images of equal size.
pub type GridRows = Vec<Vec<Vec<u8>>>;

/// A ratio under this share of the run's best means G's images stopped varying...
pub const DROPPED_SHARE: f64 = 0.5;
/// ...once that best is above this: early in training G draws near-constant images (the mean
/// of the data) before they vary, so a small best says nothing yet.
pub const MEANINGFUL_BEST: f64 = 0.3;

/// Images a pooled measure compares at most (all pairs: 496 at 32).
const POOLED_IMAGES: usize = 32;

/// Mean over all pairs of `images` of their mean absolute pixel difference, in [0, 1]; None
/// with fewer than 2 images.
pub fn mean_distance(images: &[&[u8]]) -> Option<f64> {
    if images.len() < 2 {
        return None;
    }
    let (mut sum, mut pairs) = (0.0, 0u32);
    for (i, a) in images.iter().enumerate() {
        for b in &images[i + 1..] {
            sum += distance(a, b);
            pairs += 1;
        }
    }
    Some(sum / f64::from(pairs))
}

/// Mean absolute difference of two equal-sized uint8 images, over 255.
fn distance(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "images of one grid have one size");
    let total: u64 = a.iter().zip(b).map(|(&x, &y)| u64::from(x.abs_diff(y))).sum();
    total as f64 / (255.0 * a.len().max(1) as f64)
}

/// The reals' diversity a fake grid is compared with: each row's (its class's), and all
/// images' together (for a grid whose rows are not the reals' classes).
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    per_row: Vec<Option<f64>>,
    pooled: Option<f64>,
}

/// A fake grid's diversity relative to the reals'.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Diversity {
    /// The mean of the rows' ratios (or the pooled ratio); 1 = as varied as the data.
    pub ratio: f64,
    /// The row with the lowest ratio (its index in the grid) and that ratio.
    pub lowest_row: usize,
    pub lowest_ratio: f64,
}

impl Reference {
    /// The reals grid's rows (one class each, or random images when unlabelled).
    pub fn of_reals(rows: &GridRows) -> Self {
        let per_row = rows.iter().map(|row| mean_distance(&refs(row))).collect();
        Reference { per_row, pooled: pooled(rows) }
    }

    /// `fakes` relative to the reals. `rows_are_classes`: the fake grid's row r shows the class
    /// of the reals' row r (a conditional G); else all images are compared together. None when
    /// the reals do not vary (a dataset of one image) or a grid has fewer than 2 images a row.
    pub fn ratio(&self, fakes: &GridRows, rows_are_classes: bool) -> Option<Diversity> {
        if !rows_are_classes || fakes.len() != self.per_row.len() {
            let ratio = pooled(fakes)? / self.pooled.filter(|&d| d > 0.0)?;
            return Some(Diversity { ratio, lowest_row: 0, lowest_ratio: ratio });
        }
        let ratios: Vec<(usize, f64)> = fakes
            .iter()
            .zip(&self.per_row)
            .enumerate()
            .filter_map(|(r, (row, real))| Some((r, mean_distance(&refs(row))? / real.filter(|&d| d > 0.0)?)))
            .collect();
        let &(lowest_row, lowest_ratio) = ratios.iter().min_by(|a, b| a.1.total_cmp(&b.1))?;
        let ratio = ratios.iter().map(|(_, r)| r).sum::<f64>() / ratios.len() as f64;
        Some(Diversity { ratio, lowest_row, lowest_ratio })
    }
}

/// Whether a grid's `ratio` says G's images stopped varying, given the run's `best` ratio (of
/// grids after the first tick). The same rule as the `GanSamplesCollapsing` alert.
pub fn collapsed(best: f64, ratio: f64) -> bool {
    best > MEANINGFUL_BEST && ratio < DROPPED_SHARE * best
}

fn refs(images: &[Vec<u8>]) -> Vec<&[u8]> {
    images.iter().map(Vec::as_slice).collect()
}

/// The mean distance of up to [`POOLED_IMAGES`] images spread over the grid's rows and columns
/// (image i of the flattened grid, at a stride that steps across rows).
fn pooled(rows: &GridRows) -> Option<f64> {
    let all: Vec<&[u8]> = rows.iter().flatten().map(Vec::as_slice).collect();
    let stride = all.len().div_ceil(POOLED_IMAGES).max(1);
    let picked: Vec<&[u8]> = all.iter().step_by(stride).copied().collect();
    mean_distance(&picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row of images whose pixels are `shades` (one image each, 12 bytes).
    fn row(shades: &[u8]) -> Vec<Vec<u8>> {
        shades.iter().map(|&s| vec![s; 12]).collect()
    }

    #[test]
    fn distances_are_mean_absolute_pixel_differences_over_255() {
        assert_eq!(mean_distance(&[&[0, 0], &[255, 255]]), Some(1.0));
        assert_eq!(mean_distance(&[&[10, 20], &[10, 20]]), Some(0.0));
        // Pairs (0,51) 0.2, (0,102) 0.4, (51,102) 0.2.
        let d = mean_distance(&[&[0], &[51], &[102]]).unwrap();
        assert!((d - 0.8 / 3.0).abs() < 1e-12, "{d}");
        assert_eq!(mean_distance(&[&[1]]), None);
    }

    #[test]
    fn fakes_as_varied_as_the_reals_score_one_and_identical_fakes_zero() {
        let reals: GridRows = vec![row(&[0, 100, 200]), row(&[50, 60, 70])];
        let reference = Reference::of_reals(&reals);
        let same = reference.ratio(&reals, true).unwrap();
        assert_eq!(same, Diversity { ratio: 1.0, lowest_row: 0, lowest_ratio: 1.0 });
        // Row 1 collapsed to one image, row 0 half as varied as its reals.
        let fakes: GridRows = vec![row(&[50, 100, 150]), row(&[9, 9, 9])];
        let d = reference.ratio(&fakes, true).unwrap();
        assert_eq!((d.lowest_row, d.lowest_ratio), (1, 0.0));
        assert!((d.ratio - 0.25).abs() < 1e-12, "{d:?}");
    }

    #[test]
    fn a_grid_whose_rows_are_not_the_reals_classes_is_compared_pooled() {
        // Reals: two classes that differ from each other but not within.
        let reference = Reference::of_reals(&vec![row(&[0, 0]), row(&[255, 255])]);
        // Per row, nothing varies: no ratio. Pooled, the classes differ.
        assert_eq!(reference.ratio(&vec![row(&[0, 0]), row(&[255, 255])], true), None);
        let pooled = reference.ratio(&vec![row(&[0, 255, 0, 255])], false).unwrap();
        assert!(pooled.ratio > 0.9, "{pooled:?}");
        // A grid of a different row count than the reals' is pooled too.
        assert!(reference.ratio(&vec![row(&[7, 7, 7, 7])], true).unwrap().ratio == 0.0);
    }

    #[test]
    fn collapse_is_a_fall_under_half_a_meaningful_best() {
        assert!(collapsed(0.8, 0.39));
        assert!(!collapsed(0.8, 0.41));
        // Early in training the best is small: a fall from it says nothing yet.
        assert!(!collapsed(0.25, 0.01));
    }
}
