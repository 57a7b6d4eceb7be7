//! The FID Inception-v3 against pytorch-fid's own forward pass. The real weights cannot
//! ship, so both sides fill every tensor from a hash of its name and index (the LPIPS
//! fixtures' `detfill`; `tests/fixtures/inception/make_fixture.py` wrote the reference
//! outputs with
//! pytorch-fid 0.3.0's network); the pool3 features and logits of two 37 x 50 images
//! (resized to 299) must agree.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use labelgan_core::FeatureExtractor;
use labelgan_core::io::{TensorFile, save_safetensors};
use labelgan_lpips::classifier::load_extractor;
use labelgan_lpips::inception_v3::{CLASSES, FEATURES, InceptionV3, KIND};

/// `n` values in [-1, 1) for `name`, as the fixture script's `hashed`.
fn hashed(name: &str, n: usize) -> Vec<f64> {
    labelgan_lpips::detfill::fill(name, n, 0, 1.0)
        .into_iter()
        .map(f64::from)
        .collect()
}

/// The fixture script's `fill`.
fn fill(name: &str, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v = hashed(name, n);
    let v: Vec<f32> = if name.ends_with("conv.weight") {
        let s = (6.0 / (n / shape[0]) as f64).sqrt();
        v.iter().map(|x| (x * s) as f32).collect()
    } else if name == "fc.weight" {
        let s = (3.0 / shape[1] as f64).sqrt();
        v.iter().map(|x| (x * s) as f32).collect()
    } else if name.ends_with("running_var") {
        v.iter().map(|x| (1.0 + 0.25 * (x + 1.0)) as f32).collect()
    } else if name.ends_with("bn.weight") {
        v.iter().map(|x| (1.0 + 0.1 * x) as f32).collect()
    } else {
        v.iter().map(|x| (0.1 * x) as f32).collect()
    };
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Every tensor of the network (names and shapes of torchvision's Inception-v3 with
/// pytorch-fid's blocks), filled.
fn hashed_weights() -> BTreeMap<String, Tensor> {
    let mut out = BTreeMap::new();
    let mut conv = |name: &str, o: usize, i: usize, kh: usize, kw: usize| {
        out.insert(
            format!("{name}.conv.weight"),
            fill(&format!("{name}.conv.weight"), &[o, i, kh, kw]),
        );
        for p in ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"] {
            let key = format!("{name}.{p}");
            out.insert(key.clone(), fill(&key, &[o]));
        }
    };
    conv("Conv2d_1a_3x3", 32, 3, 3, 3);
    conv("Conv2d_2a_3x3", 32, 32, 3, 3);
    conv("Conv2d_2b_3x3", 64, 32, 3, 3);
    conv("Conv2d_3b_1x1", 80, 64, 1, 1);
    conv("Conv2d_4a_3x3", 192, 80, 3, 3);
    for (p, i, pool) in [("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)] {
        conv(&format!("{p}.branch1x1"), 64, i, 1, 1);
        conv(&format!("{p}.branch5x5_1"), 48, i, 1, 1);
        conv(&format!("{p}.branch5x5_2"), 64, 48, 5, 5);
        conv(&format!("{p}.branch3x3dbl_1"), 64, i, 1, 1);
        conv(&format!("{p}.branch3x3dbl_2"), 96, 64, 3, 3);
        conv(&format!("{p}.branch3x3dbl_3"), 96, 96, 3, 3);
        conv(&format!("{p}.branch_pool"), pool, i, 1, 1);
    }
    conv("Mixed_6a.branch3x3", 384, 288, 3, 3);
    conv("Mixed_6a.branch3x3dbl_1", 64, 288, 1, 1);
    conv("Mixed_6a.branch3x3dbl_2", 96, 64, 3, 3);
    conv("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 3);
    for (p, c) in [
        ("Mixed_6b", 128),
        ("Mixed_6c", 160),
        ("Mixed_6d", 160),
        ("Mixed_6e", 192),
    ] {
        conv(&format!("{p}.branch1x1"), 192, 768, 1, 1);
        conv(&format!("{p}.branch7x7_1"), c, 768, 1, 1);
        conv(&format!("{p}.branch7x7_2"), c, c, 1, 7);
        conv(&format!("{p}.branch7x7_3"), 192, c, 7, 1);
        conv(&format!("{p}.branch7x7dbl_1"), c, 768, 1, 1);
        conv(&format!("{p}.branch7x7dbl_2"), c, c, 7, 1);
        conv(&format!("{p}.branch7x7dbl_3"), c, c, 1, 7);
        conv(&format!("{p}.branch7x7dbl_4"), c, c, 7, 1);
        conv(&format!("{p}.branch7x7dbl_5"), 192, c, 1, 7);
        conv(&format!("{p}.branch_pool"), 192, 768, 1, 1);
    }
    conv("Mixed_7a.branch3x3_1", 192, 768, 1, 1);
    conv("Mixed_7a.branch3x3_2", 320, 192, 3, 3);
    conv("Mixed_7a.branch7x7x3_1", 192, 768, 1, 1);
    conv("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7);
    conv("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1);
    conv("Mixed_7a.branch7x7x3_4", 192, 192, 3, 3);
    for (p, i) in [("Mixed_7b", 1280), ("Mixed_7c", 2048)] {
        conv(&format!("{p}.branch1x1"), 320, i, 1, 1);
        conv(&format!("{p}.branch3x3_1"), 384, i, 1, 1);
        conv(&format!("{p}.branch3x3_2a"), 384, 384, 1, 3);
        conv(&format!("{p}.branch3x3_2b"), 384, 384, 3, 1);
        conv(&format!("{p}.branch3x3dbl_1"), 448, i, 1, 1);
        conv(&format!("{p}.branch3x3dbl_2"), 384, 448, 3, 3);
        conv(&format!("{p}.branch3x3dbl_3a"), 384, 384, 1, 3);
        conv(&format!("{p}.branch3x3dbl_3b"), 384, 384, 3, 1);
        conv(&format!("{p}.branch_pool"), 192, i, 1, 1);
    }
    out.insert("fc.weight".into(), fill("fc.weight", &[CLASSES, FEATURES]));
    out.insert("fc.bias".into(), fill("fc.bias", &[CLASSES]));
    out
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/inception/inception_io.safetensors")
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap()
}

#[test]
fn matches_pytorch_fid_and_loads_as_an_extractor() {
    // The CPU, or the GPU named by LABELGAN_TEST_DEVICE (tools/gpu_check.sh).
    let dev = labelgan_core::device::test_device().unwrap();
    let dir = std::env::temp_dir().join(format!("labelgan-inception-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("inception.safetensors");
    let meta = BTreeMap::from([("labelgan_extractor".to_string(), KIND.to_string())]);
    save_safetensors(&path, &hashed_weights(), &meta).unwrap();

    let reference = TensorFile::load(fixture(), &dev).unwrap();
    let images = Tensor::from_vec(
        hashed("input", 2 * 3 * 37 * 50)
            .iter()
            .map(|&v| v as f32)
            .collect::<Vec<_>>(),
        (2, 3, 37, 50),
        &dev,
    )
    .unwrap();
    let net = InceptionV3::load(&path, &dev).unwrap();
    let pool3 = net.pool3(&images).unwrap();
    let want = reference.get("pool3").unwrap();
    let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(scale > 1e-2, "the reference's features are not degenerate ({scale})");
    let err = max_abs(&pool3, want);
    assert!(err < 1e-5, "pool3 differs by {err} (scale {scale})");
    let logits = net.logits(&pool3).unwrap();
    let err = max_abs(&logits, reference.get("logits").unwrap());
    assert!(err < 1e-5, "logits differ by {err}");

    // Through the extractor loader: recognised by its metadata; probabilities sum to 1.
    let ex = load_extractor(&path, &dev).unwrap();
    assert_eq!(ex.dim(), FEATURES);
    let p = ex.class_probabilities(&images).unwrap().unwrap();
    assert_eq!(p.dims(), &[2, CLASSES]);
    let sums: Vec<f32> = p.sum(1).unwrap().to_vec1().unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");

    // A converted file missing a tensor is refused, naming it.
    let mut broken = hashed_weights();
    broken.remove("Mixed_6c.branch7x7dbl_4.bn.running_var");
    save_safetensors(&path, &broken, &meta).unwrap();
    let err = InceptionV3::load(&path, &dev).unwrap_err().to_string();
    assert!(err.contains("Mixed_6c.branch7x7dbl_4.bn.running_var"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
