//! What made a factory folder (a `RunRecord` in `OUT/run.json`, written by
//! `pipeline::factory_record`): the run's settings, the method, and fingerprints of the
//! generator ([`generator_fingerprint`]), the labelled set and the latents. A resume
//! with any of them different is refused before anything is written, so a folder never
//! mixes two runs; [`clear_run`] starts over.

use std::path::Path;

use labelgan_core::record::fingerprint_tensor;
use labelgan_core::{Generator, Result, RunLock};

use crate::sampling::synthesize_candidates;

/// The record's file name in a factory folder.
pub const RUN_FILE: &str = "run.json";

/// The folder of fitted labelers (and calibration) inside a factory folder.
pub const LABELERS_DIR: &str = "labelers";

/// What a factory run writes into its folder, all of which [`clear_run`] removes.
pub const RUN_OUTPUTS: [&str; 10] = [
    RUN_FILE,
    labelgan_dataset::CLASS_LABELS_FILE,
    "manifest.jsonl",
    "keypoints.json",
    labelgan_core::image_io::CONTACT_SHEET,
    "images",
    "masks",
    "depth",
    "previews",
    LABELERS_DIR,
];

/// Latent seed of the probe image that fingerprints a generator.
const PROBE_SEED: u64 = 0x9e0b_e5ee_d000_0001;

/// A fingerprint of any generator: of the image and feature taps it makes from one
/// fixed latent. Two generators that differ in any weight that matters differ here.
pub fn generator_fingerprint<G: Generator + ?Sized>(g: &G) -> Result<String> {
    let (_, _, syn) = synthesize_candidates(g, PROBE_SEED, None, 0, 1, 1.0)?;
    let mut parts = vec![fingerprint_tensor(&syn.image)?];
    for t in syn.taps.features().iter() {
        parts.push(t.name.clone());
        parts.push(fingerprint_tensor(&t.tensor)?);
    }
    Ok(labelgan_core::record::fingerprint_parts(
        parts.iter().map(|s| s.as_bytes()),
    ))
}

/// Removes what a factory run wrote into `out` ([`RUN_OUTPUTS`]; nothing else), so the
/// next run starts over. Refused while another run holds the folder.
pub fn clear_run(out: &Path) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    let _lock = RunLock::acquire(out)?;
    labelgan_core::io::remove_outputs(out, &RUN_OUTPUTS)
}
