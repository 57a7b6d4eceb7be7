//! HandsOff's and DatasetGAN's fitting steps: where the latents of the labelled images
//! come from.
//!
//! HandsOff inverts labelled *real* images into the generator with any [`Inverter`]
//! (optionally refined per image by the projector), so the labels of the real image
//! are paired with the features of its reconstruction. DatasetGAN labels *generated*
//! images, whose latents are known.
//!
//! References: Xu et al., "HandsOff: Labeled Dataset Generation With No Additional
//! Human Annotations", CVPR 2023; Zhang et al., "DatasetGAN", CVPR 2021.

use std::path::Path;

use candle_core::Tensor;

use labelgan_core::{Error, Generator, Inverter, Result};
use labelgan_dataset::{LabelledSet, Targets};
use labelgan_inversion::{ProjectorConfig, project_in_batches};
use labelgan_lpips::Lpips;

use crate::fitting::{FitOptions, fit_labelers};
use crate::labelers::Labelers;

/// HandsOff's optional second inversion step: per-image latent optimisation (the
/// projector, LPIPS + MSE) starting from the inverter's answer.
#[derive(Debug, Clone)]
pub struct Refinement<'a> {
    /// The perceptual distance the projector minimises (`None`: pixels only, with
    /// `config.lpips_weight` 0).
    pub lpips: Option<&'a Lpips>,
    /// Steps, learning rate, weights, latent space.
    pub config: ProjectorConfig,
    /// Images optimised together (each keeps its own best latent).
    pub batch: usize,
}

impl<'a> Refinement<'a> {
    /// `steps` projector steps in W+ with the default weights (LPIPS and MSE), 16
    /// images at a time.
    pub fn new(lpips: &'a Lpips, steps: usize) -> Self {
        Self {
            lpips: Some(lpips),
            config: ProjectorConfig {
                steps,
                ..ProjectorConfig::default()
            },
            batch: 16,
        }
    }
}

/// Checks that `ws` are `[n, num_ws, w_dim]` for `g` and finite; `what` names them in
/// the error.
pub fn check_latents<G: Generator + ?Sized>(g: &G, ws: &Tensor, n: usize, what: &str) -> Result<()> {
    let s = g.spec();
    if ws.dims() != [n, s.num_ws, s.w_dim] {
        return Err(Error::invalid(format!(
            "{what} are {:?}; expected [{n}, {}, {}] for {n} labelled images and this generator",
            ws.dims(),
            s.num_ws,
            s.w_dim
        )));
    }
    labelgan_core::ensure_finite(ws, what)
}

/// HandsOff's inversion: `images` `[N, C, R, R]` in [-1, 1] to ws `[N, num_ws, w_dim]`
/// with `inverter`, then refined per image when `refine` is given.
pub fn invert<G: Generator, I: Inverter + ?Sized>(
    g: &G,
    inverter: &I,
    images: &Tensor,
    refine: Option<&Refinement<'_>>,
    progress: &mut dyn FnMut(&str),
) -> Result<Tensor> {
    let n = images.dim(0)?;
    let init = inverter.invert(images)?;
    check_latents(g, &init, n, "the inverter's latents")?;
    let Some(r) = refine.filter(|r| r.config.steps > 0) else {
        return Ok(init);
    };
    progress(&format!(
        "refining {n} inversions, {} projector steps each",
        r.config.steps
    ));
    project_in_batches(g, r.lpips, images, &init, &r.config, r.batch, &mut |done, n| {
        progress(&format!("refined {done}/{n} inversions"))
    })
}

/// HandsOff: fits one labeler per label kind of `labelled` on the generator's features
/// of the labelled images' inversions ([`invert`], run only if a labeler must be fitted;
/// with `cache`, fitted labelers are kept there and reused).
pub fn fit_handsoff<G: Generator, I: Inverter + ?Sized>(
    g: &G,
    inverter: &I,
    refine: Option<&Refinement<'_>>,
    labelled: &LabelledSet,
    options: &FitOptions,
    cache: Option<&Path>,
    progress: &mut dyn FnMut(&str),
) -> Result<Labelers> {
    let images = labelled.images.to_device(g.device())?;
    // Both the fitting and the inversion it starts report through `progress`, one after
    // the other.
    let progress = std::cell::RefCell::new(progress);
    let say = |l: &str| (progress.borrow_mut())(l);
    fit_labelers(
        g,
        &labelled.targets,
        options,
        cache,
        &mut || {
            say(&format!("inverting {} labelled images", labelled.len()));
            invert(g, inverter, &images, refine, &mut |l| say(l))
        },
        &mut |l| say(l),
    )
}

/// DatasetGAN: fits one labeler per label kind of `labels` on the generator's features
/// of `ws` `[N, num_ws, w_dim]`, the latents of the N generated images people labelled.
pub fn fit_datasetgan<G: Generator>(
    g: &G,
    ws: &Tensor,
    labels: &Targets,
    options: &FitOptions,
    cache: Option<&Path>,
    progress: &mut dyn FnMut(&str),
) -> Result<Labelers> {
    check_latents(g, ws, labels.len(), "the labelled images' latents")?;
    fit_labelers(g, labels, options, cache, &mut || Ok(ws.clone()), progress)
}
