//! A run's `scores.csv` (what [`crate::run::train_run`] appends at every interval),
//! read back for studies.

use std::path::Path;

use labelgan_core::{Error, Result};

/// One row of a run's `scores.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRow {
    /// Thousands of real images shown.
    pub kimg: f64,
    /// G steps.
    pub step: u64,
    /// The scores, in the file's column order.
    pub values: Vec<f64>,
}

/// A run's `scores.csv`: its score names and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct RunScores {
    /// Score names (the columns after `kimg,step`).
    pub names: Vec<String>,
    /// Rows in the order written.
    pub rows: Vec<ScoreRow>,
}

impl RunScores {
    /// The value of score `name` in `row`.
    pub fn get(&self, row: &ScoreRow, name: &str) -> Option<f64> {
        self.names.iter().position(|n| n == name).map(|i| row.values[i])
    }
}

/// Reads a run's `scores.csv` (`None` if absent); a malformed line is an error naming
/// the file and line.
pub fn read_scores(path: &Path) -> Result<Option<RunScores>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    if header.len() < 2 || header[0] != "kimg" || header[1] != "step" {
        return Err(Error::format(path, "expected a header starting kimg,step"));
    }
    let names: Vec<String> = header[2..].iter().map(|s| s.to_string()).collect();
    let mut rows = vec![];
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = || Error::format(path, format!("line {}: {line:?}", i + 2));
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != header.len() {
            return Err(bad());
        }
        let values: Vec<f64> = cells[2..]
            .iter()
            .map(|c| c.parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad())?;
        rows.push(ScoreRow {
            kimg: cells[0].parse().map_err(|_| bad())?,
            step: cells[1].parse().map_err(|_| bad())?,
            values,
        });
    }
    Ok(Some(RunScores { names, rows }))
}
