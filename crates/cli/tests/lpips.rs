//! `labelgan lpips` end to end with the fixture's deterministic SqueezeNet weights:
//! tensor pairs reproduce the package's distances, PNG pairs and folders print one
//! distance per line, spatial maps are written, and bad input fails with one line.

mod common;

use common::labelgan;
use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::Device;
use labelgan_core::image_io::{save_png, tensor_to_images};
use labelgan_core::io::{TensorFile, save_safetensors};

fn tmp(name: &str) -> PathBuf {
    common::tmp_in("lpips", name)
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/lpips/lpips_squeeze_io.safetensors")
}

/// Writes the fixture's SqueezeNet model (detfill weights) and returns its path.
fn weights() -> PathBuf {
    let io = TensorFile::load(fixture(), &Device::Cpu).unwrap();
    let t = labelgan_lpips::detfill::fixture_model(&io, &Device::Cpu).unwrap();
    let path = tmp("squeeze.safetensors");
    save_safetensors(&path, &t.into_iter().collect(), &BTreeMap::new()).unwrap();
    path
}

#[test]
fn pairs_folders_and_pngs() {
    let w = weights();
    let w = w.to_str().unwrap();
    // Tensor pairs: the package's distances.
    let out = tmp("out.safetensors");
    let o = labelgan(&[
        "lpips",
        "--weights",
        w,
        "--pairs",
        fixture().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--spatial",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = TensorFile::load(&out, &Device::Cpu).unwrap();
    let io = TensorFile::load(fixture(), &Device::Cpu).unwrap();
    let e = labelgan_core::max_abs_diff(got.get("distance").unwrap(), io.get("distance").unwrap()).unwrap();
    assert!(e < 1e-5, "distance off by {e}");
    assert_eq!(got.get("spatial").unwrap().dims(), &[4, 1, 64, 64]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 4);
    // PNGs and folders.
    let (da, db) = (tmp("a"), tmp("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let (a, b) = (
        tensor_to_images(io.get("x0").unwrap()).unwrap(),
        tensor_to_images(io.get("x1").unwrap()).unwrap(),
    );
    for i in 0..3 {
        save_png(&a[i], &da.join(format!("{i}.png"))).unwrap();
        save_png(&b[i], &db.join(format!("{i}.png"))).unwrap();
    }
    save_png(&b[3], &db.join("only_in_b.png")).unwrap();
    let (a0, b0) = (da.join("0.png"), db.join("0.png"));
    let map = tmp("map.png");
    let o = labelgan(&[
        "lpips",
        "--weights",
        w,
        a0.to_str().unwrap(),
        b0.to_str().unwrap(),
        "--spatial",
        map.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d: f32 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    let want = io.get("distance").unwrap().to_vec1::<f32>().unwrap()[0];
    assert!((d - want).abs() < 0.05 * want, "8-bit PNGs: {d} vs {want}");
    assert!(map.exists());
    let o = labelgan(&["lpips", "--weights", w, a0.to_str().unwrap(), a0.to_str().unwrap()]);
    let same: f32 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    assert_eq!(same, 0.0);
    let o = labelgan(&[
        "lpips",
        "--weights",
        w,
        "--dirs",
        da.to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with("0.png\t"));
    // Bad input: one line, naming the problem.
    let o = labelgan(&[
        "lpips",
        "--weights",
        fixture().to_str().unwrap(),
        a0.to_str().unwrap(),
        b0.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("scaling_layer.shift"), "{err}");
    let o = labelgan(&[
        "lpips",
        "--weights",
        w,
        a0.to_str().unwrap(),
        tmp("missing.png").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.png"));
}
