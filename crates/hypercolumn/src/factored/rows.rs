//! The CPU engine's source data: each lower resolution's taps borrowed in place
//! ([`Stack`]) and a moving window of their projected rows ([`Group`]), which the
//! fused kernels read.

use candle_core::{DType, Storage, Tensor};

use labelgan_core::{Error, Result};
use labelgan_kernels::amx::{Bf16Lhs, Bf16Rhs, gemm_bf16};
use labelgan_kernels::linalg::{Strided, sgemm};

use crate::interp::AxisInterp;

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
    /// `w` in bf16 for AMX's tile product, when the projection runs in bf16.
    pub w16: Option<&'a Bf16Rhs>,
}

impl Stack<'_> {
    /// `dst [(b-a)*r, K] = x[source rows a..b] · w`. The taps are channel-major, so the
    /// rows' pixels are a column-major `[px, C]` matrix: read in place for one tap,
    /// or copied channel by channel (contiguous runs) when several taps share `r`; in
    /// bf16 converted into `lhs16` from where the taps lie.
    pub fn project_rows(&self, a: usize, b: usize, k: usize, dst: &mut [f32], lhs: &mut Vec<f32>, lhs16: &mut Bf16Lhs) {
        let px = (b - a) * self.r;
        match self.w16 {
            // Parts of 32-row multiples on rayon's pool, one tile product each.
            Some(w16) => {
                use rayon::prelude::*;
                self.fill_bf16(a, b, lhs16);
                let a16 = &*lhs16;
                let per = px.div_ceil(labelgan_kernels::cpu_threads() * 32).max(1) * 32;
                dst[..px * k].par_chunks_mut(per * k).enumerate().for_each(|(i, part)| {
                    let r0 = i * per;
                    gemm_bf16(a16, r0..r0 + part.len() / k, w16, 0..k, part)
                });
            }
            None => {
                let (l, lrs, lcs) = self.rows_lhs(a, b, lhs);
                sgemm(px, k, self.c, dst, false, l, lrs, lcs, self.w)
            }
        }
    }

    /// Each tap's source rows `a..b` as a column-major block `[px, C_t]` where it lies.
    fn blocks(&self, a: usize, b: usize) -> impl Iterator<Item = (Strided<'_, &[f32]>, usize)> {
        let (n, px0) = (self.r * self.r, a * self.r);
        debug_assert!(b <= self.r);
        self.parts.iter().map(move |&(data, ct)| ((&data[px0..], 1, n), ct))
    }

    /// Source rows `a..b` (`[px, C]`) converted to bf16 into `out`.
    pub fn fill_bf16(&self, a: usize, b: usize, out: &mut Bf16Lhs) {
        let blocks: Vec<_> = self.blocks(a, b).collect();
        out.fill_blocks((b - a) * self.r, &blocks);
    }

    /// The left-hand side `[px, C]` of source rows `a..b` as (slice, row stride, column
    /// stride): in place for one tap, else copied into `lhs`.
    pub fn rows_lhs<'s>(&'s self, a: usize, b: usize, lhs: &'s mut Vec<f32>) -> (&'s [f32], usize, usize) {
        let px = (b - a) * self.r;
        if let [(data, _)] = self.parts[..] {
            return (&data[a * self.r..], 1, self.r * self.r);
        }
        lhs.clear();
        lhs.resize(px * self.c, 0.0);
        let mut off = 0;
        for ((data, _, n), ct) in self.blocks(a, b) {
            for ch in 0..ct {
                lhs[(off + ch) * px..(off + ch + 1) * px].copy_from_slice(&data[ch * n..ch * n + px]);
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
    pub fn ensure(&mut self, a: usize, b: usize, k: usize, chunk: usize, lhs: &mut Vec<f32>, lhs16: &mut Bf16Lhs) {
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
            .project_rows(start, end, k, &mut self.rows[(start - a) * row..], lhs, lhs16);
        self.lo = a;
        self.hi = end;
    }
}
