//! The whole factory in one call: fit the labelers (HandsOff or DatasetGAN), calibrate
//! the segmentation labeler's class priors, generate the filtered dataset. What
//! `labelgan factory` and the quickstart run.

use std::path::Path;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use labelgan_core::record::fingerprint_tensor;
use labelgan_core::{Generator, Inverter, Result, RunLock, RunRecord};
use labelgan_dataset::LabelledSet;

use crate::calibration::{CalibrationReport, PriorCalibration, calibrate_segmentation};
use crate::config::FactoryConfig;
use crate::fitting::FitOptions;
use crate::generate::{DatasetProgress, generate_dataset};
use crate::handsoff::{Refinement, fit_datasetgan, fit_handsoff};
use crate::labelers::Labelers;
use crate::record::{LABELERS_DIR, RUN_FILE, generator_fingerprint};

/// Where the latents of the labelled images come from.
#[derive(Debug, Clone)]
pub enum Method<'a, I: ?Sized> {
    /// HandsOff: real images, inverted by `inverter` (and refined when asked).
    HandsOff {
        /// Images to latents.
        inverter: &'a I,
        /// Per-image projector steps after the inverter.
        refine: Option<Refinement<'a>>,
    },
    /// DatasetGAN: generated images, made from these latents `[N, num_ws, w_dim]`.
    DatasetGan {
        /// The labelled images' latents, in the labelled set's order.
        ws: Tensor,
    },
}

/// Every setting of a factory run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FactoryRun {
    /// How the labelers are fitted.
    pub fit: FitOptions,
    /// Class-prior calibration (`rounds: 0`: off). Its seed, psi and class are the
    /// dataset's.
    pub calibration: PriorCalibration,
    /// What to generate.
    pub dataset: FactoryConfig,
    /// Fingerprints of inputs the library cannot see (e.g. the inverter's weight file,
    /// `labelgan_core::record::fingerprint_path`), recorded with the run so that a
    /// resume with other ones is refused. The generator, the labelled set and the
    /// DatasetGAN latents are fingerprinted by [`run_factory`] itself.
    #[serde(default)]
    pub inputs: std::collections::BTreeMap<String, String>,
}

impl FactoryRun {
    /// Checks every setting before any work (sizes bounded, values finite).
    pub fn validate(&self) -> Result<()> {
        self.fit.validate()?;
        self.calibration.validate()?;
        self.dataset.validate()
    }
}

/// What happened, as it happens.
#[derive(Debug, Clone, Copy)]
pub enum FactoryEvent<'a> {
    /// A line about fitting or calibration.
    Log(&'a str),
    /// An image was written.
    Written(&'a DatasetProgress),
}

/// What [`run_factory`] made.
#[derive(Debug, Clone)]
pub struct FactoryOutput {
    /// The labelers the dataset was labelled with (calibrated).
    pub labelers: Labelers,
    /// The calibration, when the labelled set has masks and it was on.
    pub calibration: Option<CalibrationReport>,
    /// Images in the folder.
    pub images: usize,
}

/// Fits labelers on `labelled` by `method`, calibrates the segmentation labeler to the
/// labelled masks' class shares, and generates `run.dataset.count` images into `out`.
/// Fitted labelers and the calibration are kept in `out/labelers` and reused, and the
/// dataset resumes, so a run that was stopped continues where it was. The run's
/// settings and input fingerprints are recorded in `out/run.json` ([`factory_record`]);
/// a resume with anything different is refused before any work, naming the setting
/// ([`clear_run`](crate::record::clear_run) starts over). `events` returning `false` on
/// [`FactoryEvent::Written`] stops the run (resumable).
pub fn run_factory<G: Generator, I: Inverter + ?Sized>(
    g: &G,
    method: &Method<'_, I>,
    labelled: &LabelledSet,
    run: &FactoryRun,
    out: &Path,
    events: &mut dyn FnMut(FactoryEvent<'_>) -> bool,
) -> Result<FactoryOutput> {
    run.validate()?;
    // The labelled set against the settings, before the folder is touched.
    crate::fitting::segmentation_classes(&labelled.targets, &run.fit)?;
    // One run at a time in `out`: a second is refused, naming the holder.
    let _lock = RunLock::acquire(out)?;
    factory_record(g, method, labelled, run)?.check_or_write(
        out,
        RUN_FILE,
        "start over in a new folder (or pass --restart)",
    )?;
    let cache = out.join(LABELERS_DIR);
    let mut log = |l: &str| {
        events(FactoryEvent::Log(l));
    };
    let mut labelers = match method {
        Method::HandsOff { inverter, refine } => fit_handsoff(
            g,
            *inverter,
            refine.as_ref(),
            labelled,
            &run.fit,
            Some(&cache),
            &mut log,
        )?,
        Method::DatasetGan { ws } => fit_datasetgan(g, ws, &labelled.targets, &run.fit, Some(&cache), &mut log)?,
    };
    let calibration = match &labelled.targets.masks {
        Some(masks) => {
            let opts = PriorCalibration {
                seed: run.dataset.seed,
                psi: run.dataset.psi,
                class: run.dataset.class,
                ..run.calibration.clone()
            };
            calibrate_segmentation(
                g,
                &mut labelers,
                masks,
                run.fit.ignore_index,
                &opts,
                Some(&cache),
                &mut log,
            )?
        }
        None => None,
    };
    if let Some(rep) = &calibration {
        log(&rep.summary());
    }
    labelers.set_precision(run.dataset.precision);
    let images = generate_dataset(g, &labelers, &run.dataset, out, &mut |p| {
        events(FactoryEvent::Written(p))
    })?;
    Ok(FactoryOutput {
        labelers,
        calibration,
        images,
    })
}

/// The record of a factory run: `run`'s settings (`run.inputs` included), the method
/// (with its refinement's settings, or the DatasetGAN latents' fingerprint), and the
/// fingerprints of the generator and the labelled set.
pub fn factory_record<G: Generator, I: Inverter + ?Sized>(
    g: &G,
    method: &Method<'_, I>,
    labelled: &LabelledSet,
    run: &FactoryRun,
) -> Result<RunRecord> {
    let mut r = RunRecord::new()
        .setting("fit", &run.fit)?
        .setting("calibration", &run.calibration)?
        .setting("dataset", &run.dataset)?
        .input("generator", generator_fingerprint(g)?)
        .input("labelled set", labelled.fingerprint()?);
    for (k, v) in &run.inputs {
        r = r.input(k, v.clone());
    }
    r = match method {
        Method::HandsOff { refine, .. } => {
            let r = r.setting("method", &"handsoff")?;
            match refine {
                Some(f) => r
                    .setting("refine", &f.config)?
                    .setting("refine.batch", &f.batch)?
                    .setting("refine.lpips", &f.lpips.is_some())?,
                None => r.setting("refine", &"none")?,
            }
        }
        Method::DatasetGan { ws } => r
            .setting("method", &"datasetgan")?
            .input("latents", fingerprint_tensor(ws)?),
    };
    Ok(r)
}
