//! AlexNet, the `lpips` package's default metric backbone: five convs, a tap after
//! each (max-pools before the second and third).

use candle_core::Tensor;
use candle_nn::VarBuilder;

use labelgan_core::Result;

use crate::conv::Conv;
use crate::pool::max_pool2d;

/// AlexNet convs: (slice, index, out, in, kernel, stride, pad).
const ALEX_CONVS: [(usize, usize, usize, usize, usize, usize, usize); 5] = [
    (1, 0, 64, 3, 11, 4, 2),
    (2, 3, 192, 64, 5, 1, 2),
    (3, 6, 384, 192, 3, 1, 1),
    (4, 8, 256, 384, 3, 1, 1),
    (5, 10, 256, 256, 3, 1, 1),
];

/// AlexNet's five convs (`net.slice{s}.{index}`).
#[derive(Debug, Clone)]
pub(crate) struct Alex {
    convs: Vec<Conv>,
}

impl Alex {
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let convs = ALEX_CONVS
            .iter()
            .map(|&(s, idx, o, i, k, stride, pad)| {
                Conv::new(vb.pp(format!("slice{s}")).pp(idx.to_string()), (o, i, k), stride, pad)
            })
            .collect::<Result<_>>()?;
        Ok(Self { convs })
    }

    /// The five taps of scaled images.
    pub fn taps(&self, x: Tensor) -> Result<Vec<Tensor>> {
        let mut taps = vec![];
        let mut h = x;
        for (j, conv) in self.convs.iter().enumerate() {
            if j == 1 || j == 2 {
                h = max_pool2d(&h, 3, 2, false)?;
            }
            h = conv.forward(&h)?;
            taps.push(h.clone());
        }
        Ok(taps)
    }
}
