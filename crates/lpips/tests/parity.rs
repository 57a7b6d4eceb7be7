//! Parity with the `lpips` 0.1.4 package on the reference fixtures: the deterministic
//! weights of `detfill.py`, ported here, give the same distances and spatial maps.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use labelgan_core::io::TensorFile;
use labelgan_lpips::detfill::fill;
use labelgan_lpips::{Lpips, Net};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/lpips")
        .join(name)
}

/// The device the checks run on: the CPU, or the GPU named by LABELGAN_TEST_DEVICE.
fn device() -> Device {
    labelgan_core::device::test_device().unwrap()
}

/// The model of the fixture for `net`, and its io tensors, on [`device`].
fn model(net: &str) -> (Lpips, TensorFile) {
    let dev = device();
    let io = TensorFile::load(fixture(&format!("lpips_{net}_io.safetensors")), &dev).unwrap();
    let tensors = labelgan_lpips::detfill::fixture_model(&io, &dev).unwrap();
    let file = TensorFile {
        path: format!("<detfill {net}>").into(),
        tensors,
        metadata: Default::default(),
    };
    (Lpips::from_file(file).unwrap(), io)
}

#[test]
fn detfill_port_matches_python_values() {
    // Values printed by detfill.py's `fill` (numpy).
    assert_eq!(
        fill("net.slice1.0.bias", 3, 1000, 0.1),
        [-0.06227995f32, -0.028875804, 0.0053606154]
    );
    assert_eq!(fill("lin2.model.1.weight", 2, 1001, 1.0), [0.2755556f32, 0.3313682]);
}

#[test]
fn distances_and_spatial_maps_match_the_package() {
    for (net, want_net) in [("vgg", Net::Vgg), ("alex", Net::Alex), ("squeeze", Net::Squeeze)] {
        let (m, io) = model(net);
        assert_eq!(m.net, want_net, "{net}: backbone recognised from the keys");
        let (x0, x1) = (io.get("x0").unwrap(), io.get("x1").unwrap());
        let d = m.distance(x0, x1).unwrap();
        let e = labelgan_core::max_abs_diff(&d, io.get("distance").unwrap()).unwrap();
        assert!(e < 1e-5, "{net}: distance off by {e}: {d}");
        let s = m.spatial(x0, x1).unwrap();
        let e = labelgan_core::max_abs_diff(&s, io.get("spatial").unwrap()).unwrap();
        assert!(e < 1e-5, "{net}: spatial map off by {e}");
        // f64 agrees too (used by the gradient checks).
        let d64 = m
            .to_dtype(DType::F64)
            .unwrap()
            .distance(&x0.to_dtype(DType::F64).unwrap(), &x1.to_dtype(DType::F64).unwrap())
            .unwrap();
        let e = labelgan_core::max_abs_diff(&d64.to_dtype(DType::F32).unwrap(), &d).unwrap();
        assert!(e < 1e-5, "{net}: f64 vs f32 {e}");
    }
}

/// d distance / d x0 by autograd against central differences (f64), for every net:
/// this goes through the max-pools, whose built-in backward is wrong in candle.
#[test]
fn gradients_match_finite_differences() {
    use candle_core::Var;
    use labelgan_core::SplitMix64;
    for (net, size) in [("vgg", 32), ("alex", 64), ("squeeze", 48)] {
        let (m, _) = model(net);
        let m = m.to_dtype(DType::F64).unwrap();
        let dev = device();
        let mut rng = SplitMix64::new(7);
        let mut image = || {
            let t = rng.normal_tensor(&[1, 3, size, size], &Device::Cpu).unwrap();
            t.tanh().unwrap().to_dtype(DType::F64).unwrap().to_device(&dev).unwrap()
        };
        let (x0, x1) = (image(), image());
        let v = Var::from_tensor(&x0).unwrap();
        let grads = m
            .distance(v.as_tensor(), &x1)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g = grads.get(&v).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let flat = x0.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let at = |i: usize, delta: f64| {
            let mut p = flat.clone();
            p[i] += delta;
            let x = Tensor::from_vec(p, x0.dims(), &dev).unwrap();
            m.distance(&x, &x1)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let scale = g.iter().fold(0f64, |a, &b| a.max(b.abs()));
        for _ in 0..6 {
            let i = rng.below(flat.len() as u64) as usize;
            let eps = 1e-5;
            let fd = (at(i, eps) - at(i, -eps)) / (2.0 * eps);
            let err = (fd - g[i]).abs() / scale;
            assert!(
                err < 1e-5,
                "{net} pixel {i}: autograd {} vs finite differences {fd} (scale {scale})",
                g[i]
            );
        }
    }
}
