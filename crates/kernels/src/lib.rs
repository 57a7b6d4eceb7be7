//! # labelgan-kernels
//!
//! The one home of labelgan's hand-written CPU code, kept where it was measured to
//! beat candle's own ops (`docs/performance.md`), each with a candle-op path that other
//! devices take:
//!
//! - [`conv`]: the stride-1 convolution as a differentiable op, with a backward that
//!   is itself a forward convolution (derivatives of any order at forward speed);
//! - [`implicit_gemm`]: its CPU body on raw buffers, GEMMs over shifted views;
//! - [`activation`]: StyleGAN's leaky ReLU with gain, one pass each way;
//! - [`bias_act`]: the fused output pass of a convolution (scale, added plane, bias,
//!   activation, clamp);
//! - [`element`]: the element types the CPU kernels take, and their storage as slices;
//! - [`channel`]: per-channel sums and affine maps (biases, batch norm) whose
//!   backward needs no strided reduction;
//! - [`strided`]: stride-2 and transposed convolutions as stride-1 ones, on [`conv`];
//! - [`resample`]: separable linear resampling (bilinear resize, blurs, pooling) as
//!   two matrix products, differentiable;
//! - [`linalg`]: f32 GEMM helpers on `gemm`, split across threads;
//! - [`amx`]: Intel AMX's bf16 tile product, for GEMMs whose caller allows bf16 inputs;
//! - [`path`]: whether the hand-written CPU bodies run (`LABELGAN_KERNELS=generic`
//!   sends the CPU down the candle-op bodies other devices take, to test them);
//! - [`mod@simd`]: which vector instructions the kernels use, decided once per process;
//! - [`mod@threads`]: how many threads the kernels split work into, decided once;
//! - [`layer`]: the convolution as a layer built from a candle-nn `VarBuilder`;
//! - [`heap`]: allocator tuning for candle's many short-lived buffers.
//!
//! Kernels that belong to one model stay beside it (the labeler's vote, the LPIPS
//! trunk, the factored projection's fused rows) but take their SIMD level and thread
//! count from here.

pub mod activation;
pub mod amx;
pub mod bias_act;
pub mod channel;
pub mod conv;
pub mod element;
pub mod heap;
pub mod implicit_gemm;
pub mod layer;
pub mod linalg;
pub mod path;
pub mod resample;
mod shared_rows;
pub mod simd;
pub mod strided;
pub mod threads;
pub mod winograd;

pub use path::{KernelPath, kernel_path, native_inference, native_on};
pub use simd::{Simd, simd};
pub use threads::cpu_threads;
