//! SqueezeNet 1.1: a stem conv and eight fire modules (squeeze 1x1, then expand 1x1 and
//! 3x3 side by side), seven taps.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use labelgan_core::Result;

use crate::conv::Conv;
use crate::pool::max_pool2d;

/// SqueezeNet 1.1 fire modules: (slice, index, in, squeeze, expand).
const FIRES: [(usize, usize, usize, usize, usize); 8] = [
    (2, 3, 64, 16, 64),
    (2, 4, 128, 16, 64),
    (3, 6, 128, 32, 128),
    (3, 7, 256, 32, 128),
    (4, 9, 256, 48, 192),
    (5, 10, 384, 48, 192),
    (6, 11, 384, 64, 256),
    (7, 12, 512, 64, 256),
];

/// A fire module: `squeeze`, then `expand1x1` and `expand3x3` concatenated.
#[derive(Debug, Clone)]
struct Fire {
    slice: usize,
    squeeze: Conv,
    expand1x1: Conv,
    expand3x3: Conv,
}

impl Fire {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = self.squeeze.forward(x)?;
        Ok(Tensor::cat(
            &[self.expand1x1.forward(&s)?, self.expand3x3.forward(&s)?],
            1,
        )?)
    }
}

/// SqueezeNet 1.1's stem (`net.slice1.0`) and fire modules (`net.slice{s}.{index}`).
#[derive(Debug, Clone)]
pub(crate) struct Squeeze {
    stem: Conv,
    fires: Vec<Fire>,
}

impl Squeeze {
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let stem = Conv::new(vb.pp("slice1.0"), (64, 3, 3), 2, 0)?;
        let fires = FIRES
            .iter()
            .map(|&(slice, idx, i, sq, e)| {
                let vb = vb.pp(format!("slice{slice}.{idx}"));
                Ok(Fire {
                    slice,
                    squeeze: Conv::new(vb.pp("squeeze"), (sq, i, 1), 1, 0)?,
                    expand1x1: Conv::new(vb.pp("expand1x1"), (e, sq, 1), 1, 0)?,
                    expand3x3: Conv::new(vb.pp("expand3x3"), (e, sq, 3), 1, 1)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { stem, fires })
    }

    /// The seven taps of scaled images: after the stem and after each slice's last
    /// fire; a 3x3 stride-2 max-pool (ceil mode) opens slices 2, 3 and 4.
    pub fn taps(&self, x: Tensor) -> Result<Vec<Tensor>> {
        let mut h = self.stem.forward(&x)?;
        let mut taps = vec![h.clone()];
        for (j, fire) in self.fires.iter().enumerate() {
            let opens = j == 0 || self.fires[j - 1].slice != fire.slice;
            if opens && fire.slice <= 4 {
                h = max_pool2d(&h, 3, 2, true)?;
            }
            h = fire.forward(&h)?;
            if self.fires.get(j + 1).is_none_or(|next| next.slice != fire.slice) {
                taps.push(h.clone());
            }
        }
        Ok(taps)
    }
}
