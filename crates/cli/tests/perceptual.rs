//! `labelgan train-perceptual`, `labelgan fid` and `labelgan metrics` end to end on
//! tiny settings: the trained file is an LPIPS model, a set's distance to itself is 0
//! and to another set positive and symmetric, `metrics` agrees with `fid` and with
//! itself from saved feature files, and bad sets fail with a message that names them.

mod common;

use common::labelgan;
use serde_json::Value;

fn last_json(out: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn train_perceptual_then_fid() {
    let p = common::tmp_in("perceptual", "p.safetensors");
    let p = p.to_str().unwrap();
    let o = labelgan(&[
        "train-perceptual",
        "--toyworld",
        "--out",
        p,
        "--resolution",
        "32",
        "--steps",
        "3",
        "--batch",
        "4",
        "--widths",
        "4,4,8,8,8",
        "--convs-per-slice",
        "1",
        "--holdout",
        "8",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j = last_json(&o);
    let acc = j["holdout_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc) && j["steps"] == 3, "{j}");
    let fid = |a: &str, b: &str| {
        let o = labelgan(&[
            "fid",
            "--perceptual",
            p,
            "--a",
            a,
            "--b",
            b,
            "--count",
            "24",
            "--resolution",
            "32",
            "--batch",
            "10",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let j = last_json(&o);
        assert_eq!(j["images_a"], 24);
        assert_eq!(j["dims"], 32);
        j["fd"].as_f64().unwrap()
    };
    let same = fid("toyworld:1", "toyworld:1");
    let ab = fid("toyworld:1", "toyworld:2");
    let ba = fid("toyworld:2", "toyworld:1");
    assert!(same < 1e-9, "{same}");
    assert!(ab > 0.0 && (ab - ba).abs() < 1e-6 * ab.max(1e-12), "{ab} {ba}");

    let o = labelgan(&["fid", "--perceptual", p, "--a", "toyworld:x", "--b", "toyworld:1"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("toyworld:x"));
    let o = labelgan(&["fid", "--perceptual", p, "--a", "/no/such/dir", "--b", "toyworld:1"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/no/such/dir"));

    // metrics: the same FID as the streamed `fid`, and the same scores again from the
    // feature files it saved.
    let feats = common::tmp_in("perceptual", "features");
    let _ = std::fs::remove_dir_all(&feats);
    let f = feats.to_str().unwrap();
    let sets = [
        "--a",
        "toyworld:1",
        "--b",
        "toyworld:2",
        "--extractor",
        p,
        "--count",
        "24",
        "--resolution",
        "32",
    ];
    let o = labelgan(
        &[
            &["metrics"],
            &sets[..],
            &["--kid-subset-size", "10", "--save-features", f],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = last_json(&o);
    let fd = m["fid"].as_f64().unwrap();
    assert!((fd - ab).abs() < 1e-6 * ab, "{fd} {ab}");
    assert_eq!((m["count_a"].as_u64(), m["dims"].as_u64()), (Some(24), Some(32)));
    for key in ["kid", "kid_std", "precision", "recall"] {
        assert!(m[key].as_f64().is_some_and(f64::is_finite), "{key}: {m}");
    }
    assert!(m["kid_std"].as_f64().unwrap() > 0.0, "{m}");
    let (fa, fb) = (feats.join("a.safetensors"), feats.join("b.safetensors"));
    let args = [
        "--features-a",
        fa.to_str().unwrap(),
        "--features-b",
        fb.to_str().unwrap(),
    ];
    let o = labelgan(&[&["metrics"], &args[..], &["--kid-subset-size", "10"]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let again = last_json(&o);
    for key in ["kid", "kid_std", "precision", "recall"] {
        assert_eq!(again[key], m[key], "{key}");
    }
    assert!((again["fid"].as_f64().unwrap() - fd).abs() < 1e-4 * fd, "{again} {m}");
    // Neither or both ways of giving the sets: a usage error.
    let o = labelgan(&[&["metrics"], &sets[..], &args[..]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let o = labelgan(&["metrics", "--features-a", fa.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
}

/// `train-classifier` on toy objects (and on a folder with `classes.json`), then
/// `metrics` with it as the extractor adds the Inception Score; a folder without
/// classes is refused by name.
#[test]
fn train_classifier_then_metrics_with_inception_score() {
    let c = common::tmp_in("classifier", "c.safetensors");
    let o = labelgan(&[
        "train-classifier",
        "--objects",
        "--resolution",
        "16",
        "--steps",
        "20",
        "--batch",
        "8",
        "--widths",
        "4,4,8,8,8",
        "--holdout",
        "16",
        "--out",
        c.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j = last_json(&o);
    assert_eq!(j["classes"], 10);
    assert!(j["holdout_accuracy"].as_f64().unwrap() >= 0.0);
    let m = labelgan(&[
        "metrics",
        "--a",
        "toyworld-classes:1",
        "--b",
        "toyworld-classes:2",
        "--extractor",
        c.to_str().unwrap(),
        "--count",
        "40",
        "--resolution",
        "16",
        "--kid-subset-size",
        "20",
        "--is-splits",
        "2",
    ]);
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    let j = last_json(&m);
    let is = j["is"].as_f64().unwrap();
    assert!((1.0..=10.0).contains(&is), "an Inception Score over 10 classes: {j}");
    assert!(j["fid"].as_f64().unwrap().is_finite() && j["dims"] == 32, "{j}");

    // A folder: with classes.json it trains; without, it is refused by name.
    let data = common::tmp_in("classifier", "objects");
    let _ = std::fs::remove_dir_all(&data);
    let w = labelgan(&[
        "toyworld",
        "--classes",
        "--count",
        "30",
        "--resolution",
        "16",
        "--out",
        data.to_str().unwrap(),
    ]);
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    let args = |out: &str| {
        vec![
            "train-classifier".to_string(),
            "--data".into(),
            data.to_str().unwrap().into(),
            "--resolution".into(),
            "16".into(),
            "--steps".into(),
            "3".into(),
            "--holdout".into(),
            "10".into(),
            "--out".into(),
            common::tmp_in("classifier", out).to_str().unwrap().into(),
        ]
    };
    let a: Vec<String> = args("d.safetensors");
    let o = labelgan(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_file(data.join("classes.json")).unwrap();
    let a: Vec<String> = args("e.safetensors");
    let o = labelgan(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("has no classes.json") && err.trim().lines().count() == 1,
        "{err}"
    );
}
