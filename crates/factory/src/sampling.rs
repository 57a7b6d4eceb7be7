//! Candidate sampling: candidate `c` of latent seed `s` is `z ~ N(0, I)` drawn from
//! `SplitMix64::derive(s, c)`, so any candidate can be regenerated on its own, in any
//! order, on any machine.

use candle_core::Tensor;

use labelgan_core::{Generator, NoiseMode, Result, SplitMix64, Synthesis, Truncation};

/// The latent of candidate `c` of seed `seed`, `[1, z_dim]`.
pub fn candidate_z<G: Generator + ?Sized>(g: &G, seed: u64, c: u64) -> Result<Tensor> {
    g.sample_z(1, SplitMix64::derive(seed, c).next_u64())
}

/// Candidates `first..first + k` of latent seed `seed`: their z (one `[1, z_dim]` each)
/// and their synthesis at truncation `psi` with constant noise, as one batch.
pub fn synthesize_candidates<G: Generator + ?Sized>(
    g: &G,
    seed: u64,
    first: u64,
    k: usize,
    psi: f64,
) -> Result<(Vec<Tensor>, Synthesis)> {
    let zs = (0..k as u64)
        .map(|j| candidate_z(g, seed, first + j))
        .collect::<Result<Vec<_>>>()?;
    let ws = g.map(&Tensor::cat(&zs, 0)?, None, Truncation::psi(psi))?;
    let syn = g.synthesize(&ws, NoiseMode::Const)?;
    Ok((zs, syn))
}
