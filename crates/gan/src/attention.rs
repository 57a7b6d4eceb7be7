//! The non-local self-attention block of SAGAN (Zhang et al. 2019), as BigGAN uses it:
//! queries `θ = W_θ x` (C/8 channels), keys `φ = maxpool₂(W_φ x)` (C/8) and values
//! `g = maxpool₂(W_g x)` (C/2); each position attends over the pooled positions,
//! `a = softmax(θᵀ φ)`, and the block returns `x + σ · W_o (g aᵀ)` with σ learned from 0,
//! so a fresh block is the identity. All four 1x1 convolutions are spectrally normalised
//! when asked (the discriminator's).

use std::collections::BTreeMap;

use candle_core::{D, Tensor};
use candle_nn::VarBuilder;

use labelgan_core::{Error, Result};

use crate::Init;
use crate::layers::Conv;

/// A self-attention block over `channels` channels.
#[derive(Debug)]
pub struct SelfAttention {
    theta: Conv,
    phi: Conv,
    g: Conv,
    out: Conv,
    sigma: Tensor,
}

impl SelfAttention {
    /// `channels` (at least 8) channels; `sn`: the seed of the spectral norms, if any.
    /// Weights under `vb` (`theta`, `phi`, `g`, `out`, `sigma`).
    pub fn new(channels: usize, sn: Option<u64>, init: Init, vb: VarBuilder) -> Result<Self> {
        if channels < 8 {
            return Err(Error::invalid(format!(
                "self-attention needs at least 8 channels, got {channels}"
            )));
        }
        let (c8, c2) = (channels / 8, channels / 2);
        let s = |k: u64| sn.map(|s| s.wrapping_mul(31).wrapping_add(k));
        Ok(Self {
            theta: Conv::new(channels, c8, 1, 1, s(1), init, vb.pp("theta"))?,
            phi: Conv::new(channels, c8, 1, 1, s(2), init, vb.pp("phi"))?,
            g: Conv::new(channels, c2, 1, 1, s(3), init, vb.pp("g"))?,
            out: Conv::new(c2, channels, 1, 1, s(4), init, vb.pp("out"))?,
            sigma: vb.get_with_hints(1, "sigma", candle_nn::Init::Const(0.0))?,
        })
    }

    /// `x` `[N, C, H, W]` (even H, W) to the same shape.
    pub fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let pool = |t: Tensor| -> Result<Tensor> { Ok(t.max_pool2d(2)?) };
        let theta = self.theta.forward(x, training)?.reshape((n, c / 8, h * w))?;
        let phi = pool(self.phi.forward(x, training)?)?.reshape((n, c / 8, h * w / 4))?;
        let g = pool(self.g.forward(x, training)?)?.reshape((n, c / 2, h * w / 4))?;
        // [N, HW, HW/4]: every query position over the pooled key positions.
        let attention = candle_nn::ops::softmax(&theta.transpose(1, 2)?.matmul(&phi)?, D::Minus1)?;
        let o = g.matmul(&attention.transpose(1, 2)?)?.reshape((n, c / 2, h, w))?;
        let o = self.out.forward(&o, training)?;
        Ok((x + o.broadcast_mul(&self.sigma)?)?)
    }

    /// Spectral norm state, by name.
    pub fn buffers(&self, out: &mut BTreeMap<String, Tensor>) {
        for c in [&self.theta, &self.phi, &self.g, &self.out] {
            c.buffers(out);
        }
    }

    /// Restores what [`Self::buffers`] wrote.
    pub fn set_buffers(&self, from: &BTreeMap<String, Tensor>) -> Result<()> {
        for c in [&self.theta, &self.phi, &self.g, &self.out] {
            c.set_buffers(from)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn randn(shape: &[usize], seed: u64) -> Tensor {
        crate::testing::randn(seed, shape).to_dtype(DType::F32).unwrap()
    }

    /// The block computed position by position with plain loops (indices read as the
    /// formula does).
    #[allow(clippy::needless_range_loop)]
    fn naive(
        x: &[Vec<Vec<f32>>],
        wt: &[Vec<f32>],
        wp: &[Vec<f32>],
        wg: &[Vec<f32>],
        wo: &[Vec<f32>],
        sigma: f32,
    ) -> Vec<Vec<Vec<f32>>> {
        let (c, h, w) = (x.len(), x[0].len(), x[0][0].len());
        let proj = |m: &[Vec<f32>], i: usize, j: usize| -> Vec<f32> {
            m.iter().map(|row| (0..c).map(|k| row[k] * x[k][i][j]).sum()).collect()
        };
        // Pooled keys and values: max over each 2x2 window, per channel.
        let pooled = |m: &[Vec<f32>]| -> Vec<Vec<f32>> {
            let mut out = vec![];
            for i in (0..h).step_by(2) {
                for j in (0..w).step_by(2) {
                    let cells = [
                        proj(m, i, j),
                        proj(m, i, j + 1),
                        proj(m, i + 1, j),
                        proj(m, i + 1, j + 1),
                    ];
                    out.push(
                        (0..m.len())
                            .map(|k| cells.iter().map(|v| v[k]).fold(f32::MIN, f32::max))
                            .collect(),
                    );
                }
            }
            out
        };
        let (keys, values) = (pooled(wp), pooled(wg));
        let mut y = x.to_vec();
        for i in 0..h {
            for j in 0..w {
                let q = proj(wt, i, j);
                let scores: Vec<f32> = keys
                    .iter()
                    .map(|k| k.iter().zip(&q).map(|(a, b)| a * b).sum())
                    .collect();
                let m = scores.iter().cloned().fold(f32::MIN, f32::max);
                let e: Vec<f32> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f32 = e.iter().sum();
                let mixed: Vec<f32> = (0..wg.len())
                    .map(|k| values.iter().zip(&e).map(|(v, a)| v[k] * a / z).sum())
                    .collect();
                for (oc, row) in wo.iter().enumerate() {
                    y[oc][i][j] += sigma * row.iter().zip(&mixed).map(|(a, b)| a * b).sum::<f32>();
                }
            }
        }
        y
    }

    #[test]
    fn equals_the_formula_position_by_position_and_starts_as_identity() {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let block = SelfAttention::new(16, None, Init::Normal002, vb).unwrap();
        let x = randn(&[1, 16, 4, 6], 3);
        let same = block.forward(&x, false).unwrap();
        assert_eq!(
            labelgan_core::max_abs_diff(&same, &x).unwrap(),
            0.0,
            "sigma starts at 0"
        );
        // Random weights with a non-zero sigma, against loops.
        let data = vm.data().lock().unwrap();
        let mut k = 10;
        let mut set = |name: &str, shape: &[usize]| -> Vec<Vec<f32>> {
            k += 1;
            let t = (randn(shape, k) * 0.5).unwrap();
            data.get(name).unwrap().set(&t).unwrap();
            t.flatten_from(1).unwrap().to_vec2::<f32>().unwrap()
        };
        let wt = set("theta.weight", &[2, 16, 1, 1]);
        let wp = set("phi.weight", &[2, 16, 1, 1]);
        let wg = set("g.weight", &[8, 16, 1, 1]);
        let wo = set("out.weight", &[16, 8, 1, 1]);
        data.get("sigma")
            .unwrap()
            .set(&Tensor::new(&[0.7f32], &Device::Cpu).unwrap())
            .unwrap();
        drop(data);
        let got = block
            .forward(&x, false)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec3::<f32>()
            .unwrap();
        let want = naive(
            &x.squeeze(0).unwrap().to_vec3::<f32>().unwrap(),
            &wt,
            &wp,
            &wg,
            &wo,
            0.7,
        );
        for (a, b) in got.iter().flatten().flatten().zip(want.iter().flatten().flatten()) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        assert!(
            SelfAttention::new(
                4,
                None,
                Init::Normal002,
                VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu)
            )
            .is_err()
        );
    }
}
