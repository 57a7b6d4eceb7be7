//! # labelgan-metrics
//!
//! Metrics that compare two image sets through a [`FeatureExtractor`]'s embeddings,
//! checked against their published formulas (`docs/metrics.md`):
//! [`fid()`] (the Frechet distance between Gaussians fitted to the two sets, with the
//! running statistics [`FeatureStats`]), [`kid()`] (unbiased MMD^2 under the cubic
//! kernel, over subsets), [`inception_score()`] (over any classifier's probabilities)
//! [`precision_recall()`] (k-NN manifolds), [`class_consistency()`] (a conditional
//! generator's classes as a classifier sees them) and [`per_class_fid()`] (FID within
//! each class). Host-side linear algebra (covariances,
//! the symmetric eigendecomposition, kernel and distance blocks) is faer's.
//!
//! ```
//! use labelgan_metrics::{Features, KidConfig, MetricsConfig, compare};
//! let a = Features::from_rows(&[0.0, 1.0, 1.0, 0.0, 0.5, 0.5, 1.0, 1.0], 4, 2)?;
//! let b = Features::from_rows(&[0.1, 0.9, 0.9, 0.2, 0.4, 0.6, 1.1, 0.8], 4, 2)?;
//! let cfg = MetricsConfig { kid: KidConfig { subsets: 0, ..KidConfig::default() }, pr_k: 1, ..MetricsConfig::default() };
//! let s = compare(&a, &b, &cfg)?;
//! assert!(s.fid >= 0.0 && s.precision <= 1.0);
//! # Ok::<(), labelgan_core::Error>(())
//! ```

pub mod class_consistency;
pub mod compare;
pub mod extract;
pub mod features;
pub mod frechet;
pub mod inception_score;
pub mod kid;
pub mod per_class_fid;
pub mod precision_recall;

pub use class_consistency::class_consistency;
pub use compare::{MetricsConfig, Scores, compare};
pub use extract::{extract, extract_each};
pub use features::Features;
pub use frechet::{FeatureStats, fid, frechet_distance};
pub use inception_score::{InceptionScore, inception_score};
pub use kid::{Kid, KidConfig, kid};
pub use labelgan_core::FeatureExtractor;
pub use per_class_fid::{per_class_fid, short_class};
pub use precision_recall::{PrecisionRecall, precision_recall};
