//! `labelgan train-perceptual` and `labelgan fid` end to end on tiny settings: the
//! trained file is an LPIPS model, a set's distance to itself is 0 and to another set
//! positive and symmetric, and bad sets fail with a message that names them.

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
}
