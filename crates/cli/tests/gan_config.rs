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
    std::fs::write(&cfg, common::TINY_SNDCGAN).unwrap();
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
    // S3GAN on a quarter of the labels of a finite set: the heads' losses are logged.
    let s3gan = root.join("s3gan");
    let few = [
        "--set",
        "labels.images=40",
        "--set",
        "labels.fraction=0.25",
        "--set",
        "train.class_predictor=true",
        "--set",
        "train.rotation_batch_fraction=2",
        "--set",
        "train.kimg=0.016",
    ];
    let run = |extra: &[&str]| {
        labelgan(
            &[
                &[
                    "train-gan",
                    "--config",
                    c,
                    "--objects",
                    "--out",
                    s3gan.to_str().unwrap(),
                    "--extractor",
                    e,
                ][..],
                &few,
                extra,
            ]
            .concat(),
        )
    };
    let r = run(&[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let log = std::fs::read_to_string(s3gan.join("log.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    for k in ["rotation_real", "rotation_fake", "class_loss"] {
        assert!(last[k].as_f64().unwrap() > 0.0, "{k}: {log}");
    }
    // Scored with the predictor's accuracy on the unlabelled three quarters.
    let scores = std::fs::read_to_string(s3gan.join("scores.csv")).unwrap();
    let (head, row) = (scores.lines().next().unwrap(), scores.lines().last().unwrap());
    assert!(head.ends_with(",inferred_accuracy"), "{scores}");
    let acc: f64 = row.rsplit(',').next().unwrap().parse().unwrap();
    assert!((0.0..=1.0).contains(&acc), "{scores}");
    let resolved = std::fs::read_to_string(s3gan.join("config.toml")).unwrap();
    assert!(
        resolved.contains("[labels]") && resolved.contains("fraction = 0.25"),
        "{resolved}"
    );
    // The labelled share is part of the run: another is refused, naming it.
    let r = run(&["--set", "labels.fraction=0.5"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.code() == Some(1) && err.contains("labels.fraction"), "{err}");
    // Few labels need a finite set.
    let r = labelgan(&[
        "train-gan",
        "--config",
        c,
        "--objects",
        "--out",
        f,
        "--set",
        "labels.fraction=0.5",
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.code() == Some(1) && err.contains("labels.images"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// `labelgan study`: two configs × two seeds, trained as two shards and merged, the
/// table and plot written; a rerun skips what finished; a bad study is named first.
#[test]
fn a_study_runs_in_shards_merges_and_skips_finished_runs() {
    let root = common::tmp_in("gan-config", "study");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("tiny.toml"),
        "[model]\narchitecture = \"sndcgan\"\nresolution = 16\ng_width = 16\nd_width = 4\nz_dim = 8\n\
         [train]\nbatch = 8\nkimg = 0.016\n[eval]\nevery_kimg = 0.016\nimages = 24\n",
    )
    .unwrap();
    let study = root.join("s.toml");
    std::fs::write(
        &study,
        "base = \"tiny.toml\"\nseeds = [0, 1]\n[[axes]]\nname = \"loss\"\n\
         values = [{ name = \"ns\", set = [\"train.loss=non_saturating\"] }, { name = \"hinge\", set = [\"train.loss=hinge\"] }]\n",
    )
    .unwrap();
    let p = root.join("p.safetensors");
    common::tiny_perceptual(&p);
    let (s, e) = (study.to_str().unwrap(), p.to_str().unwrap());
    let shard = |k: &str, out: &str| {
        let o = root.join(out);
        let r = labelgan(&[
            "study",
            "--config",
            s,
            "--objects",
            "--extractor",
            e,
            "--out",
            o.to_str().unwrap(),
            "--shard",
            k,
        ]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        String::from_utf8_lossy(&r.stderr).to_string()
    };
    shard("1/2", "a");
    let log = shard("2/2", "b");
    assert!(log.contains("2 trained") && log.contains("2 in other shards"), "{log}");
    assert!(root.join("b/runs/hinge/seed0/scores.csv").exists());
    assert!(!root.join("b/runs/ns/seed0").exists(), "shard 2 holds runs 2 and 4");
    let again = shard("2/2", "b");
    assert!(
        again.contains("finished, skipped") && again.contains("0 trained"),
        "{again}"
    );

    let merged = root.join("merged");
    let (a, b) = (root.join("a"), root.join("b"));
    let r = labelgan(&[
        "study",
        "--config",
        s,
        "--out",
        merged.to_str().unwrap(),
        "--merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(String::from_utf8_lossy(&r.stdout).contains("\"finished\":4"));
    let md = std::fs::read_to_string(merged.join("results.md")).unwrap();
    assert!(md.contains("| ns | 2/2 |") && md.contains("| hinge | 2/2 |"), "{md}");
    assert!(merged.join("fid.png").exists() && merged.join("scores.csv").exists());

    // A setting that cannot be built is named before anything trains.
    std::fs::write(&study, "base = \"tiny.toml\"\nseeds = [0]\nset = [\"train.batch=0\"]\n").unwrap();
    let r = labelgan(&[
        "study",
        "--config",
        s,
        "--objects",
        "--extractor",
        e,
        "--out",
        root.join("c").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(
        err.contains("train.batch is 0") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert!(!root.join("c").exists());
}
