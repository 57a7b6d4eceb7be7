//! A safe, bounds-checked wrapper over the `gemm` crate for strided f32 matrices.

/// `dst[i, j] (+)= Σ_c lhs[i*lrs + c*lcs] * rhs[c*n + j]` for `i < m`, `j < n`, `c < k`;
/// `dst` row-major `[m, n]`, `rhs` row-major `[k, n]`. Accumulates when `accumulate`.
///
/// # Panics
/// If a stride or length would take gemm out of the slices (a caller bug).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lrs: usize,
    lcs: usize,
    rhs: &[f32],
) {
    let threads = crate::threads::cpu_threads();
    sgemm_threads(threads, m, n, k, dst, accumulate, lhs, lrs, lcs, rhs)
}

/// [`sgemm`] on at most `threads` threads (1: on the calling thread only, for callers
/// that parallelise themselves).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_threads(
    threads: usize,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lrs: usize,
    lcs: usize,
    rhs: &[f32],
) {
    sgemm_rhs_rows(threads, m, n, k, dst, accumulate, lhs, lrs, lcs, rhs, n)
}

/// [`sgemm_threads`] with the right-hand side's rows `rrs` apart (`rhs[c*rrs + j]`): a
/// block of columns of a wider row-major matrix, read in place.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_rhs_rows(
    threads: usize,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lrs: usize,
    lcs: usize,
    rhs: &[f32],
    rrs: usize,
) {
    sgemm_strided(
        threads,
        m,
        n,
        k,
        (dst, n, 1),
        accumulate,
        (lhs, lrs, lcs),
        (rhs, rrs, 1),
    )
}

/// A strided matrix operand: (data, row stride, column stride).
pub type Strided<'a, T> = (T, usize, usize);

/// `dst[i, j] (+)= Σ_c lhs[i, c] * rhs[c, j]` with every operand strided: element
/// (r, c) of an operand `(data, rs, cs)` is `data[r*rs + c*cs]`. Column-major operands
/// (`rs == 1`) are read by gemm's kernels without packing.
///
/// # Panics
/// If a stride or length would take gemm out of the slices (a caller bug).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_strided(
    threads: usize,
    m: usize,
    n: usize,
    k: usize,
    (dst, drs, dcs): Strided<&mut [f32]>,
    accumulate: bool,
    (lhs, lrs, lcs): Strided<&[f32]>,
    (rhs, rrs, rcs): Strided<&[f32]>,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!((m - 1) * drs + (n - 1) * dcs < dst.len(), "gemm dst out of bounds");
    assert!((m - 1) * lrs + (k - 1) * lcs < lhs.len(), "gemm lhs out of bounds");
    assert!((k - 1) * rrs + (n - 1) * rcs < rhs.len(), "gemm rhs out of bounds");
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above bound every index gemm reads or writes.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dcs as isize,
            drs as isize,
            accumulate,
            lhs.as_ptr(),
            lcs as isize,
            lrs as isize,
            rhs.as_ptr(),
            rcs as isize,
            rrs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}
