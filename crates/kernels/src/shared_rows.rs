//! One output buffer, disjoint rows written from several threads.

/// An output buffer written row by row from several threads, each owning its rows: the
/// blocked convolutions' (`implicit_gemm`, `winograd`) output.
pub(crate) struct SharedRows<T>(pub(crate) *mut T);

// SAFETY: the blocks write disjoint rows (see `SharedRows::row`'s callers).
unsafe impl<T: Send> Send for SharedRows<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedRows<T> {}

impl<T: Copy> SharedRows<T> {
    /// Copies `src` to the buffer from `start`, which may be uninitialised memory.
    ///
    /// # Safety
    /// `start..start + src.len()` must lie inside the buffer's allocation and no other
    /// thread may touch it.
    pub(crate) unsafe fn write(&self, start: usize, src: &[T]) {
        // SAFETY: as the caller guarantees; `src` is a distinct live slice.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.0.add(start), src.len()) };
    }
}

impl<T> SharedRows<T> {
    /// `len` elements from `start`.
    ///
    /// # Safety
    /// The range must lie inside the buffer and no other live reference may touch it.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn row(&self, start: usize, len: usize) -> &mut [T] {
        // SAFETY: as the caller guarantees.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}
