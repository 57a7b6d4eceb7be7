//! The S3GAN table from its scored runs: every finished run's final scores
//! (`tools/s3gan_final_scores.sh`: its exported generator, 5,000 images against 5,000
//! held-out objects) gathered per variant as mean ± std over seeds, printed as a
//! markdown table, and FID and class consistency plotted against the labelled share.
//!
//! ```text
//! bash tools/s3gan_final_scores.sh
//! cargo run --release --example s3gan_table
//! ```
//!
//! The variants, their order and their labelled shares come from the study file; a
//! variant without a scored run is listed with a dash.

use std::path::PathBuf;

use clap::Parser;
use labelgan::gan::few_labels::Unlabelled;
use labelgan::gan::study::{Study, StudyRun, mean_std, plot_curves, read_scores};
use labelgan::prelude::*;

#[derive(Parser)]
struct Args {
    /// The study file of the table.
    #[arg(long, default_value = "configs/s3gan/table.toml")]
    study: PathBuf,
    /// The study folder: runs/ (for inferred-label accuracy) and final/ (the scores).
    #[arg(long, default_value = "studies/s3gan")]
    dir: PathBuf,
    /// Where the two plots go.
    #[arg(long, default_value = "docs/experiments")]
    plots: PathBuf,
}

/// The columns: (JSON key of the final scores, header, decimals).
const COLUMNS: [(&str, &str, usize); 6] = [
    ("fid", "FID", 1),
    ("kid", "KID ×10³", 1),
    ("precision", "precision", 3),
    ("recall", "recall", 3),
    ("class_consistency", "class consistency", 3),
    ("fid_per_class_mean", "per-class FID (mean)", 1),
];

/// How a variant's labels are used, in words, and its labelled share in % (`None`
/// when it uses no real labels).
fn labels_of(run: &StudyRun) -> (String, Option<f64>) {
    let (how, share) = label_use(run);
    if run.config.train.rotation_batch_fraction > 0 {
        return (format!("{how}; rotation"), share);
    }
    (how, share)
}

fn label_use(run: &StudyRun) -> (String, Option<f64>) {
    let c = &run.config;
    if !c.model.conditional {
        return ("none".into(), None);
    }
    let pct = 100.0 * c.labels.fraction;
    let how = match c.labels.unlabelled {
        Unlabelled::Random => return ("random".into(), None),
        Unlabelled::Drop => format!("{pct} %, the rest dropped"),
        _ if c.labels.fraction >= 1.0 => "100 %".to_string(),
        Unlabelled::Inferred => format!("{pct} %, the rest inferred"),
        Unlabelled::None if c.train.class_predictor => format!("{pct} %, the rest co-trained"),
        Unlabelled::None => format!("{pct} %"),
    };
    (how, Some(pct))
}

fn cell(v: &[f64], digits: usize) -> String {
    match v.len() {
        0 => "-".into(),
        1 => format!("{:.*}", digits, v[0]),
        _ => {
            let (m, s) = mean_std(v);
            format!("{m:.digits$} ± {s:.digits$}")
        }
    }
}

fn main() -> Result<()> {
    let a = Args::parse();
    let study = Study::load(&a.study)?;
    let names: Vec<String> = study.config_names().into_iter().map(String::from).collect();
    let mut header = vec!["variant", "labels", "seeds"];
    header.extend(COLUMNS.iter().map(|c| c.1));
    header.push("inferred-label accuracy");
    println!("| {} |", header.join(" | "));
    println!("|{}", " --- |".repeat(header.len()));
    // Per variant: its labelled share and the mean FID and class consistency.
    let mut points: Vec<(String, Option<f64>, f64, f64)> = vec![];
    for name in &names {
        let runs: Vec<&StudyRun> = study.runs.iter().filter(|r| &r.name == name).collect();
        let (how, share) = labels_of(runs[0]);
        let mut values = vec![vec![]; COLUMNS.len()];
        let mut inferred = vec![];
        let mut seeds = 0;
        for run in &runs {
            let path = a.dir.join("final").join(format!("{name}-seed{}.json", run.seed));
            if !path.exists() {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let j: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::format(&path, e.to_string()))?;
            seeds += 1;
            for (k, (key, _, _)) in COLUMNS.iter().enumerate() {
                if let Some(v) = j[*key].as_f64() {
                    values[k].push(v);
                }
            }
            if let Some(s) = read_scores(&run.dir(&a.dir).join("scores.csv"))?
                && let Some(last) = s.rows.last()
                && let Some(v) = s.get(last, "inferred_accuracy")
            {
                inferred.push(v);
            }
        }
        let mut row = vec![name.clone(), how, format!("{seeds}/{}", runs.len())];
        for (v, (_, _, digits)) in values.iter().zip(COLUMNS) {
            row.push(cell(v, digits));
        }
        row.push(cell(&inferred, 3));
        println!("| {} |", row.join(" | "));
        if seeds > 0 {
            points.push((name.clone(), share, mean_std(&values[0]).0, mean_std(&values[4]).0));
        }
    }
    // The S3GAN variants as a curve over the labelled share; the others as points.
    let s3gan: Vec<(f64, f64, f64)> = {
        let mut v: Vec<(f64, f64, f64)> = points
            .iter()
            .filter(|p| p.0.starts_with("s3gan_"))
            .filter_map(|p| p.1.map(|x| (x, p.2, p.3)))
            .collect();
        v.sort_by(|x, y| x.0.total_cmp(&y.0));
        v
    };
    for (file, title, y, pick) in [
        (
            "s3gan_fid.png",
            "S3GAN table: FID (5,000 vs 5,000, mean over seeds)",
            "FID",
            0usize,
        ),
        (
            "s3gan_class_consistency.png",
            "S3GAN table: class consistency (mean over seeds)",
            "class consistency",
            1,
        ),
    ] {
        let value = |fid: f64, cc: f64| if pick == 0 { fid } else { cc };
        let mut curves: Vec<(String, Vec<(f64, f64)>)> = vec![(
            "S3GAN".into(),
            s3gan.iter().map(|&(x, f, c)| (x, value(f, c))).collect(),
        )];
        for (name, share, fid, cc) in points.iter().filter(|p| !p.0.starts_with("s3gan_")) {
            let v = value(*fid, *cc);
            if !v.is_finite() {
                continue;
            }
            // Without labels: a flat line across the chart.
            let pts = match share {
                Some(x) => vec![(*x, v)],
                None => vec![(0.0, v), (100.0, v)],
            };
            curves.push((name.clone(), pts));
        }
        let path = a.plots.join(file);
        plot_curves(&path, title, "share of the images labelled (%)", y, &curves)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
