//! A study's results: every run's `scores.csv` gathered into one table, the mean ± std
//! over seeds at the end of training as `results.md`, and the curves as a plot.

use std::fmt::Write as _;
use std::path::Path;

use labelgan_core::Result;

use super::plot::plot_curves;
use super::runner::run_finished;
use super::scores::{RunScores, read_scores};
use super::{Study, StudyRun};

/// Mean and sample standard deviation (0 for one value; NaN mean for none).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// A score at the end of training over a config's finished seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreSummary {
    /// The score's name.
    pub name: String,
    /// Mean over the seeds that have the score (NaN without any).
    pub mean: f64,
    /// Sample standard deviation (0 for one seed).
    pub std: f64,
}

/// One config's results.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigResult {
    /// The config's name.
    pub name: String,
    /// Seeds finished.
    pub seeds: usize,
    /// Each score at the end of training.
    pub scores: Vec<ScoreSummary>,
}

/// What [`collect`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyResults {
    /// Per config, in grid order.
    pub configs: Vec<ConfigResult>,
    /// Runs finished, of all.
    pub finished: usize,
    /// Runs in the study.
    pub total: usize,
}

/// Gathers every run of `study` found under `out` into `out/scores.csv`,
/// `out/results.md` and `out/fid.png` (the curves of the first score, FID when
/// scored with an extractor); unfinished runs appear in the curves, not the table.
pub fn collect(study: &Study, out: &Path) -> Result<StudyResults> {
    // Runs may score different things (class consistency only when conditional, the
    // predictor's accuracy only with co-training): the columns are the union, in order
    // of first appearance, and a run's missing score is an empty cell.
    let mut per_run: Vec<(&StudyRun, RunScores, bool)> = vec![];
    let mut names: Vec<String> = vec![];
    for run in &study.runs {
        let dir = run.dir(out);
        let Some(scores) = read_scores(&dir.join("scores.csv"))? else {
            continue;
        };
        for n in &scores.names {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        let finished = run_finished(run, &dir)?;
        per_run.push((run, scores, finished));
    }
    let mut csv = format!("config,seed,kimg,step,{}\n", names.join(","));
    for (run, scores, _) in &per_run {
        for r in &scores.rows {
            let v: Vec<String> = names
                .iter()
                .map(|n| scores.get(r, n).map_or(String::new(), |x| x.to_string()))
                .collect();
            let _ = writeln!(csv, "{},{},{},{},{}", run.name, run.seed, r.kimg, r.step, v.join(","));
        }
    }
    labelgan_core::io::write_atomic(&out.join("scores.csv"), csv.as_bytes())?;

    let mut configs = vec![];
    for name in study.config_names() {
        let done: Vec<&RunScores> = per_run
            .iter()
            .filter(|(r, _, f)| r.name == name && *f)
            .map(|(_, s, _)| s)
            .collect();
        let scores = names
            .iter()
            .map(|n| {
                let last: Vec<f64> = done
                    .iter()
                    .filter_map(|s| s.rows.last().and_then(|r| s.get(r, n)))
                    .collect();
                let (mean, std) = if last.is_empty() {
                    (f64::NAN, f64::NAN)
                } else {
                    mean_std(&last)
                };
                ScoreSummary {
                    name: n.clone(),
                    mean,
                    std,
                }
            })
            .collect();
        configs.push(ConfigResult {
            name: name.to_string(),
            seeds: done.len(),
            scores,
        });
    }
    let results = StudyResults {
        configs,
        finished: per_run.iter().filter(|(_, _, f)| *f).count(),
        total: study.runs.len(),
    };
    labelgan_core::io::write_atomic(&out.join("results.md"), results_markdown(study, &results).as_bytes())?;
    if let Some(first) = names.first() {
        let curves: Vec<(String, Vec<(f64, f64)>)> = study
            .config_names()
            .iter()
            .map(|name| {
                let mut points: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
                for (_, s, _) in per_run.iter().filter(|(r, _, _)| r.name == *name) {
                    for row in &s.rows {
                        if let Some(v) = s.get(row, first) {
                            points.entry((row.kimg * 1000.0).round() as u64).or_default().push(v);
                        }
                    }
                }
                let mean: Vec<(f64, f64)> = points
                    .into_iter()
                    .map(|(k, v)| (k as f64 / 1000.0, mean_std(&v).0))
                    .collect();
                (name.to_string(), mean)
            })
            .filter(|(_, p)| !p.is_empty())
            .collect();
        let title = study
            .path
            .file_stem()
            .map_or("study".into(), |s| s.to_string_lossy().to_string());
        plot_curves(
            &out.join(format!("{first}.png")),
            &format!("{title}: {first} (mean over seeds)"),
            "kimg (thousands of real images shown)",
            first,
            &curves,
        )?;
    }
    Ok(results)
}

/// The results table: a column per axis, the seeds finished, and mean ± std of each
/// score; the best mean of the first score in bold.
fn results_markdown(study: &Study, r: &StudyResults) -> String {
    let axes: Vec<&str> = study.config.axes.iter().map(|a| a.name.as_str()).collect();
    let score_names: Vec<&str> = r
        .configs
        .first()
        .map(|c| c.scores.iter().map(|s| s.name.as_str()).collect())
        .unwrap_or_default();
    let best = r
        .configs
        .iter()
        .filter(|c| c.seeds > 0)
        .map(|c| c.scores.first().map_or(f64::NAN, |s| s.mean))
        .filter(|v| v.is_finite())
        .fold(f64::INFINITY, f64::min);
    let mut md = format!(
        "# Study `{}`\n\n{} of {} runs finished; scores at the end of training, mean ± std over the finished seeds (of {:?}).\n\n",
        study.path.display(),
        r.finished,
        r.total,
        study.config.seeds
    );
    let mut header: Vec<String> = if axes.is_empty() {
        vec!["config".into()]
    } else {
        axes.iter().map(|s| s.to_string()).collect()
    };
    header.push("seeds".into());
    header.extend(score_names.iter().map(|s| s.to_string()));
    let _ = writeln!(md, "| {} |", header.join(" | "));
    let _ = writeln!(md, "|{}", " --- |".repeat(header.len()));
    let per_seed = study.runs.len() / study.config.seeds.len();
    for (c, run) in r.configs.iter().zip(&study.runs[..per_seed]) {
        let mut cells: Vec<String> = if axes.is_empty() {
            vec![c.name.clone()]
        } else {
            run.values.clone()
        };
        cells.push(format!("{}/{}", c.seeds, study.config.seeds.len()));
        for (i, s) in c.scores.iter().enumerate() {
            let cell = match c.seeds {
                _ if !s.mean.is_finite() => "-".to_string(),
                1 => format!("{:.4}", s.mean),
                _ => format!("{:.4} ± {:.4}", s.mean, s.std),
            };
            cells.push(if i == 0 && s.mean == best {
                format!("**{cell}**")
            } else {
                cell
            });
        }
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    md
}
