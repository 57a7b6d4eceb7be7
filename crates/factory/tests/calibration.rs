//! Class-prior calibration on a tiny random generator: the shift moves the labeler's
//! class shares on generated images to the target, the report agrees with a fresh
//! measurement, the cached variant reuses its file only for the same settings, and bad
//! input is named.

use candle_core::{Device, Tensor};
use labelgan_core::{FeatureTaps, Generator, NoiseMode, Truncation};
use labelgan_factory::{
    CALIBRATION_FILE, CALIBRATION_STREAM, PriorCalibration, calibrate_class_priors, calibrate_class_priors_cached,
    candidate_z, class_frequencies,
};
use labelgan_labeler::{Ensemble, Head, LabelerConfig};
use labelgan_stylegan::StyleGan2;

mod common;
use common::tiny_g;

/// A hand-made 2-class labeler: class 1 where channel `c` of the 16 px tap
/// `synthesis.b16.conv1` (hypercolumn feature 28 + c) exceeds `threshold`. One member;
/// every layer passes that feature through (ReLU, identity BatchNorm) and the last
/// layer's bias holds the threshold, so its logits are `[0, relu(x) - threshold]`.
fn threshold_labeler(g: &StyleGan2, c: usize, threshold: f32) -> Ensemble {
    let ws = g.map(&g.sample_z(1, 1).unwrap(), None, Truncation::NONE).unwrap();
    let taps = g.synthesize(&ws, NoiseMode::Const).unwrap().taps.features();
    let mut cfg = LabelerConfig::new(Head::Segmentation { classes: 2 }, 16);
    cfg.members = 1;
    cfg.hidden = Some((2, 2));
    let mut e = Ensemble::init(&cfg, &taps.specs(), &Device::Cpu).unwrap();
    let d = e.dim();
    assert_eq!((d, e.taps[4].name.as_str()), (32, "synthesis.b16.conv1"));
    let t = |v: Vec<f32>, shape: &[usize]| Tensor::from_vec(v, shape, &Device::Cpu).unwrap();
    let mut w1 = vec![0f32; d * 2];
    w1[(28 + c) * 2] = 1.0;
    e.params.insert("w1".into(), t(w1, &[1, d, 2]));
    e.params.insert("w2".into(), t(vec![1.0, 0.0, 0.0, 0.0], &[1, 2, 2]));
    e.params.insert("w3".into(), t(vec![0.0, 1.0, 0.0, 0.0], &[1, 2, 2]));
    e.params.insert("b3".into(), t(vec![0.0, -threshold], &[1, 2]));
    for (name, v) in [("b1", 0.0), ("b2", 0.0), ("running_mean", 0.0), ("bias", 0.0)] {
        for (k, p) in e.params.iter_mut() {
            if k == name || (k.starts_with("bn") && k.ends_with(name)) {
                *p = (p.zeros_like().unwrap() + v).unwrap();
            }
        }
    }
    for k in ["bn1.weight", "bn1.running_var", "bn2.weight", "bn2.running_var"] {
        let p = e.params.get_mut(k).unwrap();
        // running_var + eps = 1 exactly is not needed: 1 - 1e-5 keeps the scale at 1.
        *p = (p.ones_like().unwrap() - if k.ends_with("var") { 1e-5 } else { 0.0 }).unwrap();
    }
    e
}

/// The taps of the calibration images of `opts`, per batch, generated in the same
/// batches as the library's loop but written out here.
fn calibration_taps(g: &StyleGan2, opts: &PriorCalibration) -> Vec<(FeatureTaps, usize)> {
    let mut out = vec![];
    for s in (0..opts.images).step_by(opts.batch) {
        let k = opts.batch.min(opts.images - s);
        let zs: Vec<_> = (s..s + k)
            .map(|i| candidate_z(g, opts.seed ^ CALIBRATION_STREAM, i as u64).unwrap())
            .collect();
        let ws = g
            .map(&Tensor::cat(&zs, 0).unwrap(), None, Truncation::psi(opts.psi))
            .unwrap();
        out.push((g.synthesize(&ws, NoiseMode::Const).unwrap().taps.features(), k));
    }
    out
}

/// Channel `c` of `synthesis.b16.conv1` over the calibration images of `opts`.
fn feature_values(g: &StyleGan2, c: usize, opts: &PriorCalibration) -> Vec<f32> {
    let mut out = vec![];
    for (taps, _) in calibration_taps(g, opts) {
        let tap = taps.iter().find(|t| t.name == "synthesis.b16.conv1").unwrap();
        out.extend(
            tap.tensor
                .narrow(1, c, 1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
        );
    }
    out
}

/// Class shares of `e`'s masks on the calibration images of `opts`, measured here
/// independently of the library's loop.
fn shares(g: &StyleGan2, e: &Ensemble, opts: &PriorCalibration) -> Vec<f64> {
    let mut masks = vec![];
    for (taps, k) in calibration_taps(g, opts) {
        for j in 0..k {
            masks.push(e.predict_image(&taps, j).unwrap().classes.unwrap());
        }
    }
    class_frequencies(&masks, 2, None).unwrap()
}

#[test]
fn class_frequencies_count_pixels() {
    let f = class_frequencies(&[vec![0, 0, 1, 2], vec![2, 2, 2, 2]], 4, None).unwrap();
    // Unlabelled pixels (255) are not counted.
    let g = class_frequencies(&[vec![0, 0, 1, 2, 255], vec![2, 2, 2, 2, 255]], 4, Some(255)).unwrap();
    assert_eq!(f, g);
    assert_eq!(f, vec![0.25, 0.125, 0.625, 0.0]);
    let err = class_frequencies(&[vec![0, 5]], 4, Some(255)).unwrap_err().to_string();
    assert!(err.contains("class 5") && err.contains("4 classes"), "{err}");
}

#[test]
fn calibration_moves_the_shares_to_the_target() {
    let g = tiny_g();
    let opts = PriorCalibration {
        images: 6,
        rounds: 16,
        seed: 2,
        batch: 4,
        ..PriorCalibration::default()
    };
    // The channel positive on the most pixels.
    let positive = |c: usize| feature_values(&g, c, &opts).iter().filter(|&&x| x > 0.0).count();
    let c = (0..4).max_by_key(|&c| positive(c)).unwrap();
    let mut v = feature_values(&g, c, &opts);
    v.sort_by(f32::total_cmp);
    let n = v.len() as f64;
    let share_above = |t: f32| v.iter().filter(|&&x| x.max(0.0) > t).count() as f64 / n;
    // Of the share p of pixels where the feature is positive, class 1 starts on the
    // top third and the target asks for the top two thirds.
    let p = v.iter().filter(|&&x| x > 0.0).count() as f64 / n;
    assert!(p > 0.1, "the feature is positive on only {p} of the pixels");
    let (t0, t1) = (
        v[((1.0 - p / 3.0) * n) as usize],
        v[((1.0 - 2.0 * p / 3.0) * n) as usize],
    );
    assert!(t0 > t1 && t1 > 0.0);
    let seg = threshold_labeler(&g, c, t0);
    let start = share_above(t0);
    let want1 = share_above(t1);
    let target = vec![1.0 - want1, want1];
    let mut log = vec![];
    let (cal, rep) = calibrate_class_priors(&g, &seg, &target, &opts, &mut |l| log.push(l.to_string())).unwrap();
    let px = 2.0 / n; // a pixel or two may sit within rounding of the threshold
    assert!((rep.before[1] - start).abs() <= px, "{rep:?}");
    assert!(rep.distance_after < rep.distance_before / 10.0, "{rep:?}\n{log:?}");
    assert!((rep.after[1] - want1).abs() < 0.02, "{rep:?}\n{log:?}");
    // The shift lowers the threshold: class 1 where relu(x) > t0 - (shift1 - shift0).
    let moved = t0 - (rep.shift[1] - rep.shift[0]);
    assert!((rep.after[1] - share_above(moved)).abs() <= px, "{rep:?}");
    // The returned labeler is the input plus the reported shift, and draws the
    // reported shares.
    assert_eq!(shares(&g, &cal, &opts), rep.after);
    let mut by_hand = seg.clone();
    by_hand.shift_outputs(&rep.shift).unwrap();
    assert_eq!(shares(&g, &by_hand, &opts), rep.after);

    // Already on target: the zero shift wins, nothing changes.
    let (_, same) = calibrate_class_priors(&g, &seg, &rep.before, &opts, &mut |_| {}).unwrap();
    assert_eq!(same.shift, vec![0.0, 0.0]);
    assert_eq!(same.distance_after, 0.0);

    // Bad input is named.
    let err = calibrate_class_priors(&g, &seg, &[1.0], &opts, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 classes") && err.contains("has 2"), "{err}");
    let err = calibrate_class_priors(&g, &seg, &[f64::NAN, 0.5], &opts, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("finite"), "{err}");
}

#[test]
fn cached_calibration_is_reused_only_with_the_same_settings() {
    let g = tiny_g();
    let seg = threshold_labeler(&g, 0, 0.0);
    let dir = std::env::temp_dir().join(format!("lg-calibration-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let opts = PriorCalibration {
        images: 4,
        rounds: 4,
        seed: 1,
        batch: 4,
        ..PriorCalibration::default()
    };
    let target = vec![0.3, 0.7];
    let mut log = vec![];
    let (_, first) =
        calibrate_class_priors_cached(&g, &seg, &target, &opts, Some(&dir), &mut |l| log.push(l.to_string())).unwrap();
    assert!(dir.join(CALIBRATION_FILE).exists());
    assert!(log.iter().any(|l| l.contains("round 4")), "{log:?}");
    log.clear();
    let (cal, again) =
        calibrate_class_priors_cached(&g, &seg, &target, &opts, Some(&dir), &mut |l| log.push(l.to_string())).unwrap();
    assert_eq!(again, first);
    assert!(log.iter().any(|l| l.contains("made earlier")), "{log:?}");
    assert!(!log.iter().any(|l| l.contains("round")), "{log:?}");
    assert_eq!(shares(&g, &cal, &opts), first.after);
    // Other settings: measured again (and saved over the old file).
    log.clear();
    let other = PriorCalibration {
        rounds: 2,
        ..opts.clone()
    };
    calibrate_class_priors_cached(&g, &seg, &target, &other, Some(&dir), &mut |l| log.push(l.to_string())).unwrap();
    assert!(log.iter().any(|l| l.contains("other settings")), "{log:?}");
    // A corrupt file is named.
    std::fs::write(dir.join(CALIBRATION_FILE), "{not json").unwrap();
    let err = calibrate_class_priors_cached(&g, &seg, &target, &opts, Some(&dir), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains(CALIBRATION_FILE), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
