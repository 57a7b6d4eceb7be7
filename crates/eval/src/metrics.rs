//! Accumulating metrics.

use labelgan_core::{Error, Result};
use serde::Serialize;

/// A confusion matrix over `classes` (rows: truth, columns: prediction).
#[derive(Debug, Clone)]
pub struct Confusion {
    /// Number of classes.
    pub classes: usize,
    /// Truth pixels of this id are left out ([`labelgan_core::DEFAULT_IGNORE_INDEX`]).
    pub ignore_index: Option<u32>,
    counts: Vec<u64>,
}

/// Per-class IoU and their mean.
#[derive(Debug, Clone, Serialize)]
pub struct IouReport {
    /// IoU per class; `None` for classes absent from both truth and prediction.
    pub iou: Vec<Option<f64>>,
    /// Mean over the classes with an IoU.
    pub miou: f64,
    /// Share of pixels labelled right.
    pub pixel_accuracy: f64,
}

impl Confusion {
    /// An empty confusion matrix over `classes` classes; truth pixels of class 255
    /// (the default ignore index) are left out.
    pub fn new(classes: usize) -> Self {
        Self::with_ignore_index(classes, labelgan_core::DEFAULT_IGNORE_INDEX)
    }

    /// An empty confusion matrix that leaves out truth pixels of `ignore_index`.
    pub fn with_ignore_index(classes: usize, ignore_index: Option<u32>) -> Self {
        Self {
            classes,
            ignore_index,
            counts: vec![0; classes * classes],
        }
    }

    /// Adds one image's (or any number of) pixels.
    pub fn add(&mut self, truth: &[u32], pred: &[u32]) -> Result<()> {
        if truth.len() != pred.len() {
            return Err(Error::invalid(format!(
                "truth has {} pixels, prediction {}",
                truth.len(),
                pred.len()
            )));
        }
        let c = self.classes as u32;
        for (&t, &p) in truth.iter().zip(pred) {
            if Some(t) == self.ignore_index {
                continue;
            }
            if t >= c || p >= c {
                return Err(Error::invalid(format!("class id {} out of range 0..{c}", t.max(p))));
            }
            self.counts[(t * c + p) as usize] += 1;
        }
        Ok(())
    }

    /// Per-class IoU, their mean over the classes present, and pixel accuracy.
    pub fn report(&self) -> IouReport {
        let c = self.classes;
        let mut iou = vec![None; c];
        let (mut total, mut right) = (0u64, 0u64);
        for (k, slot) in iou.iter_mut().enumerate() {
            let tp = self.counts[k * c + k];
            let row: u64 = self.counts[k * c..(k + 1) * c].iter().sum();
            let col: u64 = (0..c).map(|r| self.counts[r * c + k]).sum();
            let union = row + col - tp;
            if union > 0 {
                *slot = Some(tp as f64 / union as f64);
            }
            total += row;
            right += tp;
        }
        let present: Vec<f64> = iou.iter().flatten().copied().collect();
        IouReport {
            miou: present.iter().sum::<f64>() / present.len().max(1) as f64,
            iou,
            pixel_accuracy: right as f64 / total.max(1) as f64,
        }
    }
}

/// Percentage of correct keypoints within `alpha * size` pixels.
#[derive(Debug, Clone)]
pub struct Pck {
    /// Thresholds as fractions of the image size.
    pub alphas: Vec<f64>,
    hits: Vec<u64>,
    total: u64,
}

impl Pck {
    /// PCK at each of `alphas` (fractions of the image size).
    pub fn new(alphas: &[f64]) -> Self {
        Self {
            alphas: alphas.to_vec(),
            hits: vec![0; alphas.len()],
            total: 0,
        }
    }

    /// Adds one image's keypoints (x, y in pixels) for an image `size` pixels wide.
    pub fn add(&mut self, truth: &[[f32; 2]], pred: &[[f32; 2]], size: usize) -> Result<()> {
        if truth.len() != pred.len() {
            return Err(Error::invalid(format!(
                "{} true keypoints, {} predicted",
                truth.len(),
                pred.len()
            )));
        }
        for (t, p) in truth.iter().zip(pred) {
            let d = (((t[0] - p[0]) as f64).powi(2) + ((t[1] - p[1]) as f64).powi(2)).sqrt();
            for (h, a) in self.hits.iter_mut().zip(&self.alphas) {
                if d <= a * size as f64 {
                    *h += 1;
                }
            }
            self.total += 1;
        }
        Ok(())
    }

    /// PCK per alpha, in [0, 1].
    pub fn report(&self) -> Vec<f64> {
        self.hits.iter().map(|&h| h as f64 / self.total.max(1) as f64).collect()
    }
}

/// Depth RMSE and AbsRel over pixels whose true depth is positive.
#[derive(Debug, Clone, Default)]
pub struct DepthError {
    sq: f64,
    rel: f64,
    n: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
/// Depth errors over the pixels scored.
pub struct DepthReport {
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean of `|d - d*| / d*`.
    pub abs_rel: f64,
    /// Pixels scored.
    pub pixels: u64,
}

impl DepthError {
    /// Adds every pixel of one image (`truth` and `pred` row-major, same length).
    pub fn add(&mut self, truth: &[f32], pred: &[f32]) -> Result<()> {
        self.add_where(truth, pred, |_| true)
    }

    /// Adds only foreground pixels: those whose true depth is below the far value 1.0
    /// (the background of the dataset format, 65535 in its 16-bit PNGs).
    pub fn add_foreground(&mut self, truth: &[f32], pred: &[f32]) -> Result<()> {
        self.add_where(truth, pred, |t| t < 1.0)
    }

    fn add_where(&mut self, truth: &[f32], pred: &[f32], keep: impl Fn(f32) -> bool) -> Result<()> {
        if truth.len() != pred.len() {
            return Err(Error::invalid(format!(
                "truth has {} pixels, prediction {}",
                truth.len(),
                pred.len()
            )));
        }
        for (&t, &p) in truth.iter().zip(pred).filter(|(t, _)| keep(**t)) {
            if !p.is_finite() {
                return Err(Error::invalid("predicted depth is NaN or infinite"));
            }
            if t > 0.0 {
                let e = (p - t) as f64;
                self.sq += e * e;
                self.rel += e.abs() / t as f64;
                self.n += 1;
            }
        }
        Ok(())
    }

    /// RMSE and AbsRel over everything added.
    pub fn report(&self) -> DepthReport {
        let n = self.n.max(1) as f64;
        DepthReport {
            rmse: (self.sq / n).sqrt(),
            abs_rel: self.rel / n,
            pixels: self.n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_by_hand() {
        let mut c = Confusion::new(3);
        // truth 0 0 1 1 ; pred 0 1 1 1 -> class 0: 1/2, class 1: 2/3, class 2 absent.
        c.add(&[0, 0, 1, 1], &[0, 1, 1, 1]).unwrap();
        let r = c.report();
        assert_eq!(r.iou, vec![Some(0.5), Some(2.0 / 3.0), None]);
        assert!((r.miou - (0.5 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert!((r.pixel_accuracy - 0.75).abs() < 1e-12);
        assert!(c.add(&[3], &[0]).is_err());
        assert!(c.add(&[0], &[0, 1]).is_err());
        // Unlabelled truth pixels (255 by default) are left out, whatever is predicted.
        c.add(&[255, 255], &[2, 0]).unwrap();
        assert_eq!(c.report().iou, r.iou);
        let mut strict = Confusion::with_ignore_index(3, None);
        assert!(strict.add(&[255], &[0]).is_err());
    }

    #[test]
    fn pck_thresholds() {
        let mut p = Pck::new(&[0.05, 0.1]);
        // Size 100: thresholds 5 and 10 pixels; distances 3, 7, 12.
        p.add(
            &[[0.0, 0.0], [10.0, 10.0], [50.0, 50.0]],
            &[[3.0, 0.0], [10.0, 17.0], [62.0, 50.0]],
            100,
        )
        .unwrap();
        assert_eq!(p.report(), vec![1.0 / 3.0, 2.0 / 3.0]);
    }

    #[test]
    fn depth_errors() {
        let mut d = DepthError::default();
        d.add(&[1.0, 2.0, 0.0], &[1.5, 1.0, 9.0]).unwrap();
        let r = d.report();
        assert_eq!(r.pixels, 2);
        assert!((r.rmse - ((0.25 + 1.0) / 2.0f64).sqrt()).abs() < 1e-12);
        assert!((r.abs_rel - (0.5 + 0.5) / 2.0).abs() < 1e-12);
        assert!(d.add(&[1.0], &[f32::NAN]).is_err());

        // Foreground only: the far value 1.0 is left out, NaN there is not looked at.
        let mut f = DepthError::default();
        f.add_foreground(&[0.5, 1.0, 0.25], &[0.75, f32::NAN, 0.25]).unwrap();
        let r = f.report();
        assert_eq!(r.pixels, 2);
        assert!((r.rmse - (0.0625f64 / 2.0).sqrt()).abs() < 1e-12);
        assert!(f.add_foreground(&[0.5], &[f32::NAN]).is_err());
        assert!(f.add_foreground(&[0.5, 0.5], &[0.5]).is_err());
    }
}
