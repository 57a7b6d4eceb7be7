//! Sample, generate, label, filter, write: the dataset a generator and its labelers
//! make, streamed to a resumable folder.

use std::path::Path;
use std::time::Instant;

use labelgan_core::image_io::tensor_to_images;
use labelgan_core::{Error, Generator, PixelLabeler, Result};
use labelgan_dataset::{DatasetWriter, Sample};

use crate::config::FactoryConfig;
use crate::filter::keep_most_certain;
use crate::labelers::Labelers;
use crate::sampling::synthesize_candidates;
use crate::shard_plan::ShardPlan;

/// Most memory one block of candidates may take (8 GB).
const MAX_BLOCK_BYTES: f64 = 8e9;

/// Progress of [`generate_dataset`].
#[derive(Debug, Clone, Copy)]
pub struct DatasetProgress {
    /// Images in the folder.
    pub written: usize,
    /// Images asked for.
    pub count: usize,
    /// Images written per second in this run.
    pub rate: f64,
    /// Seconds left at that rate.
    pub eta_seconds: f64,
}

/// Generates and labels candidates `start..start + n`: per candidate its z, the image,
/// the labels and the score.
fn label_candidates<G: Generator + ?Sized, L: PixelLabeler>(
    g: &G,
    labelers: &Labelers<L>,
    cfg: &FactoryConfig,
    start: u64,
    n: usize,
) -> Result<Vec<Sample>> {
    let r = g.spec().resolution;
    let mut out = Vec::with_capacity(n);
    for s in (0..n).step_by(cfg.batch) {
        let k = cfg.batch.min(n - s);
        let (zs, classes, syn) = synthesize_candidates(g, cfg.seed, cfg.class, start + s as u64, k, cfg.psi)?;
        let labelled = labelers.label(&syn.taps.features(), r)?;
        let images = tensor_to_images(&syn.image)?;
        for (j, (labels, score)) in labelled.into_iter().enumerate() {
            out.push(Sample {
                index: 0,
                candidate: start + (s + j) as u64,
                seed: cfg.seed,
                z: zs[j].flatten_all()?.to_vec1()?,
                rgb: images[j].to_rgb8().into_raw(),
                labels,
                score,
                class: classes[j],
            });
        }
    }
    Ok(out)
}

/// The samples that filtering block `block` keeps, in candidate order, each with its
/// dataset index (`block * keep + j`).
fn kept_block<G: Generator + ?Sized, L: PixelLabeler>(
    g: &G,
    labelers: &Labelers<L>,
    cfg: &FactoryConfig,
    block: usize,
) -> Result<Vec<Sample>> {
    let keep = cfg.keep_per_block();
    let cands = label_candidates(g, labelers, cfg, (block * cfg.block) as u64, cfg.block)?;
    let scores: Vec<f32> = cands.iter().map(|c| c.score).collect();
    let kept = keep_most_certain(&scores, keep);
    let mut cands: Vec<Option<Sample>> = cands.into_iter().map(Some).collect();
    kept.iter()
        .enumerate()
        .map(|(j, &ci)| {
            let mut s = cands[ci]
                .take()
                .ok_or_else(|| Error::invalid("internal: candidate kept twice"))?;
            s.index = block * keep + j;
            Ok(s)
        })
        .collect()
}

/// Samples, labels, filters ([`crate::filter`]) and writes `cfg.count` images to `out`
/// (with `cfg.shard`, that shard's share of them: [`crate::shards`]) with any generator
/// and labelers, resuming a run that was interrupted (a restart
/// regenerates the block it was in and skips what the manifest already holds). Images
/// in the manifest whose files are missing or altered are made again first.
/// `progress` is called after every image; returning `false` stops the run (the folder
/// stays resumable). Returns the number of images written.
pub fn generate_dataset<G: Generator + ?Sized, L: PixelLabeler>(
    g: &G,
    labelers: &Labelers<L>,
    cfg: &FactoryConfig,
    out: &Path,
    progress: &mut dyn FnMut(&DatasetProgress) -> bool,
) -> Result<usize> {
    cfg.validate()?;
    if labelers.is_empty() {
        return Err(Error::invalid("the factory needs at least one labeler"));
    }
    // A class the generator cannot make is named before anything is written.
    crate::sampling::candidate_class(g, cfg.class, 0)?;
    let r = g.spec().resolution;
    // A block of candidates (image, mask, depth) is held in memory.
    let block_bytes = cfg.block as f64 * (r * r) as f64 * 11.0;
    if block_bytes > MAX_BLOCK_BYTES {
        return Err(Error::invalid(format!(
            "a block of {} candidates at {r} px needs {:.1} GB of memory; use a smaller block (at most {})",
            cfg.block,
            block_bytes / 1e9,
            (MAX_BLOCK_BYTES / ((r * r) as f64 * 11.0)) as usize
        )));
    }
    let mut w = DatasetWriter::open(out, r)?;
    let keep = cfg.keep_per_block();
    // The folder holds the images of this shard's blocks (all blocks without one),
    // numbered from 0: the folder's block j is the dataset's block `plan.block(j)`.
    let plan = ShardPlan::new(cfg);
    let total = plan.len();
    let local = |j: usize, s: Sample| Sample {
        index: j * keep + (s.index - plan.block(j) * keep),
        ..s
    };
    // Images whose files were deleted or altered since they were written: their blocks
    // are made again and the files rewritten, byte-identical.
    let mut blocks: Vec<usize> = w.damaged().iter().map(|i| i / keep).collect();
    blocks.dedup();
    for j in blocks {
        for s in kept_block(g, labelers, cfg, plan.block(j))? {
            let s = local(j, s);
            if w.damaged().contains(&s.index) {
                w.rewrite(&s)?;
            }
        }
    }
    let started = Instant::now();
    let first = w.done();
    while w.done() < total {
        let j = w.done() / keep;
        for s in kept_block(g, labelers, cfg, plan.block(j))? {
            if s.index >= cfg.count {
                continue;
            }
            let s = local(j, s);
            if s.index < w.done() {
                continue;
            }
            w.write(&s)?;
            let done_here = w.done() - first;
            let rate = done_here as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let p = DatasetProgress {
                written: w.done(),
                count: total,
                rate,
                eta_seconds: (total - w.done()) as f64 / rate.max(1e-9),
            };
            if !progress(&p) {
                return Ok(w.done());
            }
        }
    }
    let c_dim = g.spec().c_dim;
    if c_dim > 0 {
        w.write_class_labels(labelgan_dataset::ClassLabels::numbered_names(c_dim))?;
    }
    w.finish(dataset_meta(cfg, r))?;
    Ok(w.done())
}

/// What `keypoints.json` records about how a dataset was made (besides each image's
/// keypoints).
pub(crate) fn dataset_meta(cfg: &FactoryConfig, resolution: usize) -> serde_json::Value {
    serde_json::json!({
        "generator_resolution": resolution,
        "config": cfg,
        "filtering": format!(
            "per block of {} candidates, the {} most uncertain dropped",
            cfg.block,
            cfg.block - cfg.keep_per_block()
        ),
    })
}
