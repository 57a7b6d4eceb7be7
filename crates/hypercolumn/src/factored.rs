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

use candle_core::{DType, Device, Storage, Tensor};

use labelgan_core::{Error, FeatureTaps, Result, TapSpec};

use crate::interp::{AxisInterp, Upsample};
use crate::linalg::{sgemm, sgemm_rhs_rows};

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
    /// The CPU path's buffers, kept from one image to the next.
    scratch: ScratchCache,
}

/// Buffers of the CPU path (source-row windows, the gathered left-hand side, block
/// buffers, the tile), kept between images: allocated afresh, their tens of megabytes
/// are faulted in page by page for every image.
#[derive(Default)]
struct Scratch {
    rows: Vec<Vec<f32>>,
    lhs: Vec<f32>,
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
            scratch: ScratchCache::default(),
        })
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
        let on_cpu = taps.iter().all(|t| t.tensor.device().is_cpu()) && self.bias.device().is_cpu();
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
        if width == 0 || k % width != 0 {
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

/// A read guard on a contiguous f32 CPU tensor's storage.
struct CpuSlice<'a> {
    guard: Box<dyn std::ops::Deref<Target = Storage> + 'a>,
    start: usize,
    len: usize,
}

impl<'a> CpuSlice<'a> {
    fn new(t: &'a Tensor) -> Result<Self> {
        if t.dtype() != DType::F32 || !t.is_contiguous() {
            return Err(Error::invalid("internal: expected a contiguous f32 tensor"));
        }
        let (guard, layout) = t.storage_and_layout();
        Ok(Self {
            start: layout.start_offset(),
            len: layout.shape().elem_count(),
            guard: Box::new(guard),
        })
    }

    fn slice(&self) -> Result<&[f32]> {
        match &**self.guard {
            Storage::Cpu(s) => Ok(&s.as_slice::<f32>()?[self.start..self.start + self.len]),
            _ => Err(Error::invalid(
                "expected CPU tensors (use for_each_tile on other devices)",
            )),
        }
    }
}

/// One resolution's taps (borrowed, channel-major `[C_t, r*r]` each) and weights.
struct Stack<'a> {
    r: usize,
    c: usize,
    parts: Vec<(&'a [f32], usize)>,
    w: &'a [f32],
}

impl Stack<'_> {
    /// `dst [(b-a)*r, K] = x[source rows a..b] · w`. The taps are channel-major, so the
    /// rows' pixels are a column-major `[px, C]` matrix: read in place for one tap,
    /// or copied channel by channel (contiguous runs) when several taps share `r`.
    fn project_rows(&self, a: usize, b: usize, k: usize, dst: &mut [f32], lhs: &mut Vec<f32>) {
        let px = (b - a) * self.r;
        let (l, lrs, lcs) = self.rows_lhs(a, b, lhs);
        sgemm(px, k, self.c, dst, false, l, lrs, lcs, self.w);
    }

    /// The left-hand side `[px, C]` of source rows `a..b` as (slice, row stride, column
    /// stride): in place for one tap, else copied into `lhs`.
    fn rows_lhs<'s>(&'s self, a: usize, b: usize, lhs: &'s mut Vec<f32>) -> (&'s [f32], usize, usize) {
        let (n, px0, px) = (self.r * self.r, a * self.r, (b - a) * self.r);
        if let [(data, _)] = self.parts[..] {
            return (&data[px0..], 1, n);
        }
        lhs.clear();
        lhs.resize(px * self.c, 0.0);
        let mut off = 0;
        for &(data, ct) in &self.parts {
            for ch in 0..ct {
                lhs[(off + ch) * px..(off + ch + 1) * px].copy_from_slice(&data[ch * n + px0..ch * n + px0 + px]);
            }
            off += ct;
        }
        (&lhs[..], 1, px)
    }
}

impl Stack<'_> {
    /// The rows' pixels `a..b` as a pixel-major (row-major `[px, C]`) copy in `lhs`:
    /// a GEMM reads this layout in place, where the channel-major one is packed again
    /// by every GEMM that uses it (one per column block).
    fn rows_pixel_major<'s>(&self, a: usize, b: usize, lhs: &'s mut Vec<f32>) -> &'s [f32] {
        let (px, c) = ((b - a) * self.r, self.c);
        // Every element is overwritten below: grow only, never refill.
        if lhs.len() < px * c {
            lhs.resize(px * c, 0.0);
        }
        let out = &mut lhs[..px * c];
        // Runs of 64 pixels on rayon's pool: a run's 64 output rows stay in L1 while
        // each channel's 64 values are scattered into them.
        const PB: usize = 64;
        use rayon::prelude::*;
        out.par_chunks_mut(PB * c).enumerate().for_each(|(bi, dst)| {
            let p0 = a * self.r + bi * PB;
            let pn = dst.len() / c;
            self.transpose_into(p0, pn, dst);
        });
        &lhs[..px * c]
    }

    /// `dst [pn, C]` (row-major) = the taps' pixels `p0..p0 + pn`.
    fn transpose_into(&self, p0: usize, pn: usize, dst: &mut [f32]) {
        let (n, c) = (self.r * self.r, self.c);
        let mut off = 0;
        for &(data, ct) in &self.parts {
            for ch in 0..ct {
                let src = &data[ch * n + p0..ch * n + p0 + pn];
                for (d, &v) in dst.iter_mut().skip(off + ch).step_by(c).zip(src) {
                    *d = v;
                }
            }
            off += ct;
        }
    }
}

/// One lower resolution, with a window of projected source rows.
struct Group<'a> {
    stack: Stack<'a>,
    interp: AxisInterp,
    /// Projected source rows `lo..hi`, each `[r, K]`.
    lo: usize,
    hi: usize,
    rows: Vec<f32>,
}

impl Group<'_> {
    fn r(&self) -> usize {
        self.stack.r
    }

    /// Makes source rows `a..b` available (requests move down the image). Missing rows
    /// are projected at least `chunk` at a time, so every GEMM has enough pixels to
    /// amortise packing the weights.
    fn ensure(&mut self, a: usize, b: usize, k: usize, chunk: usize, lhs: &mut Vec<f32>) {
        if a >= self.lo && b <= self.hi {
            return;
        }
        if a < self.lo || a >= self.hi {
            // Nothing to keep.
            self.lo = a;
            self.hi = a;
        }
        let row = self.r() * k;
        let end = b.max(self.hi + chunk).min(self.r());
        // Keep rows a..hi (moved to the front), project hi..end after them.
        self.rows.copy_within((a - self.lo) * row..(self.hi - self.lo) * row, 0);
        self.rows.resize((end - a) * row, 0.0);
        let start = self.hi;
        self.stack
            .project_rows(start, end, k, &mut self.rows[(start - a) * row..], lhs);
        self.lo = a;
        self.hi = end;
    }
}

struct CpuProjector<'a> {
    relu: bool,
    chunk_pixels: usize,
    k: usize,
    target: usize,
    bias: Vec<f32>,
    /// Taps at the output resolution.
    full: Option<Stack<'a>>,
    groups: Vec<Group<'a>>,
    lhs: Vec<f32>,
    /// The output tile, reused across tiles.
    acc: Vec<f32>,
    /// One block buffer per worker, reused across tiles.
    bufs: Vec<Vec<f32>>,
}

impl<'a> CpuProjector<'a> {
    fn new(
        p: &FactoredProjection,
        taps: &[&'a [f32]],
        weights: &'a [CpuSlice<'a>],
        bias: Vec<f32>,
        target: usize,
        mode: Upsample,
        scratch: Scratch,
    ) -> Result<Self> {
        let mut full = None;
        let mut groups = Vec::new();
        let mut spare_rows = scratch.rows.into_iter();
        for (g, w) in p.groups.iter().zip(weights) {
            let parts: Vec<(&[f32], usize)> = g.taps.iter().map(|&i| (taps[i], p.specs[i].channels)).collect();
            let c = parts.iter().map(|x| x.1).sum();
            let stack = Stack {
                r: g.resolution,
                c,
                parts,
                w: w.slice()?,
            };
            if g.resolution == target {
                full = Some(stack);
            } else {
                let interp = AxisInterp::new(g.resolution, target, mode);
                groups.push(Group {
                    stack,
                    interp,
                    lo: 0,
                    hi: 0,
                    rows: spare_rows.next().unwrap_or_default(),
                });
            }
        }
        Ok(Self {
            relu: p.relu,
            chunk_pixels: p.chunk_pixels,
            k: p.out_dim(),
            target,
            bias,
            full,
            groups,
            lhs: scratch.lhs,
            acc: scratch.acc,
            bufs: scratch.bufs,
        })
    }

    /// The buffers, for the next image.
    fn into_scratch(self) -> Scratch {
        Scratch {
            rows: self.groups.into_iter().map(|g| g.rows).collect(),
            lhs: self.lhs,
            bufs: self.bufs,
            acc: self.acc,
        }
    }

    /// Makes the lower-resolution groups' source rows for output rows `ys` available.
    fn ensure_groups(&mut self, ys: &Range<usize>) {
        for g in self.groups.iter_mut() {
            let lo = ys.clone().map(|y| g.interp.i0[y]).min().unwrap_or(0);
            let hi = ys.clone().map(|y| g.interp.i1[y]).max().unwrap_or(0) + 1;
            let chunk = self.chunk_pixels.div_ceil(g.r()).max(1);
            g.ensure(lo, hi, self.k, chunk, &mut self.lhs);
        }
    }

    /// Output rows `ys` in blocks of `width` columns: each block projected (its columns
    /// of the full-resolution GEMM), fused and handed to `f(block, values [px, width])`
    /// on one worker thread, so that it is consumed while in that core's cache. Returns
    /// `f`'s results in block order.
    fn blocks<R: Send>(
        &mut self,
        ys: Range<usize>,
        width: usize,
        f: &(dyn Fn(usize, &[f32]) -> Result<R> + Sync),
    ) -> Result<Vec<R>> {
        let (k, t) = (self.k, self.target);
        let px = ys.len() * t;
        self.ensure_groups(&ys);
        let blocks = k / width;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(blocks)
            .max(1);
        let Self {
            full,
            groups,
            lhs,
            bias,
            relu,
            bufs,
            ..
        } = self;
        bufs.resize_with(threads, Vec::new);
        let full = full
            .as_ref()
            .map(|st| ((st.rows_pixel_major(ys.start, ys.end, lhs), st.c, 1), st.c, st.w));
        let (groups, bias, relu): (&[Group], &[f32], bool) = (groups, bias, *relu);
        let y_start = ys.start;
        // On rayon's pool: no OS thread is started per tile, and a caller that runs on
        // a pool worker takes part instead of sleeping.
        let parts: Vec<Result<Vec<(usize, R)>>> = {
            use rayon::prelude::*;
            bufs.par_iter_mut()
                .enumerate()
                .map(|(ti, buf)| -> Result<Vec<(usize, R)>> {
                    // Overwritten by the GEMM or the fill below before it is read.
                    buf.resize(px * width, 0.0);
                    let buf = &mut buf[..px * width];
                    let mut out = Vec::new();
                    for b in (ti..blocks).step_by(threads) {
                        let k0 = b * width;
                        match full {
                            Some(((l, lrs, lcs), c, w)) => {
                                sgemm_rhs_rows(1, px, width, c, buf, false, l, lrs, lcs, &w[k0..], k)
                            }
                            None => buf.fill(0.0),
                        }
                        fuse_cols(groups, bias, relu, t, k, k0..k0 + width, y_start, buf);
                        out.push((b, f(b, buf)?));
                    }
                    Ok(out)
                })
                .collect()
        };
        let mut all = Vec::with_capacity(blocks);
        for p in parts {
            all.extend(p?);
        }
        all.sort_by_key(|(b, _)| *b);
        Ok(all.into_iter().map(|(_, r)| r).collect())
    }

    fn tile(&mut self, ys: Range<usize>) -> Result<&[f32]> {
        let (k, t) = (self.k, self.target);
        let px = ys.len() * t;
        let mut acc = std::mem::take(&mut self.acc);
        acc.resize(px * k, 0.0);
        match &self.full {
            // Overwrites the tile (gemm without reading dst).
            Some(full) => full.project_rows(ys.start, ys.end, k, &mut acc, &mut self.lhs),
            None => acc.iter_mut().for_each(|v| *v = 0.0),
        }
        self.ensure_groups(&ys);
        let groups: &[Group] = &self.groups;
        let (bias, relu) = (&self.bias[..], self.relu);
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(ys.len())
            .max(1);
        let per = ys.len().div_ceil(threads);
        std::thread::scope(|s| {
            for (ci, chunk) in acc.chunks_mut(per * t * k).enumerate() {
                let y_start = ys.start + ci * per;
                s.spawn(move || fuse_rows(groups, bias, relu, t, k, y_start, chunk));
            }
        });
        self.acc = acc;
        Ok(&self.acc[..px * k])
    }
}

/// Outputs per chunk of the fused pass: one pixel's chunk stays in L1 across groups.
const KC: usize = 256;

/// The fused upsample-sum-bias-activation pass for output rows `y_start..` (one
/// `[t, k]` row per `t * k` of `out`), on the calling thread, with AVX2+FMA where the
/// CPU has it.
fn fuse_rows(groups: &[Group], bias: &[f32], relu: bool, t: usize, k: usize, y_start: usize, out: &mut [f32]) {
    fuse_cols(groups, bias, relu, t, k, 0..k, y_start, out)
}

/// What a fused pass writes: output columns `cols` of each pixel, pixel p's column j at
/// `out[p * cols.len() + j - cols.start]`.
#[allow(clippy::too_many_arguments)]
fn fuse_cols(
    groups: &[Group],
    bias: &[f32],
    relu: bool,
    t: usize,
    k: usize,
    cols: Range<usize>,
    y_start: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the enabled features (checked above).
            unsafe { fuse_rows_avx512(groups, bias, relu, t, k, cols, y_start, out) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the enabled features (checked above).
            unsafe { fuse_rows_avx2(groups, bias, relu, t, k, cols, y_start, out) };
            return;
        }
    }
    // aarch64's baseline has fused multiply-add; elsewhere plain mul + add.
    fuse_rows_body::<{ cfg!(target_arch = "aarch64") }>(groups, bias, relu, t, k, cols, y_start, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn fuse_rows_avx2(
    groups: &[Group],
    bias: &[f32],
    relu: bool,
    t: usize,
    k: usize,
    cols: Range<usize>,
    y_start: usize,
    out: &mut [f32],
) {
    fuse_rows_body::<true>(groups, bias, relu, t, k, cols, y_start, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn fuse_rows_avx512(
    groups: &[Group],
    bias: &[f32],
    relu: bool,
    t: usize,
    k: usize,
    cols: Range<usize>,
    y_start: usize,
    out: &mut [f32],
) {
    fuse_rows_body::<true>(groups, bias, relu, t, k, cols, y_start, out)
}

/// `a * b + c`, fused when `F` (only where that is a single instruction).
#[inline(always)]
fn fmadd<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
    if F { a.mul_add(b, c) } else { a * b + c }
}

/// Per output row and chunk of KC outputs: vertical interpolation of every group into
/// a row buffer (`[r, KC]`, L2-resident), then per pixel the sum of all groups'
/// horizontal interpolations, the bias and the activation, 16 lanes at a time held in
/// registers across all groups.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fuse_rows_body<const F: bool>(
    groups: &[Group],
    bias: &[f32],
    relu: bool,
    t: usize,
    k: usize,
    cols: Range<usize>,
    y_start: usize,
    out: &mut [f32],
) {
    let width = cols.len();
    const L: usize = 16;
    let mut rowbufs: Vec<Vec<f32>> = groups.iter().map(|g| vec![0f32; g.r() * KC]).collect();
    for (dy, out_row) in out.chunks_mut(t * width).enumerate() {
        let y = y_start + dy;
        for k0 in cols.clone().step_by(KC) {
            let kc = KC.min(cols.end - k0);
            for (g, rowbuf) in groups.iter().zip(rowbufs.iter_mut()) {
                let rowlen = g.r() * k;
                let (i0, i1, w0, w1) = (g.interp.i0[y], g.interp.i1[y], g.interp.w0[y], g.interp.w1[y]);
                let r0 = &g.rows[(i0 - g.lo) * rowlen..(i0 - g.lo + 1) * rowlen];
                let r1 = &g.rows[(i1 - g.lo) * rowlen..(i1 - g.lo + 1) * rowlen];
                for j in 0..g.r() {
                    let d = &mut rowbuf[j * kc..(j + 1) * kc];
                    let a0 = &r0[j * k + k0..j * k + k0 + kc];
                    let a1 = &r1[j * k + k0..j * k + k0 + kc];
                    d.iter_mut()
                        .zip(a0.iter().zip(a1))
                        .for_each(|(d, (&a, &b))| *d = fmadd::<F>(w0, a, w1 * b));
                }
            }
            let bias = &bias[k0..k0 + kc];
            let body = kc - kc % L;
            let mut srcs = Vec::with_capacity(groups.len());
            for x in 0..t {
                srcs.clear();
                srcs.extend(rowbufs.iter().zip(groups).map(|(rowbuf, g)| {
                    let c = &g.interp;
                    let (j0, j1) = (c.i0[x], c.i1[x]);
                    (
                        &rowbuf[j0 * kc..(j0 + 1) * kc],
                        &rowbuf[j1 * kc..(j1 + 1) * kc],
                        c.w0[x],
                        c.w1[x],
                    )
                }));
                let at = x * width + k0 - cols.start;
                let dst = &mut out_row[at..at + kc];
                // Four 16-lane accumulators at a time: independent FMA chains.
                let wide = kc - kc % (8 * L);
                for c in (0..wide).step_by(8 * L) {
                    lane_block::<F, { 8 * L }>(dst, &srcs, bias, relu, c);
                }
                for c in (wide..body).step_by(L) {
                    lane_block::<F, L>(dst, &srcs, bias, relu, c);
                }
                for c in body..kc {
                    let mut v = dst[c];
                    for &(s0, s1, v0, v1) in &srcs {
                        v = fmadd::<F>(v0, s0[c], fmadd::<F>(v1, s1[c], v));
                    }
                    v += bias[c];
                    dst[c] = if relu { v.max(0.0) } else { v };
                }
            }
        }
    }
}

/// `dst[c..c+W]` plus every group's two weighted sources, bias and activation, with
/// the W lanes held in registers across groups.
#[inline(always)]
fn lane_block<const F: bool, const W: usize>(
    dst: &mut [f32],
    srcs: &[(&[f32], &[f32], f32, f32)],
    bias: &[f32],
    relu: bool,
    c: usize,
) {
    let d: &mut [f32; W] = (&mut dst[c..c + W]).try_into().expect("W lanes");
    let mut acc = *d;
    for &(s0, s1, v0, v1) in srcs {
        let s0: &[f32; W] = s0[c..c + W].try_into().expect("W lanes");
        let s1: &[f32; W] = s1[c..c + W].try_into().expect("W lanes");
        for l in 0..W {
            acc[l] = fmadd::<F>(v0, s0[l], fmadd::<F>(v1, s1[l], acc[l]));
        }
    }
    let b: &[f32; W] = bias[c..c + W].try_into().expect("W lanes");
    for l in 0..W {
        acc[l] += b[l];
        if relu {
            acc[l] = acc[l].max(0.0);
        }
    }
    *d = acc;
}

/// Device-generic version with candle ops (dense interpolation matrices per tile).
struct GenericProjector {
    target: usize,
    bias: Tensor,
    /// Per resolution: projection at native resolution `[r, r*K]`, interpolation `[T, r]`.
    parts: Vec<(Tensor, Tensor, usize)>,
    k: usize,
}

impl GenericProjector {
    fn new(p: &FactoredProjection, taps: &FeatureTaps, image: usize, target: usize, mode: Upsample) -> Result<Self> {
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

    fn tile(&self, ys: Range<usize>) -> Result<Tensor> {
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
