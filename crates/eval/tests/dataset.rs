//! Joining labelled sets: order, repeats, names, label kinds present in every part only,
//! and mistakes named.

use candle_core::{Device, Tensor};
use labelgan_dataset::{LabelledSet, Targets, load_dataset};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("lg-eval-dataset-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn concat_repeats_parts_in_order() {
    let (a, b) = (tmp("a"), tmp("b"));
    labelgan_toyworld::write_dataset(&a, 1, 3, 32, |_, _| {}).unwrap();
    labelgan_toyworld::write_dataset(&b, 2, 2, 32, |_, _| {}).unwrap();
    let (sa, sb) = (load_dataset(&a, 32, None).unwrap(), load_dataset(&b, 32, None).unwrap());
    let j = LabelledSet::concat(&[(&sa, 1), (&sb, 3)]).unwrap();
    assert_eq!(j.images.dims(), &[3 + 2 * 3, 3, 32, 32]);
    assert_eq!(j.names[0], format!("p0r0_{}", sa.names[0]));
    assert_eq!(j.names[3], format!("p1r0_{}", sb.names[0]));
    assert_eq!(j.names[8], format!("p1r2_{}", sb.names[1]));
    // Image 7 is b's image 0 in its third repeat; image 2 is a's last.
    let row = |s: &Tensor, i: usize| s.get(i).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(row(&j.images, 7), row(&sb.images, 0));
    assert_eq!(row(&j.images, 2), row(&sa.images, 2));
    let (jm, bm) = (j.targets.masks.as_ref().unwrap(), sb.targets.masks.as_ref().unwrap());
    assert_eq!(jm.len(), 9);
    assert_eq!(jm[8], bm[1]);
    assert_eq!(
        j.targets.keypoints.as_ref().unwrap()[4],
        sb.targets.keypoints.as_ref().unwrap()[1]
    );
    assert_eq!(j.targets.depth.as_ref().unwrap().len(), 9);

    // A kind one part lacks is dropped; a repeat of 0 leaves the part out.
    let no_depth = LabelledSet {
        targets: Targets {
            depth: None,
            ..sb.targets.clone()
        },
        ..sb.clone()
    };
    let j = LabelledSet::concat(&[(&sa, 2), (&no_depth, 1)]).unwrap();
    assert!(j.targets.depth.is_none() && j.targets.masks.is_some());
    assert_eq!(j.images.dim(0).unwrap(), 8);
    let j = LabelledSet::concat(&[(&sa, 1), (&no_depth, 0)]).unwrap();
    assert!(j.targets.depth.is_some());

    // Mistakes.
    let err = LabelledSet::concat(&[(&sa, 0)]).unwrap_err().to_string();
    assert!(err.contains("nothing to concatenate"), "{err}");
    let small = LabelledSet {
        images: Tensor::zeros((1, 3, 16, 16), candle_core::DType::F32, &Device::Cpu).unwrap(),
        targets: Targets::default(),
        names: vec!["x.png".into()],
    };
    let err = LabelledSet::concat(&[(&sa, 1), (&small, 1)]).unwrap_err().to_string();
    assert!(err.contains("part 1") && err.contains("[3, 16, 16]"), "{err}");
    let mut fewer = sb.clone();
    fewer.targets.keypoints = Some(vec![vec![[1.0, 2.0]]; 2]);
    let err = LabelledSet::concat(&[(&sa, 1), (&fewer, 1)]).unwrap_err().to_string();
    assert!(err.contains("keypoint counts"), "{err}");
    for d in [a, b] {
        std::fs::remove_dir_all(d).unwrap();
    }
}
