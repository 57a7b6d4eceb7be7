//! Candidate sampling: candidate `c` of latent seed `s` is `z ~ N(0, I)` drawn from
//! `SplitMix64::derive(s, c)`, so any candidate can be regenerated on its own, in any
//! order, on any machine. A conditional generator's candidate has a class too: the one
//! asked for, or classes in turn by candidate index.

use candle_core::Tensor;

use labelgan_core::{Error, Generator, NoiseMode, Result, SplitMix64, Synthesis, Truncation, one_hot};

/// The latent of candidate `c` of seed `seed`, `[1, z_dim]`.
pub fn candidate_z<G: Generator + ?Sized>(g: &G, seed: u64, c: u64) -> Result<Tensor> {
    g.sample_z(1, SplitMix64::derive(seed, c).next_u64())
}

/// The class of candidate `c`: `class` when given, else [`Generator::seeded_class`];
/// `None` for an unconditional generator. A class the generator lacks is an error.
pub fn candidate_class<G: Generator + ?Sized>(g: &G, class: Option<u32>, c: u64) -> Result<Option<u32>> {
    match (class, g.spec().c_dim) {
        (Some(k), 0) => Err(Error::invalid(format!("class {k} asked of an unconditional generator"))),
        (Some(k), n) if k as usize >= n => Err(Error::invalid(format!(
            "class {k} asked of a generator with classes 0..{n}"
        ))),
        (Some(k), _) => Ok(Some(k)),
        (None, _) => Ok(g.seeded_class(c)),
    }
}

/// Candidates `first..first + k` of latent seed `seed`: their z (one `[1, z_dim]`
/// each), their classes ([`candidate_class`]) and their synthesis at truncation `psi`
/// with constant noise, as one batch.
pub fn synthesize_candidates<G: Generator + ?Sized>(
    g: &G,
    seed: u64,
    class: Option<u32>,
    first: u64,
    k: usize,
    psi: f64,
) -> Result<(Vec<Tensor>, Vec<Option<u32>>, Synthesis)> {
    let cands = first..first + k as u64;
    let zs = cands
        .clone()
        .map(|c| candidate_z(g, seed, c))
        .collect::<Result<Vec<_>>>()?;
    let classes = cands
        .map(|c| candidate_class(g, class, c))
        .collect::<Result<Vec<_>>>()?;
    let ids: Option<Vec<u32>> = classes.iter().copied().collect();
    let c = ids.map(|ids| one_hot(&ids, g.spec().c_dim, g.device())).transpose()?;
    let ws = g.map(&Tensor::cat(&zs, 0)?, c.as_ref(), Truncation::psi(psi))?;
    let syn = g.synthesize(&ws, NoiseMode::Const)?;
    Ok((zs, classes, syn))
}
