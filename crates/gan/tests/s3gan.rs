//! S3GAN's terms in the one training loop: the rotation loss enters D's loss for real
//! images and G's for generated ones with their own weights, the class predictor
//! trains on labelled reals only (the projection never trains it), partial labels and
//! soft labels are accepted, and a run with heads resumes bit-exactly.

mod common;

use candle_core::{Device, Tensor};
use common::checkpoint_values as state;
use labelgan_core::{Result, SplitMix64};
use labelgan_gan::{Loss, RealClasses, StepReport, Trainer, TrainingConfig};

/// Images with every other one labelled.
fn partial(start: u64, n: usize) -> Result<(Tensor, Option<RealClasses>)> {
    let x = SplitMix64::derive(7, start)
        .normal_tensor(&[n, 3, 16, 16], &Device::Cpu)?
        .tanh()?;
    let ids = (0..n as u64)
        .map(|i| ((start + i).is_multiple_of(2)).then_some(((start + i) % 4) as u32))
        .collect();
    Ok((x, Some(RealClasses::Partial(ids))))
}

fn config() -> TrainingConfig {
    let mut c = common::tiny_sndcgan(4, 8);
    c.train.loss = Loss::Hinge;
    c.train.rotation_batch_fraction = 2;
    c.train.class_predictor = true;
    c
}

fn steps(cfg: &TrainingConfig, n: usize) -> (Trainer, Vec<StepReport>) {
    let mut t = Trainer::new(cfg, &Device::Cpu).unwrap();
    let reports = (0..n).map(|_| t.train_step(&mut partial).unwrap()).collect();
    (t, reports)
}

fn changed(before: &Trainer, after: &Trainer, prefix: &str) -> bool {
    let (a, b) = (state(before), state(after));
    a.iter().filter(|(k, _)| k.starts_with(prefix)).any(|(k, v)| v != &b[k])
}

#[test]
fn the_heads_train_with_their_own_weights() {
    let cfg = config();
    let fresh = Trainer::new(&cfg, &Device::Cpu).unwrap();
    let (trained, reports) = steps(&cfg, 1);
    let r = reports[0];
    for v in [r.rotation_real, r.rotation_fake, r.class_loss] {
        assert!(v.is_finite() && v > 0.0, "{r:?}");
    }
    assert!(changed(&fresh, &trained, "d.heads.rotation."));
    assert!(changed(&fresh, &trained, "d.heads.predictor."));

    // Weight 0: the head gets no gradient, Adam leaves it where it was.
    let mut off = cfg.clone();
    off.train.rotation_weight_d = 0.0;
    off.train.class_predictor_weight = 0.0;
    let (t, _) = steps(&off, 1);
    assert!(!changed(&fresh, &t, "d.heads.rotation."));
    assert!(
        !changed(&fresh, &t, "d.heads.predictor."),
        "the projection trained the class predictor"
    );
    // D's own layers still train on the GAN loss.
    assert!(changed(&fresh, &t, "d.conv"));

    // G's rotation weight changes G's step and nothing of D's.
    let mut g_off = cfg.clone();
    g_off.train.rotation_weight_g = 0.0;
    let (a, b) = (state(&trained), state(&steps(&g_off, 1).0));
    assert!(a.iter().any(|(k, v)| k.starts_with("g.") && v != &b[k]));
    assert!(a.iter().filter(|(k, _)| k.starts_with("d.")).all(|(k, v)| v == &b[k]));
}

#[test]
fn soft_labels_and_hard_ones_are_accepted_and_checked() {
    let mut cfg = config();
    cfg.train.class_predictor = false;
    cfg.train.rotation_batch_fraction = 0;
    let mut t = Trainer::new(&cfg, &Device::Cpu).unwrap();
    let mut soft = |start: u64, n: usize| -> Result<(Tensor, Option<RealClasses>)> {
        let (x, _) = partial(start, n)?;
        Ok((x, Some(RealClasses::Soft(Tensor::full(0.25f32, (n, 4), &Device::Cpu)?))))
    };
    let r = t.train_step(&mut soft).unwrap();
    assert!(r.d_loss.is_finite() && r.rotation_real == 0.0 && r.class_loss == 0.0);
    let mut short = |start: u64, n: usize| -> Result<(Tensor, Option<RealClasses>)> {
        let (x, _) = partial(start, n)?;
        Ok((x, Some(RealClasses::Ids(vec![0; n - 1]))))
    };
    let e = t.train_step(&mut short).unwrap_err();
    assert!(e.to_string().contains("7 real classes for a batch of 8"), "{e}");
}

#[test]
fn a_run_with_heads_resumes_bit_exactly() {
    let mut cfg = config();
    cfg.model.d_spectral_norm = true;
    let (whole, _) = steps(&cfg, 3);
    let dir = std::env::temp_dir().join(format!("labelgan-s3gan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("ckpt.safetensors");
    let (first, _) = steps(&cfg, 1);
    first.save(&ckpt).unwrap();
    let mut resumed = Trainer::load(&ckpt, &cfg, &Device::Cpu).unwrap();
    for _ in 0..2 {
        resumed.train_step(&mut partial).unwrap();
    }
    let (a, b) = (state(&whole), state(&resumed));
    assert!(
        a.keys()
            .any(|k| k.starts_with("d_buffer.heads.rotation") && k.ends_with("sn_u"))
    );
    assert_eq!(a, b);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn settings_that_cannot_work_are_refused() {
    let mut c = config();
    c.model.conditional = false;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("train.class_predictor"), "{e}");
    let mut c = config();
    c.train.rotation_batch_fraction = 3;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("rotation_batch_fraction"), "{e}");
    let mut c = config();
    c.train.rotation_weight_g = f64::NAN;
    assert!(c.validate().unwrap_err().to_string().contains("rotation_weight_g"));
}

#[test]
fn the_predictor_names_classes_without_touching_the_run() {
    let (t, _) = steps(&config(), 2);
    let before = state(&t);
    let (x, _) = partial(100, 6).unwrap();
    let p = t.predict_classes(&x).unwrap().unwrap();
    assert_eq!(p.dims(), [6, 4]);
    for row in p.to_vec2::<f32>().unwrap() {
        assert!(
            (row.iter().sum::<f32>() - 1.0).abs() < 1e-5 && row.iter().all(|&v| v > 0.0),
            "{row:?}"
        );
    }
    // Evaluation only: no spectral-norm step, no statistics moved.
    assert_eq!(state(&t), before);
    let mut plain = config();
    plain.train.class_predictor = false;
    let (t, _) = steps(&plain, 1);
    assert!(t.predict_classes(&x).unwrap().is_none());
}

/// With a gradient penalty, the penalty's pass through D sees the classes the predictor
/// named for unlabelled reals, as the projection term of the loss does (not zero rows).
#[test]
fn the_penalty_sees_the_predicted_classes() {
    let unlabelled = |start: u64, n: usize| -> Result<(Tensor, Option<RealClasses>)> {
        let (x, _) = partial(start, n)?;
        Ok((x, Some(RealClasses::Partial(vec![None; n]))))
    };
    let penalty = |predictor: bool| {
        let mut c = config();
        c.train.rotation_batch_fraction = 0;
        c.train.loss = Loss::Wasserstein;
        c.train.penalty = labelgan_gan::Penalty::WganGp;
        c.train.penalty_weight = 10.0;
        c.train.class_predictor = predictor;
        c.train.class_predictor_weight = 0.0;
        let mut t = Trainer::new(&c, &Device::Cpu).unwrap();
        t.train_step(&mut { unlabelled }).unwrap().penalty
    };
    let (without, with) = (penalty(false), penalty(true));
    assert!(without > 0.0 && with > 0.0);
    assert!((without - with).abs() > 1e-6 * without, "{without} {with}");
}
