//! Toyworld: determinism, label consistency (keypoints fall on their classes, depth
//! agrees with the mask), and variation over the stream.

use labelgan_toyworld::{CLASSES, HairStyle, ToyFace, batch_tensor, check_resolution, render_with, sample};

#[test]
fn same_seed_same_bytes_and_streams_differ() {
    let a = sample(11, 5, 64);
    let b = sample(11, 5, 64);
    assert_eq!(a.rgb, b.rgb);
    assert_eq!(a.mask, b.mask);
    assert_eq!(a.depth, b.depth);
    assert_ne!(a.rgb, sample(11, 6, 64).rgb);
    assert_ne!(a.rgb, sample(12, 5, 64).rgb);
}

#[test]
fn keypoints_fall_on_their_classes() {
    let (mut eyes_ok, mut nose_ok, mut mouth_ok, n) = (0, 0, 0, 60);
    for i in 0..n {
        let f = sample(3, i, 64);
        let r = f.resolution;
        let class_at = |p: [f32; 2]| {
            let (x, y) = (p[0].round() as usize, p[1].round() as usize);
            f.mask[y.min(r - 1) * r + x.min(r - 1)]
        };
        // Within `d` pixels of class `c`.
        let near = |p: [f32; 2], c: u8, d: i64| {
            let (x, y) = (p[0].round() as i64, p[1].round() as i64);
            (-d..=d).any(|dy| {
                (-d..=d).any(|dx| {
                    let (xx, yy) = (x + dx, y + dy);
                    xx >= 0
                        && yy >= 0
                        && (xx as usize) < r
                        && (yy as usize) < r
                        && f.mask[yy as usize * r + xx as usize] == c
                })
            })
        };
        assert!(
            f.visible.iter().all(|&v| v),
            "face {i}: every keypoint is visible at these yaws"
        );
        eyes_ok += usize::from(class_at(f.keypoints[0]) == 3 && class_at(f.keypoints[1]) == 4);
        nose_ok += usize::from(near(f.keypoints[2], 6, 1));
        mouth_ok += usize::from(near(f.keypoints[3], 7, 1) && near(f.keypoints[4], 7, 1));
        // Left eye is left of the right eye in the image for these rolls.
        assert!(f.keypoints[0][0] < f.keypoints[1][0], "face {i}: eyes swapped");
    }
    assert!(
        eyes_ok >= n as usize * 95 / 100,
        "eye centres on eye pixels: {eyes_ok}/{n}"
    );
    assert!(
        nose_ok >= n as usize * 95 / 100,
        "nose tips on nose pixels: {nose_ok}/{n}"
    );
    assert!(
        mouth_ok >= n as usize * 95 / 100,
        "mouth corners at mouth pixels: {mouth_ok}/{n}"
    );
}

#[test]
fn depth_agrees_with_the_mask() {
    for i in 0..20 {
        let f = sample(4, i, 64);
        let mut nose = vec![];
        let mut skin = vec![];
        for (p, (&c, &d)) in f.mask.iter().zip(&f.depth).enumerate() {
            assert!((0.0..=1.0).contains(&d), "face {i} pixel {p}: depth {d}");
            if c == 0 {
                // Background pixels may only be nearer where anti-aliasing mixes in a head.
                continue;
            }
            assert!(d < 1.0, "face {i} pixel {p}: class {c} at the far plane");
            match c {
                6 => nose.push(d),
                1 => skin.push(d),
                _ => {}
            }
        }
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
        assert!(!nose.is_empty(), "face {i} has no nose pixels");
        assert!(
            mean(&nose) < mean(&skin),
            "face {i}: the nose should be nearer than the skin on average"
        );
        let far = f
            .mask
            .iter()
            .zip(&f.depth)
            .filter(|(c, d)| **c == 0 && **d == 1.0)
            .count();
        assert!(far > 0, "face {i}: some background is at the far plane");
    }
}

#[test]
fn the_stream_varies_what_a_gan_must_learn() {
    let faces: Vec<_> = (0..200).map(|i| sample(5, i, 32)).collect();
    let mut seen = [false; 8];
    for f in &faces {
        for &c in &f.mask {
            seen[c as usize] = true;
        }
    }
    assert!(seen.iter().all(|&s| s), "every class appears: {seen:?} ({CLASSES:?})");
    for style in [HairStyle::Short, HairStyle::Long, HairStyle::Bangs, HairStyle::Bald] {
        assert!(
            faces.iter().any(|f| f.face.hair_style == style),
            "no {style:?} hair in 200 faces"
        );
    }
    assert!(faces.iter().any(|f| f.face.mouth_open) && faces.iter().any(|f| !f.face.mouth_open));
    // Yaw moves the features: in the head's frame (roll undone), the protruding nose
    // tip sits right of the eyes' midpoint when the face turns right.
    let agree = faces
        .iter()
        .filter(|f| f.face.yaw.abs() > 0.25)
        .filter(|f| {
            let k = &f.keypoints;
            let (mx, my) = ((k[0][0] + k[1][0]) / 2.0, (k[0][1] + k[1][1]) / 2.0);
            let (s, c) = (f.face.roll as f32).sin_cos();
            let along = c * (k[2][0] - mx) + s * (k[2][1] - my);
            (along > 0.0) == (f.face.yaw > 0.0)
        })
        .count();
    let turned = faces.iter().filter(|f| f.face.yaw.abs() > 0.25).count();
    assert!(
        agree * 10 >= turned * 9,
        "nose follows yaw in {agree}/{turned} turned faces"
    );
    // Not all the same colour.
    let means: Vec<f64> = faces
        .iter()
        .map(|f| f.rgb.iter().map(|&v| v as f64).sum::<f64>() / f.rgb.len() as f64)
        .collect();
    let (lo, hi) = means
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &m| (a.min(m), b.max(m)));
    assert!(hi - lo > 30.0, "mean brightness spans only {lo:.0}..{hi:.0}");
}

#[test]
fn images_are_anti_aliased() {
    // A 32 px render should match a 128 px render averaged over 4x4 blocks (what the
    // eye sees of a finer image) much better with supersampling than without.
    let mut rng = labelgan_core::SplitMix64::derive(6, 0);
    let face = labelgan_toyworld::Face::random(&mut rng);
    let fine = render_with(&face, 128, 4);
    let err = |img: &ToyFace| {
        let mut e = 0.0;
        for y in 0..32 {
            for x in 0..32 {
                for c in 0..3 {
                    let mut m = 0.0;
                    for dy in 0..4 {
                        for dx in 0..4 {
                            m += fine.rgb[((y * 4 + dy) * 128 + x * 4 + dx) * 3 + c] as f64 / 16.0;
                        }
                    }
                    e += (img.rgb[(y * 32 + x) * 3 + c] as f64 - m).abs();
                }
            }
        }
        e / (32.0 * 32.0 * 3.0)
    };
    let (aa, point) = (err(&render_with(&face, 32, 4)), err(&render_with(&face, 32, 1)));
    assert!(
        aa < 0.5 * point,
        "supersampled error {aa:.2} vs point-sampled {point:.2}"
    );
    let f = sample(6, 0, 64);
    let t = batch_tensor(6, 0, 2, 64, &candle_core::Device::Cpu).unwrap();
    assert_eq!(t.dims(), &[2, 3, 64, 64]);
    let v = t.get(0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    // Channel-major conversion of the same bytes.
    assert_eq!(v[0], f.rgb[0] as f32 / 127.5 - 1.0);
    assert_eq!(v[64 * 64], f.rgb[1] as f32 / 127.5 - 1.0);
}

#[test]
fn resolutions_out_of_range_are_named() {
    let e = check_resolution(16).unwrap_err().to_string();
    assert!(e.contains("32") && e.contains("256") && e.contains("16"), "{e}");
    assert!(check_resolution(300).is_err());
    assert!(check_resolution(64).is_ok());
    assert!(batch_tensor(0, 0, 1, 8, &candle_core::Device::Cpu).is_err());
}
