//! A factory dataset made on N machines: the filtering blocks are dealt in turn (block
//! `b` to shard `b mod N`), so each shard's images are a fixed set of sample indices
//! whose latents depend only on the seed and the index. Each shard writes its own
//! resumable folder, numbered from 0; [`merge_shards`] joins them into the folder one
//! machine would have written, byte for byte.
//!
//! The labelers are fitted once (a run with `count = 0`) and their folder copied into
//! every shard's `labelers/` ([`copy_labelers`]): a shard then only generates.

use std::path::{Path, PathBuf};

use labelgan_core::{Error, Result, RunLock, RunRecord, Shard};
use labelgan_dataset::{ClassLabels, DatasetWriter, folder_contents};

use crate::config::FactoryConfig;
use crate::generate::dataset_meta;
use crate::record::{LABELERS_DIR, RUN_FILE};
use crate::shard_plan::ShardPlan;

/// Copies the fitted labelers in `from` (a factory folder's `labelers/`) into
/// `out/labelers/`, so that a run in `out` labels with them instead of fitting its
/// own. A file already there with other bytes is refused by name.
pub fn copy_labelers(from: &Path, out: &Path) -> Result<usize> {
    let to = out.join(LABELERS_DIR);
    let files = labelgan_core::io::files_under(from, true)?;
    if files.is_empty() {
        return Err(Error::invalid(format!(
            "{} holds no fitted labelers (fit them with a run of --count 0)",
            from.display()
        )));
    }
    std::fs::create_dir_all(&to).map_err(|e| Error::io(&to, e))?;
    for rel in &files {
        let (src, dst) = (from.join(rel), to.join(rel));
        let bytes = std::fs::read(&src).map_err(|e| Error::io(&src, e))?;
        if dst.exists() {
            let there = std::fs::read(&dst).map_err(|e| Error::io(&dst, e))?;
            if there != bytes {
                return Err(Error::invalid(format!(
                    "{} differs from {}: this folder was labelled by other labelers; start over in a new folder",
                    dst.display(),
                    src.display()
                )));
            }
            continue;
        }
        labelgan_core::io::write_atomic(&dst, &bytes)?;
    }
    Ok(files.len())
}

/// One shard's folder, read.
struct ShardFolder {
    dir: PathBuf,
    record: RunRecord,
    config: FactoryConfig,
    resolution: usize,
    writer: DatasetWriter,
}

/// The image size a finished shard records in its `keypoints.json` (written last).
fn finished_resolution(dir: &Path, shard: Shard) -> Result<usize> {
    let path = dir.join("keypoints.json");
    let unfinished = || {
        Error::invalid(format!(
            "shard {shard} ({}) has not finished: run it to the end first",
            dir.display()
        ))
    };
    if !path.exists() {
        return Err(unfinished());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let meta: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::format(&path, e.to_string()))?;
    meta["resolution"]
        .as_u64()
        .map(|r| r as usize)
        .ok_or_else(|| Error::format(&path, "no resolution"))
}

fn read_record(dir: &Path) -> Result<RunRecord> {
    let path = dir.join(RUN_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::format(&path, format!("run record: {e}")))
}

/// The record with its dataset setting's `shard` removed: what one machine's run of
/// the whole dataset records.
fn unsharded(record: &RunRecord) -> RunRecord {
    let mut r = record.clone();
    r.settings.retain(|k, _| !k.starts_with("dataset.shard."));
    r
}

/// The dataset setting of a record (stored flattened, `dataset.block` and so on).
fn dataset_setting(record: &RunRecord) -> Option<serde_json::Result<FactoryConfig>> {
    let mut root = serde_json::Map::new();
    for (key, value) in &record.settings {
        let Some(rest) = key.strip_prefix("dataset.") else {
            continue;
        };
        let mut parts: Vec<&str> = rest.split('.').collect();
        let last = parts.pop()?;
        let mut at = &mut root;
        for p in parts {
            at = at
                .entry(p.to_string())
                .or_insert_with(|| serde_json::Value::Object(Default::default()))
                .as_object_mut()?;
        }
        at.insert(last.to_string(), value.clone());
    }
    (!root.is_empty()).then(|| serde_json::from_value(serde_json::Value::Object(root)))
}

/// Joins the finished shard folders `shards` (any order; every shard of one run, each
/// once) into `out`: images renumbered in dataset order, manifest, `keypoints.json`,
/// `classes.json`, contact sheet, the labelers and the run record, exactly the bytes
/// one machine's run writes. Shards of different runs, unfinished or damaged shards,
/// missing ones, shards labelled by different labelers and an `out` holding another
/// run are refused by name. Resumable: a merge stopped (by `progress` returning
/// `false`, or a kill) continues where it stopped. `progress(done, count)` is called
/// after every image. Returns the number of images in `out`.
pub fn merge_shards(shards: &[PathBuf], out: &Path, progress: &mut dyn FnMut(usize, usize) -> bool) -> Result<usize> {
    if shards.is_empty() {
        return Err(Error::invalid("no shard folders to merge"));
    }
    let mut folders = Vec::with_capacity(shards.len());
    for dir in shards {
        let record = read_record(dir)?;
        let config: FactoryConfig = dataset_setting(&record)
            .transpose()
            .map_err(|e| Error::format(dir.join(RUN_FILE), format!("dataset setting: {e}")))?
            .ok_or_else(|| Error::format(dir.join(RUN_FILE), "no dataset setting: not a factory folder"))?;
        let shard = config
            .shard
            .ok_or_else(|| Error::invalid(format!("{} is not a shard (made without --shard)", dir.display())))?;
        if shard.n != shards.len() {
            return Err(Error::invalid(format!(
                "{} is shard {shard} but {} folders were given: merge all {} shards of the run",
                dir.display(),
                shards.len(),
                shard.n
            )));
        }
        let resolution = finished_resolution(dir, shard)?;
        let writer = DatasetWriter::open(dir, resolution)?;
        folders.push(ShardFolder {
            dir: dir.clone(),
            record,
            config,
            resolution,
            writer,
        });
    }
    folders.sort_by_key(|f| f.config.shard.map(|s| s.k));
    let first = &folders[0];
    for (i, f) in folders.iter().enumerate() {
        let k = f.config.shard.map_or(0, |s| s.k);
        if k != i + 1 {
            return Err(Error::invalid(format!(
                "shard {}/{} is missing (or given twice: {})",
                i + 1,
                folders.len(),
                f.dir.display()
            )));
        }
        if let Some((name, a, b)) = unsharded(&f.record).difference(&unsharded(&first.record)) {
            return Err(Error::invalid(format!(
                "{} and {} are shards of different runs: {name} = {b} vs {a}",
                first.dir.display(),
                f.dir.display()
            )));
        }
        if f.resolution != first.resolution {
            return Err(Error::invalid(format!(
                "{} holds {} px images, {} {} px",
                f.dir.display(),
                f.resolution,
                first.dir.display(),
                first.resolution
            )));
        }
        let want = ShardPlan::new(&f.config).len();
        if f.writer.done() != want || !f.writer.damaged().is_empty() {
            return Err(Error::invalid(format!(
                "shard {k} ({}) has {} of its {want} images{}: run it to the end first",
                f.dir.display(),
                f.writer.done(),
                if f.writer.damaged().is_empty() {
                    ""
                } else {
                    ", some damaged"
                }
            )));
        }
        if folder_contents(&f.dir.join(LABELERS_DIR))? != folder_contents(&first.dir.join(LABELERS_DIR))? {
            return Err(Error::invalid(format!(
                "{} and {} were labelled by different labelers: fit once and pass the same --labelers to every shard",
                first.dir.display(),
                f.dir.display()
            )));
        }
    }
    if out.join("manifest.jsonl").exists() && !out.join(RUN_FILE).exists() {
        return Err(Error::invalid(format!(
            "{} already holds a dataset without a run record: merge into a new folder",
            out.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let _lock = RunLock::acquire(out)?;
    let whole = FactoryConfig {
        shard: None,
        ..first.config.clone()
    };
    // The run's record first: a folder holding another run is refused, the same run's
    // unfinished merge resumed.
    unsharded(&first.record).check_or_write(out, RUN_FILE, "merge into a new folder")?;
    copy_labelers(&first.dir.join(LABELERS_DIR), out)?;
    let resolution = first.resolution;
    let mut w = DatasetWriter::open(out, resolution)?;
    if let Some(&i) = w.damaged().first() {
        return Err(Error::invalid(format!(
            "{}: image {i} was altered or removed since it was merged; merge into a new folder",
            out.display()
        )));
    }
    let plan = ShardPlan::new(&first.config);
    for index in w.done()..whole.count {
        let (k, local) = plan.locate(index);
        let f = &folders[k - 1];
        w.append_from(&f.dir, &f.writer.entries()[local])?;
        if !progress(w.done(), whole.count) {
            return Ok(w.done());
        }
    }
    if let Some(labels) = ClassLabels::read(&first.dir)? {
        w.write_class_labels(labels.classes)?;
    }
    w.finish(dataset_meta(&whole, resolution))?;
    Ok(w.done())
}
