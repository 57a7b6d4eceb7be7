//! Merging the shards of a study run on several machines into one folder.

use std::path::{Path, PathBuf};

use labelgan_core::{Error, Result};

use super::Study;
use super::runner::run_finished;

/// Copies every run of `study` finished in one of `shards` (study folders) into `out`,
/// where it is not finished already; a run finished in two places with different
/// scores is an error naming both. Returns the number of runs copied.
pub fn merge_studies(study: &Study, out: &Path, shards: &[PathBuf]) -> Result<usize> {
    let mut copied = 0;
    for run in &study.runs {
        let target = run.dir(out);
        let mut have = run_finished(run, &target)?.then(|| target.clone());
        for shard in shards {
            let from = run.dir(shard);
            if !run_finished(run, &from)? {
                continue;
            }
            if let Some(existing) = &have {
                let read =
                    |d: &Path| std::fs::read(d.join("scores.csv")).map_err(|e| Error::io(d.join("scores.csv"), e));
                if read(existing)? != read(&from)? {
                    return Err(Error::invalid(format!(
                        "{} seed {} finished in both {} and {} with different scores",
                        run.name,
                        run.seed,
                        existing.display(),
                        from.display()
                    )));
                }
                continue;
            }
            std::fs::create_dir_all(&target).map_err(|e| Error::io(&target, e))?;
            for entry in std::fs::read_dir(&from).map_err(|e| Error::io(&from, e))? {
                let entry = entry.map_err(|e| Error::io(&from, e))?;
                if entry.file_type().map_err(|e| Error::io(entry.path(), e))?.is_file() {
                    let bytes = std::fs::read(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
                    labelgan_core::io::write_atomic(&target.join(entry.file_name()), &bytes)?;
                }
            }
            have = Some(from);
            copied += 1;
        }
    }
    Ok(copied)
}
