//! # labelgan-optim
//!
//! Adam, the one optimiser every labelgan trainer uses (GAN, encoder, projector,
//! perceptual backbone, UNet, pixel labeler), and the variables-by-name helpers it
//! works on.
//!
//! Its state is kept by variable name so that checkpoints save and resume it exactly;
//! a step's coefficients ([`AdamStep`]) apply to candle tensors and, where a trainer
//! keeps weights in host memory, to plain `f32` slices, with the same roundings.
//!
//! ```
//! use std::collections::BTreeMap;
//! use candle_core::{Device, Tensor, Var};
//! use labelgan_optim::Adam;
//! # fn main() -> labelgan_core::Result<()> {
//! let w = Var::new(&[3f32, -2.0], &Device::Cpu)?;
//! let params = BTreeMap::from([("w".to_string(), w.clone())]);
//! let mut opt = Adam::new(0.1, (0.9, 0.999));
//! for _ in 0..100 {
//!     let loss = w.as_tensor().sqr()?.sum_all()?; // minimum at 0
//!     opt.update_from(&params, &loss.backward()?)?;
//! }
//! assert!(w.as_tensor().abs()?.max_all()?.to_scalar::<f32>()? < 0.5);
//! # Ok(()) }
//! ```

mod adam;
mod vars;

pub use adam::{Adam, AdamStep};
pub use vars::{named_grads, named_vars};
