//! Parity with the official stylegan2-ada-pytorch Generator on reference outputs
//! (`tests/fixtures/stylegan2`, made as described in `tests/fixtures/README.md`):
//! every case's `ws` and `img`, and every tap of case 0, within 1e-4 max abs error, on
//! the CPU or on the device `LABELGAN_TEST_DEVICE` names.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use labelgan_core::io::TensorFile;
use labelgan_core::{Generator, NoiseMode, Truncation};
use labelgan_stylegan::StyleGan2;

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    labelgan_core::max_abs_diff(a, b).unwrap()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/stylegan2")
        .join(name)
}

struct Case {
    truncation: Truncation,
    noise: NoiseMode,
}

fn case(io: &TensorFile, k: usize) -> Case {
    let v: serde_json::Value = serde_json::from_str(&io.metadata[&format!("case{k}")]).unwrap();
    let noise = match v["noise_mode"].as_str().unwrap() {
        "const" => NoiseMode::Const,
        "none" => NoiseMode::None,
        m => panic!("fixture noise mode {m}"),
    };
    let truncation = Truncation {
        psi: v["truncation_psi"].as_f64().unwrap(),
        cutoff: v["truncation_cutoff"].as_u64().map(|c| c as usize),
    };
    Case { truncation, noise }
}

#[test]
fn ws_images_and_taps_match_the_official_generator() {
    // The CPU, or the GPU named by LABELGAN_TEST_DEVICE (tools/gpu_check.sh).
    let dev = labelgan_core::device::test_device().unwrap();
    let g = StyleGan2::load(fixture("sg2_res32.safetensors"), &dev).unwrap();
    let io = TensorFile::load(fixture("sg2_res32_io.safetensors"), &dev).unwrap();
    let spec = g.spec();
    assert_eq!((spec.z_dim, spec.w_dim, spec.num_ws, spec.resolution), (64, 64, 8, 32));
    assert_eq!(g.runtime_kwargs().conv_clamp, Some(256.0));
    let z = io.get("z").unwrap();
    for k in 0..3 {
        let c = case(&io, k);
        let ws = g.map(z, None, c.truncation).unwrap();
        let e = max_abs_diff(&ws, io.get(&format!("case{k}.ws")).unwrap());
        eprintln!("case{k}.ws max abs error {e:.2e}");
        assert!(e < 1e-4, "case{k}.ws: max abs error {e}");
        let out = g.synthesize(&ws, c.noise).unwrap();
        let e = max_abs_diff(&out.image, io.get(&format!("case{k}.img")).unwrap());
        eprintln!("case{k}.img max abs error {e:.2e}");
        assert!(e < 1e-4, "case{k}.img: max abs error {e}");
        if k == 0 {
            let names: Vec<&String> = io.tensors.keys().filter(|n| n.starts_with("case0.tap.")).collect();
            assert_eq!(
                names.len(),
                11,
                "the fixture has 11 taps (b4: conv1, torgb; b8..b32: conv0, conv1, torgb)"
            );
            assert_eq!(out.taps.len(), 11, "we return the same 11 taps");
            for name in names {
                let tap_name = name.trim_start_matches("case0.tap.");
                let tap = out
                    .taps
                    .get(tap_name)
                    .unwrap_or_else(|| panic!("missing tap {tap_name}"));
                let e = max_abs_diff(&tap.tensor, io.get(name).unwrap());
                eprintln!("case0 {tap_name} max abs error {e:.2e}");
                assert!(e < 1e-4, "{tap_name}: max abs error {e}");
            }
            // image-only path computes the same picture.
            let e = max_abs_diff(&g.image(&ws, c.noise).unwrap(), &out.image);
            assert!(e == 0.0, "image() differs from synthesize(): {e}");
        }
    }
}

#[test]
fn tap_specs_describe_the_returned_taps() {
    let g = StyleGan2::load(fixture("sg2_res32.safetensors"), &Device::Cpu).unwrap();
    let ws = g.map(&g.sample_z(2, 3).unwrap(), None, Truncation::NONE).unwrap();
    let out = g.synthesize(&ws, NoiseMode::Const).unwrap();
    assert_eq!(out.taps.specs(), g.spec().taps);
    let names: Vec<String> = g.spec().taps.iter().map(|t| t.name.clone()).collect();
    assert_eq!(
        &names[..4],
        [
            "synthesis.b4.conv1",
            "synthesis.b4.torgb",
            "synthesis.b8.conv0",
            "synthesis.b8.conv1"
        ]
    );
}
