//! The ten object classes: each a few parts that differ in shape and arrangement, not
//! in colour (every part's colour is drawn at random), and upright, so that a rotated
//! image is told apart from an upright one.

use super::shape::Shape::{self, Dome, Ellipse, Rect, Triangle};

/// Class names, in label order.
pub const OBJECT_CLASSES: [&str; 10] = [
    "house", "tree", "pine", "mushroom", "car", "lamp", "arrow", "snowman", "table", "flag",
];

/// The parts of class `class`, painted in order: each a shape and the index of its
/// colour among the object's three.
pub fn parts(class: usize) -> Vec<(Shape, usize)> {
    let rect = |x0, x1, y0, y1| Rect { x0, x1, y0, y1 };
    let tri = |a, b, c| Triangle { a, b, c };
    match class {
        // house: walls, a roof, a door.
        0 => vec![
            (rect(-0.7, 0.7, 0.0, 1.0), 0),
            (tri([-0.9, 1.0], [0.9, 1.0], [0.0, 1.7]), 1),
            (rect(-0.15, 0.15, 0.0, 0.55), 2),
        ],
        // tree: a trunk under a round crown.
        1 => vec![
            (rect(-0.12, 0.12, 0.0, 0.9), 0),
            (
                Ellipse {
                    cx: 0.0,
                    cy: 1.35,
                    rx: 0.7,
                    ry: 0.6,
                },
                1,
            ),
        ],
        // pine: a short trunk under three stacked triangles.
        2 => vec![
            (rect(-0.1, 0.1, 0.0, 0.4), 0),
            (tri([-0.75, 0.3], [0.75, 0.3], [0.0, 1.0]), 1),
            (tri([-0.58, 0.8], [0.58, 0.8], [0.0, 1.45]), 1),
            (tri([-0.42, 1.25], [0.42, 1.25], [0.0, 1.9]), 1),
        ],
        // mushroom: a thick stem under a dome cap.
        3 => vec![
            (rect(-0.2, 0.2, 0.0, 0.85), 0),
            (
                Dome {
                    cx: 0.0,
                    cy: 0.8,
                    rx: 0.85,
                    ry: 0.7,
                },
                1,
            ),
        ],
        // car: a long body, a cabin set back, two wheels.
        4 => vec![
            (rect(-1.0, 1.0, 0.2, 0.65), 0),
            (rect(-0.55, 0.35, 0.65, 1.05), 1),
            (
                Ellipse {
                    cx: -0.55,
                    cy: 0.22,
                    rx: 0.22,
                    ry: 0.22,
                },
                2,
            ),
            (
                Ellipse {
                    cx: 0.55,
                    cy: 0.22,
                    rx: 0.22,
                    ry: 0.22,
                },
                2,
            ),
        ],
        // lamp: a base, a tall pole, an arm and a hanging light.
        5 => vec![
            (rect(-0.3, 0.3, 0.0, 0.15), 0),
            (rect(-0.09, 0.09, 0.0, 1.84), 0),
            (rect(-0.09, 0.6, 1.7, 1.84), 0),
            (tri([0.25, 1.38], [0.95, 1.38], [0.6, 1.72]), 1),
        ],
        // arrow: a shaft under a wide head, pointing up.
        6 => vec![
            (rect(-0.15, 0.15, 0.0, 1.15), 0),
            (tri([-0.6, 1.1], [0.6, 1.1], [0.0, 1.9]), 0),
        ],
        // snowman: three stacked balls, a nose.
        7 => vec![
            (
                Ellipse {
                    cx: 0.0,
                    cy: 0.45,
                    rx: 0.47,
                    ry: 0.45,
                },
                0,
            ),
            (
                Ellipse {
                    cx: 0.0,
                    cy: 1.12,
                    rx: 0.34,
                    ry: 0.33,
                },
                0,
            ),
            (
                Ellipse {
                    cx: 0.0,
                    cy: 1.62,
                    rx: 0.23,
                    ry: 0.23,
                },
                0,
            ),
            (tri([0.05, 1.6], [0.05, 1.68], [0.4, 1.62]), 1),
        ],
        // table: a slab on two legs.
        8 => vec![
            (rect(-0.95, 0.95, 0.75, 0.95), 0),
            (rect(-0.85, -0.7, 0.0, 0.75), 1),
            (rect(0.7, 0.85, 0.0, 0.75), 1),
        ],
        // flag: a pole with a cloth at its top, to one side.
        _ => vec![
            (rect(-0.68, -0.54, 0.0, 1.9), 0),
            (rect(-0.54, 0.5, 1.2, 1.85), 1),
            (tri([-0.54, 1.2], [0.5, 1.2], [-0.02, 1.05]), 1),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each class's silhouette on a grid of the object's frame.
    fn silhouette(class: usize) -> Vec<bool> {
        let p = parts(class);
        (0..40 * 40)
            .map(|k| {
                let (x, y) = (-1.0 + (k % 40) as f64 * 0.05, (k / 40) as f64 * 0.05);
                p.iter().any(|(s, _)| s.contains(x, y))
            })
            .collect()
    }

    #[test]
    fn every_class_has_its_own_silhouette_and_is_top_heavy_or_bottom_heavy() {
        let shapes: Vec<Vec<bool>> = (0..OBJECT_CLASSES.len()).map(silhouette).collect();
        for i in 0..shapes.len() {
            assert!(
                parts(i).iter().all(|(s, _)| s.top() <= 2.0),
                "{} too tall",
                OBJECT_CLASSES[i]
            );
            for j in 0..i {
                let differ = shapes[i].iter().zip(&shapes[j]).filter(|(a, b)| a != b).count();
                assert!(
                    differ > 80,
                    "{} and {} differ in {differ} cells",
                    OBJECT_CLASSES[i],
                    OBJECT_CLASSES[j]
                );
            }
            // Upside down is another picture: the silhouette is not symmetric top to bottom.
            let flipped: Vec<bool> = (0..1600).map(|k| shapes[i][(39 - k / 40) * 40 + k % 40]).collect();
            let differ = shapes[i].iter().zip(&flipped).filter(|(a, b)| a != b).count();
            assert!(differ > 40, "{} looks the same upside down", OBJECT_CLASSES[i]);
        }
    }
}
