//! Running a [`FeatureExtractor`] over an image set in batches.

use candle_core::Tensor;
use labelgan_core::{Error, FeatureExtractor, Progress, Result};

use crate::Features;

/// Most feature values one set may hold in memory (16 GiB of f64).
pub const MAX_VALUES: usize = 1 << 31;

/// Runs `extractor` over `count` images, fetched `batch` at a time by
/// `images(start, n)`, handing each batch's features `[n, dim]` (and class
/// probabilities, if the extractor has them) to `sink`, with progress under `label`.
/// Streaming statistics (FID's) need nothing more; [`extract`] keeps them all.
pub fn extract_each<E: FeatureExtractor + ?Sized>(
    extractor: &E,
    count: usize,
    batch: usize,
    label: &str,
    images: &mut dyn FnMut(usize, usize) -> Result<Tensor>,
    sink: &mut dyn FnMut(&Tensor, Option<&Tensor>) -> Result<()>,
) -> Result<()> {
    if batch == 0 {
        return Err(Error::invalid("feature extraction: batch must be at least 1"));
    }
    let progress = Progress::new(count as u64, label, "images");
    for start in (0..count).step_by(batch) {
        let n = batch.min(count - start);
        let x = images(start, n)?;
        let f = extractor.features(&x)?;
        if f.dims() != [n, extractor.dim()] {
            return Err(Error::invalid(format!(
                "the extractor returned features {:?} for {n} images, expected [{n}, {}]",
                f.dims(),
                extractor.dim()
            )));
        }
        sink(&f, extractor.class_probabilities(&x)?.as_ref())?;
        progress.inc(n as u64);
    }
    progress.finish();
    Ok(())
}

/// The features (and class probabilities, if the extractor has them) of `count`
/// images, as [`extract_each`] hands them out.
pub fn extract<E: FeatureExtractor + ?Sized>(
    extractor: &E,
    count: usize,
    batch: usize,
    label: &str,
    images: &mut dyn FnMut(usize, usize) -> Result<Tensor>,
) -> Result<(Features, Option<Features>)> {
    if count.saturating_mul(extractor.dim()) > MAX_VALUES {
        return Err(Error::invalid(format!(
            "{count} images of {} features each is more than the {MAX_VALUES} values a set may hold",
            extractor.dim()
        )));
    }
    let (mut feats, mut probs, mut all_probs) = (Vec::new(), Vec::new(), true);
    extract_each(extractor, count, batch, label, images, &mut |f, p| {
        feats.push(f.clone());
        match p {
            Some(p) if all_probs => probs.push(p.clone()),
            _ => all_probs = false,
        }
        Ok(())
    })?;
    let cat = |v: &[Tensor]| -> Result<Features> { Features::from_tensor(&Tensor::cat(v, 0)?) };
    let probs = if all_probs && !probs.is_empty() {
        Some(cat(&probs)?)
    } else {
        None
    };
    Ok((cat(&feats)?, probs))
}
