//! The synthesis network, skip architecture: a learned 4x4 constant grown to the output
//! resolution by blocks of two modulated convs, each block adding its RGB to the
//! upsampled image of the previous one.
//!
//! w indexing: block `b4` reads `w0` (conv1) and `w1` (torgb); every later block reads
//! three ws starting where the previous block's convs ended, so a block's torgb shares
//! its w with the next block's conv0.
//!
//! Reference: Karras et al., CVPR 2020, Fig. 7 (skip generator).

use candle_core::Tensor;

use labelgan_core::io::TensorFile;
use labelgan_core::{Error, FeatureTaps, NoiseMode, Result, SplitMix64, Tap, TapRole, TapSpec};

use crate::modulated_conv::{SynthesisLayer, ToRgb};
use crate::upfirdn::upsample2d;

/// One block `synthesis.b{resolution}`.
#[derive(Debug, Clone)]
pub struct Block {
    /// Output resolution.
    pub resolution: usize,
    /// The learned input (b4 only), `[C, 4, 4]`.
    pub constant: Option<Tensor>,
    /// Upsampling conv (all but b4).
    pub conv0: Option<SynthesisLayer>,
    /// Second conv.
    pub conv1: SynthesisLayer,
    /// To image.
    pub torgb: ToRgb,
    /// Image-path FIR filter (stored by every block, used by all but b4).
    pub resample_filter: Tensor,
}

/// The synthesis network (`SynthesisNetwork`).
#[derive(Debug, Clone)]
pub struct Synthesis {
    /// Blocks from 4 px upward.
    pub blocks: Vec<Block>,
    /// w dimension.
    pub w_dim: usize,
    /// Number of ws read.
    pub num_ws: usize,
}

impl Synthesis {
    /// Reads `synthesis.*`; widths come from the shapes, blocks from 4 to `resolution`.
    pub fn load(
        file: &TensorFile,
        resolution: usize,
        w_dim: usize,
        img_channels: usize,
        conv_clamp: Option<f64>,
    ) -> Result<Self> {
        let c4 = file.get("synthesis.b4.const")?.dims().to_vec();
        if c4.len() != 3 || c4[1..] != [4, 4] {
            return Err(Error::format(
                &file.path,
                format!("`synthesis.b4.const` must be [C, 4, 4], found {c4:?}"),
            ));
        }
        let mut blocks = Vec::new();
        let mut ch = c4[0];
        for r in crate::config::block_resolutions(resolution) {
            let p = format!("synthesis.b{r}");
            let block = if r == 4 {
                Block {
                    resolution: 4,
                    constant: Some(file.get_shaped(&format!("{p}.const"), &[ch, 4, 4])?),
                    conv0: None,
                    conv1: SynthesisLayer::load(file, &format!("{p}.conv1"), (w_dim, ch, ch), 4, false, conv_clamp)?,
                    torgb: ToRgb::load(file, &format!("{p}.torgb"), (w_dim, ch, img_channels), conv_clamp)?,
                    resample_filter: file.get_shaped(&format!("{p}.resample_filter"), &[4, 4])?,
                }
            } else {
                let key = format!("{p}.conv0.weight");
                let out = match file.get(&key)?.dims() {
                    [o, i, 3, 3] if *i == ch => *o,
                    found => {
                        let msg = format!("tensor `{key}` has shape {found:?}, expected [out, {ch}, 3, 3]");
                        return Err(Error::format(&file.path, msg));
                    }
                };
                let b = Block {
                    resolution: r,
                    constant: None,
                    conv0: Some(SynthesisLayer::load(
                        file,
                        &format!("{p}.conv0"),
                        (w_dim, ch, out),
                        r,
                        true,
                        conv_clamp,
                    )?),
                    conv1: SynthesisLayer::load(file, &format!("{p}.conv1"), (w_dim, out, out), r, false, conv_clamp)?,
                    torgb: ToRgb::load(file, &format!("{p}.torgb"), (w_dim, out, img_channels), conv_clamp)?,
                    resample_filter: file.get_shaped(&format!("{p}.resample_filter"), &[4, 4])?,
                };
                ch = out;
                b
            };
            blocks.push(block);
        }
        Ok(Self {
            blocks,
            w_dim,
            num_ws: crate::config::num_ws(resolution),
        })
    }

    /// Precomputes weight-derived kernels for inference (see [`SynthesisLayer::freeze`]).
    pub fn freeze(&mut self) -> Result<()> {
        for b in &mut self.blocks {
            if let Some(c0) = &mut b.conv0 {
                c0.freeze()?;
            }
            b.conv1.freeze()?;
        }
        Ok(())
    }

    /// Drops precomputed kernels (see [`SynthesisLayer::thaw`]): for training.
    pub fn thaw(&mut self) {
        for b in &mut self.blocks {
            if let Some(c0) = &mut b.conv0 {
                c0.thaw();
            }
            b.conv1.thaw();
        }
    }

    /// The taps [`Synthesis::forward`] returns, in order.
    pub fn tap_specs(&self, img_channels: usize) -> Vec<TapSpec> {
        let mut out = Vec::new();
        for b in &self.blocks {
            let r = b.resolution;
            let spec = |n: &str, c| TapSpec {
                name: format!("synthesis.b{r}.{n}"),
                resolution: r,
                channels: c,
                role: if n == "torgb" {
                    TapRole::Output
                } else {
                    TapRole::Feature
                },
            };
            if let Some(c0) = &b.conv0 {
                out.push(spec("conv0", c0.out_channels()));
            }
            out.push(spec("conv1", b.conv1.out_channels()));
            out.push(spec("torgb", img_channels));
        }
        out
    }

    /// ws `[N, num_ws, w_dim]` to the image, and every layer's output when `keep_taps`.
    pub fn forward(&self, ws: &Tensor, noise: NoiseMode, keep_taps: bool) -> Result<(Tensor, FeatureTaps)> {
        let n = match ws.dims() {
            [n, k, d] if *k == self.num_ws && *d == self.w_dim => *n,
            d => {
                return Err(Error::invalid(format!(
                    "ws must be [N, {}, {}], got {d:?}",
                    self.num_ws, self.w_dim
                )));
            }
        };
        labelgan_core::ensure_finite(ws, "ws")?;
        let ws = ws.to_dtype(candle_core::DType::F32)?;
        let w_at = |i: usize| -> Result<Tensor> { Ok(ws.narrow(1, i, 1)?.squeeze(1)?.contiguous()?) };
        let noise_seed = |layer: usize| match noise {
            NoiseMode::Random(seed) => SplitMix64::derive(seed, layer as u64).next_u64(),
            _ => 0,
        };
        let mut taps = FeatureTaps::new();
        let mut keep = |name: String, t: &Tensor, role: TapRole| -> Result<()> {
            if keep_taps {
                taps.push(Tap::with_role(name, t.clone(), role)?)?;
            }
            Ok(())
        };
        let (mut x, mut img): (Option<Tensor>, Option<Tensor>) = (None, None);
        let (mut w_idx, mut layer) = (0usize, 0usize);
        for b in &self.blocks {
            let p = format!("synthesis.b{}", b.resolution);
            let mut h = match (&b.constant, &b.conv0, x.take()) {
                (Some(c), _, _) => {
                    let (ch, _, _) = c.dims3()?;
                    c.unsqueeze(0)?.broadcast_as((n, ch, 4, 4))?.contiguous()?
                }
                (None, Some(conv0), Some(x)) => {
                    let h = conv0.forward(&x, &w_at(w_idx)?, noise, noise_seed(layer))?;
                    keep(format!("{p}.conv0"), &h, TapRole::Feature)?;
                    w_idx += 1;
                    layer += 1;
                    h
                }
                _ => return Err(Error::invalid(format!("block {p} has neither a constant nor an input"))),
            };
            h = b.conv1.forward(&h, &w_at(w_idx)?, noise, noise_seed(layer))?;
            keep(format!("{p}.conv1"), &h, TapRole::Feature)?;
            w_idx += 1;
            layer += 1;
            let y = b.torgb.forward(&h, &w_at(w_idx)?)?;
            keep(format!("{p}.torgb"), &y, TapRole::Output)?;
            img = Some(match img {
                Some(prev) => (upsample2d(&prev, &b.resample_filter)? + y)?,
                None => y,
            });
            x = Some(h);
        }
        let img = img.ok_or_else(|| Error::invalid("synthesis network has no blocks"))?;
        Ok((img, taps))
    }
}
