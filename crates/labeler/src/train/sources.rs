//! Where training taps come from: kept in memory (f16, native resolution) or
//! regenerated from latents by a generator, one image at a time.

use candle_core::{DType, Tensor};

use labelgan_core::{Error, FeatureTaps, Generator, NoiseMode, Result};

/// Where training taps come from, one image at a time.
pub trait TapSource {
    /// Number of images.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The taps of image `i` (batch 1).
    fn taps(&self, i: usize) -> Result<FeatureTaps>;
}

/// Taps held in memory at native resolution, stored as f16.
pub struct InMemoryTaps(pub Vec<FeatureTaps>);

impl InMemoryTaps {
    /// Keeps each image of `taps` (any batch size), converting to f16; refuses a
    /// non-finite feature or one f16 cannot hold.
    pub fn from_batches(batches: &[FeatureTaps]) -> Result<Self> {
        let mut out = Vec::new();
        for b in batches {
            for i in 0..b.batch() {
                let mut one = FeatureTaps::new();
                for t in b.narrow_batch(i, 1)?.iter() {
                    let mut t = t.clone();
                    labelgan_core::ensure_finite(&t.tensor, &format!("image {}'s tap `{}`", out.len(), t.name))?;
                    t.tensor = t.tensor.to_dtype(DType::F16)?;
                    labelgan_core::ensure_finite(
                        &t.tensor,
                        &format!(
                            "image {}'s tap `{}` in f16 (a feature beyond f16's ±65504 becomes infinite)",
                            out.len(),
                            t.name
                        ),
                    )?;
                    one.push(t)?;
                }
                out.push(one);
            }
        }
        Ok(Self(out))
    }
}

impl TapSource for InMemoryTaps {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn taps(&self, i: usize) -> Result<FeatureTaps> {
        self.0
            .get(i)
            .cloned()
            .ok_or_else(|| Error::invalid(format!("no image {i}")))
    }
}

/// Taps regenerated from latents whenever needed: memory stays at one image's taps.
pub struct GeneratorTaps<'a, G: Generator> {
    /// The generator.
    pub generator: &'a G,
    /// ws `[N, num_ws, w_dim]`.
    pub ws: Tensor,
    /// Noise mode.
    pub noise: NoiseMode,
    /// Keep only these taps (by name), e.g. the conv layers.
    pub keep: Vec<String>,
}

impl<G: Generator> TapSource for GeneratorTaps<'_, G> {
    fn len(&self) -> usize {
        self.ws.dims().first().copied().unwrap_or(0)
    }
    fn taps(&self, i: usize) -> Result<FeatureTaps> {
        let out = self.generator.synthesize(&self.ws.narrow(0, i, 1)?, self.noise)?;
        Ok(out.taps.filter(|n| self.keep.iter().any(|k| k == n)))
    }
}
