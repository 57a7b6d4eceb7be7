//! Interpolation weights with PyTorch's rules: they live in
//! [`labelgan_kernels::resample`] (LPIPS and the discriminator use them too).

pub use labelgan_kernels::resample::{AxisInterp, Upsample};
