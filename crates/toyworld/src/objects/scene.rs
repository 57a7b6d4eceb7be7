//! One picture of an object: a sky and a ground split by a horizon, maybe a sun, the
//! object standing on the ground with its shadow, at a random place, size, tilt and
//! facing, in random colours; rasterised with supersampling.

use labelgan_core::SplitMix64;

use super::classes::{OBJECT_CLASSES, parts};

type Rgb = [f64; 3];

/// Everything random about one picture.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectScene {
    /// Class index into [`OBJECT_CLASSES`].
    pub class: usize,
    /// Horizon height, as a fraction of the image from the top.
    pub horizon: f64,
    /// Sky at the top, sky at the horizon, ground.
    pub sky: [Rgb; 2],
    /// The ground's colour.
    pub ground: Rgb,
    /// A sun: centre (fractions of the image) and radius, if any.
    pub sun: Option<([f64; 2], f64, Rgb)>,
    /// Where the object stands: x of its foot and y of its base, fractions of the image.
    pub foot: [f64; 2],
    /// Object height (2 units of its frame) as a fraction of the image.
    pub size: f64,
    /// Tilt in radians (counter-clockwise), small: the object stays upright.
    pub tilt: f64,
    /// Mirrored left to right.
    pub mirrored: bool,
    /// The colours of the object's parts.
    pub colours: [Rgb; 3],
}

/// A colour from hue (turns), saturation and value.
fn hsv(h: f64, s: f64, v: f64) -> Rgb {
    let h6 = (h.rem_euclid(1.0)) * 6.0;
    let c = v * s;
    let x = c * (1.0 - ((h6 % 2.0) - 1.0).abs());
    let (r, g, b) = match h6 as usize {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r + m, g + m, b + m]
}

impl ObjectScene {
    /// A random scene of class `class`.
    pub fn random(class: usize, rng: &mut SplitMix64) -> Self {
        let mut u = |lo: f64, hi: f64| lo + (hi - lo) * rng.uniform();
        let horizon = u(0.5, 0.75);
        let sky_hue = u(0.5, 0.7);
        let sky = [
            hsv(sky_hue, u(0.3, 0.7), u(0.6, 0.95)),
            hsv(sky_hue, u(0.05, 0.3), u(0.8, 1.0)),
        ];
        let ground = hsv(u(0.05, 0.4), u(0.3, 0.8), u(0.3, 0.7));
        let sun = (u(0.0, 1.0) < 0.4).then(|| {
            let c = [u(0.1, 0.9), u(0.08, 0.3)];
            (c, u(0.05, 0.1), hsv(u(0.1, 0.17), u(0.3, 0.9), 1.0))
        });
        let size = u(0.4, 0.7);
        let base = u(horizon + 0.05, 0.97).min(0.97);
        // The top (2 units up) stays inside: shrink the object if it would not.
        let size = size.min(base - 0.04);
        let foot = [u(0.32, 0.68), base];
        let tilt = u(-0.2, 0.2);
        let mirrored = u(0.0, 1.0) < 0.5;
        let colours = std::array::from_fn(|_| hsv(u(0.0, 1.0), u(0.4, 1.0), u(0.35, 1.0)));
        Self {
            class,
            horizon,
            sky,
            ground,
            sun,
            foot,
            size,
            tilt,
            mirrored,
            colours,
        }
    }

    /// Renders at `resolution` with `ss x ss` samples per pixel: RGB bytes, row-major,
    /// and a mask (1 where the object covers the pixel centre's majority of samples).
    pub fn render(&self, resolution: usize, ss: usize) -> (Vec<u8>, Vec<u8>) {
        let parts = parts(self.class);
        let r = resolution as f64;
        let (sin, cos) = self.tilt.sin_cos();
        let unit = self.size * r / 2.0; // pixels per object unit
        let (fx, fy) = (self.foot[0] * r, self.foot[1] * r);
        let mut rgb = vec![0u8; resolution * resolution * 3];
        let mut mask = vec![0u8; resolution * resolution];
        for py in 0..resolution {
            for px in 0..resolution {
                let (mut acc, mut covered) = ([0.0; 3], 0usize);
                for sy in 0..ss {
                    for sx in 0..ss {
                        let x = px as f64 + (sx as f64 + 0.5) / ss as f64;
                        let y = py as f64 + (sy as f64 + 0.5) / ss as f64;
                        // Image to object frame: undo the translation, scale (y up),
                        // tilt and mirroring.
                        let (dx, dy) = ((x - fx) / unit, (fy - y) / unit);
                        let (mut ox, oy) = (cos * dx + sin * dy, -sin * dx + cos * dy);
                        if self.mirrored {
                            ox = -ox;
                        }
                        let c = match parts.iter().rev().find(|(s, _)| s.contains(ox, oy)) {
                            Some((_, k)) => {
                                covered += 1;
                                // A little light from above, so parts are not flat.
                                let light = 0.85 + 0.15 * (oy / 2.0).clamp(0.0, 1.0);
                                self.colours[*k].map(|v| v * light)
                            }
                            None => self.background(x / r, y / r, ox, oy),
                        };
                        for (a, v) in acc.iter_mut().zip(c) {
                            *a += v;
                        }
                    }
                }
                let n = (ss * ss) as f64;
                let i = py * resolution + px;
                for ch in 0..3 {
                    rgb[i * 3 + ch] = (acc[ch] / n * 255.0).round().clamp(0.0, 255.0) as u8;
                }
                mask[i] = u8::from(covered * 2 > ss * ss);
            }
        }
        (rgb, mask)
    }

    /// The colour behind the object at image point `(x, y)` (fractions), whose object
    /// frame coordinates are `(ox, oy)` (for the shadow).
    fn background(&self, x: f64, y: f64, ox: f64, oy: f64) -> Rgb {
        if y < self.horizon {
            if let Some((c, rad, col)) = self.sun
                && (x - c[0]).powi(2) + (y - c[1]).powi(2) <= rad * rad
            {
                return col;
            }
            let t = (y / self.horizon).clamp(0.0, 1.0);
            return std::array::from_fn(|i| self.sky[0][i] + (self.sky[1][i] - self.sky[0][i]) * t);
        }
        // The shadow: a flat ellipse around the foot.
        let shade = if (ox / 1.1).powi(2) + (oy / 0.12).powi(2) <= 1.0 {
            0.6
        } else {
            1.0
        };
        // Ground darkens towards the bottom.
        let depth = ((y - self.horizon) / (1.0 - self.horizon)).clamp(0.0, 1.0);
        self.ground.map(|v| v * shade * (1.0 - 0.25 * depth))
    }

    /// The class name.
    pub fn class_name(&self) -> &'static str {
        OBJECT_CLASSES[self.class]
    }
}
