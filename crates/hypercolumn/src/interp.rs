//! Interpolation weights with PyTorch's rules: they live in
//! [`labelgan_core::resample`] (LPIPS and the discriminator use them too).

pub use labelgan_core::resample::{AxisInterp, Upsample};
