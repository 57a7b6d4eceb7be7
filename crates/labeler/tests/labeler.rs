//! The labeler against a dense reference (full hypercolumn, unfolded BatchNorm), a
//! learnable toy task, save/load, and bad input.

use candle_core::{D, DType, Device, Tensor};
use labelgan_core::{FeatureTaps, Labels, PixelLabeler, SplitMix64, Tap};
use labelgan_dataset::ImageLabels;
use labelgan_hypercolumn::{Upsample, dense};
use labelgan_labeler::{Ensemble, Head, InMemoryTaps, LabelerConfig, fit};

fn taps(rng: &mut SplitMix64, n: usize) -> FeatureTaps {
    let mut t = FeatureTaps::new();
    for (i, (c, r)) in [(6, 4), (5, 8), (4, 8), (3, 16)].into_iter().enumerate() {
        t.push(Tap::new(format!("l{i}"), rng.normal_tensor(&[n, c, r, r], &Device::Cpu).unwrap()).unwrap())
            .unwrap();
    }
    t
}

fn randomize(e: &mut Ensemble, rng: &mut SplitMix64) {
    for (name, p) in e.params.iter_mut() {
        let noise = rng.normal_tensor(p.dims(), &Device::Cpu).unwrap();
        *p = if name.contains("running_var") {
            (noise.abs().unwrap() + 0.5).unwrap()
        } else if name.starts_with('w') {
            (noise * 0.5).unwrap()
        } else {
            (noise * 0.3).unwrap()
        };
    }
}

/// The published computation: full hypercolumn, then every member's MLP in eval mode.
fn dense_outputs(e: &Ensemble, taps: &FeatureTaps) -> Tensor {
    let x = dense(taps, e.config.resolution, Upsample::Bilinear)
        .unwrap()
        .get(0)
        .unwrap(); // [P, D]
    let p = |n: &str| e.param(n).unwrap().clone();
    let bn = |h: Tensor, pre: &str, k: usize| {
        let (g, b, m, v) = (
            p(&format!("{pre}.weight")).get(k).unwrap(),
            p(&format!("{pre}.bias")).get(k).unwrap(),
            p(&format!("{pre}.running_mean")).get(k).unwrap(),
            p(&format!("{pre}.running_var")).get(k).unwrap(),
        );
        h.broadcast_sub(&m)
            .unwrap()
            .broadcast_div(&(v + 1e-5).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(&g)
            .unwrap()
            .broadcast_add(&b)
            .unwrap()
    };
    let outs: Vec<Tensor> = (0..e.config.members)
        .map(|k| {
            let h = x
                .matmul(&p("w1").get(k).unwrap())
                .unwrap()
                .broadcast_add(&p("b1").get(k).unwrap())
                .unwrap()
                .relu()
                .unwrap();
            let h = bn(h, "bn1", k);
            let h = h
                .matmul(&p("w2").get(k).unwrap())
                .unwrap()
                .broadcast_add(&p("b2").get(k).unwrap())
                .unwrap()
                .relu()
                .unwrap();
            let h = bn(h, "bn2", k);
            h.matmul(&p("w3").get(k).unwrap())
                .unwrap()
                .broadcast_add(&p("b3").get(k).unwrap())
                .unwrap()
        })
        .collect();
    Tensor::stack(&outs, 0).unwrap() // [M, P, C]
}

fn small(head: Head) -> LabelerConfig {
    LabelerConfig {
        members: 4,
        hidden: Some((16, 8)),
        tile_pixels: 37,
        ..LabelerConfig::new(head, 16)
    }
}

#[test]
fn segmentation_equals_the_dense_path() {
    let mut rng = SplitMix64::new(5);
    let t = taps(&mut rng, 1);
    let mut e = Ensemble::init(&small(Head::Segmentation { classes: 5 }), &t.specs(), &Device::Cpu).unwrap();
    randomize(&mut e, &mut rng);
    let got = e.predict_image(&t, 0).unwrap();
    let logits = dense_outputs(&e, &t);
    let (cls, js) = labelgan_labeler::predict::vote_and_js(&logits, 5).unwrap();
    assert_eq!(got.classes.as_ref().unwrap(), &cls, "labels differ from the dense path");
    let max_js = got
        .uncertainty
        .iter()
        .zip(&js)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max_js < 1e-4, "JS differs by {max_js}");
    assert!(js.iter().any(|&v| v > 1e-3), "members should disagree somewhere");
    // JS is H(mean) - mean H: non-negative, at most ln(C).
    assert!(got.uncertainty.iter().all(|&v| v > -1e-5 && v <= (5f32).ln() + 1e-5));
    assert!((got.score - labelgan_labeler::predict::top_decile_mean(&js)).abs() < 1e-4);
    // The trait path agrees.
    let pred = e.predict(&t).unwrap();
    let Labels::Segmentation(l) = pred.labels else {
        panic!("kind")
    };
    assert_eq!(l.flatten_all().unwrap().to_vec1::<u32>().unwrap(), cls);
}

#[test]
fn shifted_outputs_move_the_vote_like_shifted_logits() {
    let mut rng = SplitMix64::new(7);
    let t = taps(&mut rng, 1);
    let mut e = Ensemble::init(&small(Head::Segmentation { classes: 4 }), &t.specs(), &Device::Cpu).unwrap();
    randomize(&mut e, &mut rng);
    let before = e.predict_image(&t, 0).unwrap().classes.unwrap();
    let logits = dense_outputs(&e, &t); // [M, P, C]
    let shift = [0.0f32, 0.7, -0.4, 0.2];
    let mut shifted = e.clone();
    shifted.shift_outputs(&shift).unwrap();
    let got = shifted.predict_image(&t, 0).unwrap().classes.unwrap();
    // The vote of the members' logits with the shift added by hand.
    let s = Tensor::from_slice(&shift, (1, 1, 4), &Device::Cpu).unwrap();
    let (want, _) = labelgan_labeler::predict::vote_and_js(&logits.broadcast_add(&s).unwrap(), 4).unwrap();
    assert_eq!(got, want);
    assert_ne!(got, before, "the shift should change some pixels");
    let count = |v: &[u32], c: u32| v.iter().filter(|&&x| x == c).count();
    assert!(count(&got, 1) > count(&before, 1), "class 1 was favoured");
    // The same shift for every class changes nothing; a large one takes every pixel.
    let mut same = e.clone();
    same.shift_outputs(&[3.0; 4]).unwrap();
    assert_eq!(same.predict_image(&t, 0).unwrap().classes.unwrap(), before);
    let mut all = e.clone();
    all.shift_outputs(&[0.0, 0.0, 1e4, 0.0]).unwrap();
    assert!(
        all.predict_image(&t, 0)
            .unwrap()
            .classes
            .unwrap()
            .iter()
            .all(|&c| c == 2)
    );
    // Bad shifts are named.
    let err = e.clone().shift_outputs(&[0.0; 3]).unwrap_err().to_string();
    assert!(err.contains("3 values") && err.contains("4 outputs"), "{err}");
    assert!(e.clone().shift_outputs(&[0.0, f32::NAN, 0.0, 0.0]).is_err());
}

#[test]
fn depth_and_keypoints_equal_the_dense_path() {
    let mut rng = SplitMix64::new(6);
    let t = taps(&mut rng, 1);
    for head in [Head::Depth, Head::Keypoints { count: 3, sigma: 2.0 }] {
        let mut e = Ensemble::init(&small(head.clone()), &t.specs(), &Device::Cpu).unwrap();
        randomize(&mut e, &mut rng);
        let got = e.predict_image(&t, 0).unwrap();
        let out = dense_outputs(&e, &t);
        let mean = out.mean(0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let var = out
            .broadcast_sub(&out.mean(0).unwrap())
            .unwrap()
            .sqr()
            .unwrap()
            .mean(0)
            .unwrap()
            .mean(D::Minus1)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let dm = got
            .values
            .as_ref()
            .unwrap()
            .iter()
            .zip(&mean)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let dv = got
            .uncertainty
            .iter()
            .zip(&var)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(dm < 1e-4 && dv < 1e-4, "{head:?}: mean {dm}, variance {dv}");
    }
}

#[test]
fn learns_a_pixel_task_and_round_trips() {
    // Class = which of three bands a high-resolution channel's value falls in: learnable
    // from the hypercolumn, not from position.
    let mut rng = SplitMix64::new(7);
    let mut batches = vec![];
    let mut targets = vec![];
    for _ in 0..6 {
        let t = taps(&mut rng, 1);
        let hi = t
            .get("l3")
            .unwrap()
            .tensor
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        targets.push(ImageLabels::mask(
            hi.iter()
                .map(|&v| {
                    if v < -0.4 {
                        0
                    } else if v < 0.4 {
                        1
                    } else {
                        2
                    }
                })
                .collect(),
        ));
        batches.push(t);
    }
    let cfg = LabelerConfig {
        members: 3,
        hidden: Some((32, 16)),
        pixels_per_image: 200,
        batch_size: 64,
        max_epochs: 30,
        patience: 30,
        lr: 1e-2,
        ..LabelerConfig::new(Head::Segmentation { classes: 3 }, 16)
    };
    let source = InMemoryTaps::from_batches(&batches[..5]).unwrap();
    let mut lines = 0;
    let (ens, report) = fit(&cfg, &source, &targets[..5], |_| lines += 1).unwrap();
    assert!(lines > 0 && report.epochs > 1);
    let test = &batches[5];
    let pred = ens.predict_image(test, 0).unwrap();
    let truth = targets[5].mask.as_ref().unwrap();
    let acc = pred
        .classes
        .as_ref()
        .unwrap()
        .iter()
        .zip(truth)
        .filter(|(a, b)| a == b)
        .count() as f32
        / truth.len() as f32;
    assert!(acc > 0.85, "held-out image accuracy {acc}");

    let dir = std::env::temp_dir().join(format!("lg-labeler-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("labeler.safetensors");
    ens.save(&p).unwrap();
    let back = Ensemble::load(&p, &Device::Cpu).unwrap();
    let again = back.predict_image(test, 0).unwrap();
    assert_eq!(again.classes, pred.classes);
    assert_eq!(again.uncertainty, pred.uncertainty);
}

#[test]
fn regression_heads_train() {
    let mut rng = SplitMix64::new(8);
    let batches: Vec<FeatureTaps> = (0..3).map(|_| taps(&mut rng, 1)).collect();
    let depth: Vec<ImageLabels> = batches
        .iter()
        .map(|t| {
            ImageLabels::depth(
                t.get("l3")
                    .unwrap()
                    .tensor
                    .get(0)
                    .unwrap()
                    .get(1)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            )
        })
        .collect();
    let cfg = LabelerConfig {
        members: 2,
        hidden: Some((16, 8)),
        pixels_per_image: 100,
        max_epochs: 4,
        ..LabelerConfig::new(Head::Depth, 16)
    };
    let (_, r) = fit(&cfg, &InMemoryTaps::from_batches(&batches).unwrap(), &depth, |_| {}).unwrap();
    assert!(r.best_val_loss.iter().all(|l| l.is_finite()));
    let kps: Vec<ImageLabels> = (0..3)
        .map(|i| ImageLabels::keypoints(vec![[3.0 + i as f32, 4.0], [10.0, 12.0]]))
        .collect();
    let cfg = LabelerConfig {
        head: Head::Keypoints { count: 2, sigma: 1.5 },
        ..cfg
    };
    let (e, _) = fit(&cfg, &InMemoryTaps::from_batches(&batches).unwrap(), &kps, |_| {}).unwrap();
    assert_eq!(e.predict_image(&batches[0], 0).unwrap().keypoints.unwrap().len(), 2);
}

#[test]
fn bad_input_is_named() {
    let mut rng = SplitMix64::new(9);
    let t = taps(&mut rng, 1);
    let cfg = small(Head::Segmentation { classes: 3 });
    let src = InMemoryTaps::from_batches(std::slice::from_ref(&t)).unwrap();
    let e = fit(&cfg, &src, &[ImageLabels::mask(vec![7; 256])], |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("class 7"), "{e}");
    let e = fit(&cfg, &src, &[ImageLabels::depth(vec![0.0; 256])], |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("image 0"), "{e}");
    let e = fit(&cfg, &src, &[], |_| {}).unwrap_err().to_string();
    assert!(e.contains("targets"), "{e}");
    let dir = std::env::temp_dir().join(format!("lg-labeler-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("nan.safetensors");
    let mut ens = Ensemble::init(&cfg, &t.specs(), &Device::Cpu).unwrap();
    ens.params
        .insert("b3".into(), Tensor::full(f32::NAN, (4, 3), &Device::Cpu).unwrap());
    ens.save(&p).unwrap();
    let e = Ensemble::load(&p, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("b3") && e.contains("non-finite"), "{e}");
    let other = FeatureTaps::new();
    assert!(ens.predict_image(&other, 0).is_err());
    let _ = DType::F32;
}
