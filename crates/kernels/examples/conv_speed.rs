//! The implicit-GEMM convolution's forward and weight gradient at the CIFAR ResNet GAN's
//! shapes, one image per GEMM beside the chosen image groups, in one run:
//!
//! ```text
//! cargo run --release -p labelgan-kernels --example conv_speed [-- --batch 64 --reps 3]
//! ```
//!
//! Prints one JSON line per shape with GFLOP/s for each pass and grouping. With
//! `--winograd`, the 3x3 forward at LPIPS-VGG's 256 px shapes instead: the direct
//! implicit GEMM beside Winograd's F(2x2, 3x3), in GFLOP/s of the direct method's count.

use std::time::Instant;

use labelgan_kernels::implicit_gemm::{
    FORWARD_COLUMNS, WEIGHT_GRAD_COLUMNS, conv_cpu_grouped, images_per_gemm, weight_grad_cpu_grouped,
};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a positive integer, got {v}"))
        })
        .unwrap_or(default)
}

/// The best of `reps` timings of `f`, in seconds.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// The direct forward beside Winograd's at VGG-16's 3x3 shapes for a 256 px input.
fn winograd(n: usize, reps: usize) {
    use labelgan_kernels::bias_act::BiasAct;
    for (c, o, s) in [
        (64, 64, 256),
        (128, 128, 128),
        (256, 256, 64),
        (512, 512, 32),
        (512, 512, 16),
    ] {
        let x: Vec<f32> = (0..n * c * s * s)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let w: Vec<f32> = (0..o * c * 9)
            .map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let gflop = 2.0 * (n * o * c * 9 * s * s) as f64 / 1e9;
        let group = images_per_gemm((s + 2) * (s + 2), n, FORWARD_COLUMNS);
        let direct = best(reps, || {
            std::hint::black_box(conv_cpu_grouped(&x, &w, (n, c, s, s), (o, 3), 1, None, false, group));
        });
        let wino = best(reps, || {
            std::hint::black_box(labelgan_kernels::winograd::conv3x3(
                &x,
                &w,
                (n, c, s, s),
                o,
                1,
                None,
                &BiasAct::default(),
            ));
        });
        println!(
            "{{\"batch\":{n},\"in\":{c},\"out\":{o},\"size\":{s},\"direct_s\":{direct:.4},\"winograd_s\":{wino:.4},\"direct_gflops\":{:.1},\"winograd_gflops\":{:.1}}}",
            gflop / direct,
            gflop / wino
        );
    }
}

fn main() {
    let (n, reps) = (arg("--batch", 64), arg("--reps", 3));
    if std::env::args().any(|a| a == "--winograd") {
        return winograd(arg("--batch", 2), reps);
    }
    // (channels in, channels out, map size): G's blocks at width 256, D's at 128.
    for (c, o, s) in [
        (256, 256, 4),
        (256, 256, 8),
        (256, 256, 16),
        (256, 256, 32),
        (128, 128, 16),
        (128, 128, 8),
    ] {
        let (k, p) = (3, 1);
        let x: Vec<f32> = (0..n * c * s * s)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let w: Vec<f32> = (0..o * c * k * k)
            .map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let g: Vec<f32> = (0..n * o * s * s)
            .map(|i| ((i * 15485863) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let gflop = 2.0 * (n * o * c * k * k * s * s) as f64 / 1e9;
        let plane = (s + 2 * p) * (s + 2 * p);
        let auto = images_per_gemm(plane, n, FORWARD_COLUMNS);
        let share = n.div_ceil(labelgan_kernels::cpu_threads().min(n));
        let auto_wg = images_per_gemm(plane, share, WEIGHT_GRAD_COLUMNS);
        let mut line = format!(
            "{{\"batch\":{n},\"in\":{c},\"out\":{o},\"size\":{s},\"group\":{auto},\"group_weight_grad\":{auto_wg}"
        );
        for (name, group, group_wg) in [("one", 1, 1), ("grouped", auto, auto_wg)] {
            let fwd = best(reps, || {
                std::hint::black_box(conv_cpu_grouped(&x, &w, (n, c, s, s), (o, k), p, None, false, group));
            });
            let wg = best(reps, || {
                std::hint::black_box(weight_grad_cpu_grouped(&x, &g, (n, c, s, s), (o, k), p, group_wg));
            });
            line += &format!(
                ",\"forward_gflops_{name}\":{:.1},\"weight_grad_gflops_{name}\":{:.1}",
                gflop / fwd,
                gflop / wg
            );
        }
        println!("{line}}}");
    }
}
