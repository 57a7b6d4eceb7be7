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
use crate::linalg::sgemm;

/// A linear map `D -> K` over a hypercolumn, split by tap, applied without
/// materialising the hypercolumn.
#[derive(Debug, Clone)]
pub struct FactoredProjection {
    /// The taps it expects, in order.
    pub specs: Vec<TapSpec>,
    /// `W_t` `[C_t, K]` per tap, f32.
    pub weights: Vec<Tensor>,
    /// `b` `[K]`, f32.
    pub bias: Tensor,
    /// Apply ReLU to the output (fused into the bias pass).
    pub relu: bool,
    /// Use the device-generic candle path even on the CPU (for tests).
    #[doc(hidden)]
    pub force_generic: bool,
}

impl FactoredProjection {
    /// Splits `w` `[D, K]` by the channels of `specs` (D must be their sum); `bias`
    /// `[K]` defaults to zero.
    pub fn new(w: &Tensor, bias: Option<&Tensor>, specs: &[TapSpec]) -> Result<Self> {
        let (d, k) = w.dims2()?;
        let total: usize = specs.iter().map(|s| s.channels).sum();
        if d != total {
            return Err(Error::invalid(format!(
                "projection has {d} input rows but the taps have {total} channels"
            )));
        }
        let w = w.to_dtype(DType::F32)?;
        let mut weights = Vec::with_capacity(specs.len());
        let mut off = 0;
        for s in specs {
            weights.push(w.narrow(0, off, s.channels)?.contiguous()?);
            off += s.channels;
        }
        let bias = match bias {
            Some(b) if b.dims() == [k] => b.to_dtype(DType::F32)?,
            Some(b) => return Err(Error::invalid(format!("bias must be [{k}], got {:?}", b.dims()))),
            None => Tensor::zeros(k, DType::F32, w.device())?,
        };
        Ok(Self {
            specs: specs.to_vec(),
            weights,
            bias,
            relu: false,
            force_generic: false,
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
        let rows = (tile_pixels / target).clamp(1, target);
        let dev = taps
            .iter()
            .next()
            .map(|t| t.tensor.device().clone())
            .unwrap_or(Device::Cpu);
        if dev.is_cpu() && !self.force_generic {
            let mut cpu = CpuProjector::new(self, taps, image, target, mode)?;
            cpu.relu = self.relu;
            for y0 in (0..target).step_by(rows) {
                let y1 = (y0 + rows).min(target);
                let data = cpu.tile(y0..y1);
                f(
                    y0..y1,
                    Tensor::from_vec(data, ((y1 - y0) * target, self.out_dim()), &Device::Cpu)?,
                )?;
            }
        } else {
            let g = GenericProjector::new(self, taps, image, target, mode)?;
            for y0 in (0..target).step_by(rows) {
                let y1 = (y0 + rows).min(target);
                let t = g.tile(y0..y1)?;
                f(y0..y1, if self.relu { t.relu()? } else { t })?;
            }
        }
        Ok(())
    }

    /// CPU-only variant of [`FactoredProjection::for_each_tile`] that lends each tile
    /// as a row-major `[rows.len() * target, K]` slice, without wrapping it in a tensor.
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
        if taps.iter().any(|t| !t.tensor.device().is_cpu()) {
            return Err(Error::invalid("for_each_cpu_tile needs CPU taps"));
        }
        let rows = (tile_pixels / target).clamp(1, target);
        let mut cpu = CpuProjector::new(self, taps, image, target, mode)?;
        cpu.relu = self.relu;
        for y0 in (0..target).step_by(rows) {
            let y1 = (y0 + rows).min(target);
            f(y0..y1, &cpu.tile(y0..y1))?;
        }
        Ok(())
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

/// Contiguous f32 CPU copy-free view of a tensor, or a converted copy.
fn cpu_f32(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Runs `f` on the f32 contents of a contiguous CPU tensor without copying.
fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = if t.dtype() == DType::F32 && t.is_contiguous() {
        t.clone()
    } else {
        t.to_dtype(DType::F32)?.contiguous()?
    };
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => {
            let all = s.as_slice::<f32>()?;
            let start = layout.start_offset();
            Ok(f(&all[start..start + layout.shape().elem_count()]))
        }
        _ => Err(Error::invalid("expected a CPU tensor")),
    }
}

/// One resolution's taps, with a window of projected source rows.
struct Group {
    r: usize,
    /// (tap data `[C, r*r]`, its weights `[C, K]`, C).
    taps: Vec<(Vec<f32>, Vec<f32>, usize)>,
    interp: AxisInterp,
    /// Projected source rows `lo..hi`, each `[r, K]`.
    lo: usize,
    hi: usize,
    rows: Vec<f32>,
}

impl Group {
    /// Projected source rows `a..b` (computed, or reused from the previous window).
    fn ensure(&mut self, a: usize, b: usize, k: usize) {
        let row = self.r * k;
        let mut out = vec![0f32; (b - a) * row];
        let mut missing = vec![];
        let (ka, kb) = (a.max(self.lo), b.min(self.hi));
        if ka < kb {
            out[(ka - a) * row..(kb - a) * row].copy_from_slice(&self.rows[(ka - self.lo) * row..(kb - self.lo) * row]);
            if a < ka {
                missing.push(a..ka);
            }
            if kb < b {
                missing.push(kb..b);
            }
        } else {
            missing.push(a..b);
        }
        for m in missing {
            let dst = &mut out[(m.start - a) * row..(m.end - a) * row];
            for (i, (x, w, c)) in self.taps.iter().enumerate() {
                let lhs = &x[m.start * self.r..];
                sgemm(m.len() * self.r, k, *c, dst, i > 0, lhs, 1, self.r * self.r, w);
            }
        }
        self.lo = a;
        self.hi = b;
        self.rows = out;
    }
}

struct CpuProjector {
    relu: bool,
    k: usize,
    target: usize,
    bias: Vec<f32>,
    /// Taps at the output resolution: (data `[C, T*T]`, weights, C).
    full: Vec<(Vec<f32>, Vec<f32>, usize)>,
    groups: Vec<Group>,
    cols_by_r: Vec<AxisInterp>,
}

impl CpuProjector {
    fn new(p: &FactoredProjection, taps: &FeatureTaps, image: usize, target: usize, mode: Upsample) -> Result<Self> {
        let k = p.out_dim();
        let mut full = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        for (tap, w) in taps.iter().zip(&p.weights) {
            let x = with_slice(&tap.tensor.get(image)?, |s| s.to_vec())?;
            let entry = (x, cpu_f32(w)?, tap.channels);
            let r = tap.resolution;
            if r == target {
                full.push(entry);
            } else if let Some(g) = groups.iter_mut().find(|g| g.r == r) {
                g.taps.push(entry);
            } else {
                groups.push(Group {
                    r,
                    taps: vec![entry],
                    interp: AxisInterp::new(r, target, mode),
                    lo: 0,
                    hi: 0,
                    rows: vec![],
                });
            }
        }
        let cols_by_r = groups.iter().map(|g| g.interp.clone()).collect();
        Ok(Self {
            relu: false,
            k,
            target,
            bias: cpu_f32(&p.bias)?,
            full,
            groups,
            cols_by_r,
        })
    }

    fn tile(&mut self, ys: Range<usize>) -> Vec<f32> {
        let (k, t) = (self.k, self.target);
        let px = ys.len() * t;
        let mut acc = vec![0f32; px * k];
        for (i, (x, w, c)) in self.full.iter().enumerate() {
            sgemm(px, k, *c, &mut acc, i > 0, &x[ys.start * t..], 1, t * t, w);
        }
        for g in self.groups.iter_mut() {
            let lo = ys.clone().map(|y| g.interp.i0[y]).min().unwrap_or(0);
            let hi = ys.clone().map(|y| g.interp.i1[y]).max().unwrap_or(0) + 1;
            g.ensure(lo, hi, k);
        }
        // One fused pass per output row: vertical interpolation of every group into a
        // row buffer, then per pixel the sum of all groups' horizontal interpolations,
        // the bias and the ReLU, while the pixel's K values are in L1.
        let groups: &[Group] = &self.groups;
        let cols: &[AxisInterp] = &self.cols_by_r;
        let (bias, relu) = (&self.bias[..], self.relu);
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(ys.len())
            .max(1);
        let per = ys.len().div_ceil(threads);
        std::thread::scope(|s| {
            for (ci, chunk) in acc.chunks_mut(per * t * k).enumerate() {
                let y_start = ys.start + ci * per;
                s.spawn(move || {
                    let mut rowbufs: Vec<Vec<f32>> = groups.iter().map(|g| vec![0f32; g.r * k]).collect();
                    for (dy, out_row) in chunk.chunks_mut(t * k).enumerate() {
                        let y = y_start + dy;
                        for (g, rowbuf) in groups.iter().zip(rowbufs.iter_mut()) {
                            let rowlen = g.r * k;
                            let (i0, i1, w0, w1) = (g.interp.i0[y], g.interp.i1[y], g.interp.w0[y], g.interp.w1[y]);
                            let r0 = &g.rows[(i0 - g.lo) * rowlen..(i0 - g.lo + 1) * rowlen];
                            if w1 == 0.0 {
                                rowbuf.iter_mut().zip(r0).for_each(|(d, &a)| *d = w0 * a);
                            } else {
                                let r1 = &g.rows[(i1 - g.lo) * rowlen..(i1 - g.lo + 1) * rowlen];
                                rowbuf
                                    .iter_mut()
                                    .zip(r0.iter().zip(r1))
                                    .for_each(|(d, (&a, &b))| *d = w0 * a + w1 * b);
                            }
                        }
                        for x in 0..t {
                            let dst = &mut out_row[x * k..(x + 1) * k];
                            for (rowbuf, c) in rowbufs.iter().zip(cols) {
                                let (j0, j1, v0, v1) = (c.i0[x], c.i1[x], c.w0[x], c.w1[x]);
                                let s0 = &rowbuf[j0 * k..(j0 + 1) * k];
                                if v1 == 0.0 {
                                    dst.iter_mut().zip(s0).for_each(|(d, &a)| *d += v0 * a);
                                } else {
                                    let s1 = &rowbuf[j1 * k..(j1 + 1) * k];
                                    dst.iter_mut()
                                        .zip(s0.iter().zip(s1))
                                        .for_each(|(d, (&a, &b))| *d += v0 * a + v1 * b);
                                }
                            }
                            if relu {
                                dst.iter_mut().zip(bias).for_each(|(d, &b)| *d = (*d + b).max(0.0));
                            } else {
                                dst.iter_mut().zip(bias).for_each(|(d, &b)| *d += b);
                            }
                        }
                    }
                });
            }
        });
        acc
    }
}

/// Device-generic version with candle ops (dense interpolation matrices per tile).
struct GenericProjector {
    target: usize,
    bias: Tensor,
    /// Per tap: projection at native resolution `[r, r*K]`, row interpolation `[T, r]`,
    /// column interpolation `[T, r]`.
    parts: Vec<(Tensor, Tensor, Tensor, usize)>,
    k: usize,
}

impl GenericProjector {
    fn new(p: &FactoredProjection, taps: &FeatureTaps, image: usize, target: usize, mode: Upsample) -> Result<Self> {
        let k = p.out_dim();
        let mut parts = Vec::new();
        for (tap, w) in taps.iter().zip(&p.weights) {
            let r = tap.resolution;
            let dev = tap.tensor.device();
            let x = tap
                .tensor
                .get(image)?
                .to_dtype(DType::F32)?
                .reshape((tap.channels, r * r))?;
            let proj = x.t()?.matmul(&w.to_device(dev)?)?.reshape((r, r * k))?;
            let a = AxisInterp::new(r, target, mode).matrix(r, dev)?;
            parts.push((proj, a.clone(), a, r));
        }
        let dev = taps
            .iter()
            .next()
            .map(|t| t.tensor.device().clone())
            .unwrap_or(Device::Cpu);
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
        for (proj, ah, aw, r) in &self.parts {
            let rows = ah.narrow(0, ys.start, n)?.matmul(proj)?.reshape((n, *r, k))?; // [n, r, K]
            let up = aw.broadcast_left(n)?.matmul(&rows)?; // [n, T, K]
            acc = Some(match acc {
                Some(a) => (a + up)?,
                None => up,
            });
        }
        let acc = acc.ok_or_else(|| Error::invalid("no taps to project"))?;
        Ok(acc.reshape((n * t, k))?.broadcast_add(&self.bias)?)
    }
}
