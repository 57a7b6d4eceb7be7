//! Keypoints from heatmaps with sub-pixel precision.
//!
//! The argmax of a map is a whole pixel, up to 0.7 px from the point it stands for: at
//! 64 px that is a fifth of PCK@0.05's radius (3.2 px). A parabola through the peak and
//! its two neighbours along each axis places the vertex between pixels; through the
//! logarithms of a Gaussian's samples it is exact, and that is what both of labelgan's
//! keypoint heads approximate (the pixel labeler regresses a Gaussian, the UNet's
//! logits are its logarithm up to a constant).

/// How a map's values relate to the Gaussian the vertex is fitted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeakScale {
    /// Values are the Gaussian itself (e.g. regressed heatmaps): the parabola goes
    /// through their logarithms where the three are positive, through the values
    /// otherwise.
    Linear,
    /// Values are its logarithm up to a constant (e.g. logits of a spatial softmax).
    Log,
}

/// Offset of a parabola's vertex through `(-1, a)`, `(0, b)`, `(1, c)` from the middle
/// sample, where `b` is the largest of the three: within [-0.5, 0.5] (0 for a flat or
/// non-finite triple).
pub fn vertex_offset(a: f32, b: f32, c: f32) -> f32 {
    let curvature = a - 2.0 * b + c;
    if !(curvature.is_finite() && curvature < 0.0) {
        return 0.0;
    }
    let d = 0.5 * (a - c) / curvature;
    if d.is_finite() { d.clamp(-0.5, 0.5) } else { 0.0 }
}

/// The peak of a `width x height` map as `(x, y)` in pixels (x right, y down, pixel
/// centres at integers): its largest value (the first, in row order, on ties) moved
/// by [`vertex_offset`] along each axis. `at(x, y)` reads the map. Edge pixels keep
/// their whole coordinate along the axis where a neighbour is missing.
pub fn subpixel_peak(width: usize, height: usize, scale: PeakScale, at: impl Fn(usize, usize) -> f32) -> (f32, f32) {
    if width == 0 || height == 0 {
        return (0.0, 0.0);
    }
    let mut best = (0, 0);
    let mut top = f32::NEG_INFINITY;
    for y in 0..height {
        for x in 0..width {
            let v = at(x, y);
            if v > top {
                (top, best) = (v, (x, y));
            }
        }
    }
    let (x, y) = best;
    let fit = |a: f32, b: f32, c: f32| match scale {
        PeakScale::Log => vertex_offset(a, b, c),
        PeakScale::Linear if a > 0.0 && b > 0.0 && c > 0.0 => vertex_offset(a.ln(), b.ln(), c.ln()),
        PeakScale::Linear => vertex_offset(a, b, c),
    };
    let dx = if x > 0 && x + 1 < width {
        fit(at(x - 1, y), top, at(x + 1, y))
    } else {
        0.0
    };
    let dy = if y > 0 && y + 1 < height {
        fit(at(x, y - 1), top, at(x, y + 1))
    } else {
        0.0
    };
    (x as f32 + dx, y as f32 + dy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian(w: usize, cx: f32, cy: f32, sigma: f32) -> Vec<f32> {
        (0..w * w)
            .map(|i| {
                let (x, y) = ((i % w) as f32, (i / w) as f32);
                (-((x - cx).powi(2) + (y - cy).powi(2)) / (2.0 * sigma * sigma)).exp()
            })
            .collect()
    }

    /// A Gaussian's centre comes back to within float error from its samples (and
    /// from their logarithms plus a constant), where the argmax is up to 0.5 px off.
    #[test]
    fn gaussian_centres_are_recovered() {
        for &(cx, cy, s) in &[(10.3, 7.8, 2.0), (5.5, 5.0, 1.0), (12.0, 3.49, 3.0), (8.26, 9.74, 1.5)] {
            let w = 16;
            let g = gaussian(w, cx, cy, s);
            let (x, y) = subpixel_peak(w, w, PeakScale::Linear, |x, y| g[y * w + x]);
            assert!((x - cx).abs() < 1e-3 && (y - cy).abs() < 1e-3, "{cx},{cy}: got {x},{y}");
            let logits: Vec<f32> = g.iter().map(|v| v.ln() + 4.0).collect();
            let (x, y) = subpixel_peak(w, w, PeakScale::Log, |x, y| logits[y * w + x]);
            assert!(
                (x - cx).abs() < 1e-3 && (y - cy).abs() < 1e-3,
                "log {cx},{cy}: got {x},{y}"
            );
        }
    }

    /// By hand: a symmetric triple has its vertex in the middle; (0, 2, 1) through
    /// the parabola 2 + 0.5 t - 1.5 t^2 has its vertex at 1/6; flat or rising triples
    /// and NaN stay at 0; a middle sample that is not the largest gives at most half a
    /// pixel.
    #[test]
    fn vertex_by_hand() {
        assert_eq!(vertex_offset(1.0, 2.0, 1.0), 0.0);
        assert!((vertex_offset(0.0, 2.0, 1.0) - 1.0 / 6.0).abs() < 1e-6);
        assert!((vertex_offset(1.0, 2.0, 0.0) + 1.0 / 6.0).abs() < 1e-6);
        assert_eq!(vertex_offset(1.0, 1.0, 1.0), 0.0);
        assert_eq!(vertex_offset(0.0, 1.0, 2.0), 0.0);
        assert_eq!(vertex_offset(f32::NAN, 1.0, 0.0), 0.0);
        assert!((vertex_offset(0.99, 1.0, -5.0) + 0.4983).abs() < 1e-4);
        assert_eq!(vertex_offset(3.0, 1.0, -5.0), -0.5);
    }

    /// Regressed maps may dip below zero: the fit then uses the raw values, and a
    /// peak on the border keeps its whole coordinate along that axis.
    #[test]
    fn negative_neighbours_and_borders() {
        let w = 5;
        let mut m = vec![-0.1f32; w * w];
        m[2 * w + 2] = 1.0;
        m[2 * w + 3] = 0.5;
        let (x, y) = subpixel_peak(w, w, PeakScale::Linear, |x, y| m[y * w + x]);
        assert!((x - (2.0 + vertex_offset(-0.1, 1.0, 0.5))).abs() < 1e-6 && x > 2.0);
        assert_eq!(y, 2.0);
        let mut m = vec![0.0f32; w * w];
        m[4] = 1.0;
        m[3] = 0.8;
        m[w + 4] = 0.5;
        let (x, y) = subpixel_peak(w, w, PeakScale::Linear, |x, y| m[y * w + x]);
        assert_eq!((x, y), (4.0, 0.0));
    }
}
