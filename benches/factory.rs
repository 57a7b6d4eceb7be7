//! Criterion benchmark of the factory end to end (`generate_dataset`: generate with
//! taps, label segmentation with a 10-member ensemble, filter, write PNGs and the
//! manifest) with a random StyleGAN2 and ensemble of the published sizes: one block of
//! 10 candidates, 9 kept, at 64 and 256 px (channel_base 16384).

#[path = "../examples/common/mod.rs"]
mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use labelgan::prelude::*;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("factory");
    group.sample_size(10);
    for res in [64usize, 256] {
        let (g, labelers) = common::random_factory(res, 16384, 8, &Device::Cpu).expect("random factory");
        let fc = FactoryConfig {
            count: 9,
            block: 10,
            batch: 5,
            ..FactoryConfig::default()
        };
        let root = std::env::temp_dir().join(format!("labelgan-bench-factory-{}", std::process::id()));
        let mut run = 0usize;
        group.bench_function(format!("end_to_end/{res}px/9_images"), |b| {
            b.iter(|| {
                run += 1;
                let out = root.join(run.to_string());
                generate_dataset(&g, &labelers, &fc, &out, &mut |_| true).expect("factory")
            })
        });
        let _ = std::fs::remove_dir_all(&root);
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
