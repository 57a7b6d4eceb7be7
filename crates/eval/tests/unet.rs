//! The UNet learns toyworld labels from a dataset folder (one model per head, as the
//! quickstart trains them), and round-trips its file.

use candle_core::Device;
use labelgan_dataset::{LabelledSet, load_dataset};
use labelgan_eval::unet::Flip;
use labelgan_eval::{Confusion, DepthError, Pck, UNet, UNetConfig};

fn config(classes: usize, keypoints: usize, depth: bool, steps: usize) -> UNetConfig {
    UNetConfig {
        resolution: 32,
        widths: vec![8, 16, 32],
        classes,
        keypoints,
        depth,
        sigma: 1.5,
        lr: if keypoints > 0 { 3e-3 } else { 1e-2 },
        batch: 8,
        steps,
        seed: 1,
        flip: Some(Flip::toyworld()),
        shift: 2,
        keypoint_loss: labelgan_eval::KeypointLoss::SpatialSoftmax,
        ignore_index: Some(255),
    }
}

fn miou(u: &UNet, set: &LabelledSet) -> f64 {
    let mut c = Confusion::new(8);
    for (pr, m) in u
        .predict(&set.images)
        .unwrap()
        .iter()
        .zip(set.targets.masks.as_ref().unwrap())
    {
        c.add(m, pr.mask.as_ref().unwrap()).unwrap();
    }
    c.report().miou
}

fn train(cfg: UNetConfig, set: &LabelledSet) -> (UNet, Vec<f32>) {
    let mut u = UNet::new(cfg, &Device::Cpu).unwrap();
    let mut losses = vec![];
    u.train(&set.images, &set.targets, &mut |_, l| losses.push(l)).unwrap();
    (u, losses)
}

fn falls(losses: &[f32]) {
    falls_to(losses, 0.0)
}

/// The loss's excess over `floor` (its least possible value) falls by 40 %.
fn falls_to(losses: &[f32], floor: f32) {
    let first = losses[..10].iter().sum::<f32>() / 10.0;
    let last = losses[losses.len() - 10..].iter().sum::<f32>() / 10.0;
    assert!(
        last - floor < 0.6 * (first - floor),
        "loss {first} -> {last} (floor {floor})"
    );
}

#[test]
fn learns_toyworld_labels() {
    let dir = std::env::temp_dir().join(format!("lg-eval-unet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    labelgan_toyworld::write_dataset(&dir, 4, 48, 32, |_, _| {}).unwrap();
    let full = load_dataset(&dir, 32, None).unwrap();
    assert_eq!(full.images.dims(), [48, 3, 32, 32]);

    let mut seg = full.clone();
    (seg.targets.keypoints, seg.targets.depth) = (None, None);
    let before = miou(&UNet::new(config(8, 0, false, 1), &Device::Cpu).unwrap(), &seg);
    let (u, losses) = train(config(8, 0, false, 200), &seg);
    falls(&losses);
    let after = miou(&u, &seg);
    eprintln!("mIoU {before} -> {after}");
    assert!(after > before + 0.1, "mIoU {before} -> {after}");

    let mut kp = full.clone();
    (kp.targets.masks, kp.targets.depth) = (None, None);
    let pck = |u: &UNet| {
        let mut p = Pck::new(&[0.1]);
        for (i, pr) in u.predict(&kp.images).unwrap().iter().enumerate() {
            p.add(
                &kp.targets.keypoints.as_ref().unwrap()[i],
                pr.keypoints.as_ref().unwrap(),
                32,
            )
            .unwrap();
        }
        p.report()[0]
    };
    let before = pck(&UNet::new(config(0, 5, false, 1), &Device::Cpu).unwrap());
    let (u, losses) = train(config(0, 5, false, 150), &kp);
    // The cross-entropy against a Gaussian of std 1.5 px cannot go below its entropy,
    // about ln(2 pi e 1.5^2) = 3.65 nats.
    falls_to(
        &losses,
        (2.0 * std::f32::consts::PI * std::f32::consts::E * 1.5 * 1.5).ln(),
    );
    let after = pck(&u);
    eprintln!("PCK@0.1 {before} -> {after}");
    assert!(after > 0.5 && after > before + 0.3, "PCK {before} -> {after}");

    let mut dp = full.clone();
    (dp.targets.masks, dp.targets.keypoints) = (None, None);
    let rmse = |u: &UNet| {
        let mut d = DepthError::default();
        for (i, pr) in u.predict(&dp.images).unwrap().iter().enumerate() {
            d.add(&dp.targets.depth.as_ref().unwrap()[i], pr.depth.as_ref().unwrap())
                .unwrap();
        }
        d.report().rmse
    };
    let before = rmse(&UNet::new(config(0, 0, true, 1), &Device::Cpu).unwrap());
    let (u, losses) = train(config(0, 0, true, 80), &dp);
    falls(&losses);
    let after = rmse(&u);
    eprintln!("depth RMSE {before} -> {after}");
    assert!(after < 0.5 * before, "depth RMSE {before} -> {after}");

    let path = dir.join("unet.safetensors");
    u.save(&path).unwrap();
    let back = UNet::load(&path, &Device::Cpu).unwrap();
    assert_eq!(rmse(&back), after);
    let e = UNet::load(dir.join("missing.safetensors"), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.safetensors"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Models trained side by side, each on a one-thread pool, end with the same weights as
/// models trained one after the other on the whole pool (at the quickstart's size, where
/// the convolutions split their work across threads).
#[test]
fn concurrent_training_equals_sequential() {
    let dir = std::env::temp_dir().join(format!("labelgan-unet-concurrent-{}", std::process::id()));
    labelgan_toyworld::write_dataset(&dir, 5, 16, 64, |_, _| {}).unwrap();
    let set = load_dataset(&dir, 64, None).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let cfgs: Vec<UNetConfig> = [(8, 0, false), (0, 5, false), (0, 0, true)]
        .into_iter()
        .map(|(c, k, d)| UNetConfig {
            resolution: 64,
            batch: 16,
            ..config(c, k, d, 4)
        })
        .collect();
    let targets: Vec<labelgan_dataset::Targets> = cfgs
        .iter()
        .map(|c| labelgan_dataset::Targets {
            masks: set.targets.masks.clone().filter(|_| c.classes > 0),
            keypoints: set.targets.keypoints.clone().filter(|_| c.keypoints > 0),
            depth: set.targets.depth.clone().filter(|_| c.depth),
        })
        .collect();
    let sequential: Vec<UNet> = cfgs
        .iter()
        .zip(&targets)
        .map(|(c, t)| {
            let mut u = UNet::new(c.clone(), &Device::Cpu).unwrap();
            u.train(&set.images, t, &mut |_, _| {}).unwrap();
            u
        })
        .collect();
    let jobs = cfgs
        .iter()
        .zip(&targets)
        .map(|(c, t)| labelgan_eval::TrainJob {
            unet: UNet::new(c.clone(), &Device::Cpu).unwrap(),
            images: &set.images,
            targets: t,
            validation: None,
        })
        .collect();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let concurrent = labelgan_eval::train_concurrently(jobs, 2, &|_, _, _| {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    })
    .unwrap();
    assert_eq!(calls.into_inner(), 12, "one progress call per step of each model");
    for (k, (a, (b, _))) in sequential.iter().zip(&concurrent).enumerate() {
        let (ya, yb) = (a.forward(&set.images).unwrap(), b.forward(&set.images).unwrap());
        let diff = (ya - yb)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0, "model {k}: outputs differ by up to {diff}");
    }
}

/// Unlabelled pixels (the ignore index, 255) carry no loss: a set whose masks are all
/// unlabelled trains at loss 0, and without an ignore index the same masks are an
/// error naming the class instead of an index out of bounds.
#[test]
fn ignored_pixels_carry_no_loss() {
    let dir = std::env::temp_dir().join(format!("lg-eval-ignore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    labelgan_toyworld::write_dataset(&dir, 4, 4, 32, |_, _| {}).unwrap();
    let mut seg = load_dataset(&dir, 32, None).unwrap();
    (seg.targets.keypoints, seg.targets.depth) = (None, None);
    for m in seg.targets.masks.as_mut().unwrap() {
        m.iter_mut().for_each(|c| *c = 255);
    }
    let (_, losses) = train(config(8, 0, false, 3), &seg);
    assert!(losses.iter().all(|&l| l == 0.0), "{losses:?}");
    let mut strict = config(8, 0, false, 3);
    strict.ignore_index = None;
    let mut u = UNet::new(strict, &Device::Cpu).unwrap();
    let e = u
        .train(&seg.images, &seg.targets, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds class 255"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `select_unets` trains every combination, scores each on the validation split as it
/// trains and keeps the best combination at its best step; the model it returns scores
/// exactly what it reports on that split (its weights are the kept step's).
#[test]
fn settings_are_chosen_on_the_validation_split() {
    use labelgan_eval::{DownstreamConfig, DownstreamJob, HeadKind, Selection, score, select_unets, selection_score};
    let dir = std::env::temp_dir().join(format!("lg-eval-select-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    labelgan_toyworld::write_dataset(&dir.join("train"), 4, 16, 32, |_, _| {}).unwrap();
    labelgan_toyworld::write_dataset(&dir.join("val"), 5, 6, 32, |_, _| {}).unwrap();
    let train = load_dataset(&dir.join("train"), 32, None).unwrap();
    let val = load_dataset(&dir.join("val"), 32, None).unwrap();
    let cfg = DownstreamConfig {
        steps: [40, 40, 40],
        batch: 4,
        widths: Some(vec![4, 8]),
        classes: 8,
        keypoints: 5,
        ..DownstreamConfig::default()
    };
    let jobs = [DownstreamJob {
        name: "train".into(),
        set: &train,
        heads: vec![HeadKind::Segmentation],
    }];
    // A learning rate 10^4 times smaller learns nothing in 40 steps: never chosen.
    let sel = Selection {
        lr_factors: vec![1e-4, 1.0],
        width_factors: vec![1.0],
        evaluations: 4,
    };
    let out = select_unets(&jobs, &cfg, &sel, Some(&val), 2, &Device::Cpu, &|_| {}).unwrap();
    let s = &out[0];
    assert_eq!(s.tried.len(), 2);
    assert_eq!(s.lr, 1e-2, "{:?}", s.tried);
    assert!([10, 20, 30, 40].contains(&s.steps), "{}", s.steps);
    let again = selection_score(&score(&[(&s.unet, &[HeadKind::Segmentation])], &val, 8).unwrap());
    assert_eq!(Some(again), s.score);
    // Several combinations without a validation split: refused.
    assert!(select_unets(&jobs, &cfg, &sel, None, 1, &Device::Cpu, &|_| {}).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
