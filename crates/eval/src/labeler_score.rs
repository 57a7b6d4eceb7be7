//! A pixel labeler's own quality on real labelled images: invert each image into the
//! generator, label the reconstruction's features, compare with the real mask. This
//! is how well HandsOff's labeler does on the images it would label if they were
//! generated, before any downstream model.

use labelgan_core::{Error, Generator, Inverter, Labels, NoiseMode, PixelLabeler, Result};
use labelgan_dataset::LabelledSet;

use crate::metrics::Confusion;

/// Images inverted and labelled at a time.
const BATCH: usize = 16;

/// The mIoU of segmentation labeler `labeler` on `test` (with masks), each image
/// inverted by `inverter` and resynthesised by `g` with constant noise.
pub fn labeler_miou<G: Generator + ?Sized, I: Inverter + ?Sized, L: PixelLabeler + ?Sized>(
    g: &G,
    inverter: &I,
    labeler: &L,
    test: &LabelledSet,
    classes: usize,
) -> Result<f64> {
    let masks = test
        .targets
        .masks
        .as_ref()
        .ok_or_else(|| Error::invalid("scoring a segmentation labeler needs test images with masks"))?;
    let mut c = Confusion::new(classes);
    let n = test.len();
    for s in (0..n).step_by(BATCH) {
        let k = BATCH.min(n - s);
        let ws = inverter.invert(&test.images.narrow(0, s, k)?.to_device(g.device())?)?;
        let taps = g.synthesize(&ws, NoiseMode::Const)?.taps.features();
        let Labels::Segmentation(cls) = labeler.predict(&taps)?.labels else {
            return Err(Error::invalid("the labeler does not predict segmentation masks"));
        };
        for (j, v) in cls.flatten_from(1)?.to_vec2::<u32>()?.iter().enumerate() {
            c.add(&masks[s + j], v)?;
        }
    }
    Ok(c.report().miou)
}
