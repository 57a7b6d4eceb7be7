//! One of N machines' share of a job: the runs of a study, the blocks of a factory
//! dataset. Work items are dealt in turn (item `i` to shard `i mod N`), so every shard
//! gets early items of every kind, and a shard's index comes from the command line
//! (`K/N`) or from a cluster scheduler's array index.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The `k`-th of `n` shards (1-based), written `K/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Which, 1..=n.
    pub k: usize,
    /// Of how many.
    pub n: usize,
}

/// Most shards one job may be split into.
pub const MAX_SHARDS: usize = 10_000;

/// Environment variables that carry a 0-based array index: a Kubernetes Indexed Job's
/// and a Slurm job array's (run with `--array=0-(N-1)`).
pub const SCHEDULER_INDEX_VARS: [&str; 2] = ["JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"];

impl Shard {
    /// The whole job.
    pub const ALL: Shard = Shard { k: 1, n: 1 };

    /// Shard `k` of `n`, checked.
    pub fn new(k: usize, n: usize) -> Result<Self> {
        if n == 0 || n > MAX_SHARDS || k == 0 || k > n {
            return Err(Error::invalid(format!(
                "shard {k}/{n}: expected 1 <= K <= N <= {MAX_SHARDS}"
            )));
        }
        Ok(Shard { k, n })
    }

    /// Whether item `index` is this shard's (items dealt in turn).
    pub fn holds(&self, index: usize) -> bool {
        index % self.n == self.k - 1
    }

    /// The shard of `n` a scheduler's array task is: the 0-based index in the first of
    /// [`SCHEDULER_INDEX_VARS`] that is set (`lookup` reads a variable, e.g.
    /// `|v| std::env::var(v).ok()`). Fails, naming the variables, when none is set or
    /// the index is not below `n`.
    pub fn from_scheduler(n: usize, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let (var, value) = SCHEDULER_INDEX_VARS
            .iter()
            .find_map(|v| lookup(v).map(|x| (*v, x)))
            .ok_or_else(|| {
                Error::usage(format!(
                    "no shard index: set {} (0-based), or give --shard K/N",
                    SCHEDULER_INDEX_VARS.join(" or ")
                ))
            })?;
        let i: usize = value
            .trim()
            .parse()
            .map_err(|_| Error::usage(format!("{var}={value:?} is not a whole number")))?;
        if i >= n {
            return Err(Error::usage(format!(
                "{var}={i}, but the job has {n} shards (indices 0..{n})"
            )));
        }
        Shard::new(i + 1, n)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("{s}: expected K/N, like 1/4"))?;
        let (k, n): (usize, usize) = (
            k.trim().parse().map_err(|_| format!("{s}: K is not a whole number"))?,
            n.trim().parse().map_err(|_| format!("{s}: N is not a whole number"))?,
        );
        Shard::new(k, n).map_err(|_| format!("{s}: expected 1 <= K <= N <= {MAX_SHARDS}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_dealt_in_turn() {
        let shards: Vec<Vec<usize>> = (1..=3)
            .map(|k| (0..12).filter(|&i| Shard { k, n: 3 }.holds(i)).collect())
            .collect();
        assert_eq!(shards[1], [1, 4, 7, 10]);
        assert_eq!(shards.iter().map(Vec::len).sum::<usize>(), 12);
        assert_eq!("2/3".parse::<Shard>().unwrap(), Shard { k: 2, n: 3 });
        assert_eq!(Shard { k: 2, n: 3 }.to_string(), "2/3");
        for bad in ["0/3", "4/3", "1/0", "x/2", "3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_scheduler_index_is_zero_based() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |v: &str| pairs.iter().find(|(k, _)| *k == v).map(|(_, x)| x.to_string())
        };
        assert_eq!(
            Shard::from_scheduler(3, env(&[("JOB_COMPLETION_INDEX", "0")])).unwrap(),
            Shard { k: 1, n: 3 }
        );
        assert_eq!(
            Shard::from_scheduler(3, env(&[("SLURM_ARRAY_TASK_ID", "2")])).unwrap(),
            Shard { k: 3, n: 3 }
        );
        let e = Shard::from_scheduler(3, env(&[("SLURM_ARRAY_TASK_ID", "3")])).unwrap_err();
        assert!(e.to_string().contains("has 3 shards"), "{e}");
        let e = Shard::from_scheduler(3, env(&[])).unwrap_err();
        assert!(e.to_string().contains("JOB_COMPLETION_INDEX"), "{e}");
        assert!(Shard::from_scheduler(3, env(&[("JOB_COMPLETION_INDEX", "one")])).is_err());
    }
}
