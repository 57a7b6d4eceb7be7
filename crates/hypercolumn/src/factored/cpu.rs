//! The CPU engine of the factored projection: native-resolution GEMMs on `gemm`, and
//! the 2-tap upsampling of their K-channel outputs fused into whole output rows by
//! [`super::fuse`], split across threads.

use std::ops::Range;

use labelgan_core::Result;
use labelgan_kernels::amx::{Bf16Lhs, Bf16Rhs, gemm_bf16};
use labelgan_kernels::linalg::{Strided, sgemm_rhs_rows};

use super::fuse::{fuse_cols, fuse_rows};
use super::rows::{CpuSlice, Group, Stack};
use super::{FactoredProjection, Scratch};
use crate::interp::{AxisInterp, Upsample};

/// A tile's full-resolution rows as the block GEMMs read them.
enum FullRows<'s> {
    /// Converted to bf16 (in a separate buffer), with the weights in bf16.
    Bf16(&'s Bf16Rhs),
    /// Pixel-major f32 `(rows, row stride, column stride)`, channels, weights `[C, K]`.
    F32(Strided<'s, &'s [f32]>, usize, &'s [f32]),
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
    /// The left-hand side in bf16, when the projection runs in bf16.
    pub lhs16: Bf16Lhs,
    /// The output tile, reused across tiles.
    pub acc: Vec<f32>,
    /// One block buffer per worker, reused across tiles.
    pub bufs: Vec<Vec<f32>>,
}

impl<'a> CpuProjector<'a> {
    pub fn new(
        p: &'a FactoredProjection,
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
        for (gi, (g, w)) in p.groups.iter().zip(weights).enumerate() {
            let parts: Vec<(&[f32], usize)> = g.taps.iter().map(|&i| (taps[i], p.specs[i].channels)).collect();
            let c = parts.iter().map(|x| x.1).sum();
            let stack = Stack {
                r: g.resolution,
                c,
                parts,
                w: w.slice()?,
                w16: p.bf16.as_ref().map(|v| &v[gi]),
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
            lhs16: scratch.lhs16,
            acc: scratch.acc,
            bufs: scratch.bufs,
        })
    }

    /// The buffers, for the next image.
    pub fn into_scratch(self) -> Scratch {
        Scratch {
            rows: self.groups.into_iter().map(|g| g.rows).collect(),
            lhs: self.lhs,
            lhs16: self.lhs16,
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
            g.ensure(lo, hi, self.k, chunk, &mut self.lhs, &mut self.lhs16);
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
            lhs16,
            bias,
            relu,
            bufs,
            ..
        } = self;
        bufs.resize_with(threads, Vec::new);
        // In bf16 the rows are converted once here, for every block; in f32 they are
        // made pixel-major once, for gemm to read in place.
        let full = full.as_ref().map(|st| match st.w16 {
            Some(w16) => {
                st.fill_bf16(ys.start, ys.end, lhs16);
                FullRows::Bf16(w16)
            }
            None => FullRows::F32((st.rows_pixel_major(ys.start, ys.end, lhs), st.c, 1), st.c, st.w),
        });
        let a16 = &*lhs16;
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
                        match &full {
                            Some(FullRows::Bf16(w16)) => gemm_bf16(a16, 0..px, w16, k0..k0 + width, buf),
                            Some(FullRows::F32((l, lrs, lcs), c, w)) => {
                                sgemm_rhs_rows(1, px, width, *c, buf, false, l, *lrs, *lcs, &w[k0..], k)
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
            Some(full) => full.project_rows(ys.start, ys.end, k, &mut acc, &mut self.lhs, &mut self.lhs16),
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
