//! labelgan-hypercolumn: per-pixel features from a generator's feature maps.
//!
//! The *hypercolumn* of a pixel is the concatenation, over the generator's layers, of
//! each feature map upsampled to the output resolution and read at that pixel
//! (Hariharan et al., CVPR 2015; used by DatasetGAN and HandsOff with 4,480 to 6,080
//! channels). Materialising it for a 512 px image takes 5.8 GB; we never do, except in
//! the [`dense()`] reference for small images:
//!
//! - [`sparse()`]: the rows for a list of pixels, gathered from the native-resolution
//!   maps (what training needs);
//! - [`factored`]: `dense · W + b` computed as `Σ_tap upsample(tap · W_tap) + b`:
//!   upsampling is linear, so projecting first at native resolution and upsampling the
//!   projection gives the same numbers at a fraction of the cost, streamed in row tiles
//!   so that peak memory is bounded (what labelling needs).
//!
//! Upsampling follows PyTorch's `F.interpolate` rules ([`Upsample`]).
//!
//! References: Hariharan et al., "Hypercolumns for Object Segmentation and Fine-grained
//! Localization", CVPR 2015; Zhang et al., DatasetGAN, CVPR 2021.

pub mod dense;
pub mod factored;
pub mod interp;
pub mod sparse;

pub use dense::dense;
pub use factored::{FactoredProjection, project};
pub use interp::{AxisInterp, Upsample};
pub use sparse::{RowValue, sparse, sparse_into};
