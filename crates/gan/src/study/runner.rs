//! Running a study's grid: each run in its own folder, skipped when finished, resumed
//! when not, one shard of the grid at a time.

use std::path::Path;

use labelgan_core::{Error, Result};

use super::scores::read_scores;
use super::{Shard, Study, StudyRun};
use crate::TrainingConfig;

/// Whether `run` has finished in `dir`: its folder holds the same config (read back,
/// so a file written before a setting existed counts with that setting's default) and
/// scores up to the config's length.
pub fn run_finished(run: &StudyRun, dir: &Path) -> Result<bool> {
    let config = dir.join("config.toml");
    if !config.exists() {
        return Ok(false);
    }
    match TrainingConfig::load(Some(&config), &[]) {
        Ok(written) if written == run.config => {}
        _ => return Ok(false),
    }
    let target = (run.config.train.kimg * 1000.0).round() as u64;
    Ok(read_scores(&dir.join("scores.csv"))?
        .and_then(|s| s.rows.last().map(|r| (r.kimg * 1000.0).round() as u64 >= target))
        .unwrap_or(false))
}

/// What a call of [`run_study`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StudyReport {
    /// Runs trained (to the end) by this call.
    pub trained: usize,
    /// Runs found finished and skipped.
    pub skipped: usize,
    /// Runs of other shards.
    pub other_shards: usize,
    /// Runs that failed, with why.
    pub failed: Vec<(String, String)>,
}

/// Trains this shard's runs of `study` under `out/runs/`, calling `train(run, dir)` for
/// each that has not finished (it resumes what is there). A failed run is reported
/// and the next one goes on; a stop request ends the study at once.
pub fn run_study(
    study: &Study,
    out: &Path,
    shard: Shard,
    train: &mut dyn FnMut(&StudyRun, &Path) -> Result<()>,
) -> Result<StudyReport> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let text = std::fs::read(&study.path).map_err(|e| Error::io(&study.path, e))?;
    labelgan_core::io::write_atomic(&out.join("study.toml"), &text)?;
    let mut report = StudyReport::default();
    let mine = study.runs.iter().enumerate().filter(|(i, _)| shard.holds(*i)).count();
    let mut done_here = 0;
    for (i, run) in study.runs.iter().enumerate() {
        if !shard.holds(i) {
            report.other_shards += 1;
            continue;
        }
        done_here += 1;
        let dir = run.dir(out);
        let label = format!("[{done_here}/{mine}] {} seed {}", run.name, run.seed);
        if run_finished(run, &dir)? {
            report.skipped += 1;
            eprintln!("{label}: finished, skipped");
            continue;
        }
        eprintln!("{label}: training in {}", dir.display());
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        match train(run, &dir) {
            Ok(()) => report.trained += 1,
            Err(e @ Error::Stopped(_)) => return Err(e),
            Err(e) => {
                eprintln!("{label}: failed: {e}");
                report
                    .failed
                    .push((format!("{} seed {}", run.name, run.seed), e.to_string()));
            }
        }
    }
    Ok(report)
}
