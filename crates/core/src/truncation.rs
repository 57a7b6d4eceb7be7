//! The truncation trick: pull latents toward the average latent.
//!
//! `w' = w_avg + psi * (w - w_avg)`, applied to all `num_ws` copies of `w`, or only to
//! the first `cutoff` of them (coarse layers) when a cutoff is set. `psi = 1` is the
//! identity; smaller values trade diversity for fidelity.
//!
//! References: Brock et al., "Large Scale GAN Training for High Fidelity Natural Image
//! Synthesis" (2019); Karras et al., "A Style-Based Generator Architecture" (2019).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Truncation settings: `psi` and an optional layer `cutoff`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Truncation {
    /// Interpolation weight toward the sample (1 = no truncation).
    pub psi: f64,
    /// Truncate only `ws[:, ..cutoff]`; `None` truncates every layer.
    pub cutoff: Option<usize>,
}

impl Default for Truncation {
    fn default() -> Self {
        Self { psi: 1.0, cutoff: None }
    }
}

impl Truncation {
    /// No truncation (`psi = 1`).
    pub const NONE: Truncation = Truncation { psi: 1.0, cutoff: None };

    /// Truncation with `psi` on every layer.
    pub fn psi(psi: f64) -> Self {
        Self { psi, cutoff: None }
    }

    /// Whether this setting changes anything.
    pub fn is_identity(&self) -> bool {
        self.psi == 1.0 || self.cutoff == Some(0)
    }

    /// `w_avg + psi (ws - w_avg)` on `ws[:, ..cutoff]` (every layer when no cutoff),
    /// for ws `[N, num_ws, w_dim]` and `w_avg` `[w_dim]`: truncation for any generator
    /// that tracks an average latent.
    pub fn apply(&self, ws: &Tensor, w_avg: &Tensor) -> Result<Tensor> {
        if !self.psi.is_finite() {
            return Err(Error::invalid(format!(
                "truncation psi must be finite, got {}",
                self.psi
            )));
        }
        if self.is_identity() {
            return Ok(ws.clone());
        }
        let (_, num_ws, w_dim) = ws
            .dims3()
            .map_err(|_| Error::invalid(format!("ws must be [N, num_ws, w_dim], got {:?}", ws.dims())))?;
        if w_avg.dims() != [w_dim] {
            return Err(Error::invalid(format!(
                "w_avg must be [{w_dim}] for these ws, got {:?}",
                w_avg.dims()
            )));
        }
        let cut = self.cutoff.unwrap_or(num_ws).min(num_ws);
        let lerp =
            |x: &Tensor| -> Result<Tensor> { Ok(x.broadcast_sub(w_avg)?.affine(self.psi, 0.0)?.broadcast_add(w_avg)?) };
        if cut == num_ws {
            return lerp(ws);
        }
        let head = lerp(&ws.narrow(1, 0, cut)?)?;
        Ok(Tensor::cat(&[&head, &ws.narrow(1, cut, num_ws - cut)?], 1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// psi 0.5 halves the distance to w_avg on the truncated layers only.
    #[test]
    fn apply_moves_the_cut_layers_halfway_to_the_average() {
        let dev = Device::Cpu;
        let ws = Tensor::from_vec(vec![2f32, 4.0, 6.0, 8.0], (1, 2, 2), &dev).unwrap();
        let avg = Tensor::from_vec(vec![0f32, 2.0], 2, &dev).unwrap();
        let t = Truncation {
            psi: 0.5,
            cutoff: Some(1),
        };
        let out = t
            .apply(&ws, &avg)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(out, vec![1.0, 3.0, 6.0, 8.0]);
        let all = Truncation::psi(0.5)
            .apply(&ws, &avg)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(all, vec![1.0, 3.0, 3.0, 5.0]);
        assert!(Truncation::psi(f64::NAN).apply(&ws, &avg).is_err());
        assert!(Truncation::psi(0.5).apply(&ws, &ws).is_err());
    }
}
