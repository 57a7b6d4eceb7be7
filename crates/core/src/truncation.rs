//! The truncation trick: pull latents toward the average latent.
//!
//! `w' = w_avg + psi * (w - w_avg)`, applied to all `num_ws` copies of `w`, or only to
//! the first `cutoff` of them (coarse layers) when a cutoff is set. `psi = 1` is the
//! identity; smaller values trade diversity for fidelity.
//!
//! References: Brock et al., "Large Scale GAN Training for High Fidelity Natural Image
//! Synthesis" (2019); Karras et al., "A Style-Based Generator Architecture" (2019).

use serde::{Deserialize, Serialize};

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
}
