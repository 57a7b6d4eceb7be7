//! Max-pooling with a correct gradient.
//!
//! candle 0.11's `max_pool2d` backward scales the gradient by 1/(k*k), and pools whose
//! kernel differs from their stride have no backward (CANDLE_NOTES.md). Here a pool is
//! the elementwise maximum of its k*k shifted, strided views of the (-inf padded)
//! input: `maximum` routes the gradient to the winning element, and the views are
//! slices and reshapes, all differentiable.

use candle_core::{D, Tensor};

use labelgan_core::Result;

/// Output size of a pool over `n` with kernel `k` and stride `s > 0` (PyTorch's rule,
/// padding 0; `ceil` as `ceil_mode=True`: a last window may start inside the input and
/// run past its end).
pub fn pooled_len(n: usize, k: usize, s: usize, ceil: bool) -> usize {
    if n < k {
        return if ceil { 1 } else { 0 };
    }
    let span = n - k;
    let mut out = if ceil { span.div_ceil(s) + 1 } else { span / s + 1 };
    // PyTorch: the last window must start inside the input.
    if ceil && (out - 1) * s >= n {
        out -= 1;
    }
    out
}

/// `max_pool2d(x [N, C, H, W], kernel k, stride s)` with PyTorch's output size.
pub fn max_pool2d(x: &Tensor, k: usize, s: usize, ceil: bool) -> Result<Tensor> {
    if k == 0 || s == 0 {
        return Err(labelgan_core::Error::invalid(format!(
            "max-pool kernel and stride must be positive, got {k} and {s}"
        )));
    }
    let (n, c, h, w) = x.dims4()?;
    let (oh, ow) = (pooled_len(h, k, s, ceil), pooled_len(w, k, s, ceil));
    if oh == 0 || ow == 0 {
        return Err(labelgan_core::Error::invalid(format!(
            "a {h}x{w} map is smaller than the {k}x{k} pool window (image too small for this backbone?)"
        )));
    }
    if k == s && h % k == 0 && w % k == 0 && !ceil {
        // Non-overlapping windows: reshape and reduce (exact gradient).
        return Ok(x
            .reshape((n, c, oh, k, ow, k))?
            .max_keepdim(5)?
            .max_keepdim(3)?
            .reshape((n, c, oh, ow))?);
    }
    // Pad with -inf so every view has s*o rows and columns.
    let need_h = (oh - 1) * s + k + s;
    let need_w = (ow - 1) * s + k + s;
    let xp = pad_neg_inf(x, 2, need_h.saturating_sub(h))?;
    let xp = pad_neg_inf(&xp, 3, need_w.saturating_sub(w))?;
    let mut out: Option<Tensor> = None;
    for dy in 0..k {
        for dx in 0..k {
            let v = xp
                .narrow(2, dy, s * oh)?
                .narrow(3, dx, s * ow)?
                .reshape((n, c, oh, s, ow, s))?
                .narrow(3, 0, 1)?
                .narrow(5, 0, 1)?
                .reshape((n, c, oh, ow))?;
            out = Some(match out {
                Some(o) => o.maximum(&v)?,
                None => v,
            });
        }
    }
    out.ok_or_else(|| labelgan_core::Error::invalid("internal: empty pool"))
}

/// Appends `extra` entries of -inf along dimension `dim`.
fn pad_neg_inf(x: &Tensor, dim: usize, extra: usize) -> Result<Tensor> {
    if extra == 0 {
        return Ok(x.clone());
    }
    let mut shape = x.dims().to_vec();
    shape[dim] = extra;
    let fill = Tensor::full(f32::NEG_INFINITY, shape, x.device())?.to_dtype(x.dtype())?;
    Ok(Tensor::cat(&[x, &fill], dim)?)
}

/// Spatial mean `[N, C, H, W] -> [N, C, 1, 1]`.
pub fn spatial_mean(x: &Tensor) -> Result<Tensor> {
    Ok(x.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn output_sizes_follow_pytorch() {
        // (n, k, s, ceil) -> PyTorch's size.
        for (n, k, s, ceil, want) in [
            (31, 3, 2, true, 15),
            (32, 3, 2, true, 16),
            (32, 3, 2, false, 15),
            (15, 3, 2, false, 7),
            (8, 2, 2, false, 4),
            (3, 3, 2, true, 1),
            (4, 3, 2, true, 2),
        ] {
            assert_eq!(pooled_len(n, k, s, ceil), want, "n {n} k {k} s {s} ceil {ceil}");
        }
    }

    #[test]
    fn values_match_a_direct_pool() {
        let x = labelgan_core::SplitMix64::new(1)
            .normal_tensor(&[2, 3, 9, 8], &Device::Cpu)
            .unwrap();
        let data = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (k, s, ceil) in [(3, 2, true), (3, 2, false), (2, 2, false)] {
            let y = max_pool2d(&x, k, s, ceil).unwrap();
            let (oh, ow) = (pooled_len(9, k, s, ceil), pooled_len(8, k, s, ceil));
            assert_eq!(y.dims(), &[2, 3, oh, ow]);
            let got = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for p in 0..6 {
                for i in 0..oh {
                    for j in 0..ow {
                        let mut m = f32::NEG_INFINITY;
                        for a in i * s..(i * s + k).min(9) {
                            for b in j * s..(j * s + k).min(8) {
                                m = m.max(data[p * 72 + a * 8 + b]);
                            }
                        }
                        assert_eq!(got[(p * oh + i) * ow + j], m, "k {k} s {s} ceil {ceil} at {p},{i},{j}");
                    }
                }
            }
        }
    }
}
