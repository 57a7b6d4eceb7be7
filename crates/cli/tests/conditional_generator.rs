//! A conditional generator that `train-gan` exported is a generator like any other:
//! `generate --class` writes class-labelled images (classes.json, `c`), and `metrics`
//! scores it against toy objects with per-class FID and class consistency, and the
//! factory makes class-labelled datasets with object masks from it.

mod common;

use candle_core::Device;
use common::labelgan;
use labelgan_core::io::TensorFile;

#[test]
fn generate_and_score_a_conditional_generator() {
    let root = common::tmp_in("cond-gen", "root");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let cfg = root.join("tiny.toml");
    std::fs::write(&cfg, common::TINY_SNDCGAN).unwrap();
    let classifier = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/toy_classifier.safetensors");
    let run = root.join("run");
    let (c, r) = (cfg.to_str().unwrap(), run.to_str().unwrap());
    let o = labelgan(&[
        "train-gan",
        "--config",
        c,
        "--objects",
        "--out",
        r,
        "--extractor",
        classifier,
        "--set",
        "train.ema_decay=0.9",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let g = run.join("generator.safetensors");
    let g = g.to_str().unwrap();

    // One class, then classes in turn.
    let pngs = root.join("pngs");
    let out = root.join("out.safetensors");
    let o = labelgan(&[
        "generate",
        "--weights",
        g,
        "--count",
        "5",
        "--class",
        "3",
        "--png-dir",
        pngs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let labels: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pngs.join("classes.json")).unwrap()).unwrap();
    let classes: Vec<u64> = labels["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["class"].as_u64().unwrap())
        .collect();
    assert_eq!(classes, [3, 3, 3, 3, 3]);
    assert_eq!(labels["classes"].as_array().unwrap().len(), 10);
    let f = TensorFile::load(&out, &Device::Cpu).unwrap();
    let c = f.get("c").unwrap().argmax(1).unwrap().to_vec1::<u32>().unwrap();
    assert_eq!(c, [3, 3, 3, 3, 3]);
    assert_eq!(f.get("ws").unwrap().dims(), [5, 1, 18]);
    let turn = root.join("turn");
    let o = labelgan(&[
        "generate",
        "--weights",
        g,
        "--count",
        "12",
        "--png-dir",
        turn.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let labels = std::fs::read_to_string(turn.join("classes.json")).unwrap();
    assert!(
        labels.contains("\"000011.png\"") && labels.contains("\"class\": 1"),
        "{labels}"
    );

    // A class the generator does not have: one line, usage error.
    let o = labelgan(&[
        "generate",
        "--weights",
        g,
        "--count",
        "2",
        "--class",
        "10",
        "--png-dir",
        turn.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--class 10: the generator has classes 0..10"), "{err}");

    // Scored against toy objects: per-class FID for the ten classes, class consistency.
    let o = labelgan(&[
        "metrics",
        "--a",
        "toyworld-classes:5",
        "--b",
        &format!("generator:{g}"),
        "--extractor",
        classifier,
        "--classifier",
        classifier,
        "--count",
        "40",
        "--resolution",
        "16",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let per = line["fid_per_class"].as_array().unwrap();
    assert_eq!(per.len(), 10);
    let mean = per.iter().map(|v| v.as_f64().unwrap()).sum::<f64>() / 10.0;
    assert!((line["fid_per_class_mean"].as_f64().unwrap() - mean).abs() < 1e-9);
    let cc = line["class_consistency"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&cc), "{line}");
    // An extractor without a class head gives the other scores and says why class
    // consistency is missing; a --classifier without one is refused by name.
    let p = root.join("p.safetensors");
    common::tiny_perceptual(&p);
    let ps = p.to_str().unwrap();
    let b = format!("generator:{g}");
    let metrics = |extractor: &str, with: &[&str]| {
        let base = [
            "metrics",
            "--a",
            "toyworld-classes:5",
            "--b",
            &b,
            "--extractor",
            extractor,
            "--count",
            "20",
        ];
        labelgan(&[&base[..], &["--resolution", "16"], with].concat())
    };
    let o = metrics(ps, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("pass --classifier"), "{err}");
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        line.get("class_consistency").is_none() && line["fid"].as_f64().unwrap().is_finite(),
        "{line}"
    );
    let o = metrics(classifier, &["--classifier", ps]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("has no class head"), "{err}");

    // The factory (HandsOff from labelled toy objects, each inverted to its class's
    // mean latent): a class-labelled dataset with object masks.
    let data = root.join("objects");
    let o = labelgan(&[
        "toyworld",
        "--classes",
        "--count",
        "6",
        "--resolution",
        "16",
        "--out",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let factory = |out: &std::path::Path, with: &[&str]| {
        let base = [
            "factory",
            "--generator",
            g,
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--count",
            "5",
            "--block",
            "4",
            "--members",
            "1",
            "--max-epochs",
            "1",
            "--pixels-per-image",
            "64",
            "--calibrate-images",
            "4",
        ];
        labelgan(&[&base[..], with].concat())
    };
    let read_classes = |dir: &std::path::Path| -> Vec<u64> {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("classes.json")).unwrap()).unwrap();
        v["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["class"].as_u64().unwrap())
            .collect()
    };
    let made = root.join("made");
    let o = factory(&made, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let manifest = std::fs::read_to_string(made.join("manifest.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = manifest.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 5);
    let turn: Vec<u64> = rows.iter().map(|r| r["candidate"].as_u64().unwrap() % 10).collect();
    let classes: Vec<u64> = rows.iter().map(|r| r["class"].as_u64().unwrap()).collect();
    assert_eq!(classes, turn, "classes in turn by candidate");
    assert_eq!(read_classes(&made), classes);
    assert!(made.join("masks/000004.png").is_file());
    let one = root.join("one");
    let o = factory(&one, &["--class", "7"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read_classes(&one), [7; 5]);
    // Refused by name: a class it lacks; labelled images without their classes.
    let o = factory(&root.join("bad"), &["--class", "10"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--class") && err.contains("0..10"), "{err}");
    std::fs::remove_file(data.join("classes.json")).unwrap();
    let o = factory(&root.join("bad"), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no classes.json"), "{err}");
}
