//! The primitives objects are drawn from, in the object's own frame: x right, y up,
//! the object standing on y = 0 and about 2 units tall.

/// One filled primitive (the fields are the coordinates each variant's line names).
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Axis-aligned rectangle `x0..x1` by `y0..y1`.
    Rect { x0: f64, x1: f64, y0: f64, y1: f64 },
    /// Ellipse centred at `(cx, cy)` with radii `rx`, `ry`.
    Ellipse { cx: f64, cy: f64, rx: f64, ry: f64 },
    /// The upper half (y >= cy) of an ellipse.
    Dome { cx: f64, cy: f64, rx: f64, ry: f64 },
    /// Triangle with corners `a`, `b`, `c` (either winding).
    Triangle { a: [f64; 2], b: [f64; 2], c: [f64; 2] },
}

impl Shape {
    /// Whether the point `(x, y)` is inside.
    pub fn contains(&self, x: f64, y: f64) -> bool {
        match *self {
            Shape::Rect { x0, x1, y0, y1 } => (x0..=x1).contains(&x) && (y0..=y1).contains(&y),
            Shape::Ellipse { cx, cy, rx, ry } => ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2) <= 1.0,
            Shape::Dome { cx, cy, rx, ry } => y >= cy && ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2) <= 1.0,
            Shape::Triangle { a, b, c } => {
                let side = |p: [f64; 2], q: [f64; 2]| (q[0] - p[0]) * (y - p[1]) - (q[1] - p[1]) * (x - p[0]);
                let (s0, s1, s2) = (side(a, b), side(b, c), side(c, a));
                (s0 >= 0.0 && s1 >= 0.0 && s2 >= 0.0) || (s0 <= 0.0 && s1 <= 0.0 && s2 <= 0.0)
            }
        }
    }

    /// The top of the shape (largest y).
    pub fn top(&self) -> f64 {
        match *self {
            Shape::Rect { y1, .. } => y1,
            Shape::Ellipse { cy, ry, .. } | Shape::Dome { cy, ry, .. } => cy + ry,
            Shape::Triangle { a, b, c } => a[1].max(b[1]).max(c[1]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_and_outside() {
        let r = Shape::Rect {
            x0: -1.0,
            x1: 1.0,
            y0: 0.0,
            y1: 0.5,
        };
        assert!(r.contains(0.0, 0.25) && !r.contains(0.0, 0.6) && !r.contains(1.1, 0.1));
        let e = Shape::Ellipse {
            cx: 0.0,
            cy: 1.0,
            rx: 0.5,
            ry: 0.25,
        };
        assert!(e.contains(0.45, 1.0) && !e.contains(0.0, 1.3));
        let d = Shape::Dome {
            cx: 0.0,
            cy: 1.0,
            rx: 0.5,
            ry: 0.5,
        };
        assert!(d.contains(0.0, 1.2) && !d.contains(0.0, 0.9));
        // Both windings of one triangle.
        for t in [
            Shape::Triangle {
                a: [-1.0, 0.0],
                b: [1.0, 0.0],
                c: [0.0, 1.0],
            },
            Shape::Triangle {
                a: [1.0, 0.0],
                b: [-1.0, 0.0],
                c: [0.0, 1.0],
            },
        ] {
            assert!(t.contains(0.0, 0.5) && !t.contains(0.9, 0.9) && !t.contains(0.0, -0.1));
            assert_eq!(t.top(), 1.0);
        }
    }
}
