//! Property tests over random tap shapes: the sparse rows equal the dense rows, and the
//! factored projection equals `dense · W + b` (relative 1e-5), both upsampling modes,
//! on the CPU fast path and the device-generic path; the bf16 path against the f32
//! projection of bf16-rounded inputs.

use candle_core::{DType, Device, Tensor};
use labelgan_core::{FeatureTaps, SplitMix64, Tap};
use labelgan_hypercolumn::{FactoredProjection, Upsample, dense, sparse, sparse_into};

fn random_taps(rng: &mut SplitMix64, target: usize) -> FeatureTaps {
    let n = 1 + rng.below(2) as usize;
    let mut taps = FeatureTaps::new();
    let count = 1 + rng.below(5) as usize;
    for i in 0..count {
        // Resolutions below, at and (rarely) above the target, not only powers of two.
        let r = match rng.below(4) {
            0 => target,
            1 => 1 + rng.below(target as u64) as usize,
            2 => (target / 2).max(1),
            _ => target + 1 + rng.below(3) as usize,
        };
        let c = 1 + rng.below(9) as usize;
        let t = rng.normal_tensor(&[n, c, r, r], &Device::Cpu).unwrap();
        let t = if i % 2 == 0 { t.to_dtype(DType::F16).unwrap() } else { t };
        taps.push(Tap::new(format!("tap{i}"), t).unwrap()).unwrap();
    }
    taps
}

fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    labelgan_core::max_rel_diff(a, b, 1e-6).unwrap()
}

#[test]
fn sparse_rows_equal_dense_rows() {
    let mut rng = SplitMix64::new(1);
    for case in 0..40 {
        let target = 2 + rng.below(20) as usize;
        let taps = random_taps(&mut rng, target);
        let mode = if case % 2 == 0 {
            Upsample::Bilinear
        } else {
            Upsample::Nearest
        };
        let d = dense(&taps, target, mode).unwrap();
        let image = rng.below(taps.batch() as u64) as usize;
        let pixels: Vec<u32> = (0..1 + rng.below(50))
            .map(|_| rng.below((target * target) as u64) as u32)
            .collect();
        let s = sparse(&taps, image, &pixels, target, mode).unwrap();
        let idx = Tensor::new(pixels.as_slice(), &Device::Cpu).unwrap();
        let want = d.get(image).unwrap().index_select(&idx, 0).unwrap();
        let e = rel_err(&s, &want);
        assert!(e < 1e-5, "case {case}: relative error {e}");
        let mut into = vec![f32::NAN; s.elem_count()];
        sparse_into(&taps, image, &pixels, target, mode, &mut into).unwrap();
        // The f16 rows are the f32 rows, each rounded to the nearest f16.
        let mut half_rows = vec![half::f16::NAN; into.len()];
        sparse_into(&taps, image, &pixels, target, mode, &mut half_rows).unwrap();
        for (k, (h, &f)) in half_rows.iter().zip(&into).enumerate() {
            assert_eq!(
                h.to_bits(),
                half::f16::from_f32(f).to_bits(),
                "case {case}: f16 row value {k}"
            );
        }
        let into = Tensor::from_vec(into, s.dims(), &Device::Cpu).unwrap();
        let e = rel_err(&into, &want);
        assert!(e < 1e-5, "case {case}: sparse_into's relative error {e}");
    }
}

#[test]
fn factored_projection_equals_dense_times_w() {
    let mut rng = SplitMix64::new(2);
    for case in 0..40 {
        let target = 2 + rng.below(24) as usize;
        let taps = random_taps(&mut rng, target);
        let mode = if case % 2 == 0 {
            Upsample::Bilinear
        } else {
            Upsample::Nearest
        };
        let d = dense(&taps, target, mode).unwrap();
        let k = 1 + rng.below(40) as usize;
        let w = rng.normal_tensor(&[taps.total_channels(), k], &Device::Cpu).unwrap();
        let b = rng.normal_tensor(&[k], &Device::Cpu).unwrap();
        let image = rng.below(taps.batch() as u64) as usize;
        let want = d.get(image).unwrap().matmul(&w).unwrap().broadcast_add(&b).unwrap();
        let mut p = FactoredProjection::new(&w, Some(&b), &taps.specs()).unwrap();
        // Odd tile and chunk sizes exercise the sliding window of source rows.
        let tile = 1 + rng.below((target * target) as u64) as usize;
        p.chunk_pixels = 1 + rng.below((target * target) as u64) as usize;
        let mut tiles = vec![];
        p.for_each_tile(&taps, image, target, mode, tile, |_, t| {
            tiles.push(t);
            Ok(())
        })
        .unwrap();
        let got = Tensor::cat(&tiles, 0).unwrap();
        let e = rel_err(&got, &want);
        assert!(
            e < 1e-5,
            "case {case} (cpu, tile {tile}, chunk {}): relative error {e}",
            p.chunk_pixels
        );
        p.force_generic = true;
        let e = rel_err(&p.project(&taps, image, target, mode).unwrap(), &want);
        assert!(e < 1e-5, "case {case} (generic): relative error {e}");
        // Fused ReLU, both paths.
        p.relu = true;
        let want_relu = want.relu().unwrap();
        let e = rel_err(&p.project(&taps, image, target, mode).unwrap(), &want_relu);
        assert!(e < 1e-5, "case {case} (generic relu): relative error {e}");
        p.force_generic = false;
        let e = rel_err(&p.project(&taps, image, target, mode).unwrap(), &want_relu);
        assert!(e < 1e-5, "case {case} (cpu relu): relative error {e}");
        // Column blocks (any divisor of K), computed and handed out per block.
        let divisors: Vec<usize> = (1..=k).filter(|w| k.is_multiple_of(*w)).collect();
        let width = divisors[rng.below(divisors.len() as u64) as usize];
        let mut rows = vec![];
        p.for_each_cpu_block(
            &taps,
            image,
            target,
            mode,
            tile,
            width,
            |b, v| Ok((b, v.to_vec())),
            |ys, blocks| {
                let px = ys.len() * target;
                assert_eq!(blocks.len(), k / width);
                for i in 0..px {
                    for (b, (bi, v)) in blocks.iter().enumerate() {
                        assert_eq!(b, *bi, "blocks in order");
                        rows.extend_from_slice(&v[i * width..(i + 1) * width]);
                    }
                }
                Ok(())
            },
        )
        .unwrap();
        let got = Tensor::from_vec(rows, (target * target, k), &Device::Cpu).unwrap();
        let e = rel_err(&got, &want_relu);
        assert!(e < 1e-5, "case {case} (cpu blocks of {width}): relative error {e}");
        // Every image of the batch through the same projection: the buffers it keeps
        // from the previous call must not leak into the next.
        for other in 0..taps.batch() {
            let want = d
                .get(other)
                .unwrap()
                .matmul(&w)
                .unwrap()
                .broadcast_add(&b)
                .unwrap()
                .relu()
                .unwrap();
            let e = rel_err(&p.project(&taps, other, target, mode).unwrap(), &want);
            assert!(
                e < 1e-5,
                "case {case} (cpu, image {other} after {image}): relative error {e}"
            );
        }
    }
    let mut rng = SplitMix64::new(5);
    let taps = random_taps(&mut rng, 8);
    let w = Tensor::zeros((taps.total_channels(), 6), DType::F32, &Device::Cpu).unwrap();
    let p = FactoredProjection::new(&w, None, &taps.specs()).unwrap();
    let e = p
        .for_each_cpu_block(&taps, 0, 8, Upsample::Bilinear, 64, 4, |_, _| Ok(()), |_, _| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("block width 4 does not divide"), "{e}");
}

/// The bf16 path equals the f32 projection of the taps and weights rounded to bf16
/// (rounding commutes with nothing, but upsampling and projecting do, so the reference
/// is exact up to f32 sums), on the tile and the block paths. Runs where the CPU has AMX.
#[test]
fn bf16_projection_equals_projection_of_rounded_inputs() {
    let round = |t: &Tensor| t.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap();
    let mut rng = SplitMix64::new(9);
    let taps = random_taps(&mut rng, 20);
    let w = rng.normal_tensor(&[taps.total_channels(), 31], &Device::Cpu).unwrap();
    let mut p = FactoredProjection::new(&w, None, &taps.specs()).unwrap();
    assert!(!p.set_bf16(true).unwrap(), "K = 31 is not a multiple of 32: f32 stays");
    if !labelgan_kernels::amx::available() || !labelgan_kernels::native_on(&Device::Cpu) {
        // Without AMX, or down the generic kernel path a GPU takes, f32 stays.
        assert!(!p.set_bf16(true).unwrap());
        eprintln!("AMX or the CPU kernel path is not available here: the bf16 projection is not checked");
        return;
    }
    for case in 0..9 {
        let target = 8 + rng.below(40) as usize;
        let taps = if case < 8 {
            random_taps(&mut rng, target)
        } else {
            // Several taps at the target and at a lower resolution: their channels are
            // converted side by side from where each tap lies.
            let mut taps = FeatureTaps::new();
            for (i, (r, c)) in [(target, 3), (target, 5), (target / 2, 4), (target / 2, 2)]
                .into_iter()
                .enumerate()
            {
                let t = rng.normal_tensor(&[1, c, r, r], &Device::Cpu).unwrap();
                taps.push(Tap::new(format!("tap{i}"), t).unwrap()).unwrap();
            }
            taps
        };
        let mut rounded = FeatureTaps::new();
        for t in taps.iter() {
            rounded
                .push(Tap::new(t.name.clone(), round(&t.tensor)).unwrap())
                .unwrap();
        }
        let k = 32 * (1 + rng.below(3) as usize);
        let w = rng.normal_tensor(&[taps.total_channels(), k], &Device::Cpu).unwrap();
        let b = rng.normal_tensor(&[k], &Device::Cpu).unwrap();
        let mode = if case % 2 == 0 {
            Upsample::Bilinear
        } else {
            Upsample::Nearest
        };
        let want = dense(&rounded, target, mode)
            .unwrap()
            .get(0)
            .unwrap()
            .matmul(&round(&w))
            .unwrap()
            .broadcast_add(&b)
            .unwrap()
            .relu()
            .unwrap();
        let mut p = FactoredProjection::new(&w, Some(&b), &taps.specs()).unwrap();
        p.relu = true;
        p.chunk_pixels = 1 + rng.below((target * target) as u64) as usize;
        assert!(p.set_bf16(true).unwrap());
        let tile = 1 + rng.below((target * target) as u64) as usize;
        let e = rel_err(&p.project(&taps, 0, target, mode).unwrap(), &want);
        assert!(e < 1e-4, "case {case} (bf16 tiles): relative error {e}");
        let mut rows = vec![];
        p.for_each_cpu_block(
            &taps,
            0,
            target,
            mode,
            tile,
            32,
            |_, v| Ok(v.to_vec()),
            |ys, blocks| {
                for i in 0..ys.len() * target {
                    for v in &blocks {
                        rows.extend_from_slice(&v[i * 32..(i + 1) * 32]);
                    }
                }
                Ok(())
            },
        )
        .unwrap();
        let got = Tensor::from_vec(rows, (target * target, k), &Device::Cpu).unwrap();
        let e = rel_err(&got, &want);
        assert!(e < 1e-4, "case {case} (bf16 blocks): relative error {e}");
        // And off again: the f32 projection.
        assert!(!p.set_bf16(false).unwrap());
    }
}

#[test]
fn bad_inputs_are_named() {
    let mut rng = SplitMix64::new(3);
    let taps = random_taps(&mut rng, 8);
    let e = sparse(&taps, 0, &[64], 8, Upsample::Bilinear).unwrap_err().to_string();
    assert!(e.contains("pixel 64"), "{e}");
    let e = sparse(&taps, 9, &[0], 8, Upsample::Bilinear).unwrap_err().to_string();
    assert!(e.contains("image 9"), "{e}");
    let mut short = vec![0f32; 5];
    let e = sparse_into(&taps, 0, &[1, 2], 8, Upsample::Bilinear, &mut short)
        .unwrap_err()
        .to_string();
    assert!(e.contains("output buffer holds 5 values"), "{e}");
    let e = sparse_into(&taps, 0, &[64], 8, Upsample::Bilinear, &mut short)
        .unwrap_err()
        .to_string();
    assert!(e.contains("pixel 64"), "{e}");
    let w = Tensor::zeros((taps.total_channels() + 1, 3), DType::F32, &Device::Cpu).unwrap();
    assert!(FactoredProjection::new(&w, None, &taps.specs()).is_err());
    let w = Tensor::zeros((taps.total_channels(), 3), DType::F32, &Device::Cpu).unwrap();
    let other = random_taps(&mut SplitMix64::new(99), 8);
    let p = FactoredProjection::new(&w, None, &taps.specs()).unwrap();
    if other.specs() != taps.specs() {
        assert!(
            p.project(&other, 0, 8, Upsample::Bilinear)
                .unwrap_err()
                .to_string()
                .contains("do not match")
        );
    }
}
