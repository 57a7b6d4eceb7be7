//! Criterion benchmarks of the StyleGAN2 generator forward pass (random weights):
//! mapping, synthesis with taps, and the image-only path, at 64 and 256 px.

use criterion::{Criterion, criterion_group, criterion_main};
use labelgan::prelude::*;

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut group = c.benchmark_group("generator");
    group.sample_size(10);
    for (res, base, batch) in [(64usize, 16384usize, 4usize), (256, 16384, 1)] {
        let cfg = GeneratorConfig {
            img_resolution: res,
            channel_base: base,
            ..Default::default()
        };
        let g = StyleGan2::random(&cfg, 0, &dev).expect("random generator");
        let z = g.sample_z(batch, 0).expect("z");
        let ws = g.map(&z, None, Truncation::NONE).expect("map");
        group.bench_function(format!("map/b{batch}"), |b| {
            b.iter(|| g.map(&z, None, Truncation::NONE).expect("map"))
        });
        group.bench_function(format!("synthesize_taps/{res}px/cb{base}/b{batch}"), |b| {
            b.iter(|| g.synthesize(&ws, NoiseMode::Const).expect("synthesize"))
        });
        group.bench_function(format!("image_only/{res}px/cb{base}/b{batch}"), |b| {
            b.iter(|| g.image(&ws, NoiseMode::Const).expect("image"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
