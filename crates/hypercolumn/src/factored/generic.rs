//! The device-generic twin of the CPU engine: the same sums as candle ops
//! (interpolation matrices), tile by tile, for CUDA and Metal.

use std::ops::Range;

use candle_core::{DType, Device, Tensor};

use labelgan_core::{Error, FeatureTaps, Result};

use super::FactoredProjection;
use crate::interp::{AxisInterp, Upsample};

/// Device-generic version with candle ops (dense interpolation matrices per tile).
pub struct GenericProjector {
    pub target: usize,
    pub bias: Tensor,
    /// Per resolution: projection at native resolution `[r, r*K]`, interpolation `[T, r]`.
    pub parts: Vec<(Tensor, Tensor, usize)>,
    pub k: usize,
}

impl GenericProjector {
    pub fn new(
        p: &FactoredProjection,
        taps: &FeatureTaps,
        image: usize,
        target: usize,
        mode: Upsample,
    ) -> Result<Self> {
        let k = p.out_dim();
        let all: Vec<&labelgan_core::Tap> = taps.iter().collect();
        let dev = all.first().map(|t| t.tensor.device().clone()).unwrap_or(Device::Cpu);
        let mut parts = Vec::new();
        for g in &p.groups {
            let r = g.resolution;
            let xs = g
                .taps
                .iter()
                .map(|&i| {
                    Ok(all[i]
                        .tensor
                        .get(image)?
                        .to_dtype(DType::F32)?
                        .reshape((all[i].channels, r * r))?)
                })
                .collect::<Result<Vec<_>>>()?;
            let x = Tensor::cat(&xs, 0)?; // [C, r*r]
            let proj = x.t()?.matmul(&g.w.to_device(&dev)?)?.reshape((r, r * k))?;
            parts.push((proj, AxisInterp::new(r, target, mode).matrix(r, &dev)?, r));
        }
        Ok(Self {
            target,
            bias: p.bias.to_device(&dev)?,
            parts,
            k,
        })
    }

    pub fn tile(&self, ys: Range<usize>) -> Result<Tensor> {
        let (t, k, n) = (self.target, self.k, ys.len());
        let mut acc: Option<Tensor> = None;
        for (proj, a, r) in &self.parts {
            let rows = a.narrow(0, ys.start, n)?.matmul(proj)?.reshape((n, *r, k))?; // [n, r, K]
            let up = a.broadcast_left(n)?.matmul(&rows)?; // [n, T, K]
            acc = Some(match acc {
                Some(x) => (x + up)?,
                None => up,
            });
        }
        let acc = acc.ok_or_else(|| Error::invalid("no taps to project"))?;
        Ok(acc.reshape((n * t, k))?.broadcast_add(&self.bias)?)
    }
}
