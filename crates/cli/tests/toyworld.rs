//! `labelgan toyworld` end to end: matching files in every folder, 16-bit depth,
//! keypoints JSON, the contact sheet, same seed same bytes, and one-line errors; with
//! `--classes`, the toy objects and their class labels.

mod common;

use common::labelgan;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    common::tmp_in("toy", name)
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn writes_a_labelled_folder_deterministically() {
    let (a, b) = (tmp("a"), tmp("b"));
    // What a run killed between writing and renaming leaves behind: removed by the next.
    std::fs::create_dir_all(b.join("masks")).unwrap();
    std::fs::write(b.join("masks/00003.png.tmp4242"), b"half a png").unwrap();
    for out in [&a, &b] {
        let o = labelgan(&[
            "toyworld",
            "--count",
            "5",
            "--seed",
            "9",
            "--out",
            out.to_str().unwrap(),
            "--resolution",
            "48",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let names = files(&a.join("images"));
    assert_eq!(names, ["00000.png", "00001.png", "00002.png", "00003.png", "00004.png"]);
    assert_eq!(files(&a.join("masks")), names);
    assert_eq!(files(&b.join("masks")), names, "the stale temporary file is gone");
    assert_eq!(files(&a.join("depth")), names);
    for sub in ["images", "masks", "depth"] {
        for n in &names {
            let (x, y) = (
                std::fs::read(a.join(sub).join(n)).unwrap(),
                std::fs::read(b.join(sub).join(n)).unwrap(),
            );
            assert_eq!(x, y, "{sub}/{n} differs between two runs with the same seed");
        }
    }
    let img = image::open(a.join("images/00003.png")).unwrap();
    assert_eq!((img.width(), img.height()), (48, 48));
    assert!(matches!(img, image::DynamicImage::ImageRgb8(_)));
    let mask = image::open(a.join("masks/00003.png")).unwrap().to_luma8();
    assert!(mask.pixels().all(|p| p.0[0] < 8));
    assert!(mask.pixels().any(|p| p.0[0] == 1), "the mask has skin");
    let depth = image::open(a.join("depth/00003.png")).unwrap();
    assert!(matches!(depth, image::DynamicImage::ImageLuma16(_)), "depth is 16-bit");
    let depth = depth.to_luma16();
    assert!(depth.pixels().any(|p| p.0[0] == 65535) && depth.pixels().any(|p| p.0[0] < 40000));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("keypoints.json")).unwrap()).unwrap();
    assert_eq!(meta["images"].as_array().unwrap().len(), 5);
    assert_eq!(meta["images"][2]["file"], "00002.png");
    assert_eq!(meta["images"][2]["keypoints"].as_array().unwrap().len(), 5);
    assert_eq!(meta["keypoint_names"][2], "nose_tip");
    assert_eq!(meta["classes"][3], "left_eye");
    assert!(a.join("contact_sheet.png").exists());
}

#[test]
fn writes_class_labelled_objects() {
    let (a, b) = (tmp("objects_a"), tmp("objects_b"));
    for out in [&a, &b] {
        let o = labelgan(&[
            "toyworld",
            "--classes",
            "--count",
            "30",
            "--resolution",
            "32",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let labels = labelgan_dataset::ClassLabels::read(&a).unwrap().expect("classes.json");
    assert_eq!(labels.classes.len(), 10);
    assert_eq!(labels.classes[7], "snowman");
    assert_eq!(labels.images.len(), 30);
    let names = files(&a.join("images"));
    assert_eq!(names.len(), 30);
    assert_eq!(files(&a.join("masks")), names);
    for (l, n) in labels.images.iter().zip(&names) {
        assert_eq!(&l.file, n);
        // The same class as the library draws for that index.
        let i: u64 = n.trim_end_matches(".png").parse().unwrap();
        assert_eq!(l.class, labelgan_toyworld::objects::sample_object(0, i, 32).class);
    }
    assert!(
        labels
            .images
            .iter()
            .map(|l| l.class)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            >= 6
    );
    for n in &names {
        assert_eq!(
            std::fs::read(a.join("images").join(n)).unwrap(),
            std::fs::read(b.join("images").join(n)).unwrap()
        );
    }
    assert!(a.join("contact_sheet.png").exists());
    let o = labelgan(&[
        "toyworld",
        "--classes",
        "--count",
        "2",
        "--resolution",
        "8",
        "--out",
        a.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("16 to 256"));
}

#[test]
fn bad_arguments_fail_with_one_line() {
    let out = tmp("bad");
    let o = labelgan(&[
        "toyworld",
        "--count",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--resolution",
        "16",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("16") && err.contains("32"), "{err}");
    let o = labelgan(&["toyworld", "--count", "2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--out"));
    let o = labelgan(&["toyworld", "--count", "0", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    // A file where the folder should be.
    let blocker = tmp("blocker");
    std::fs::write(&blocker, b"x").unwrap();
    let o = labelgan(&["toyworld", "--count", "1", "--out", blocker.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("blocker"), "{err}");
}
