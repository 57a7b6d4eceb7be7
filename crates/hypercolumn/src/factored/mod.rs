//! Factored projection: `hypercolumn · W + b` without the hypercolumn.
//!
//! With `up_t` the (linear) upsampling of tap `t` and `W_t` the rows of `W` that meet
//! its channels, `dense · W = Σ_t up_t(tap_t) · W_t = Σ_t up_t(tap_t · W_t)`: project
//! each tap at its native resolution (a `r² x C_t x K` GEMM instead of
//! `T² x C_t x K`), then upsample the K-channel projection. Taps at the output
//! resolution need no upsampling and are projected tile by tile straight into the
//! output. Output is produced in tiles of whole rows, so peak memory is one tile plus a
//! sliding window of source rows per resolution, whatever the image size.
//!
//! On the CPU the projection runs on `gemm` and the separable 2-tap upsampling as
//! vectorised AXPYs over K-long rows, split across threads. On other devices the same
//! sums run as candle ops (interpolation matrices), tile by tile.

use std::ops::Range;

use candle_core::{DType, Device, Tensor};

use labelgan_core::{Error, FeatureTaps, Result, TapSpec};
use labelgan_kernels::amx::{Bf16Lhs, Bf16Rhs};

mod cpu;
mod fuse;
mod generic;
mod rows;

use crate::interp::Upsample;
use cpu::CpuProjector;
use generic::GenericProjector;
use rows::CpuSlice;

/// The taps of one resolution and their rows of `W`, stacked: `w [C, K]` with the
/// taps' channels in tap order.
#[derive(Debug, Clone)]
pub struct ResolutionGroup {
    /// Resolution of these taps.
    pub resolution: usize,
    /// Indices of the taps (in `specs` order).
    pub taps: Vec<usize>,
    /// Their weight rows, `[Σ C_t, K]`, f32, contiguous.
    pub w: Tensor,
}

/// A linear map `D -> K` over a hypercolumn, grouped by tap resolution, applied
/// without materialising the hypercolumn.
#[derive(Debug, Clone)]
pub struct FactoredProjection {
    /// The taps it expects, in order.
    pub specs: Vec<TapSpec>,
    /// Weight rows grouped by resolution (order of first appearance).
    pub groups: Vec<ResolutionGroup>,
    /// `b` `[K]`, f32.
    pub bias: Tensor,
    /// Apply ReLU to the output (fused into the bias pass).
    pub relu: bool,
    /// Use the device-generic candle path even on the CPU (for tests).
    #[doc(hidden)]
    pub force_generic: bool,
    /// CPU path: source pixels projected per GEMM at least (the weights are packed
    /// once per GEMM, so small GEMMs waste time; larger windows cost memory).
    #[doc(hidden)]
    pub chunk_pixels: usize,
    /// Each group's weights in bf16 for AMX's tile product ([`FactoredProjection::set_bf16`]).
    bf16: Option<Vec<Bf16Rhs>>,
    /// The CPU path's buffers, kept from one image to the next.
    scratch: ScratchCache,
}

/// Buffers of the CPU path (source-row windows, the gathered left-hand side in f32 and
/// in bf16, block buffers, the tile), kept between images: allocated afresh, their tens
/// of megabytes are faulted in page by page for every image.
#[derive(Default)]
struct Scratch {
    rows: Vec<Vec<f32>>,
    lhs: Vec<f32>,
    lhs16: Bf16Lhs,
    bufs: Vec<Vec<f32>>,
    acc: Vec<f32>,
}

#[derive(Default)]
struct ScratchCache(std::sync::Mutex<Scratch>);

impl ScratchCache {
    /// The cached buffers (empty ones if another call holds them).
    fn take(&self) -> Scratch {
        self.0
            .try_lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }

    fn put(&self, s: Scratch) {
        if let Ok(mut g) = self.0.try_lock() {
            *g = s;
        }
    }
}

/// A clone starts with no buffers of its own.
impl Clone for ScratchCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for ScratchCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScratchCache")
    }
}

impl FactoredProjection {
    /// Splits `w` `[D, K]` by the channels of `specs` (D must be their sum) and stacks
    /// the rows of taps that share a resolution; `bias` `[K]` defaults to zero.
    pub fn new(w: &Tensor, bias: Option<&Tensor>, specs: &[TapSpec]) -> Result<Self> {
        let (d, k) = w.dims2()?;
        let total: usize = specs.iter().map(|s| s.channels).sum();
        if d != total {
            return Err(Error::invalid(format!(
                "projection has {d} input rows but the taps have {total} channels"
            )));
        }
        let w = w.to_dtype(DType::F32)?;
        let mut offsets = Vec::with_capacity(specs.len());
        let mut off = 0;
        for s in specs {
            offsets.push(off);
            off += s.channels;
        }
        let mut groups: Vec<ResolutionGroup> = Vec::new();
        let mut members: Vec<(usize, Vec<usize>)> = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            match members.iter_mut().find(|(r, _)| *r == s.resolution) {
                Some((_, v)) => v.push(i),
                None => members.push((s.resolution, vec![i])),
            }
        }
        for (r, idx) in members {
            let parts = idx
                .iter()
                .map(|&i| w.narrow(0, offsets[i], specs[i].channels))
                .collect::<candle_core::Result<Vec<_>>>()?;
            groups.push(ResolutionGroup {
                resolution: r,
                taps: idx,
                w: Tensor::cat(&parts, 0)?.contiguous()?,
            });
        }
        let bias = match bias {
            Some(b) if b.dims() == [k] => b.to_dtype(DType::F32)?.to_device(w.device())?,
            Some(b) => return Err(Error::invalid(format!("bias must be [{k}], got {:?}", b.dims()))),
            None => Tensor::zeros(k, DType::F32, w.device())?,
        };
        Ok(Self {
            specs: specs.to_vec(),
            groups,
            bias,
            relu: false,
            force_generic: false,
            chunk_pixels: 1024,
            bf16: None,
            scratch: ScratchCache::default(),
        })
    }

    /// On the CPU, round the taps and weights to bf16 and multiply them on AMX's tiles
    /// (sums stay f32), where this CPU has them (`labelgan_kernels::amx`), the
    /// projection takes the hand-written CPU path and K is a multiple of 32; else the
    /// f32 path stays. Returns whether the bf16 path is on.
    pub fn set_bf16(&mut self, on: bool) -> Result<bool> {
        let k = self.out_dim();
        self.bf16 = None;
        let native = labelgan_kernels::native_on(self.bias.device()) && !self.force_generic;
        if on && native && labelgan_kernels::amx::available() && k.is_multiple_of(32) {
            let packed = self
                .groups
                .iter()
                .map(|g| {
                    let (c, _) = g.w.dims2()?;
                    let w = g.w.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
                    Ok(Bf16Rhs::pack(&w, c, k, k))
                })
                .collect::<Result<Vec<_>>>()?;
            self.bf16 = Some(packed);
        }
        Ok(self.bf16.is_some())
    }

    /// Output width K.
    pub fn out_dim(&self) -> usize {
        self.bias.dims()[0]
    }

    /// The full projection `[target², K]` of image `image` (tiles concatenated).
    pub fn project(&self, taps: &FeatureTaps, image: usize, target: usize, mode: Upsample) -> Result<Tensor> {
        let mut tiles = Vec::new();
        self.for_each_tile(taps, image, target, mode, 8192, |_, t| {
            tiles.push(t);
            Ok(())
        })?;
        Ok(Tensor::cat(&tiles, 0)?)
    }

    /// Calls `f(rows, tile)` for consecutive tiles of whole output rows, each
    /// `tile = [rows.len() * target, K]` (f32, on the taps' device), covering about
    /// `tile_pixels` pixels.
    pub fn for_each_tile(
        &self,
        taps: &FeatureTaps,
        image: usize,
        target: usize,
        mode: Upsample,
        tile_pixels: usize,
        mut f: impl FnMut(Range<usize>, Tensor) -> Result<()>,
    ) -> Result<()> {
        self.check(taps, image)?;
        let on_cpu = taps.iter().all(|t| labelgan_kernels::native_on(t.tensor.device()))
            && labelgan_kernels::native_on(self.bias.device());
        if on_cpu && !self.force_generic {
            let k = self.out_dim();
            return self.for_each_cpu_tile(taps, image, target, mode, tile_pixels, |rows, data| {
                f(
                    rows.clone(),
                    Tensor::from_slice(data, (rows.len() * target, k), &Device::Cpu)?,
                )
            });
        }
        let g = GenericProjector::new(self, taps, image, target, mode)?;
        for ys in row_tiles(target, tile_pixels) {
            let t = g.tile(ys.clone())?;
            f(ys, if self.relu { t.relu()? } else { t })?;
        }
        Ok(())
    }

    /// CPU-only variant of [`FactoredProjection::for_each_tile`] that lends each tile
    /// as a row-major `[rows.len() * target, K]` slice. The taps' storage is read in
    /// place (f32 contiguous taps are not copied).
    pub fn for_each_cpu_tile(
        &self,
        taps: &FeatureTaps,
        image: usize,
        target: usize,
        mode: Upsample,
        tile_pixels: usize,
        mut f: impl FnMut(Range<usize>, &[f32]) -> Result<()>,
    ) -> Result<()> {
        self.check(taps, image)?;
        self.with_cpu(taps, image, target, mode, |cpu| {
            for ys in row_tiles(target, tile_pixels) {
                f(ys.clone(), cpu.tile(ys)?)?;
            }
            Ok(())
        })
    }

    /// CPU-only: the projection of each tile of whole output rows (about `tile_pixels`
    /// pixels) handed out in blocks of `width` output columns (K must be a multiple of
    /// `width`). Each block is computed end to end on one worker thread (its columns of
    /// the full-resolution GEMM, then the fused upsampling of the lower resolutions,
    /// bias and activation) and given to `block(b, values)` there while it is still in
    /// that core's cache, `values` row-major `[px, width]` for columns
    /// `b * width..(b + 1) * width`. `tile(rows, results)` then receives the blocks'
    /// results in order, on the calling thread. The labeler uses one block per ensemble
    /// member, so its second layer reads the first's output from cache.
    #[allow(clippy::too_many_arguments)]
    pub fn for_each_cpu_block<R: Send>(
        &self,
        taps: &FeatureTaps,
        image: usize,
        target: usize,
        mode: Upsample,
        tile_pixels: usize,
        width: usize,
        block: impl Fn(usize, &[f32]) -> Result<R> + Sync,
        mut tile: impl FnMut(Range<usize>, Vec<R>) -> Result<()>,
    ) -> Result<()> {
        self.check(taps, image)?;
        let k = self.out_dim();
        if width == 0 || !k.is_multiple_of(width) {
            return Err(Error::invalid(format!(
                "block width {width} does not divide the projection's {k} outputs"
            )));
        }
        self.with_cpu(taps, image, target, mode, |cpu| {
            for ys in row_tiles(target, tile_pixels) {
                let results = cpu.blocks(ys.clone(), width, &block)?;
                tile(ys, results)?;
            }
            Ok(())
        })
    }

    /// Runs `f` with a CPU projector over image `image`'s taps, read in place.
    fn with_cpu(
        &self,
        taps: &FeatureTaps,
        image: usize,
        target: usize,
        mode: Upsample,
        f: impl FnOnce(&mut CpuProjector) -> Result<()>,
    ) -> Result<()> {
        let tensors = taps
            .iter()
            .map(|t| Ok(t.tensor.get(image)?.to_dtype(DType::F32)?.contiguous()?))
            .collect::<Result<Vec<Tensor>>>()?;
        let tap_guards = tensors.iter().map(CpuSlice::new).collect::<Result<Vec<_>>>()?;
        let w_guards = self
            .groups
            .iter()
            .map(|g| CpuSlice::new(&g.w))
            .collect::<Result<Vec<_>>>()?;
        let bias = self.bias.to_vec1::<f32>()?;
        let tap_slices: Vec<&[f32]> = tap_guards.iter().map(CpuSlice::slice).collect::<Result<_>>()?;
        let mut cpu = CpuProjector::new(self, &tap_slices, &w_guards, bias, target, mode, self.scratch.take())?;
        let r = f(&mut cpu);
        self.scratch.put(cpu.into_scratch());
        r
    }

    fn check(&self, taps: &FeatureTaps, image: usize) -> Result<()> {
        let specs = taps.specs();
        if specs != self.specs {
            let names = |s: &[TapSpec]| {
                s.iter()
                    .map(|t| format!("{}({}@{})", t.name, t.channels, t.resolution))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(Error::invalid(format!(
                "taps do not match the projection: expected [{}], got [{}]",
                names(&self.specs),
                names(&specs)
            )));
        }
        if image >= taps.batch() {
            return Err(Error::invalid(format!(
                "image {image} out of range: the taps hold {} images",
                taps.batch()
            )));
        }
        Ok(())
    }
}

/// `[D, K]` projection applied to image `image`'s hypercolumn: convenience for
/// [`FactoredProjection::project`].
pub fn project(
    taps: &FeatureTaps,
    image: usize,
    w: &Tensor,
    b: Option<&Tensor>,
    target: usize,
    mode: Upsample,
) -> Result<Tensor> {
    FactoredProjection::new(w, b, &taps.specs())?.project(taps, image, target, mode)
}

/// Consecutive ranges of whole output rows, about `tile_pixels` pixels each.
fn row_tiles(target: usize, tile_pixels: usize) -> impl Iterator<Item = Range<usize>> {
    let rows = (tile_pixels / target).clamp(1, target.max(1));
    (0..target).step_by(rows).map(move |y0| y0..(y0 + rows).min(target))
}
