//! The deterministic weights of the reference fixtures (`fixtures/lpips/detfill.py`):
//! a tensor named KEY of shape S is filled with uniform(-bound, bound) float32 values
//! from splitmix64 over a counter, seeded by FNV-1a-64(KEY) XOR a base seed. Used by
//! the parity tests; public so that other crates' tests can build the same models.

/// FNV-1a, 64 bits.
pub fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    h
}

/// `n` values for `key` (`detfill.py`'s `fill`).
pub fn fill(key: &str, n: usize, base_seed: u64, bound: f64) -> Vec<f32> {
    let seed = fnv1a64(key) ^ base_seed;
    (1..=n as u64)
        .map(|i| {
            let mut z = seed.wrapping_add(i.wrapping_mul(0x9E3779B97F4A7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
            z ^= z >> 31;
            let u = (z >> 40) as f64 / (1u64 << 24) as f64;
            ((2.0 * u - 1.0) * bound) as f32
        })
        .collect()
}

/// The bound `detfill.py` uses for `key` of `shape` (lin weights are then taken as
/// absolute values).
pub fn bound_for(key: &str, shape: &[usize]) -> f64 {
    if key.ends_with(".bias") {
        return 0.1;
    }
    if shape.len() == 4 && shape[0] == 1 && key.starts_with("lin") {
        return 1.0;
    }
    let fan_in: usize = shape[1..].iter().product();
    (6.0 / fan_in as f64).sqrt()
}

/// Every tensor of an LPIPS model for `shapes` (name -> shape), filled as the fixtures
/// were, plus the version-0.1 scaling constants.
pub fn model_tensors(
    shapes: &[(String, Vec<usize>)],
    base_seed: u64,
    device: &candle_core::Device,
) -> candle_core::Result<std::collections::HashMap<String, candle_core::Tensor>> {
    use candle_core::Tensor;
    let mut t = std::collections::HashMap::new();
    for (key, shape) in shapes {
        let n = shape.iter().product::<usize>().max(1);
        let mut v = fill(key, n, base_seed, bound_for(key, shape));
        if key.starts_with("lin") {
            v.iter_mut().for_each(|x| *x = x.abs());
        }
        t.insert(key.clone(), Tensor::from_vec(v, shape.as_slice(), device)?);
    }
    t.insert(
        "scaling_layer.shift".into(),
        Tensor::new(&[-0.030f32, -0.088, -0.188], device)?.reshape((1, 3, 1, 1))?,
    );
    t.insert(
        "scaling_layer.scale".into(),
        Tensor::new(&[0.458f32, 0.448, 0.450], device)?.reshape((1, 3, 1, 1))?,
    );
    Ok(t)
}

/// The tensors of the model a fixture io file describes (its metadata `shapes` and
/// `base_seed`), filled as the fixtures were.
pub fn fixture_model(
    io: &labelgan_core::io::TensorFile,
    device: &candle_core::Device,
) -> labelgan_core::Result<std::collections::HashMap<String, candle_core::Tensor>> {
    use labelgan_core::Error;
    let meta = |k: &str| {
        io.metadata
            .get(k)
            .ok_or_else(|| Error::format(&io.path, format!("no `{k}` metadata")))
    };
    let base: u64 = meta("base_seed")?
        .parse()
        .map_err(|_| Error::format(&io.path, "`base_seed` is not a number"))?;
    let shapes: std::collections::BTreeMap<String, Vec<usize>> =
        serde_json::from_str(meta("shapes")?).map_err(|e| Error::format(&io.path, format!("bad `shapes`: {e}")))?;
    let shapes: Vec<(String, Vec<usize>)> = shapes.into_iter().collect();
    Ok(model_tensors(&shapes, base, device)?)
}
