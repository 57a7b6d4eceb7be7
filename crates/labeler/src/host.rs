//! The CPU training path's first layer, outside candle's graph.
//!
//! The first layer holds almost every weight (`[M, D, h1]`: 14 million at 512 px) and
//! almost every FLOP. Through candle's autograd a step also computes the gradient of the
//! gathered input rows (a third GEMM nobody uses), and candle's AdamW allocates eight
//! temporaries of the weights' full size per step. Here the layer's weights and Adam
//! moments are host vectors updated in place in one pass, the batch rows are gathered
//! into a reused buffer, and only two GEMMs run per step: `X W` and `Xᵀ G`. The rest of
//! the network (small) stays in candle, starting from the first layer's output.

use half::f16;
use half::slice::HalfFloatSliceExt;
use labelgan_kernels::linalg::sgemm_threads;
use labelgan_optim::AdamStep;

/// First-layer weights `[M, D, h]` (row-major per member), their Adam moments, and
/// scratch reused across steps.
pub(crate) struct HostLayer {
    pub members: usize,
    pub dim: usize,
    pub hidden: usize,
    pub weights: Vec<f32>,
    first: Vec<f32>,
    second: Vec<f32>,
    /// Gathered batch rows `[M, B, D]`.
    rows: Vec<f32>,
    /// One member's weight gradient `[D, h]`: each member's step is taken before the
    /// next member's gradient, so the gradients of all members are never held at once.
    grad: Vec<f32>,
    threads: usize,
}

impl HostLayer {
    pub fn new(members: usize, dim: usize, hidden: usize, weights: Vec<f32>) -> Self {
        assert_eq!(weights.len(), members * dim * hidden, "first-layer weights");
        let n = weights.len();
        Self {
            members,
            dim,
            hidden,
            weights,
            first: vec![0.0; n],
            second: vec![0.0; n],
            rows: vec![],
            grad: vec![0.0; dim * hidden],
            threads: labelgan_kernels::cpu_threads(),
        }
    }

    /// Gathers member k's rows `group[order[k][i]]` for `i < batch` into the batch buffer
    /// (in f32, the GEMMs' type).
    pub fn gather(&mut self, group: &[f16], order: &[&[u32]], batch: usize) {
        let d = self.dim;
        self.rows.resize(self.members * batch * d, 0.0);
        for (k, idx) in order.iter().enumerate() {
            for (i, &r) in idx[..batch].iter().enumerate() {
                let r = r as usize;
                let dst = (k * batch + i) * d;
                group[r * d..(r + 1) * d].convert_to_f32_slice(&mut self.rows[dst..dst + d]);
            }
        }
    }

    /// The gathered rows times each member's weights: `[M, B, h]`.
    pub fn forward(&self, batch: usize) -> Vec<f32> {
        let (d, h) = (self.dim, self.hidden);
        let mut out = vec![0f32; self.members * batch * h];
        for k in 0..self.members {
            sgemm_threads(
                self.threads,
                batch,
                h,
                d,
                &mut out[k * batch * h..(k + 1) * batch * h],
                false,
                &self.rows[k * batch * d..(k + 1) * batch * d],
                d,
                1,
                &self.weights[k * d * h..(k + 1) * d * h],
            );
        }
        out
    }

    /// Given the loss gradient with respect to [`forward`](Self::forward)'s output
    /// (`[M, B, h]`), computes each member's weight gradient `Xᵀ G` and takes Adam's
    /// `step` in place.
    pub fn backward_step(&mut self, out_grad: &[f32], batch: usize, step: &AdamStep) {
        let (d, h) = (self.dim, self.hidden);
        assert_eq!(out_grad.len(), self.members * batch * h, "first-layer output gradient");
        use rayon::prelude::*;
        let chunk = (d * h).div_ceil(self.threads.max(1)).max(1);
        for k in 0..self.members {
            // lhs = X_kᵀ: element (i, c) = X_k[c, i], rows stride 1, columns stride d.
            sgemm_threads(
                self.threads,
                d,
                h,
                batch,
                &mut self.grad,
                false,
                &self.rows[k * batch * d..(k + 1) * batch * d],
                1,
                d,
                &out_grad[k * batch * h..(k + 1) * batch * h],
            );
            // One pass over member k's weights and moments, split into `threads` parts
            // on rayon's pool.
            let part = k * d * h..(k + 1) * d * h;
            self.weights[part.clone()]
                .par_chunks_mut(chunk)
                .zip(self.first[part.clone()].par_chunks_mut(chunk))
                .zip(self.second[part].par_chunks_mut(chunk))
                .zip(self.grad.par_chunks(chunk))
                .for_each(|(((w, m), v), g)| step.update_slices(w, m, v, g));
        }
    }
}
