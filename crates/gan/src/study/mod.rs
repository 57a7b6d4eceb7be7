//! Studies: a grid of training configs × seeds run to the same budget, resumable and
//! shardable across machines, gathered into one table and plot (Compare GAN's studies).
//!
//! ```text
//! OUT/study.toml                   the study file as last run
//! OUT/runs/CONFIG/seedS/           one training run each (see [`crate::run`])
//! OUT/scores.csv                   every run's scores: config,seed,kimg,step,...
//! OUT/results.md                   mean ± std over seeds at the end of training
//! OUT/fid.png                      the first score against kimg, per config
//! ```

pub mod config;
pub mod merge;
pub mod plot;
pub mod results;
pub mod runner;
pub mod scores;

pub use config::{Axis, AxisValue, Study, StudyConfig, StudyRun};
pub use labelgan_core::Shard;
pub use merge::merge_studies;
pub use plot::plot_curves;
pub use results::{ConfigResult, ScoreSummary, StudyResults, collect, mean_std};
pub use runner::{StudyReport, run_finished, run_study};
pub use scores::{RunScores, ScoreRow, read_scores};
