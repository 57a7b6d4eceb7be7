//! A study file: a base config, settings every run shares, axes of named variants and
//! the seeds; expanded into the grid of runs.
//!
//! ```toml
//! base = "small.toml"              # a training config, relative to this file (optional)
//! seeds = [0, 1, 2]
//! set = ["train.kimg=20"]          # applied to every run, after the base
//!
//! [[axes]]
//! name = "loss"
//! values = [
//!   { name = "ns", set = ["train.loss=non_saturating"] },
//!   { name = "wgan_gp", set = ["train.loss=wasserstein", "train.penalty=wgan_gp"] },
//! ]
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use labelgan_core::{Error, Result};

use crate::TrainingConfig;

/// One variant along an axis: a name and the settings it applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AxisValue {
    /// Short name, part of the run's name.
    pub name: String,
    /// `section.key=value` settings.
    #[serde(default)]
    pub set: Vec<String>,
}

/// One axis of the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Axis {
    /// What varies (a column of the results table).
    pub name: String,
    /// Its variants, in order.
    pub values: Vec<AxisValue>,
}

/// A study as written in its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyConfig {
    /// A training config file the runs start from (relative to the study file).
    #[serde(default)]
    pub base: Option<PathBuf>,
    /// Seeds; every config is trained once per seed.
    pub seeds: Vec<u64>,
    /// Settings every run shares.
    #[serde(default)]
    pub set: Vec<String>,
    /// The grid's axes (the runs are their product).
    #[serde(default)]
    pub axes: Vec<Axis>,
}

/// One run of a study.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyRun {
    /// The config's name: its axis values joined by `-` (`base` without axes).
    pub name: String,
    /// The axis values, one per axis.
    pub values: Vec<String>,
    /// The seed.
    pub seed: u64,
    /// The resolved training config (its `seed` set to `seed`).
    pub config: TrainingConfig,
}

impl StudyRun {
    /// The run's folder under a study folder.
    pub fn dir(&self, study_out: &Path) -> PathBuf {
        study_out
            .join("runs")
            .join(&self.name)
            .join(format!("seed{}", self.seed))
    }
}

/// A loaded study: its file, and every run resolved and validated.
#[derive(Debug, Clone)]
pub struct Study {
    /// As written.
    pub config: StudyConfig,
    /// The file it came from.
    pub path: PathBuf,
    /// Every run: seeds outermost, so that an interrupted study has every config at
    /// the early seeds.
    pub runs: Vec<StudyRun>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

impl Study {
    /// Reads and expands `path`: every run's config is resolved and validated now, so a
    /// bad setting anywhere is an error before any training.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: StudyConfig =
            toml::from_str(&text).map_err(|e| Error::format(path, crate::config::one_line(&e.to_string())))?;
        let bad = |msg: String| Error::format(path, msg);
        if config.seeds.is_empty() {
            return Err(bad("`seeds` is empty: give at least one".into()));
        }
        let mut seen_seeds = config.seeds.clone();
        seen_seeds.sort_unstable();
        seen_seeds.dedup();
        if seen_seeds.len() != config.seeds.len() {
            return Err(bad(format!("`seeds` repeats a seed: {:?}", config.seeds)));
        }
        let mut combos: usize = 1;
        for axis in &config.axes {
            if !valid_name(&axis.name) {
                return Err(bad(format!(
                    "axis name {:?}: use 1-64 letters, digits, _ or .",
                    axis.name
                )));
            }
            if axis.values.is_empty() {
                return Err(bad(format!("axis `{}` has no values", axis.name)));
            }
            for (i, v) in axis.values.iter().enumerate() {
                if !valid_name(&v.name) {
                    return Err(bad(format!(
                        "axis `{}` value name {:?}: use 1-64 letters, digits, _ or .",
                        axis.name, v.name
                    )));
                }
                if axis.values[..i].iter().any(|w| w.name == v.name) {
                    return Err(bad(format!("axis `{}` names `{}` twice", axis.name, v.name)));
                }
            }
            combos = combos.saturating_mul(axis.values.len());
        }
        if combos.saturating_mul(config.seeds.len()) > 10_000 {
            return Err(bad(format!(
                "{combos} configs x {} seeds: more than 10000 runs",
                config.seeds.len()
            )));
        }
        let base = config.base.as_ref().map(|b| match path.parent() {
            Some(dir) => dir.join(b),
            None => b.clone(),
        });
        // The grid in order, the first axis slowest.
        let mut grid: Vec<Vec<&AxisValue>> = vec![vec![]];
        for axis in &config.axes {
            grid = grid
                .into_iter()
                .flat_map(|prefix| {
                    axis.values.iter().map(move |v| {
                        let mut p = prefix.clone();
                        p.push(v);
                        p
                    })
                })
                .collect();
        }
        let mut runs = Vec::with_capacity(grid.len() * config.seeds.len());
        for &seed in &config.seeds {
            for combo in &grid {
                let mut sets = config.set.clone();
                sets.extend(combo.iter().flat_map(|v| v.set.iter().cloned()));
                sets.push(format!("seed={seed}"));
                let values: Vec<String> = combo.iter().map(|v| v.name.clone()).collect();
                let name = if values.is_empty() {
                    "base".to_string()
                } else {
                    values.join("-")
                };
                let resolved =
                    TrainingConfig::load(base.as_deref(), &sets).map_err(|e| bad(format!("config `{name}`: {e}")))?;
                runs.push(StudyRun {
                    name,
                    values,
                    seed,
                    config: resolved,
                });
            }
        }
        Ok(Self {
            config,
            path: path.to_path_buf(),
            runs,
        })
    }

    /// The config names, in grid order.
    pub fn config_names(&self) -> Vec<&str> {
        let first = self.config.seeds[0];
        self.runs
            .iter()
            .filter(|r| r.seed == first)
            .map(|r| r.name.as_str())
            .collect()
    }

    /// The study with only the configs named in `names` (every seed of each, in study
    /// order): to train the runs a comparison needs first. A name the study lacks is an
    /// error naming the ones it has.
    pub fn only(&self, names: &[String]) -> Result<Study> {
        let known = self.config_names();
        if let Some(missing) = names.iter().find(|n| !known.contains(&n.as_str())) {
            return Err(Error::usage(format!(
                "{}: no config `{missing}`; it has {}",
                self.path.display(),
                known.join(", ")
            )));
        }
        Ok(Study {
            config: self.config.clone(),
            path: self.path.clone(),
            runs: self.runs.iter().filter(|r| names.contains(&r.name)).cloned().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("labelgan-study-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn the_grid_is_the_product_of_the_axes_times_the_seeds() {
        write("base.toml", "[model]\narchitecture = \"sndcgan\"\n");
        let p = write(
            "s.toml",
            r#"base = "base.toml"
seeds = [4, 5]
set = ["train.kimg=2"]
[[axes]]
name = "loss"
values = [{ name = "ns", set = ["train.loss=non_saturating"] },
          { name = "hinge", set = ["train.loss=hinge"] },
          { name = "wgan_gp", set = ["train.loss=wasserstein", "train.penalty=wgan_gp"] }]
[[axes]]
name = "sn"
values = [{ name = "sn", set = ["model.d_spectral_norm=true"] }, { name = "nosn", set = ["model.d_spectral_norm=false"] }]
"#,
        );
        let s = Study::load(&p).unwrap();
        assert_eq!(s.runs.len(), 12);
        assert_eq!(
            s.config_names(),
            [
                "ns-sn",
                "ns-nosn",
                "hinge-sn",
                "hinge-nosn",
                "wgan_gp-sn",
                "wgan_gp-nosn"
            ]
        );
        assert_eq!(s.runs[0].seed, 4);
        assert_eq!(s.runs[6].seed, 5, "seeds outermost");
        let r = &s.runs[10];
        assert_eq!((r.name.as_str(), r.seed), ("wgan_gp-sn", 5));
        assert_eq!(r.config.seed, 5);
        assert_eq!(
            r.config.model.architecture,
            crate::Architecture::Sndcgan,
            "from the base"
        );
        assert_eq!(r.config.train.kimg, 2.0);
        assert_eq!(r.config.train.penalty, crate::Penalty::WganGp);
        assert!(r.config.model.d_spectral_norm);
        assert!(!s.runs[11].config.model.d_spectral_norm);
        assert_eq!(r.dir(Path::new("o")), Path::new("o/runs/wgan_gp-sn/seed5"));

        let few = s.only(&["wgan_gp-sn".into(), "ns-sn".into()]).unwrap();
        assert_eq!(few.config_names(), ["ns-sn", "wgan_gp-sn"], "in study order");
        let picked: Vec<(&str, u64)> = few.runs.iter().map(|r| (r.name.as_str(), r.seed)).collect();
        assert_eq!(
            picked,
            [("ns-sn", 4), ("wgan_gp-sn", 4), ("ns-sn", 5), ("wgan_gp-sn", 5)]
        );
        assert_eq!(few.runs[3], s.runs[10], "the same resolved runs");
        let e = s.only(&["hinge".into()]).unwrap_err().to_string();
        assert!(e.contains("no config `hinge`") && e.contains("hinge-sn"), "{e}");
    }

    #[test]
    fn mistakes_are_named_before_any_run() {
        let err = |text: &str| Study::load(&write("bad.toml", text)).unwrap_err().to_string();
        assert!(err("seeds = []").contains("`seeds` is empty"));
        assert!(err("seeds = [1, 1]").contains("repeats a seed"));
        assert!(err("seeds = [0]\n[[axes]]\nname = \"a\"\nvalues = []").contains("axis `a` has no values"));
        assert!(
            err("seeds = [0]\n[[axes]]\nname = \"a\"\nvalues = [{name = \"x\"}, {name = \"x\"}]")
                .contains("names `x` twice")
        );
        assert!(err("seeds = [0]\n[[axes]]\nname = \"a\"\nvalues = [{name = \"x/y\"}]").contains("x/y"));
        let e = err("seeds = [0]\n[[axes]]\nname = \"a\"\nvalues = [{name = \"x\", set = [\"train.lr=1\"]}]");
        assert!(e.contains("config `x`") && e.contains("train.lr"), "{e}");
        assert!(err("seeds = [0]\nbase = \"missing.toml\"").contains("missing.toml"));
        assert!(err("seeds = [0]\nsed = 1").contains("sed"));
    }
}
