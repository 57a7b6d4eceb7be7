//! Criterion benchmarks of hypercolumn extraction at 256 px with StyleGAN2
//! channel_base 16384 tap shapes (random taps, 4,480 channels): the workload of
//! DatasetGAN/HandsOff users.
//!
//! - `dense`: the full `[65536, 4480]` hypercolumn (the published method's first step);
//! - `sparse_4096`: 4,096 random pixels' rows (what training gathers);
//! - `factored_projection`: `hypercolumn · W1` of a 10-member ensemble (`[4480, 2560]`)
//!   without the hypercolumn;
//! - `label_image`: full ensemble labelling (8 classes, vote, uncertainty, score).

#[path = "../examples/common/mod.rs"]
mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use labelgan::hypercolumn::{FactoredProjection, dense, sparse};
use labelgan::prelude::*;

fn bench(c: &mut Criterion) {
    let (res, base) = (256usize, 16384usize);
    let taps = common::random_taps(res, base, 0).expect("taps");
    let cfg = LabelerConfig::new(Head::Segmentation { classes: 8 }, res);
    let ens = Ensemble::init(&cfg, &taps.specs(), &Device::Cpu).expect("ensemble");
    let prepared = ens.prepare(&Device::Cpu).expect("prepare");
    let d = taps.total_channels();
    let w1 = ens
        .param("w1")
        .expect("w1")
        .permute((1, 0, 2))
        .and_then(|w| w.reshape((d, 2560)))
        .expect("w1");
    let proj = FactoredProjection::new(&w1, None, &taps.specs()).expect("projection");
    let mut rng = labelgan::core::SplitMix64::new(1);
    let pixels: Vec<u32> = (0..4096).map(|_| rng.below((res * res) as u64) as u32).collect();

    let mut g = c.benchmark_group("hypercolumn_256px_cb16384");
    g.sample_size(10);
    g.bench_function("dense", |b| {
        b.iter(|| dense(&taps, res, Upsample::Bilinear).expect("dense"))
    });
    g.bench_function("sparse_4096", |b| {
        b.iter(|| sparse(&taps, 0, &pixels, res, Upsample::Bilinear).expect("sparse"))
    });
    g.bench_function("factored_projection", |b| {
        b.iter(|| {
            proj.for_each_tile(&taps, 0, res, Upsample::Bilinear, 4096, |_, t| {
                std::hint::black_box(t);
                Ok(())
            })
            .expect("project")
        })
    });
    g.bench_function("label_image", |b| {
        b.iter(|| ens.predict_prepared(&prepared, &taps, 0).expect("label"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
