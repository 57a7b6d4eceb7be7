//! `labelgan train-gan --config`: a Compare GAN run on toy objects with scores at every
//! interval, extended on a rerun; overrides, unknown keys and a conditional model
//! without classes are refused in one line.

mod common;

use common::labelgan;

#[test]
fn config_runs_write_scores_and_refuse_bad_settings() {
    let root = common::tmp_in("gan-config", "root");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let cfg = root.join("tiny.toml");
    std::fs::write(
        &cfg,
        "[model]\narchitecture = \"sndcgan\"\nresolution = 16\ng_width = 16\nd_width = 4\nz_dim = 8\n\
         [train]\nbatch = 8\nkimg = 0.032\n[eval]\nevery_kimg = 0.016\nimages = 24\n",
    )
    .unwrap();
    let p = root.join("p.safetensors");
    common::tiny_perceptual(&p);
    let out = root.join("run");
    let (c, o, e) = (cfg.to_str().unwrap(), out.to_str().unwrap(), p.to_str().unwrap());
    let base = ["train-gan", "--config", c, "--objects", "--out", o, "--extractor", e];
    let r = labelgan(&base);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let scores = std::fs::read_to_string(out.join("scores.csv")).unwrap();
    let lines: Vec<&str> = scores.lines().collect();
    assert_eq!(lines[0], "kimg,step,fid,kid,precision,recall");
    assert_eq!(lines.len(), 3, "{scores}");
    assert!(lines[2].starts_with("0.032,4,"), "{scores}");
    for f in [
        "config.toml",
        "run.json",
        "checkpoint.safetensors",
        "samples.png",
        "log.jsonl",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let resolved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        resolved.contains("architecture = \"sndcgan\"") && resolved.contains("loss = \"hinge\""),
        "{resolved}"
    );
    // Longer: continues from the checkpoint and adds a row.
    let r = labelgan(&[&base[..], &["--set", "train.kimg=0.048"]].concat());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(
        std::fs::read_to_string(out.join("scores.csv")).unwrap().lines().count(),
        4
    );
    // Another loss on the same folder is refused, naming it.
    let r = labelgan(&[&base[..], &["--set", "train.loss=wasserstein"]].concat());
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(
        err.contains("config.train.loss") && err.trim().lines().count() == 1,
        "{err}"
    );
    // Unknown key; conditional without classes (faces); a StyleGAN2 flag with --config.
    let fresh = root.join("fresh");
    let f = fresh.to_str().unwrap();
    let r = labelgan(&[
        "train-gan",
        "--config",
        c,
        "--objects",
        "--out",
        f,
        "--set",
        "train.lrr=1",
    ]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("unknown setting `train.lrr`"));
    let r = labelgan(&[
        "train-gan",
        "--config",
        c,
        "--toyworld",
        "--out",
        f,
        "--set",
        "model.resolution=32",
    ]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("model.conditional needs class labels"));
    let r = labelgan(&[
        "train-gan",
        "--config",
        c,
        "--objects",
        "--out",
        f,
        "--resolution",
        "32",
    ]);
    assert_eq!(r.status.code(), Some(2));
    assert!(!fresh.join("checkpoint.safetensors").exists());
    // A dataset folder with classes.json: trained on and scored against its own images.
    let folder = root.join("objects");
    let r = labelgan(&[
        "toyworld",
        "--classes",
        "--count",
        "12",
        "--resolution",
        "16",
        "--out",
        folder.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let from_folder = root.join("from_folder");
    let r = labelgan(&[
        "train-gan",
        "--config",
        c,
        "--data",
        folder.to_str().unwrap(),
        "--out",
        from_folder.to_str().unwrap(),
        "--extractor",
        e,
        "--set",
        "train.kimg=0.016",
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(
        std::fs::read_to_string(from_folder.join("scores.csv"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    std::fs::remove_dir_all(&root).unwrap();
}
