//! The element types the hand-written CPU kernels take (f32 and f64), and borrowing a
//! custom op's or a tensor's CPU storage as a slice of them.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Tensor};

/// The element types of the CPU kernels (f32 and f64).
pub trait Element:
    candle_core::WithDType
    + Copy
    + Default
    + PartialOrd
    + Send
    + Sync
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + 'static
{
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
    /// The slice of `storage` when it holds this type.
    fn slice(storage: &CpuStorage) -> Option<&[Self]>;
    /// `v` as candle storage.
    fn storage(v: Vec<Self>) -> CpuStorage;
    /// Square root.
    fn sqrt(self) -> Self;
}

macro_rules! element {
    ($t:ty, $variant:ident) => {
        impl Element for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            fn slice(storage: &CpuStorage) -> Option<&[Self]> {
                match storage {
                    CpuStorage::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn storage(v: Vec<Self>) -> CpuStorage {
                CpuStorage::$variant(v)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
        }
    };
}

element!(f32, F32);
element!(f64, F64);

/// The elements of a contiguous CPU storage of element type `T` under `layout` (a
/// custom op's argument).
pub fn cpu_slice<'a, T: Element>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [T]> {
    let (a, b) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("expected a contiguous tensor".into()))?;
    T::slice(storage)
        .map(|v| &v[a..b])
        .ok_or_else(|| candle_core::Error::Msg(format!("expected {:?} elements, got {:?}", T::DTYPE, storage.dtype())))
}

/// Runs `f` on the elements of a contiguous CPU tensor of element type `T`, without a copy.
pub fn with_cpu_slice<T: Element, R>(t: &Tensor, f: impl FnOnce(&[T]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(cs) => Ok(f(cpu_slice(cs, layout)?)),
        _ => Err(candle_core::Error::Msg("expected a CPU tensor".into())),
    }
}

/// [`with_cpu_slice`] over two tensors of the same element type at once.
pub fn with_cpu_slices<T: Element, R>(
    a: &Tensor,
    b: &Tensor,
    f: impl FnOnce(&[T], &[T]) -> R,
) -> candle_core::Result<R> {
    with_cpu_slice::<T, _>(a, |av| with_cpu_slice::<T, _>(b, |bv| f(av, bv)))?
}
