//! Which of a dataset's filtering blocks a shard makes, and where their images land:
//! blocks are dealt in turn (block `b` to shard `b mod N + 1`), and a shard's folder
//! numbers its images from 0 in block order.

use labelgan_core::Shard;

use crate::config::FactoryConfig;

/// Which of the dataset's blocks a shard makes, and where their images land.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShardPlan {
    shard: Shard,
    keep: usize,
    count: usize,
}

impl ShardPlan {
    /// The plan of `cfg.shard` (the whole dataset without one).
    pub(crate) fn new(cfg: &FactoryConfig) -> Self {
        Self {
            shard: cfg.shard.unwrap_or(Shard::ALL),
            keep: cfg.keep_per_block(),
            count: cfg.count,
        }
    }

    /// The dataset block of the shard's `j`-th block.
    pub(crate) fn block(&self, j: usize) -> usize {
        self.shard.k - 1 + j * self.shard.n
    }

    /// Images the shard writes: those of its blocks below `count`.
    pub(crate) fn len(&self) -> usize {
        (0..)
            .map(|j| self.block(j) * self.keep)
            .take_while(|&first| first < self.count)
            .map(|first| self.keep.min(self.count - first))
            .sum()
    }

    /// Where dataset image `index` is: (shard number 1..=n, its index in that shard).
    pub(crate) fn locate(&self, index: usize) -> (usize, usize) {
        let b = index / self.keep;
        (b % self.shard.n + 1, (b / self.shard.n) * self.keep + index % self.keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_dataset_in_dealt_blocks() {
        // 4 kept per block, 23 images: blocks 0..5, the last one with 3.
        for n in 1..=7 {
            let cfg = |k| FactoryConfig {
                count: 23,
                block: 5,
                filter_fraction: 0.2,
                shard: Some(Shard { k, n }),
                ..FactoryConfig::default()
            };
            let plans: Vec<ShardPlan> = (1..=n).map(|k| ShardPlan::new(&cfg(k))).collect();
            assert_eq!(plans.iter().map(ShardPlan::len).sum::<usize>(), 23, "n = {n}");
            // Every image is in exactly one shard, at a place below that shard's length.
            let mut seen = vec![vec![false; 23]; n];
            for index in 0..23 {
                let (k, local) = plans[0].locate(index);
                assert!(local < plans[k - 1].len(), "n = {n}, image {index}");
                assert!(!seen[k - 1][local]);
                seen[k - 1][local] = true;
                // ... and that place is the shard's block holding it.
                let j = local / 4;
                assert_eq!(plans[k - 1].block(j), index / 4);
            }
        }
    }
}
