//! Helpers shared by the measurement examples.

#![allow(dead_code)]

use labelgan::prelude::*;

/// Peak resident set size of this process in MB (Linux `VmHWM`; 0 elsewhere).
pub fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// The conv-layer tap shapes of a StyleGAN2 generator: `b4.conv1`, then `conv0` and
/// `conv1` of every later block, `C(r) = min(channel_base / r, 512)`.
pub fn stylegan_tap_shapes(resolution: usize, channel_base: usize) -> Vec<(String, usize, usize)> {
    let mut out = vec![("synthesis.b4.conv1".to_string(), 4, (channel_base / 4).min(512))];
    let mut r = 8;
    while r <= resolution {
        let c = (channel_base / r).min(512);
        out.push((format!("synthesis.b{r}.conv0"), r, c));
        out.push((format!("synthesis.b{r}.conv1"), r, c));
        r *= 2;
    }
    out
}

/// Random N(0, 1) taps of those shapes (batch 1), on the CPU.
pub fn random_taps(resolution: usize, channel_base: usize, seed: u64) -> labelgan::core::Result<FeatureTaps> {
    random_taps_on(resolution, channel_base, seed, &Device::Cpu)
}

/// [`random_taps`] on `device` (drawn on the CPU, so every device gets the same values).
pub fn random_taps_on(
    resolution: usize,
    channel_base: usize,
    seed: u64,
    device: &Device,
) -> labelgan::core::Result<FeatureTaps> {
    let mut rng = labelgan::core::SplitMix64::new(seed);
    let mut taps = FeatureTaps::new();
    for (name, r, c) in stylegan_tap_shapes(resolution, channel_base) {
        taps.push(Tap::new(
            name,
            rng.normal_tensor(&[1, c, r, r], &Device::Cpu)?.to_device(device)?,
        )?)?;
    }
    Ok(taps)
}

/// Median seconds of `repeats` (at least 1) timed calls of `f`, after one untimed
/// warm-up call. On a GPU, `f` must end with `device.synchronize()` to time the work
/// rather than its launch.
pub fn median_seconds(
    repeats: usize,
    mut f: impl FnMut() -> labelgan::core::Result<()>,
) -> labelgan::core::Result<f64> {
    f()?;
    let mut ts = Vec::new();
    for _ in 0..repeats.max(1) {
        let t = std::time::Instant::now();
        f()?;
        ts.push(t.elapsed().as_secs_f64());
    }
    ts.sort_by(f64::total_cmp);
    Ok(ts[ts.len() / 2])
}

/// The toyworld set `dir`: written (seed, count, resolution) unless already there, then
/// loaded with its labels.
pub fn toyworld_set(
    dir: &std::path::Path,
    seed: u64,
    count: usize,
    resolution: usize,
) -> labelgan::core::Result<labelgan::dataset::LabelledSet> {
    let kp = dir.join("keypoints.json");
    if kp.exists() {
        // Reuse the folder only if it is the set this run asks for: a folder written by
        // another --seed or size would mix runs without a word.
        let text = std::fs::read(&kp).map_err(|e| labelgan::core::Error::io(&kp, e))?;
        let v: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| labelgan::core::Error::format(&kp, e.to_string()))?;
        let had = (
            v["seed"].as_u64(),
            v["resolution"].as_u64(),
            v["images"].as_array().map(Vec::len),
        );
        if had.0 != Some(seed) || had.1 != Some(resolution as u64) || had.2.unwrap_or(0) < count {
            let show = |v: Option<u64>| v.map_or("unknown".to_string(), |v| v.to_string());
            return Err(labelgan::core::Error::invalid(format!(
                "{} holds toyworld seed {}, {} px, {} images; this run needs seed {seed}, {resolution} px, {count} images (another --seed or size): use another --out or delete the folder",
                dir.display(),
                show(had.0),
                show(had.1),
                show(had.2.map(|n| n as u64))
            )));
        }
    } else {
        labelgan::toyworld::write_dataset(dir, seed, count, resolution, |_, _| {})?;
    }
    labelgan::dataset::load_dataset(dir, resolution, Some(count))
}

/// `G(ws)` with constant noise, 16 images at a time.
pub fn render(g: &StyleGan2, ws: &Tensor) -> labelgan::core::Result<Tensor> {
    let n = ws.dim(0)?;
    let mut out = vec![];
    for s in (0..n).step_by(16) {
        out.push(g.image(&ws.narrow(0, s, 16.min(n - s))?, NoiseMode::Const)?);
    }
    Ok(Tensor::cat(&out, 0)?)
}

/// A randomly initialised StyleGAN2 (`channel_base`, z = w = 512) and a segmentation
/// ensemble of the published sizes (10 members, `classes` classes) on its feature taps:
/// the factory's workload, whose cost does not depend on the weights.
pub fn random_factory(
    resolution: usize,
    channel_base: usize,
    classes: usize,
    device: &Device,
) -> labelgan::core::Result<(StyleGan2, Labelers)> {
    let config = GeneratorConfig {
        img_resolution: resolution,
        channel_base,
        ..Default::default()
    };
    let g = StyleGan2::random(&config, 0, device)?;
    let cfg = LabelerConfig::new(Head::Segmentation { classes }, resolution);
    let seg = Ensemble::init(&cfg, &g.spec().feature_taps(), device)?;
    let labelers = Labelers {
        segmentation: Some(seg),
        ..Labelers::default()
    };
    Ok((g, labelers))
}
