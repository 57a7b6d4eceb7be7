//! The CPU engine of the factored projection: native-resolution GEMMs on `gemm`, and
//! the 2-tap upsampling of their K-channel outputs fused into whole output rows by
//! [`super::fuse`], split across threads.

use std::ops::Range;

use candle_core::{DType, Storage, Tensor};

use labelgan_core::{Error, Result};

use super::fuse::{fuse_cols, fuse_rows};
use super::{FactoredProjection, Scratch};
use crate::interp::{AxisInterp, Upsample};
use labelgan_kernels::linalg::{sgemm, sgemm_rhs_rows};

/// A read guard on a contiguous f32 CPU tensor's storage.
pub struct CpuSlice<'a> {
    pub guard: Box<dyn std::ops::Deref<Target = Storage> + 'a>,
    pub start: usize,
    pub len: usize,
}

impl<'a> CpuSlice<'a> {
    pub fn new(t: &'a Tensor) -> Result<Self> {
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

    pub fn slice(&self) -> Result<&[f32]> {
        match &**self.guard {
            Storage::Cpu(s) => Ok(&s.as_slice::<f32>()?[self.start..self.start + self.len]),
            _ => Err(Error::invalid(
                "expected CPU tensors (use for_each_tile on other devices)",
            )),
        }
    }
}

/// One resolution's taps (borrowed, channel-major `[C_t, r*r]` each) and weights.
pub struct Stack<'a> {
    pub r: usize,
    pub c: usize,
    pub parts: Vec<(&'a [f32], usize)>,
    pub w: &'a [f32],
}

impl Stack<'_> {
    /// `dst [(b-a)*r, K] = x[source rows a..b] · w`. The taps are channel-major, so the
    /// rows' pixels are a column-major `[px, C]` matrix: read in place for one tap,
    /// or copied channel by channel (contiguous runs) when several taps share `r`.
    pub fn project_rows(&self, a: usize, b: usize, k: usize, dst: &mut [f32], lhs: &mut Vec<f32>) {
        let px = (b - a) * self.r;
        let (l, lrs, lcs) = self.rows_lhs(a, b, lhs);
        sgemm(px, k, self.c, dst, false, l, lrs, lcs, self.w);
    }

    /// The left-hand side `[px, C]` of source rows `a..b` as (slice, row stride, column
    /// stride): in place for one tap, else copied into `lhs`.
    pub fn rows_lhs<'s>(&'s self, a: usize, b: usize, lhs: &'s mut Vec<f32>) -> (&'s [f32], usize, usize) {
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
    pub fn rows_pixel_major<'s>(&self, a: usize, b: usize, lhs: &'s mut Vec<f32>) -> &'s [f32] {
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
    pub fn transpose_into(&self, p0: usize, pn: usize, dst: &mut [f32]) {
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
pub struct Group<'a> {
    pub stack: Stack<'a>,
    pub interp: AxisInterp,
    /// Projected source rows `lo..hi`, each `[r, K]`.
    pub lo: usize,
    pub hi: usize,
    pub rows: Vec<f32>,
}

impl Group<'_> {
    pub fn r(&self) -> usize {
        self.stack.r
    }

    /// Makes source rows `a..b` available (requests move down the image). Missing rows
    /// are projected at least `chunk` at a time, so every GEMM has enough pixels to
    /// amortise packing the weights.
    pub fn ensure(&mut self, a: usize, b: usize, k: usize, chunk: usize, lhs: &mut Vec<f32>) {
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

pub struct CpuProjector<'a> {
    pub relu: bool,
    pub chunk_pixels: usize,
    pub k: usize,
    pub target: usize,
    pub bias: Vec<f32>,
    /// Taps at the output resolution.
    pub full: Option<Stack<'a>>,
    pub groups: Vec<Group<'a>>,
    pub lhs: Vec<f32>,
    /// The output tile, reused across tiles.
    pub acc: Vec<f32>,
    /// One block buffer per worker, reused across tiles.
    pub bufs: Vec<Vec<f32>>,
}

impl<'a> CpuProjector<'a> {
    pub fn new(
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
    pub fn into_scratch(self) -> Scratch {
        Scratch {
            rows: self.groups.into_iter().map(|g| g.rows).collect(),
            lhs: self.lhs,
            bufs: self.bufs,
            acc: self.acc,
        }
    }

    /// Makes the lower-resolution groups' source rows for output rows `ys` available.
    pub fn ensure_groups(&mut self, ys: &Range<usize>) {
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
    pub fn blocks<R: Send>(
        &mut self,
        ys: Range<usize>,
        width: usize,
        f: &(dyn Fn(usize, &[f32]) -> Result<R> + Sync),
    ) -> Result<Vec<R>> {
        let (k, t) = (self.k, self.target);
        let px = ys.len() * t;
        self.ensure_groups(&ys);
        let blocks = k / width;
        let threads = labelgan_kernels::cpu_threads().min(blocks).max(1);
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

    pub fn tile(&mut self, ys: Range<usize>) -> Result<&[f32]> {
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
        let threads = labelgan_kernels::cpu_threads().min(ys.len()).max(1);
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
