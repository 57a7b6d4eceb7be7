//! The output pass of a convolution, fused: a per-(image, channel) scale, an added
//! plane, a per-channel bias, an activation with its gain, and a clamp, applied to each
//! output row as the convolution writes it (StyleGAN2's demodulation, noise and
//! `bias_act`), so that none of them is a pass of its own over the feature map.
//!
//! Per output value `v` of image `n`, channel `o`, pixel `p`:
//! `clamp(act(v * scale[n, o] + add[n, p] + bias[o]) * gain, -c, c)`.

pub use crate::activation::Activation;
use crate::element::Element;

/// A plane added to every channel of an image: `values[n * stride + p]` (`stride` 0:
/// one plane for every image).
#[derive(Debug, Clone, Copy)]
pub struct AddPlane<'a, T> {
    /// The planes, `[N, Ho * Wo]` or `[Ho * Wo]`.
    pub values: &'a [T],
    /// Elements between images' planes (0: shared).
    pub stride: usize,
}

/// What the output pass applies; every part optional ([`BiasAct::default`] is the
/// identity).
#[derive(Debug, Clone, Copy)]
pub struct BiasAct<'a, T> {
    /// Multiplier per image and output channel, `[N * O]`.
    pub scale: Option<&'a [T]>,
    /// A plane added to every channel.
    pub add: Option<AddPlane<'a, T>>,
    /// Bias per output channel, `[O]`.
    pub bias: Option<&'a [T]>,
    /// Activation (with its gain).
    pub act: Activation,
    /// Symmetric clamp applied last.
    pub clamp: Option<T>,
}

impl<T> Default for BiasAct<'_, T> {
    fn default() -> Self {
        Self {
            scale: None,
            add: None,
            bias: None,
            act: Activation::Linear,
            clamp: None,
        }
    }
}

impl<T: Element> BiasAct<'_, T> {
    /// Only a bias, then a ReLU when `relu` (the plain fused convolution's pass).
    pub fn bias_relu(bias: Option<&[T]>, relu: bool) -> BiasAct<'_, T> {
        BiasAct {
            bias,
            act: if relu { Activation::Relu } else { Activation::Linear },
            ..BiasAct::default()
        }
    }

    /// Checks the slices against `n` images of `o` channels with `plane` pixels each.
    ///
    /// # Panics
    /// If a slice is shorter than those dimensions need (a caller's bug).
    pub fn check(&self, n: usize, o: usize, plane: usize) {
        assert!(self.scale.is_none_or(|s| s.len() >= n * o), "bias_act: scale too short");
        assert!(self.bias.is_none_or(|b| b.len() >= o), "bias_act: bias too short");
        if let Some(a) = self.add {
            assert!(
                a.values.len() >= (n.max(1) - 1) * a.stride + plane,
                "bias_act: added plane too short"
            );
        }
    }

    /// Writes output row `src` of image `n`, channel `o` (of `channels`), starting at
    /// pixel `p` of its plane, into `dst`.
    #[inline]
    pub fn row(&self, (n, o, channels): (usize, usize, usize), p: usize, src: &[T], dst: &mut [T]) {
        let dst = &mut dst[..src.len()];
        let s = self.scale.map_or(T::ONE, |s| s[n * channels + o]);
        let b = self.bias.map_or(T::ZERO, |b| b[o]);
        match self.add {
            Some(a) => {
                let plane = &a.values[n * a.stride + p..][..src.len()];
                for ((d, &v), &z) in dst.iter_mut().zip(src).zip(plane) {
                    *d = v * s + z + b;
                }
            }
            None => {
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = v * s + b;
                }
            }
        }
        self.act.apply_in_place(dst);
        if let Some(c) = self.clamp {
            let lo = T::ZERO - c;
            for d in dst.iter_mut() {
                *d = if *d > c {
                    c
                } else if *d < lo {
                    lo
                } else {
                    *d
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_applies_in_order() {
        let scale = [1.0f32, 2.0, 3.0, 4.0]; // [N = 2, O = 2]
        let add = [0.5f32, -0.5, 1.0, 1.5, 0.0, -1.0]; // [N = 2, plane 3]
        let bias = [0.25f32, -0.25];
        let op = BiasAct {
            scale: Some(&scale),
            add: Some(AddPlane {
                values: &add,
                stride: 3,
            }),
            bias: Some(&bias),
            act: Activation::LeakyRelu { slope: 0.2, gain: 2.0 },
            clamp: Some(5.0),
        };
        op.check(2, 2, 3);
        let src = [1.0f32, -2.0];
        let mut dst = [0.0f32; 2];
        // Image 1, channel 0 (scale 3), pixels 1..3 of the plane (1.5, -1.0... of image 1).
        op.row((1, 0, 2), 1, &src, &mut dst);
        let want = |v: f32, z: f32| {
            let t = v * 3.0 + z + 0.25;
            (if t > 0.0 { t * 2.0 } else { t * 0.4 }).clamp(-5.0, 5.0)
        };
        assert_eq!(dst, [want(1.0, 0.0), want(-2.0, -1.0)]);
        // Shared plane, ReLU, no scale.
        let op = BiasAct {
            add: Some(AddPlane {
                values: &add[..3],
                stride: 0,
            }),
            ..BiasAct::bias_relu(Some(&bias), true)
        };
        op.row((1, 1, 2), 0, &src, &mut dst);
        assert_eq!(dst, [(1.0f32 + 0.5 - 0.25).max(0.0), (-2.0f32 - 0.5 - 0.25).max(0.0)]);
        // The identity.
        BiasAct::<f32>::default().row((0, 0, 1), 0, &src, &mut dst);
        assert_eq!(dst, src);
    }

    #[test]
    fn the_clamp_bounds_both_sides() {
        let op = BiasAct {
            clamp: Some(1.0f64),
            ..BiasAct::default()
        };
        let mut dst = [0.0; 3];
        op.row((0, 0, 1), 0, &[3.0, -3.0, 0.5], &mut dst);
        assert_eq!(dst, [1.0, -1.0, 0.5]);
    }
}
