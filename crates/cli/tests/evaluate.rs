//! `labelgan evaluate` on small toyworld folders: the scores it prints are those of the
//! models it saves, recomputed here with the library; mistakes fail with a line that
//! names them.

mod common;

use candle_core::Device;
use common::labelgan;
use labelgan_dataset::load_dataset;
use labelgan_eval::{Confusion, Pck, UNet};
use serde_json::Value;

fn last_json(o: &std::process::Output) -> Value {
    let text = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(text.lines().last().expect("output")).expect("a JSON last line")
}

/// `labelgan evaluate --train TRAIN --test TEST ARGS..`, which must succeed; its JSON line.
fn evaluate(train: &std::path::Path, test: &std::path::Path, args: &[&str]) -> Value {
    let mut all = vec![
        "evaluate",
        "--train",
        train.to_str().unwrap(),
        "--test",
        test.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let o = labelgan(&all);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    last_json(&o)
}

#[test]
fn printed_scores_are_those_of_the_saved_models() {
    let t = |n: &str| common::tmp_in("evaluate", n);
    let (train, test, out) = (t("train"), t("test"), t("out"));
    labelgan_toyworld::write_dataset(&train, 1, 8, 32, |_, _| {}).unwrap();
    labelgan_toyworld::write_dataset(&test, 2, 6, 32, |_, _| {}).unwrap();
    let v = evaluate(
        &train,
        &test,
        &[
            "--heads",
            "seg,kp",
            "--steps",
            "30",
            "--toyworld",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(v["train_images"], 8);
    assert_eq!(v["test_images"], 6);
    assert!(v.get("depth_rmse").is_none(), "depth was not asked for");
    let saved: Value = serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(saved["miou"], v["miou"]);

    let set = load_dataset(&test, 32, None).unwrap();
    let seg = UNet::load(out.join("segmentation.safetensors"), &Device::Cpu).unwrap();
    let mut c = Confusion::new(8);
    for (truth, p) in set
        .targets
        .masks
        .as_ref()
        .unwrap()
        .iter()
        .zip(seg.predict(&set.images).unwrap())
    {
        c.add(truth, p.mask.as_ref().unwrap()).unwrap();
    }
    let miou = v["miou"].as_f64().unwrap();
    assert!((c.report().miou - miou).abs() < 1e-12, "{} vs {miou}", c.report().miou);
    let kp = UNet::load(out.join("keypoints.safetensors"), &Device::Cpu).unwrap();
    let mut k = Pck::new(&[0.05, 0.1]);
    for (truth, p) in set
        .targets
        .keypoints
        .as_ref()
        .unwrap()
        .iter()
        .zip(kp.predict(&set.images).unwrap())
    {
        k.add(truth, p.keypoints.as_ref().unwrap(), 32).unwrap();
    }
    assert!((k.report()[1] - v["pck10"].as_f64().unwrap()).abs() < 1e-12);
    assert!(!out.join("depth.safetensors").exists());

    // --joint: one model with both heads, scored on both.
    let joint = t("joint");
    let v = evaluate(
        &train,
        &test,
        &[
            "--heads",
            "seg,depth",
            "--steps",
            "5",
            "--joint",
            "--out",
            joint.to_str().unwrap(),
        ],
    );
    assert!(v["miou"].is_f64() && v["depth_rmse"].is_f64() && v.get("pck10").is_none());

    // --add-train: the test folder's 6 images, 3 times, beside the 8 training images.
    let v = evaluate(
        &train,
        &test,
        &[
            "--heads",
            "seg",
            "--steps",
            "2",
            "--add-train",
            &format!("{}:3", test.display()),
        ],
    );
    assert_eq!(v["train_images"], 8 + 3 * 6);
    // --val: the learning rate and steps chosen on a validation folder, each tried
    // combination reported (and the test folder only scored).
    let v = evaluate(
        &train,
        &test,
        &[
            "--heads",
            "seg",
            "--steps",
            "4",
            "--val",
            train.to_str().unwrap(),
            "--lr-factors",
            "1,0.3",
            "--evaluations",
            "2",
        ],
    );
    let chosen = &v["chosen_on_val"][0];
    assert_eq!(chosen["tried"].as_array().unwrap().len(), 2, "{v}");
    assert!([2, 4].contains(&chosen["steps"].as_u64().unwrap()), "{v}");
    let both = UNet::load(joint.join("segmentation+depth.safetensors"), &Device::Cpu).unwrap();
    assert_eq!((both.config.classes, both.config.depth), (8, true));
}

#[test]
fn mistakes_are_named() {
    let t = |n: &str| common::tmp_in("evaluate-bad", n);
    let (train, test, small) = (t("train"), t("test"), t("small"));
    labelgan_toyworld::write_dataset(&train, 1, 2, 32, |_, _| {}).unwrap();
    labelgan_toyworld::write_dataset(&small, 1, 2, 64, |_, _| {}).unwrap();
    std::fs::create_dir_all(test.join("images")).unwrap();
    std::fs::copy(train.join("images/00000.png"), test.join("images/00000.png")).unwrap();
    // Bad arguments exit 2, bad data 1.
    let fails_with = |code: i32, args: &[&str], needle: &str| {
        let mut all = vec!["evaluate", "--train", train.to_str().unwrap(), "--steps", "1"];
        all.extend_from_slice(args);
        let o = labelgan(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: `{needle}` not in {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    };
    let fails = |args: &[&str], needle: &str| fails_with(1, args, needle);
    // A test folder with images only: no labels to score.
    fails(&["--test", test.to_str().unwrap()], "share no label kind");
    fails(
        &["--test", test.to_str().unwrap(), "--heads", "seg"],
        "has no segmentation labels",
    );
    fails(&["--test", small.to_str().unwrap()], "32x32 but the test images 64x64");
    fails(
        &["--test", train.to_str().unwrap(), "--classes", "3"],
        "hold class 7 but only 3 classes were asked for",
    );
    fails_with(
        2,
        &["--test", train.to_str().unwrap(), "--flip-classes", "3"],
        "expected two indices as A:B",
    );
    fails(&["--test", t("missing").to_str().unwrap()], "missing");
    let tr = train.to_str().unwrap();
    fails(
        &["--test", tr, "--add-train", small.to_str().unwrap()],
        "64x64 but the training images 32x32",
    );
    fails_with(
        2,
        &["--test", tr, "--add-train", &format!("{tr}:0")],
        "the repeat must be in 1..=10000",
    );
    fails_with(2, &["--test", tr, "--lr-factors", "1,0.3"], "give it");
    fails_with(2, &["--test", tr, "--lr-factors", "0"], "factor 0");
    // Absurd sizes are refused before anything is allocated or written.
    let out = t("out");
    let huge_repeat = format!("{tr}:1000000000000");
    for (args, needle) in [
        (
            ["--add-train", huge_repeat.as_str(), "--batch", "16"],
            "repeat must be in",
        ),
        (
            ["--batch", "1000000000000", "--shift", "3"],
            "UNet batch is 1000000000000",
        ),
        (["--widths", "1000000,8", "--shift", "3"], "UNet widths is 1000000"),
        (["--batch", "4096", "--widths", "4096,4096"], "GB"),
        (["--classes", "1000000000", "--shift", "3"], "classes"),
        (["--shift", "1000", "--batch", "16"], "UNet shift is 1000"),
    ] {
        let mut a = vec!["--test", tr, "--out", out.to_str().unwrap()];
        a.extend(args);
        fails_with(2, &a, needle);
        assert!(!out.exists(), "{args:?} left {} behind", out.display());
    }
    fails(
        &["--test", tr, "--heads", "seg", "--add-train", test.to_str().unwrap()],
        "with the --add-train folders has no segmentation labels",
    );
}

/// The CLI trains exactly the model the library trains with the same settings, bit for
/// bit. (Until 2026-12-02 the binary set `CANDLE_GRAD_DO_NOT_DETACH` for every command,
/// GAN training's R1 needs it, so the UNet worker threads kept the graph of every
/// gradient: slower, and different weights from the second step on.)
#[test]
fn trains_the_same_weights_as_the_library() {
    let t = |n: &str| common::tmp_in("evaluate-same", n);
    let (train, test, out, lib) = (t("train"), t("test"), t("out"), t("lib.safetensors"));
    labelgan_toyworld::write_dataset(&train, 1, 8, 32, |_, _| {}).unwrap();
    labelgan_toyworld::write_dataset(&test, 2, 4, 32, |_, _| {}).unwrap();
    evaluate(
        &train,
        &test,
        &[
            "--heads",
            "seg",
            "--steps",
            "6",
            "--seed",
            "3",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let set = load_dataset(&train, 32, None).unwrap();
    let cfg = labelgan_eval::UNetConfig {
        resolution: 32,
        widths: vec![12, 24, 48],
        classes: 8,
        keypoints: 0,
        depth: false,
        sigma: 2.0,
        lr: 1e-2,
        batch: 16,
        steps: 6,
        seed: 3,
        flip: None,
        shift: 3,
        keypoint_loss: labelgan_eval::KeypointLoss::SpatialSoftmax,
        ignore_index: Some(255),
    };
    let mut u = UNet::new(cfg, &Device::Cpu).unwrap();
    let targets = labelgan_dataset::Targets {
        masks: set.targets.masks.clone(),
        ..Default::default()
    };
    // On a thread of its own, as the CLI's workers train.
    std::thread::scope(|s| {
        s.spawn(|| u.train(&set.images, &targets, &mut |_, _| {}).unwrap());
    });
    u.save(&lib).unwrap();
    let cli = std::fs::read(out.join("segmentation.safetensors")).unwrap();
    assert!(
        cli == std::fs::read(&lib).unwrap(),
        "the CLI's weights differ from the library's"
    );
}
