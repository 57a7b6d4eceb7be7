//! `labelgan infer-labels`: labels for a folder's unlabelled images from a backbone's
//! features, written for `train-gan`, which trains on them; a folder without classes
//! and labels made for another split are refused in one line.

mod common;

use common::labelgan;

#[test]
fn inferred_labels_are_written_scored_and_trained_on() {
    let root = common::tmp_in("infer-labels", "root");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let folder = root.join("objects");
    let f = folder.to_str().unwrap();
    let r = labelgan(&[
        "toyworld",
        "--classes",
        "--count",
        "200",
        "--resolution",
        "16",
        "--out",
        f,
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let backbone = root.join("backbone.safetensors");
    common::tiny_perceptual(&backbone);
    let b = backbone.to_str().unwrap();
    let out = root.join("inferred.safetensors");
    let o = out.to_str().unwrap();
    let base = [
        "infer-labels",
        "--data",
        f,
        "--backbone",
        b,
        "--resolution",
        "16",
        "--out",
        o,
    ];
    let r = labelgan(&[&base[..], &["--fraction", "0.5"]].concat());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let line: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(line["images"], 200);
    assert_eq!(line["labelled"], 100);
    let acc = line["accuracy_unlabelled"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc), "{line}");

    // train-gan reads them for the same split, and refuses them for another.
    let cfg = root.join("tiny.toml");
    std::fs::write(&cfg, common::TINY_SNDCGAN).unwrap();
    let run = root.join("run");
    let train = |fraction: &str| {
        labelgan(&[
            "train-gan",
            "--config",
            cfg.to_str().unwrap(),
            "--data",
            f,
            "--out",
            run.to_str().unwrap(),
            "--restart",
            "--set",
            &format!("labels.fraction={fraction}"),
            "--set",
            "labels.unlabelled=inferred",
            "--set",
            &format!("labels.inferred={o:?}"),
            "--set",
            "labels.soft=true",
            "--set",
            "train.kimg=0.016",
        ])
    };
    let r = train("0.5");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let r = train("0.25");
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        r.status.code() == Some(1) && err.contains("labels.fraction = 0.5"),
        "{err}"
    );

    // k-means needs no labels; a folder without classes.json is named.
    let r = labelgan(&[&base[..], &["--kmeans"]].concat());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let line: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert!(line["purity"].as_f64().unwrap() >= 0.1, "{line}");
    std::fs::remove_file(folder.join("classes.json")).unwrap();
    let r = labelgan(&base);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.code() == Some(1) && err.contains("no classes.json"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}
