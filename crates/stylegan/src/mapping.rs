//! The mapping network: z (and a class label) to the intermediate latent w.
//!
//! `x = normalize_2nd_moment(z)`; for a conditional model
//! `x = [x, normalize_2nd_moment(embed(c))]`; then `L` equalized-lr FC layers with
//! `lrelu * sqrt(2)` and lr multiplier 0.01; w is broadcast to `num_ws` copies and
//! truncated toward the tracked average `w_avg`.
//!
//! Reference: Karras et al., "A Style-Based Generator Architecture for Generative
//! Adversarial Networks", CVPR 2019, Sec. 2.

use candle_core::{D, Tensor};

use labelgan_core::io::TensorFile;
use labelgan_core::{Error, Result, Truncation, ensure_finite};

use crate::fc::FullyConnected;

/// `x * rsqrt(mean(x^2, dim 1) + 1e-8)`.
pub fn normalize_2nd_moment(x: &Tensor) -> Result<Tensor> {
    let ms = (x.sqr()?.mean_keepdim(D::Minus1)? + 1e-8)?;
    Ok(x.broadcast_div(&ms.sqrt()?)?)
}

/// The mapping network (`MappingNetwork`).
#[derive(Debug, Clone)]
pub struct Mapping {
    /// `fc0 .. fc{L-1}`.
    pub layers: Vec<FullyConnected>,
    /// Class embedding (conditional models only).
    pub embed: Option<FullyConnected>,
    /// Tracked average of w, `[w_dim]`.
    pub w_avg: Tensor,
    /// z dimension.
    pub z_dim: usize,
    /// c dimension (0 = unconditional).
    pub c_dim: usize,
    /// Copies of w the synthesis network reads.
    pub num_ws: usize,
}

impl Mapping {
    /// Reads `mapping.*`, inferring the widths from the shapes.
    pub fn load(file: &TensorFile, num_ws: usize, lr_multiplier: f64) -> Result<Self> {
        let shape = |k: &str| file.shape(k).map(<[usize]>::to_vec);
        let w_dim = match shape("mapping.w_avg") {
            Some(s) if s.len() == 1 => s[0],
            Some(s) => {
                return Err(Error::ShapeMismatch {
                    file: file.path.clone(),
                    key: "mapping.w_avg".into(),
                    expected: vec![0],
                    found: s,
                });
            }
            None => return Err(file.get("mapping.w_avg").unwrap_err()),
        };
        let embed = match shape("mapping.embed.weight") {
            Some(s) if s.len() == 2 => Some(FullyConnected::load(file, "mapping.embed", s[0], s[1], 1.0, false)?),
            Some(s) => {
                return Err(Error::format(
                    &file.path,
                    format!("`mapping.embed.weight` must be 2-D, found {s:?}"),
                ));
            }
            None => None,
        };
        let embed_features = embed.as_ref().map_or(0, |e| e.weight.dims()[0]);
        let c_dim = embed.as_ref().map_or(0, |e| e.in_features());
        let fc0 = file.get("mapping.fc0.weight")?.dims().to_vec();
        if fc0.len() != 2 || fc0[1] <= embed_features {
            return Err(Error::format(
                &file.path,
                format!(
                    "`mapping.fc0.weight` has shape {fc0:?}, which leaves no room for z after {embed_features} embedding features"
                ),
            ));
        }
        let z_dim = fc0[1] - embed_features;
        let mut layers = Vec::new();
        let mut inp = fc0[1];
        while let Some(s) = shape(&format!("mapping.fc{}.weight", layers.len())) {
            let out = s[0];
            layers.push(FullyConnected::load(
                file,
                &format!("mapping.fc{}", layers.len()),
                out,
                inp,
                lr_multiplier,
                true,
            )?);
            inp = out;
        }
        if inp != w_dim {
            return Err(Error::ShapeMismatch {
                file: file.path.clone(),
                key: format!("mapping.fc{}.weight", layers.len() - 1),
                expected: vec![w_dim, layers.last().map_or(0, |l| l.in_features())],
                found: layers.last().map_or(vec![], |l| l.weight.dims().to_vec()),
            });
        }
        let w_avg = file.get_shaped("mapping.w_avg", &[w_dim])?;
        Ok(Self {
            layers,
            embed,
            w_avg,
            z_dim,
            c_dim,
            num_ws,
        })
    }

    /// w dimension.
    pub fn w_dim(&self) -> usize {
        self.w_avg.dims()[0]
    }

    /// z `[N, z_dim]`, c `[N, c_dim]` to ws `[N, num_ws, w_dim]`.
    pub fn forward(&self, z: &Tensor, c: Option<&Tensor>, truncation: Truncation) -> Result<Tensor> {
        let n = match z.dims() {
            [n, d] if *d == self.z_dim => *n,
            d => return Err(Error::invalid(format!("z must be [N, {}], got {d:?}", self.z_dim))),
        };
        ensure_finite(z, "z")?;
        let mut x = normalize_2nd_moment(&z.to_dtype(candle_core::DType::F32)?)?;
        match (&self.embed, c) {
            (Some(embed), Some(c)) => {
                if c.dims() != [n, self.c_dim] {
                    return Err(Error::invalid(format!(
                        "c must be [{n}, {}], got {:?}",
                        self.c_dim,
                        c.dims()
                    )));
                }
                let y = normalize_2nd_moment(&embed.forward(&c.to_dtype(candle_core::DType::F32)?)?)?;
                x = Tensor::cat(&[&x, &y], 1)?;
            }
            (Some(_), None) => {
                return Err(Error::invalid(format!(
                    "this generator is conditional: pass c [N, {}]",
                    self.c_dim
                )));
            }
            (None, Some(_)) => return Err(Error::invalid("this generator is unconditional: it takes no c")),
            (None, None) => {}
        }
        for fc in &self.layers {
            x = fc.forward(&x)?;
        }
        let ws = x
            .unsqueeze(1)?
            .broadcast_as((n, self.num_ws, self.w_dim()))?
            .contiguous()?;
        self.truncate(&ws, truncation)
    }

    /// `w_avg + psi (ws - w_avg)` on `ws[:, ..cutoff]` (all when no cutoff).
    pub fn truncate(&self, ws: &Tensor, t: Truncation) -> Result<Tensor> {
        t.apply(ws, &self.w_avg)
    }
}
