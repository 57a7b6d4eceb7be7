//! Activations with their gains ([`Activation`]), their slopes, and StyleGAN's leaky
//! ReLU with its gain, `gain * (x > 0 ? x : slope * x)`, as one op.
//!
//! candle composes it from two scalings and a maximum: three passes forward, and a
//! backward of masks and selects over several more. On the CPU this op is one pass each
//! way. Its backward multiplies the incoming gradient by the piecewise-constant slope
//! map with a candle op, so it differentiates again (R1's second-order gradients go
//! through it); the map's own derivative is zero almost everywhere.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

use crate::element::{Element, cpu_slice};
use labelgan_core::Result;

/// An activation with its gain, as [`crate::bias_act::BiasAct`] applies it in an output
/// pass and [`conv2d_bias`](crate::conv::conv2d_bias) in a convolution's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// None.
    Linear,
    /// `max(v, 0)`.
    Relu,
    /// `v` where positive, `slope * v` elsewhere, both times `gain` (StyleGAN's `lrelu`
    /// with gain `sqrt(2)`).
    LeakyRelu {
        /// Slope of the negative side.
        slope: f64,
        /// Gain applied after the activation.
        gain: f64,
    },
}

impl Activation {
    /// The derivative at the point where the activation's output is `y` (the sign of the
    /// output is the sign of the input for each of these).
    #[inline]
    pub fn slope_at_output<T: Element>(self, y: T) -> T {
        match self {
            Activation::Linear => T::ONE,
            Activation::Relu => {
                if y > T::ZERO {
                    T::ONE
                } else {
                    T::ZERO
                }
            }
            Activation::LeakyRelu { slope, gain } => T::from_f64(if y > T::ZERO { gain } else { gain * slope }),
        }
    }

    /// The activation applied in place: the one home of its values on the CPU paths. A
    /// NaN becomes 0 under ReLU and leaky ReLU, as `x > 0` is false for it.
    #[inline]
    pub fn apply_in_place<T: Element>(self, xs: &mut [T]) {
        match self {
            Activation::Linear => {}
            Activation::Relu => {
                for v in xs.iter_mut() {
                    *v = if *v > T::ZERO { *v } else { T::ZERO };
                }
            }
            Activation::LeakyRelu { slope, gain } => {
                let (pos, neg) = (T::from_f64(gain), T::from_f64(gain * slope));
                for v in xs.iter_mut() {
                    *v = if *v > T::ZERO { *v * pos } else { *v * neg };
                }
            }
        }
    }

    /// The activation applied to a tensor, differentiably.
    pub fn apply(self, x: &candle_core::Tensor) -> labelgan_core::Result<candle_core::Tensor> {
        match self {
            Activation::Linear => Ok(x.clone()),
            Activation::Relu => Ok(x.relu()?),
            Activation::LeakyRelu { slope, gain } => leaky_relu(x, slope, gain),
        }
    }
}

/// `gain * x` where `x > 0`, `gain * slope * x` elsewhere.
pub fn leaky_relu(x: &Tensor, slope: f64, gain: f64) -> Result<Tensor> {
    if !crate::native_on(x.device()) || !matches!(x.dtype(), DType::F32 | DType::F64) {
        return Ok(x.affine(gain, 0.0)?.maximum(&x.affine(slope * gain, 0.0)?)?);
    }
    let op = LeakyRelu { slope, gain };
    Ok(if x.track_op() {
        x.apply_op1(op)?
    } else {
        x.apply_op1_no_bwd(&op)?
    })
}

/// The slope of `act` at each of its outputs `y` (also at each of its inputs: the signs
/// agree), a constant of the graph: the map a backward pass multiplies the incoming
/// gradient by.
pub fn slope_map(y: &Tensor, act: Activation) -> Result<Tensor> {
    if !crate::native_on(y.device()) || !matches!(y.dtype(), DType::F32 | DType::F64) {
        let positive = y.gt(0.0)?.to_dtype(y.dtype())?;
        return Ok(match act {
            Activation::Linear => y.ones_like()?,
            Activation::Relu => positive,
            Activation::LeakyRelu { slope, gain } => positive.affine(gain - gain * slope, gain * slope)?,
        });
    }
    Ok(y.contiguous()?.apply_op1_no_bwd(&SlopeMap(act))?)
}

#[derive(Clone, Copy)]
struct LeakyRelu {
    slope: f64,
    gain: f64,
}

impl LeakyRelu {
    fn activation(self) -> Activation {
        Activation::LeakyRelu {
            slope: self.slope,
            gain: self.gain,
        }
    }
}

impl CustomOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        "labelgan-leaky-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        fn run<T: Element>(op: &LeakyRelu, x: &[T]) -> Vec<T> {
            let mut y = x.to_vec();
            op.activation().apply_in_place(&mut y);
            y
        }
        let storage = match s {
            CpuStorage::F32(_) => CpuStorage::F32(run(self, cpu_slice::<f32>(s, l)?)),
            CpuStorage::F64(_) => CpuStorage::F64(run(self, cpu_slice::<f64>(s, l)?)),
            _ => return Err(candle_core::Error::Msg("leaky_relu: f32 or f64 only".into())),
        };
        Ok((storage, l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let map = slope_map(arg, self.activation()).map_err(candle_core::Error::wrap)?;
        Ok(Some(grad_res.mul(&map)?))
    }
}

/// [`slope_map`]'s op.
struct SlopeMap(Activation);

impl CustomOp1 for SlopeMap {
    fn name(&self) -> &'static str {
        "labelgan-slope-map"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        fn run<T: Element>(act: Activation, y: &[T]) -> Vec<T> {
            y.iter().map(|&v| act.slope_at_output(v)).collect()
        }
        let storage = match s {
            CpuStorage::F32(_) => CpuStorage::F32(run(self.0, cpu_slice::<f32>(s, l)?)),
            CpuStorage::F64(_) => CpuStorage::F64(run(self.0, cpu_slice::<f64>(s, l)?)),
            _ => return Err(candle_core::Error::Msg("slope_map: f32 or f64 only".into())),
        };
        Ok((storage, l.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn reference(x: &Tensor) -> Tensor {
        let g = std::f64::consts::SQRT_2;
        x.affine(g, 0.0)
            .unwrap()
            .maximum(&x.affine(0.2 * g, 0.0).unwrap())
            .unwrap()
    }

    #[test]
    fn value_and_gradient_match_the_candle_composition() {
        let x =
            Var::from_tensor(&Tensor::new(&[[-1.5f64, -0.25, 0.5], [2.0, -3.0, 0.75]], &Device::Cpu).unwrap()).unwrap();
        let w = Tensor::new(&[[0.3f64, -1.0, 2.0], [1.5, 0.5, -0.7]], &Device::Cpu).unwrap();
        let y = leaky_relu(x.as_tensor(), 0.2, std::f64::consts::SQRT_2).unwrap();
        let want = reference(x.as_tensor());
        assert!(labelgan_core::max_abs_diff(&y, &want).unwrap() < 1e-12);
        let g = y.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
        let gw = reference(x.as_tensor())
            .mul(&w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (a, b) = (g.get(x.as_tensor()).unwrap(), gw.get(x.as_tensor()).unwrap());
        assert!(labelgan_core::max_abs_diff(a, b).unwrap() < 1e-12);
    }

    /// The gradient by finite differences, away from the kink.
    #[test]
    fn gradient_matches_finite_differences() {
        let xs = [-2.0f64, -0.3, 0.4, 1.7];
        let x = Var::from_tensor(&Tensor::new(&xs, &Device::Cpu).unwrap()).unwrap();
        let f = |t: &Tensor| leaky_relu(t, 0.2, 1.5).unwrap().sqr().unwrap().sum_all().unwrap();
        let g = f(x.as_tensor()).backward().unwrap();
        let got = g.get(x.as_tensor()).unwrap().to_vec1::<f64>().unwrap();
        for (k, &v) in xs.iter().enumerate() {
            let h = 1e-6;
            let mut p = xs;
            p[k] = v + h;
            let mut m = xs;
            m[k] = v - h;
            let fp = f(&Tensor::new(&p, &Device::Cpu).unwrap()).to_scalar::<f64>().unwrap();
            let fm = f(&Tensor::new(&m, &Device::Cpu).unwrap()).to_scalar::<f64>().unwrap();
            assert!((got[k] - (fp - fm) / (2.0 * h)).abs() < 1e-6, "x = {v}");
        }
    }
}
