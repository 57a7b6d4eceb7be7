//! Weights initialised from a seed: a candle-nn [`VarBuilder`] backend that creates
//! each variable with its layer's init hint, drawing from a generator derived from the
//! run's seed and the variable's name. candle's own initialisers draw from an
//! unseeded generator on the CPU, so two runs would start from different weights.
//!
//! In orthogonal mode (Saxe et al. 2014; BigGAN's and Compare GAN's `orthogonal`
//! initialiser) every weight of two or more dimensions hinted as a normal draw is made
//! orthogonal instead: the Gaussian matrix `[outputs, inputs * k * k]` through a QR
//! decomposition (faer), its columns' signs fixed by R's diagonal so that the result
//! is uniform over orthogonal matrices. Constant hints (a zero-initialised conditional
//! gain, biases) are left as they are.

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::{Init, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{VarBuilder, VarMap};

use labelgan_core::SplitMix64;

/// Creates missing variables in a [`VarMap`] from a seed.
struct SeededVars {
    vars: VarMap,
    seed: u64,
    orthogonal: bool,
}

/// FNV-1a of a variable's name: its stream within the seed.
fn name_key(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn draw(shape: &Shape, hint: Init, rng: &mut SplitMix64, device: &Device) -> candle_core::Result<Tensor> {
    let n = shape.elem_count();
    let values: Vec<f64> = match hint {
        Init::Const(c) => vec![c; n],
        Init::Randn { mean, stdev } => (0..n).map(|_| mean + stdev * rng.normal()).collect(),
        Init::Uniform { lo, up } => (0..n).map(|_| lo + (up - lo) * rng.uniform()).collect(),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                NormalOrUniform::Normal => (0..n).map(|_| std * rng.normal()).collect(),
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    (0..n).map(|_| bound * (2.0 * rng.uniform() - 1.0)).collect()
                }
            }
        }
    };
    Tensor::from_vec(values, shape.clone(), device)
}

/// A `shape` weight whose `[shape[0], rest]` matrix has orthonormal rows (or columns,
/// when it has more rows than columns), drawn from `rng`.
fn orthogonal(shape: &Shape, rng: &mut SplitMix64, device: &Device) -> candle_core::Result<Tensor> {
    let rows = shape.dims()[0];
    let cols = shape.elem_count() / rows.max(1);
    // QR of the tall orientation; its thin Q has orthonormal columns.
    let (m, n) = (rows.max(cols), rows.min(cols));
    let a = faer::Mat::<f64>::from_fn(m, n, |_, _| rng.normal());
    let qr = a.qr();
    let (q, r) = (qr.compute_thin_Q(), qr.thin_R());
    let sign = |j: usize| if r[(j, j)] < 0.0 { -1.0 } else { 1.0 };
    let values: Vec<f64> = (0..rows)
        .flat_map(|i| (0..cols).map(move |j| (i, j)))
        .map(|(i, j)| {
            if rows >= cols {
                q[(i, j)] * sign(j)
            } else {
                q[(j, i)] * sign(i)
            }
        })
        .collect();
    Tensor::from_vec(values, shape.clone(), device)
}

impl SimpleBackend for SeededVars {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let mut data = self.vars.data().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = data.get(name) {
            let t = v.as_tensor();
            if t.shape() != &s {
                candle_core::bail!("shape mismatch for {name}: {:?} vs {:?}", t.shape(), s);
            }
            return Ok(t.clone());
        }
        let mut rng = SplitMix64::derive(self.seed, name_key(name));
        let value = match h {
            Init::Randn { .. } if self.orthogonal && s.rank() >= 2 => orthogonal(&s, &mut rng, dev)?,
            _ => draw(&s, h, &mut rng, dev)?,
        };
        let v = Var::from_tensor(&value.to_dtype(dtype)?)?;
        let t = v.as_tensor().clone();
        data.insert(name.to_string(), v);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("{name}: seeded variables are created with a shape, not looked up")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars
            .data()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }
}

/// A builder whose variables land in `vars`, each initialised by its hint from `seed`
/// and its name (the same seed and names give the same weights, whatever the order).
pub fn seeded_var_builder(vars: &VarMap, seed: u64, dtype: DType, device: &Device) -> VarBuilder<'static> {
    builder(vars, seed, false, dtype, device)
}

/// As [`seeded_var_builder`], for the networks of a config with initialisation `init`:
/// orthogonal weights when it says so.
pub fn init_var_builder(
    vars: &VarMap,
    seed: u64,
    init: crate::Init,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    builder(vars, seed, init == crate::Init::Orthogonal, dtype, device)
}

fn builder(vars: &VarMap, seed: u64, orthogonal: bool, dtype: DType, device: &Device) -> VarBuilder<'static> {
    let backend = SeededVars {
        vars: vars.clone(),
        seed,
        orthogonal,
    };
    VarBuilder::from_backend(Box::new(backend), dtype, device.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_weights_and_hints_honoured() {
        let build = |seed| {
            let vm = VarMap::new();
            let vb = seeded_var_builder(&vm, seed, DType::F64, &Device::Cpu);
            let w = vb
                .get_with_hints((200, 50), "a.weight", Init::Randn { mean: 0.0, stdev: 0.02 })
                .unwrap();
            let b = vb.get_with_hints(7, "a.bias", Init::Const(1.5)).unwrap();
            let k = vb
                .get_with_hints((100, 20), "b.weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)
                .unwrap();
            (w, b, k, vm)
        };
        let (w, b, k, vm) = build(3);
        let flat = |t: &Tensor| -> Vec<f64> { t.flatten_all().unwrap().to_vec1().unwrap() };
        assert_eq!(flat(&w), flat(&build(3).0));
        assert_ne!(flat(&w), flat(&build(4).0));
        assert_eq!(flat(&b), vec![1.5; 7]);
        let sd = |v: &[f64]| (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
        assert!((sd(&flat(&w)) - 0.02).abs() < 0.002);
        // Kaiming normal, fan in 20, ReLU gain: std sqrt(2 / 20).
        assert!((sd(&flat(&k)) - (0.1f64).sqrt()).abs() < 0.02, "{}", sd(&flat(&k)));
        assert_eq!(vm.all_vars().len(), 3);
    }

    #[test]
    fn orthogonal_weights_are_orthonormal_and_seeded() {
        let vm = VarMap::new();
        let vb = init_var_builder(&vm, 5, crate::Init::Orthogonal, DType::F64, &Device::Cpu);
        let normal = Init::Randn { mean: 0.0, stdev: 0.02 };
        // Wide (8 x 3*3*3 = 27): orthonormal rows; tall (40 x 6): orthonormal columns.
        let wide = vb.get_with_hints((8, 3, 3, 3), "conv.weight", normal).unwrap();
        let tall = vb.get_with_hints((40, 6), "dense.weight", normal).unwrap();
        let zero = vb.get_with_hints((4, 4), "gain.weight", Init::Const(0.0)).unwrap();
        let bias = vb.get_with_hints(8, "conv.bias", normal).unwrap();
        let gram = |m: &Tensor, rows: bool| -> Vec<Vec<f64>> {
            let m = m.reshape((m.dim(0).unwrap(), ())).unwrap();
            let g = if rows {
                m.matmul(&m.t().unwrap())
            } else {
                m.t().unwrap().matmul(&m)
            };
            g.unwrap().to_vec2().unwrap()
        };
        for (m, rows) in [(&wide, true), (&tall, false)] {
            let g = gram(m, rows);
            for (i, row) in g.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((v - want).abs() < 1e-12, "gram[{i}][{j}] = {v}");
                }
            }
        }
        let flat = |t: &Tensor| -> Vec<f64> { t.flatten_all().unwrap().to_vec1().unwrap() };
        assert!(flat(&zero).iter().all(|&v| v == 0.0), "constant hints stay constant");
        let sd = (flat(&bias).iter().map(|x| x * x).sum::<f64>() / 8.0).sqrt();
        assert!(sd < 0.1, "a one-dimensional weight keeps its normal draw (sd {sd})");
        let again = init_var_builder(&VarMap::new(), 5, crate::Init::Orthogonal, DType::F64, &Device::Cpu)
            .get_with_hints((8, 3, 3, 3), "conv.weight", normal)
            .unwrap();
        assert_eq!(flat(&wide), flat(&again), "the same seed gives the same weights");
    }
}
