//! Intel AMX's bf16 tile product (`TDPBF16PS`) for f32 GEMMs whose inputs may be
//! rounded to bf16: products of bf16 pairs summed in f32, 16x16x32 multiply-adds per
//! instruction. Where the CPU has AMX (Sapphire Rapids and later) and the kernel grants
//! the tile state, [`available`] says so once per process; elsewhere callers keep
//! their f32 path.
//!
//! Rounding the inputs to bf16 (8 significant bits) changes each product by up to
//! 2^-8 relative; the sums stay f32. Callers opt in (the labeler's
//! `Precision::Bf16`).

use std::ops::Range;
use std::sync::OnceLock;

use half::bf16;

use crate::linalg::Strided;

/// Whether this process can run [`gemm_bf16`]: the CPU has AMX-TILE and AMX-BF16 and
/// the OS granted the tile data state (Linux's `ARCH_REQ_XCOMP_PERM`). Decided once;
/// `LABELGAN_AMX=off` says no.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| std::env::var("LABELGAN_AMX").as_deref() != Ok("off") && imp::request())
}

/// A right-hand side `[K, N]` rounded to bf16 in the pair-interleaved layout the tile
/// product reads (`[K/2][N][2]`), K padded to a multiple of 32 and N to 32 with zeros.
/// Packed once, multiplied many times.
#[derive(Debug, Clone)]
pub struct Bf16Rhs {
    k: usize,
    kp: usize,
    n: usize,
    np: usize,
    data: Vec<u16>,
}

impl Bf16Rhs {
    /// Packs `rhs[c * rrs + j]` for `c < k`, `j < n`.
    ///
    /// # Panics
    /// If `rhs` is shorter than its dimensions say (a caller's bug).
    pub fn pack(rhs: &[f32], k: usize, n: usize, rrs: usize) -> Self {
        assert!(
            k == 0 || n == 0 || rhs.len() >= (k - 1) * rrs + n,
            "bf16 rhs: too short"
        );
        let (kp, np) = (k.div_ceil(32) * 32, n.div_ceil(32) * 32);
        let mut data = vec![0u16; kp * np];
        for c in 0..k {
            let row = &rhs[c * rrs..c * rrs + n];
            let base = (c / 2) * np * 2 + c % 2;
            for (j, &v) in row.iter().enumerate() {
                data[base + 2 * j] = bf16::from_f32(v).to_bits();
            }
        }
        Self { k, kp, n, np, data }
    }

    /// Rows (K).
    pub fn rows(&self) -> usize {
        self.k
    }

    /// Columns (N).
    pub fn cols(&self) -> usize {
        self.n
    }
}

/// A left-hand side `[M, K]` rounded to bf16, row-major with rows padded to the
/// right-hand side's K (a multiple of 32) and M to a multiple of 32, padding zero.
/// Converted once, multiplied by any number of column blocks; the buffer is reused.
#[derive(Debug, Clone, Default)]
pub struct Bf16Lhs {
    m: usize,
    kp: usize,
    data: Vec<u16>,
}

impl Bf16Lhs {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows (M).
    pub fn rows(&self) -> usize {
        self.m
    }

    /// Converts `lhs` `(data, row stride, column stride)`, `[m, k]`, for a right-hand
    /// side of `k` rows, in parts of 32 rows on rayon's pool.
    ///
    /// # Panics
    /// If `lhs` is shorter than its dimensions say (a caller's bug).
    pub fn fill(&mut self, m: usize, lhs: Strided<'_, &[f32]>, k: usize) {
        self.fill_blocks(m, &[(lhs, k)]);
    }

    /// Converts the column blocks `(data, row stride, column stride), columns`, side by
    /// side, as one `[m, Σ columns]` left-hand side: several taps' channels are read
    /// where they lie instead of being gathered into one f32 matrix first.
    ///
    /// # Panics
    /// If a block is shorter than its dimensions say (a caller's bug).
    pub fn fill_blocks(&mut self, m: usize, blocks: &[(Strided<'_, &[f32]>, usize)]) {
        for &((l, lrs, lcs), k) in blocks {
            assert!(
                m == 0 || k == 0 || l.len() > (m - 1) * lrs + (k - 1) * lcs,
                "bf16 lhs: too short"
            );
        }
        let k: usize = blocks.iter().map(|b| b.1).sum();
        let kp = k.div_ceil(32) * 32;
        let mp = m.div_ceil(32) * 32;
        (self.m, self.kp) = (m, kp);
        self.data.clear();
        self.data.resize(mp * kp, 0);
        use rayon::prelude::*;
        self.data.par_chunks_mut(32 * kp).enumerate().for_each(|(b, part)| {
            let i0 = b * 32;
            let rows = 32.min(m.saturating_sub(i0));
            let mut c0 = 0;
            for &((l, lrs, lcs), k) in blocks {
                if lcs == 1 {
                    for r in 0..rows {
                        let src = &l[(i0 + r) * lrs..(i0 + r) * lrs + k];
                        for (d, &v) in part[r * kp + c0..r * kp + c0 + k].iter_mut().zip(src) {
                            *d = bf16::from_f32(v).to_bits();
                        }
                    }
                } else {
                    // Column-major sources: read each column's run of rows in order.
                    for c in 0..k {
                        for r in 0..rows {
                            part[r * kp + c0 + c] = bf16::from_f32(l[(i0 + r) * lrs + c * lcs]).to_bits();
                        }
                    }
                }
                c0 += k;
            }
        });
    }
}

/// `dst[i, j] = Σ_c lhs[rows.start + i, c] * rhs[c, cols.start + j]` for the rows and
/// columns given (`dst` row-major with rows `cols.len()` apart), in f32 sums of bf16
/// products, on this thread's AMX tiles.
///
/// # Panics
/// If [`available`] is false, `rows.start` is not a multiple of 32, `cols` does not
/// start and end on multiples of 32 within the packed columns, the two sides' K differ,
/// or `dst` is too short (callers' bugs).
pub fn gemm_bf16(lhs: &Bf16Lhs, rows: Range<usize>, rhs: &Bf16Rhs, cols: Range<usize>, dst: &mut [f32]) {
    assert!(available(), "gemm_bf16 without AMX");
    let width = cols.len();
    assert!(
        cols.start.is_multiple_of(32) && width.is_multiple_of(32) && cols.end <= rhs.np,
        "gemm_bf16: columns {cols:?} are not 32-aligned within {}",
        rhs.np
    );
    assert!(
        rows.start.is_multiple_of(32) && rows.end <= lhs.m,
        "gemm_bf16: rows {rows:?} of {}",
        lhs.m
    );
    assert_eq!(lhs.kp, rhs.kp, "gemm_bf16: the two sides' K differ");
    let m = rows.len();
    assert!(dst.len() >= m * width, "gemm_bf16: output too short");
    let kp = rhs.kp;
    // A 32x32 output block for the last rows when fewer than 32 remain.
    let mut tail = [0f32; 32 * 32];
    // Panels of columns whose bf16 weights (kp x panel) fit in 512 KB stay in L2 while
    // every row block passes; a row block (32 x kp) stays in L1 across a panel.
    let panel = ((256 * 1024 / kp.max(1)) / 32 * 32).clamp(32, width.max(32));
    imp::with_tiles(|| {
        for p0 in (0..width).step_by(panel) {
            for i0 in (0..m).step_by(32) {
                let n = 32.min(m - i0);
                let a = &lhs.data[(rows.start + i0) * kp..(rows.start + i0 + 32) * kp];
                for j0 in (p0..width.min(p0 + panel)).step_by(32) {
                    let b = &rhs.data[(cols.start + j0) * 2..];
                    if n == 32 {
                        // SAFETY: 32 rows of `width` from (i0, j0) lie within `dst` (checked
                        // above), `a` holds 32 x kp and `b` kp/2 pair-rows of np pairs.
                        unsafe { imp::block(a, kp, b, rhs.np, &mut dst[i0 * width + j0..], width) };
                    } else {
                        // SAFETY: `tail` is 32 x 32.
                        unsafe { imp::block(a, kp, b, rhs.np, &mut tail, 32) };
                        for r in 0..n {
                            dst[(i0 + r) * width + j0..(i0 + r) * width + j0 + 32]
                                .copy_from_slice(&tail[r * 32..r * 32 + 32]);
                        }
                    }
                }
            }
        }
    });
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use std::arch::asm;

    /// CPUID leaf 7: AMX-BF16 (EDX bit 22) and AMX-TILE (bit 24); then Linux's
    /// permission for the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM,
    /// XFEATURE_XTILEDATA)`), which a process must ask for before its first tile load.
    pub fn request() -> bool {
        // SAFETY: CPUID is available on every x86_64 CPU (a safe call on newer Rust).
        #[allow(unused_unsafe)]
        let edx = unsafe { std::arch::x86_64::__cpuid_count(7, 0) }.edx;
        if edx & (1 << 22) == 0 || edx & (1 << 24) == 0 {
            return false;
        }
        const ARCH_PRCTL: usize = 158;
        const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
        const XFEATURE_XTILEDATA: usize = 18;
        let ret: isize;
        // SAFETY: the arch_prctl system call only changes this process's permissions.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") ARCH_PRCTL as isize => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack)
            );
        }
        ret == 0
    }

    /// Palette 1, tiles 0-7 of 16 rows x 64 bytes: C (f32 16x16) in 0-3, A (16 rows x
    /// 32 bf16) in 4-5, B (16 pair-rows x 16 columns) in 6-7.
    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    /// Runs `f` with this thread's tiles configured, and releases them after.
    pub fn with_tiles(f: impl FnOnce()) {
        let mut cfg = TileConfig([0; 64]);
        cfg.0[0] = 1;
        for t in 0..8 {
            cfg.0[16 + 2 * t] = 64;
            cfg.0[48 + t] = 16;
        }
        // SAFETY: AMX is available (checked by the caller) and the config is valid.
        unsafe { asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack)) };
        f();
        // SAFETY: as above.
        unsafe { asm!("tilerelease", options(nostack)) };
    }

    /// `c[32 x 32] (row stride ldc) = a[32 x kp] (bf16, row stride kp) x b` where `b`
    /// is the pair-interleaved right-hand side (pair-rows `np * 2` apart) from the
    /// block's first column.
    ///
    /// # Safety
    /// Tiles configured by [`with_tiles`]; `a` holds 32 x kp, `b` kp/2 pair-rows of 32
    /// columns, `c` 32 rows of 32 at stride `ldc`.
    pub unsafe fn block(a: &[u16], kp: usize, b: &[u16], np: usize, c: &mut [f32], ldc: usize) {
        debug_assert!(a.len() >= 32 * kp && c.len() >= 31 * ldc + 32);
        debug_assert!(kp == 0 || b.len() >= (kp / 2 - 1) * np * 2 + 64);
        // SAFETY: the caller's contract: every tile load and store stays within `a`, `b`
        // and `c` (16 rows of 64 bytes at the strides given).
        unsafe {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack)
            );
            let (sa, sb) = (kp * 2, np * 4);
            for kk in (0..kp).step_by(32) {
                let a0 = a.as_ptr().add(kk);
                let a1 = a.as_ptr().add(16 * kp + kk);
                let b0 = b.as_ptr().add(kk * np);
                let b1 = b0.add(32);
                asm!(
                    "tileloadd tmm4, [{a0} + {sa}*1]",
                    "tileloadd tmm5, [{a1} + {sa}*1]",
                    "tileloadd tmm6, [{b0} + {sb}*1]",
                    "tileloadd tmm7, [{b1} + {sb}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) a0,
                    a1 = in(reg) a1,
                    b0 = in(reg) b0,
                    b1 = in(reg) b1,
                    sa = in(reg) sa,
                    sb = in(reg) sb,
                    options(nostack, readonly)
                );
            }
            let s = ldc * 4;
            let c0 = c.as_mut_ptr();
            asm!(
                "tilestored [{c0} + {s}*1], tmm0",
                "tilestored [{c1} + {s}*1], tmm1",
                "tilestored [{c2} + {s}*1], tmm2",
                "tilestored [{c3} + {s}*1], tmm3",
                c0 = in(reg) c0,
                c1 = in(reg) c0.add(16),
                c2 = in(reg) c0.add(16 * ldc),
                c3 = in(reg) c0.add(16 * ldc + 16),
                s = in(reg) s,
                options(nostack)
            );
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    pub fn request() -> bool {
        false
    }

    pub fn with_tiles(f: impl FnOnce()) {
        f()
    }

    /// # Safety
    /// Never called: [`super::available`] is false here.
    pub unsafe fn block(_: &[u16], _: usize, _: &[u16], _: usize, _: &mut [f32], _: usize) {
        unreachable!("AMX is not available on this target")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The conversion the packing uses (`half`'s) rounds to nearest even, as candle's
    /// BF16 does, which the projection's tests compare against.
    #[test]
    fn bf16_rounds_to_nearest_even() {
        let round = |x: f32| bf16::from_f32(x).to_f32();
        assert_eq!(round(1.0), 1.0);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even, 1.
        assert_eq!(round(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
        assert_eq!(round(-2.5), -2.5);
        assert!(round(f32::NAN).is_nan());
        for x in [0.1f32, -3.7, 1234.5, 1e-20] {
            let r = round(x);
            assert!((r - x).abs() <= x.abs() / 256.0, "{x} -> {r}");
        }
    }

    /// The tile product against the same sums in f64 over bf16-rounded inputs, with a
    /// column-major and a row-major left-hand side, odd sizes (padding in K and the
    /// last rows), a block of columns and column panels. Runs where the CPU has AMX.
    #[test]
    fn tile_product_matches_bf16_sums() {
        if !available() {
            eprintln!("AMX is not available here: tile_product_matches_bf16_sums checks nothing");
            return;
        }
        // K = 8200 makes column panels of 32, so a block of 64 columns takes two.
        for (m, k, n) in [(45, 70, 96), (45, 8200, 96)] {
            check_tile_product(m, k, n);
        }
    }

    fn check_tile_product(m: usize, k: usize, n: usize) {
        let mut s = 7u64;
        let mut rnd = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let lhs: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
        let rhs: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
        let packed = Bf16Rhs::pack(&rhs, k, n, n);
        let round = |x: f32| bf16::from_f32(x).to_f64();
        for (lrs, lcs) in [(k, 1), (1, m)] {
            // The same matrix in either layout.
            let mut l = vec![0f32; m * k];
            for i in 0..m {
                for c in 0..k {
                    l[i * lrs + c * lcs] = lhs[i * k + c];
                }
            }
            let cols = 32..96;
            let mut a = Bf16Lhs::new();
            a.fill(m, (&l, lrs, lcs), k);
            // The same matrix as two column blocks, the second in the other layout,
            // converts to the same bits.
            let (k1, k2) = (k / 3, k - k / 3);
            let second: Vec<f32> = if lcs == 1 {
                (0..k2)
                    .flat_map(|c| (0..m).map(move |i| (i, c)))
                    .map(|(i, c)| lhs[i * k + k1 + c])
                    .collect()
            } else {
                (0..m)
                    .flat_map(|i| (0..k2).map(move |c| (i, c)))
                    .map(|(i, c)| lhs[i * k + k1 + c])
                    .collect()
            };
            let second_layout = if lcs == 1 { (1, m) } else { (k2, 1) };
            let mut split = Bf16Lhs::new();
            split.fill_blocks(
                m,
                &[((&l, lrs, lcs), k1), ((&second, second_layout.0, second_layout.1), k2)],
            );
            assert_eq!(split.data, a.data, "two blocks, layout ({lrs}, {lcs})");
            // All rows, then rows from 32 on (the tail block alone).
            let mut dst = vec![f32::NAN; m * cols.len()];
            gemm_bf16(&a, 0..m, &packed, cols.clone(), &mut dst);
            let mut part = vec![f32::NAN; (m - 32) * cols.len()];
            gemm_bf16(&a, 32..m, &packed, cols.clone(), &mut part);
            assert_eq!(part[..], dst[32 * cols.len()..], "rows from 32");
            for i in 0..m {
                for (jj, j) in cols.clone().enumerate() {
                    let terms = (0..k).map(|c| round(lhs[i * k + c]) * round(rhs[c * n + j]));
                    let (want, size) = terms.fold((0f64, 0f64), |(s, a), t| (s + t, a + t.abs()));
                    let got = dst[i * cols.len() + jj] as f64;
                    // f32 sums: their rounding grows with the terms' total size.
                    let tol = (4e-6 * size).max(1e-5);
                    assert!(
                        (got - want).abs() < tol,
                        "({i}, {j}) layout ({lrs}, {lcs}): {got} vs {want}"
                    );
                }
            }
        }
    }
}
