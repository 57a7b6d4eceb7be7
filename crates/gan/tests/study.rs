//! A study end to end with a stand-in trainer (writes what a run writes): runs skipped
//! when finished, shards that together cover the grid and merge, the results table's
//! mean ± std and the plot.

use std::path::{Path, PathBuf};

use labelgan_core::Result;
use labelgan_gan::study::{Shard, Study, StudyRun, collect, merge_studies, run_finished, run_study};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("labelgan-study-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn study_file(dir: &Path) -> PathBuf {
    let p = dir.join("s.toml");
    std::fs::write(
        &p,
        r#"seeds = [0, 1]
set = ["train.kimg=2", "eval.every_kimg=1"]
[[axes]]
name = "loss"
values = [{ name = "ns", set = ["train.loss=non_saturating"] }, { name = "hinge", set = ["train.loss=hinge"] }]
"#,
    )
    .unwrap();
    p
}

/// Writes a finished run: its config and two score rows, FID 10 * (config + 1) + seed
/// at the end.
fn fake_train(run: &StudyRun, dir: &Path) -> Result<()> {
    std::fs::write(dir.join("config.toml"), run.config.to_toml()?).unwrap();
    let fid = if run.name == "ns" { 10.0 } else { 20.0 } + run.seed as f64;
    std::fs::write(
        dir.join("scores.csv"),
        format!("kimg,step,fid,kid\n1.024,32,{},0.5\n2.016,63,{fid},0.25\n", fid * 2.0),
    )
    .unwrap();
    Ok(())
}

#[test]
fn runs_are_skipped_when_finished_and_results_gathered() {
    let dir = tmp("whole");
    let study = Study::load(&study_file(&dir)).unwrap();
    let out = dir.join("out");
    let mut calls = vec![];
    let report = run_study(&study, &out, Shard::ALL, &mut |r, d| {
        calls.push((r.name.clone(), r.seed));
        fake_train(r, d)
    })
    .unwrap();
    assert_eq!(report.trained, 4);
    assert_eq!(
        calls,
        [
            ("ns".into(), 0),
            ("hinge".into(), 0),
            ("ns".into(), 1),
            ("hinge".into(), 1)
        ]
    );
    let again = run_study(&study, &out, Shard::ALL, &mut |_, _| {
        panic!("finished runs are skipped")
    })
    .unwrap();
    assert_eq!(again.skipped, 4);

    let results = collect(&study, &out).unwrap();
    assert_eq!((results.finished, results.total), (4, 4));
    let hinge = &results.configs[1];
    assert_eq!((hinge.name.as_str(), hinge.seeds), ("hinge", 2));
    assert_eq!(hinge.scores[0].name, "fid");
    assert!((hinge.scores[0].mean - 20.5).abs() < 1e-12, "mean of 20 and 21");
    assert!(
        (hinge.scores[0].std - 0.5f64.sqrt()).abs() < 1e-12,
        "sample std of 20 and 21"
    );
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("| ns | 2/2 | **10.5000 ± 0.7071** |"), "{md}");
    assert!(md.contains("| hinge | 2/2 | 20.5000 ± 0.7071 |"), "{md}");
    let csv = std::fs::read_to_string(out.join("scores.csv")).unwrap();
    assert!(
        csv.starts_with("config,seed,kimg,step,fid,kid\nns,0,1.024,32,20,0.5\n"),
        "{csv}"
    );
    let png = image::open(out.join("fid.png")).unwrap();
    assert_eq!((png.width(), png.height()), (960, 600));

    // A config file written before a setting existed counts with its default.
    let dir0 = study.runs[0].dir(&out);
    let text = std::fs::read_to_string(dir0.join("config.toml")).unwrap();
    let older: String = text
        .lines()
        .filter(|l| !l.starts_with("embed_dim"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(older, text);
    std::fs::write(dir0.join("config.toml"), older).unwrap();
    assert!(run_finished(&study.runs[0], &dir0).unwrap());
    // A longer run is no longer finished; a changed setting neither.
    let mut longer = study.runs[0].clone();
    longer.config.train.kimg = 3.0;
    assert!(!run_finished(&longer, &study.runs[0].dir(&out)).unwrap());
}

#[test]
fn shards_cover_the_grid_and_merge() {
    let dir = tmp("shards");
    let study = Study::load(&study_file(&dir)).unwrap();
    let (a, b) = (dir.join("a"), dir.join("b"));
    let ra = run_study(&study, &a, "1/2".parse().unwrap(), &mut fake_train).unwrap();
    let rb = run_study(&study, &b, "2/2".parse().unwrap(), &mut fake_train).unwrap();
    assert_eq!((ra.trained, ra.other_shards, rb.trained), (2, 2, 2));
    let merged = dir.join("merged");
    assert_eq!(merge_studies(&study, &merged, &[a.clone(), b]).unwrap(), 4);
    assert_eq!(collect(&study, &merged).unwrap().finished, 4);
    assert_eq!(
        merge_studies(&study, &merged, std::slice::from_ref(&a)).unwrap(),
        0,
        "nothing new"
    );
    // The same run finished with other scores is a conflict, named.
    let run = &study.runs[0];
    std::fs::write(run.dir(&a).join("scores.csv"), "kimg,step,fid,kid\n2.016,63,99,0.1\n").unwrap();
    let err = merge_studies(&study, &merged, &[a]).unwrap_err().to_string();
    assert!(err.contains("ns seed 0 finished in both"), "{err}");
}

#[test]
fn a_failed_run_is_reported_and_the_rest_go_on() {
    let dir = tmp("failed");
    let study = Study::load(&study_file(&dir)).unwrap();
    let out = dir.join("out");
    let report = run_study(&study, &out, Shard::ALL, &mut |r, d| {
        if r.name == "hinge" && r.seed == 0 {
            return Err(labelgan_core::Error::invalid("diverged"));
        }
        fake_train(r, d)
    })
    .unwrap();
    assert_eq!(report.trained, 3);
    assert_eq!(
        report.failed,
        [("hinge seed 0".to_string(), "invalid input: diverged".to_string())]
    );
    let md = std::fs::read_to_string(out.join("results.md")).unwrap_or_default();
    assert!(md.is_empty(), "collect is the caller's");
    assert_eq!(collect(&study, &out).unwrap().configs[1].seeds, 1);
}

/// Runs that score different things (an unconditional run has no class consistency, a
/// co-training one an extra accuracy) gather into one table of the union of scores.
#[test]
fn runs_with_different_scores_gather_into_one_table() {
    let dir = tmp("columns");
    let study = Study::load(&study_file(&dir)).unwrap();
    let out = dir.join("out");
    run_study(&study, &out, Shard::ALL, &mut |r, d| {
        std::fs::write(d.join("config.toml"), r.config.to_toml()?).unwrap();
        let text = match r.name.as_str() {
            "ns" => format!("kimg,step,fid\n2.016,63,{}\n", 10 + r.seed),
            _ => format!("kimg,step,fid,extra\n2.016,63,{},0.{}\n", 20 + r.seed, 5 + r.seed),
        };
        std::fs::write(d.join("scores.csv"), text).unwrap();
        Ok(())
    })
    .unwrap();
    let results = collect(&study, &out).unwrap();
    assert_eq!(results.finished, 4);
    let (ns, hinge) = (&results.configs[0], &results.configs[1]);
    assert_eq!(ns.scores.len(), 2);
    assert!(ns.scores[1].name == "extra" && ns.scores[1].mean.is_nan());
    assert!((hinge.scores[1].mean - 0.55).abs() < 1e-12);
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("| ns | 2/2 | **10.5000 ± 0.7071** | - |"), "{md}");
    assert!(
        md.contains("| hinge | 2/2 | 20.5000 ± 0.7071 | 0.5500 ± 0.0707 |"),
        "{md}"
    );
    let csv = std::fs::read_to_string(out.join("scores.csv")).unwrap();
    assert!(
        csv.starts_with("config,seed,kimg,step,fid,extra\nns,0,2.016,63,10,\nhinge,0,2.016,63,20,0.5\n"),
        "{csv}"
    );
}
