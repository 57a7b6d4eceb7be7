//! A finite set's items visited in one seeded shuffled order, cycling: the batches of
//! every training loop over a fixed set (a GAN's few-label set, a classifier's labelled
//! images). Batch `start..start + n` depends only on the seed and `start`, so a
//! resumed run sees what an unbroken one would.

use candle_core::Tensor;

use crate::{Error, Result, SplitMix64};

/// The visiting order of some items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochOrder {
    order: Vec<usize>,
}

impl EpochOrder {
    /// `items` (indices into a set) shuffled by `seed`; an empty list is an error.
    pub fn new(mut items: Vec<usize>, seed: u64) -> Result<Self> {
        if items.is_empty() {
            return Err(Error::invalid("no items to visit"));
        }
        SplitMix64::new(seed).shuffle(&mut items);
        Ok(Self { order: items })
    }

    /// Items visited per cycle.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether there are none (never: [`EpochOrder::new`] refuses an empty list).
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The items of visits `start..start + n`, wrapping around.
    pub fn take(&self, start: u64, n: usize) -> Vec<usize> {
        let len = self.order.len() as u64;
        (0..n as u64)
            .map(|i| self.order[((start + i) % len) as usize])
            .collect()
    }
}

/// Rows `idx` of `t` (along dimension 0).
pub fn select_rows(t: &Tensor, idx: &[usize]) -> Result<Tensor> {
    let ids: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
    Ok(t.index_select(&Tensor::new(ids.as_slice(), t.device())?, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visits_every_item_once_per_cycle_and_wraps() {
        let o = EpochOrder::new((10..17).collect(), 5).unwrap();
        let mut cycle = o.take(0, 7);
        assert_ne!(cycle, (10..17).collect::<Vec<_>>(), "shuffled");
        cycle.sort_unstable();
        assert_eq!(cycle, (10..17).collect::<Vec<_>>());
        // Any window is the same as the matching slice of a long run.
        let long = o.take(0, 30);
        assert_eq!(o.take(12, 9), long[12..21]);
        assert_eq!(o.take(7, 7), o.take(0, 7));
        assert!(EpochOrder::new(vec![], 0).is_err());
    }

    #[test]
    fn selects_rows() {
        let t = Tensor::arange(0f32, 6.0, &candle_core::Device::Cpu)
            .unwrap()
            .reshape((3, 2))
            .unwrap();
        let s = select_rows(&t, &[2, 0, 2]).unwrap();
        assert_eq!(s.to_vec2::<f32>().unwrap(), [[4.0, 5.0], [0.0, 1.0], [4.0, 5.0]]);
    }
}
