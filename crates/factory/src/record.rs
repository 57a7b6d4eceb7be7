//! What made a factory folder ([`RunRecord`] in `OUT/run.json`): the run's settings,
//! the method, and fingerprints of the generator, the labelled set and the latents.
//! A resume with any of them different is refused before anything is written, so a
//! folder never mixes two runs; [`clear_run`] starts over.

use std::path::Path;

use labelgan_core::record::fingerprint_tensor;
use labelgan_core::{Error, Generator, Inverter, Result, RunLock, RunRecord};
use labelgan_dataset::LabelledSet;

use crate::pipeline::{FactoryRun, Method};
use crate::sampling::synthesize_candidates;

/// The record's file name in a factory folder.
pub const RUN_FILE: &str = "run.json";

/// What a factory run writes into its folder, all of which [`clear_run`] removes.
pub const RUN_OUTPUTS: [&str; 9] = [
    RUN_FILE,
    "manifest.jsonl",
    "keypoints.json",
    labelgan_core::image_io::CONTACT_SHEET,
    "images",
    "masks",
    "depth",
    "previews",
    "labelers",
];

/// Latent seed of the probe image that fingerprints a generator.
const PROBE_SEED: u64 = 0x9e0b_e5ee_d000_0001;

/// A fingerprint of any generator: of the image and feature taps it makes from one
/// fixed latent. Two generators that differ in any weight that matters differ here.
pub fn generator_fingerprint<G: Generator + ?Sized>(g: &G) -> Result<String> {
    let (_, syn) = synthesize_candidates(g, PROBE_SEED, 0, 1, 1.0)?;
    let mut parts = vec![fingerprint_tensor(&syn.image)?];
    for t in syn.taps.features().iter() {
        parts.push(t.name.clone());
        parts.push(fingerprint_tensor(&t.tensor)?);
    }
    Ok(labelgan_core::record::fingerprint_parts(
        parts.iter().map(|s| s.as_bytes()),
    ))
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

/// Removes what a factory run wrote into `out` ([`RUN_OUTPUTS`]; nothing else), so the
/// next run starts over. Refused while another run holds the folder.
pub fn clear_run(out: &Path) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    let _lock = RunLock::acquire(out)?;
    for name in RUN_OUTPUTS {
        let p = out.join(name);
        let res = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else if p.exists() {
            std::fs::remove_file(&p)
        } else {
            Ok(())
        };
        res.map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}
