//! Rasterising a [`Face`]: analytic shapes evaluated at supersampled points.
//!
//! The head is a unit sphere in head-normalised coordinates `(u, v)` (the head ellipse
//! scaled to a circle, after undoing the roll). Facial features are decals on that
//! sphere: a centre and two tangent axes in the face's frame, rotated by yaw and pitch
//! and projected orthographically, so each becomes a 2-D affine frame in which the
//! feature's shape is tested. Painter's order: background, hair behind the head, neck,
//! hair volume, head (skin, hair cap, brows, eyes, nose, mouth).

use crate::face::{Background, Face, HairStyle, Pattern};

/// Segmentation classes.
pub const CLASSES: [&str; 8] = [
    "background",
    "skin",
    "hair",
    "left_eye",
    "right_eye",
    "brows",
    "nose",
    "mouth",
];

/// Keypoints, in this order. "Left" is the side that is on the image's left when the
/// face is upright (the subject's right).
pub const KEYPOINTS: [&str; 5] = ["left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right"];

const BACKGROUND: u8 = 0;
const SKIN: u8 = 1;
const HAIR: u8 = 2;
const LEFT_EYE: u8 = 3;
const RIGHT_EYE: u8 = 4;
const BROWS: u8 = 5;
const NOSE: u8 = 6;
const MOUTH: u8 = 7;

/// Depth of the far plane (background), in the units of [`Face::distance`].
pub const FAR: f64 = 2.0;

type V3 = [f64; 3];

fn dot(a: V3, b: V3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn normalize(a: V3) -> V3 {
    let n = dot(a, a).sqrt().max(1e-12);
    a.map(|x| x / n)
}

fn mix(a: V3, b: V3, t: f64) -> V3 {
    std::array::from_fn(|i| a[i] + (b[i] - a[i]) * t)
}

fn scale(a: V3, s: f64) -> V3 {
    a.map(|x| x * s)
}

/// Direction on the unit sphere at longitude `th`, latitude `ph` (face frame).
fn dir(th: f64, ph: f64) -> V3 {
    [th.sin() * ph.cos(), ph.sin(), th.cos() * ph.cos()]
}

/// A feature's frame projected to head-normalised coordinates.
#[derive(Debug, Clone, Copy)]
struct Decal {
    c: [f64; 2],
    /// Inverse of the 2x2 matrix [a1 a2] (columns: projected tangent axes).
    inv: [[f64; 2]; 2],
    /// View-space unit tangent along the first axis (for shading).
    t1: V3,
    /// Facing the camera enough to be drawn.
    visible: bool,
}

impl Decal {
    /// Decal coordinates `(alpha, beta)` of point `p` (each in [-1, 1] over the feature).
    fn coords(&self, p: [f64; 2]) -> (f64, f64) {
        let (dx, dy) = (p[0] - self.c[0], p[1] - self.c[1]);
        (
            self.inv[0][0] * dx + self.inv[0][1] * dy,
            self.inv[1][0] * dx + self.inv[1][1] * dy,
        )
    }
}

/// A face with everything that does not depend on the pixel precomputed.
pub struct Scene<'a> {
    f: &'a Face,
    cos_r: f64,
    sin_r: f64,
    /// Half-width and half-height of the head.
    a: f64,
    b: f64,
    /// Face frame -> view (rows).
    m: [V3; 3],
    eyes: [Decal; 2],
    brows: [Decal; 2],
    mouth: Decal,
    /// Nose: bridge, tip and nostril corners in head-normalised coordinates.
    nose: [[f64; 2]; 4],
    light: V3,
}

/// One evaluated point.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Colour of the surface hit.
    pub color: V3,
    /// Class of the surface hit.
    pub class: u8,
    /// Distance from the camera over [`FAR`], in [0, 1] (background: 1).
    pub depth: f64,
}

impl<'a> Scene<'a> {
    /// The scene of face `f`.
    pub fn new(f: &'a Face) -> Self {
        let (sy, cy) = f.yaw.sin_cos();
        let (sp, cp) = f.pitch.sin_cos();
        // M = R_yaw · R_pitch: pitch about the horizontal axis, then yaw about the vertical.
        let rp = [[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]];
        let ry = [[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]];
        let m: [V3; 3] = std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| ry[i][k] * rp[k][j]).sum()));
        let b = f.half_height;
        let a = b * f.aspect;
        let mut s = Self {
            f,
            cos_r: f.roll.cos(),
            sin_r: f.roll.sin(),
            a,
            b,
            m,
            eyes: [Decal {
                c: [0.0; 2],
                inv: [[1.0, 0.0], [0.0, 1.0]],
                t1: [1.0, 0.0, 0.0],
                visible: false,
            }; 2],
            brows: [Decal {
                c: [0.0; 2],
                inv: [[1.0, 0.0], [0.0, 1.0]],
                t1: [1.0, 0.0, 0.0],
                visible: false,
            }; 2],
            mouth: Decal {
                c: [0.0; 2],
                inv: [[1.0, 0.0], [0.0, 1.0]],
                t1: [1.0, 0.0, 0.0],
                visible: false,
            },
            nose: [[0.0; 2]; 4],
            light: normalize(f.light),
        };
        for (i, side) in [-1.0, 1.0].into_iter().enumerate() {
            let th = side * f.eye_spacing;
            s.eyes[i] = s.decal(th, f.eye_height, f.eye_size[0], f.eye_size[1]);
            s.brows[i] = s.decal(th, f.eye_height - f.brow_gap, f.eye_size[0] * 1.2, f.brow_thickness);
        }
        s.mouth = s.decal(0.0, f.eye_height + f.mouth_drop, f.mouth_width, f.mouth_height);
        let tip_ph = f.eye_height + f.nose_length;
        s.nose = [
            s.project(dir(0.0, f.eye_height + 0.03), 1.0),
            s.project(dir(0.0, tip_ph), 1.0 + f.nose_height),
            s.project(dir(-f.nose_width, tip_ph + 0.03), 1.0 + 0.3 * f.nose_height),
            s.project(dir(f.nose_width, tip_ph + 0.03), 1.0 + 0.3 * f.nose_height),
        ];
        s
    }

    fn to_view(&self, q: V3) -> V3 {
        std::array::from_fn(|i| dot(self.m[i], q))
    }

    fn view_to_face(&self, p: V3) -> V3 {
        std::array::from_fn(|j| (0..3).map(|i| self.m[i][j] * p[i]).sum())
    }

    /// Head-normalised position of face-frame point `q * radius`.
    fn project(&self, q: V3, radius: f64) -> [f64; 2] {
        let p = self.to_view(q);
        [p[0] * radius, p[1] * radius]
    }

    fn decal(&self, th: f64, ph: f64, s_th: f64, s_ph: f64) -> Decal {
        let c = self.to_view(dir(th, ph));
        let t1 = self.to_view([th.cos(), 0.0, -th.sin()]);
        let t2 = self.to_view([-th.sin() * ph.sin(), ph.cos(), -th.cos() * ph.sin()]);
        let (a1, a2) = ([t1[0] * s_th, t1[1] * s_th], [t2[0] * s_ph, t2[1] * s_ph]);
        let det = a1[0] * a2[1] - a2[0] * a1[1];
        let det = if det.abs() < 1e-9 { 1e-9 } else { det };
        Decal {
            c: [c[0], c[1]],
            inv: [[a2[1] / det, -a2[0] / det], [-a1[1] / det, a1[0] / det]],
            t1,
            visible: c[2] > 0.15,
        }
    }

    /// Image coordinates of head-normalised point `h`.
    fn to_image(&self, h: [f64; 2]) -> [f64; 2] {
        let (x, y) = (h[0] * self.a, h[1] * self.b);
        [
            self.f.center[0] + self.cos_r * x - self.sin_r * y,
            self.f.center[1] + self.sin_r * x + self.cos_r * y,
        ]
    }

    /// The five keypoints in image coordinates with their visibility.
    pub fn keypoints(&self) -> [([f64; 2], bool); 5] {
        let corner = |side: f64| {
            let d = &self.mouth;
            // Invert the decal map: p = c + A (alpha, beta) with alpha = side, beta = 0.
            let inv = d.inv;
            let det = inv[0][0] * inv[1][1] - inv[0][1] * inv[1][0];
            let a = [[inv[1][1] / det, -inv[0][1] / det], [-inv[1][0] / det, inv[0][0] / det]];
            [d.c[0] + a[0][0] * side, d.c[1] + a[1][0] * side]
        };
        [
            (self.to_image(self.eyes[0].c), self.eyes[0].visible),
            (self.to_image(self.eyes[1].c), self.eyes[1].visible),
            (self.to_image(self.nose[1]), self.mouth.visible),
            (self.to_image(corner(-1.0)), self.mouth.visible),
            (self.to_image(corner(1.0)), self.mouth.visible),
        ]
    }

    fn background(&self, x: f64, y: f64) -> V3 {
        let Background {
            pattern,
            colors,
            frequency,
            angle,
            phase,
        } = &self.f.background;
        let (sa, ca) = angle.sin_cos();
        let (s, t) = (x * ca + y * sa, -x * sa + y * ca);
        let w = match pattern {
            Pattern::Gradient => 0.5 + 0.5 * s,
            Pattern::Stripes => 0.5 + 0.5 * (frequency * s + phase).sin(),
            Pattern::Checker => 0.5 + 0.5 * ((frequency * s + phase).sin() * (frequency * t).sin() * 3.0).tanh(),
            Pattern::Blobs => {
                let v = (frequency * s + phase).sin()
                    + (0.7 * frequency * t + 1.3 * phase).sin()
                    + (0.6 * frequency * (s + t) + 0.4).sin();
                0.5 + v / 6.0
            }
        };
        let vignette = 1.0 - 0.15 * (x * x + y * y);
        scale(mix(colors[0], colors[1], w.clamp(0.0, 1.0)), vignette)
    }

    fn shade(&self, albedo: V3, normal: V3) -> V3 {
        let d = dot(normalize(normal), self.light).max(0.0);
        scale(albedo, self.f.ambient + (1.0 - self.f.ambient) * d)
    }

    /// Evaluates image point `(x, y)` in `[-1, 1]²`, y down.
    pub fn sample(&self, x: f64, y: f64) -> Sample {
        let f = self.f;
        let (dx, dy) = (x - f.center[0], y - f.center[1]);
        let (u, v) = (
            (self.cos_r * dx + self.sin_r * dy) / self.a,
            (-self.sin_r * dx + self.cos_r * dy) / self.b,
        );
        let depth_at = |z: f64| ((f.distance - self.a * z) / FAR).clamp(0.0, 1.0);
        let mut out = Sample {
            color: self.background(x, y),
            class: BACKGROUND,
            depth: 1.0,
        };
        let hair_tex = |albedo: V3, s: f64| scale(albedo, 0.85 + 0.15 * (s * 40.0).sin());
        let has_hair = f.hair_style != HairStyle::Bald;
        // Long hair behind the head, down to the shoulders.
        if f.hair_style == HairStyle::Long && v > -0.3 && (u / 1.22).powi(2) + ((v - 0.3) / 1.45).powi(2) <= 1.0 {
            out = Sample {
                color: self.shade(hair_tex(f.hair, u + 0.2 * v), [u, 0.3 * v, 0.8]),
                class: HAIR,
                depth: depth_at(-0.3),
            };
        }
        // Neck.
        if u.abs() <= 0.5 && v > 0.5 {
            out = Sample {
                color: self.shade(scale(f.skin, 0.85), [u, 0.2, 1.0]),
                class: SKIN,
                depth: depth_at(-0.15 + 0.1 * (1.0 - (u / 0.5).powi(2))),
            };
        }
        // Hair volume around the crown.
        let crown = (u / 1.1).powi(2) + ((v + 0.06) / 1.13).powi(2);
        if has_hair && crown <= 1.0 && v < 0.1 {
            out = Sample {
                color: self.shade(hair_tex(f.hair, u.atan2(-v)), [u, v, 0.6]),
                class: HAIR,
                depth: depth_at(0.4),
            };
        }
        let r2 = u * u + v * v;
        if r2 > 1.0 {
            return out;
        }
        // On the head.
        let z = (1.0 - r2).sqrt();
        let p = [u, v, z];
        let q = self.view_to_face(p);
        let (th, ph) = (q[0].atan2(q[2]), q[1].clamp(-1.0, 1.0).asin());
        let mut normal = p;
        let mut color = f.skin;
        let mut class = SKIN;
        let mut zd = z;
        let cap = match f.hair_style {
            HairStyle::Bald => false,
            HairStyle::Long => ph < f.hairline + 0.35 * th * th || th.abs() > 1.15 || q[2] < 0.0,
            _ => ph < f.hairline + 0.35 * th * th || (th.abs() > 1.35 && ph < 0.25) || q[2] < -0.05,
        };
        if cap {
            color = hair_tex(f.hair, th + 0.3 * ph);
            class = HAIR;
            zd = z + 0.04;
        }
        let h = [u, v];
        // Brows.
        for d in &self.brows {
            let (al, be) = d.coords(h);
            let centre = f.brow_arch * al * al - 0.2;
            if d.visible && al.abs() <= 1.0 && (be - centre).abs() <= 1.0 - 0.35 * al.abs() {
                color = scale(f.hair, 0.6);
                class = BROWS;
            }
        }
        // Eyes: sclera, iris, pupil; the eyelid darkens the top.
        for (i, d) in self.eyes.iter().enumerate() {
            let (al, be) = d.coords(h);
            if d.visible && al * al + be * be <= 1.0 {
                let ratio = f.eye_size[0] / f.eye_size[1];
                let ia = (al - f.gaze) * ratio;
                let ri = (ia * ia + be * be).sqrt();
                color = if ri < 0.3 {
                    [0.03, 0.03, 0.04]
                } else if ri < 0.75 {
                    scale(f.iris, 0.8 + 0.3 * ri)
                } else {
                    [0.95, 0.94, 0.92]
                };
                color = scale(color, 1.0 - 0.35 * ((-be - 0.3).max(0.0) / 0.7));
                class = if i == 0 { LEFT_EYE } else { RIGHT_EYE };
                normal = scale(p, 1.0);
            }
        }
        // Nose: a ridge from the bridge to the tip, with nostril wings and a round tip.
        let [bridge, tip, wl, wr] = self.nose;
        let in_tri = |p: [f64; 2], a: [f64; 2], b: [f64; 2], c: [f64; 2]| {
            let s =
                |p: [f64; 2], a: [f64; 2], b: [f64; 2]| (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]);
            let (d1, d2, d3) = (s(p, a, b), s(p, b, c), s(p, c, a));
            !((d1 < 0.0 || d2 < 0.0 || d3 < 0.0) && (d1 > 0.0 || d2 > 0.0 || d3 > 0.0))
        };
        let tip_r = f.nose_width * 0.75;
        let dtip = ((h[0] - tip[0]).powi(2) + (h[1] - tip[1]).powi(2)).sqrt();
        if self.mouth.visible && (in_tri(h, bridge, wl, wr) || dtip <= tip_r) {
            // Position along the ridge and across it, for depth and shading.
            let axis = [tip[0] - bridge[0], tip[1] - bridge[1]];
            let len2 = (axis[0] * axis[0] + axis[1] * axis[1]).max(1e-12);
            let along = (((h[0] - bridge[0]) * axis[0] + (h[1] - bridge[1]) * axis[1]) / len2).clamp(0.0, 1.0);
            let half = ((wr[0] - wl[0]).powi(2) + (wr[1] - wl[1]).powi(2)).sqrt() / 2.0;
            let across = ((h[0] - tip[0]).powi(2) + (h[1] - tip[1]).powi(2)).sqrt().min(half) / half.max(1e-9);
            let side = {
                let t1 = self.mouth.t1;
                ((h[0] - bridge[0]) * t1[0] + (h[1] - bridge[1]) * t1[1]).signum()
            };
            let lift = f.nose_height * along * (1.0 - 0.6 * across);
            color = scale(f.skin, 0.97);
            class = NOSE;
            zd = z + lift;
            let t1 = self.mouth.t1;
            normal = normalize(p);
            normal = std::array::from_fn(|i| normal[i] + 0.9 * side * across.sqrt() * t1[i]);
        }
        // Mouth: closed lips along a smile curve, or open with teeth.
        let (al, be) = self.mouth.coords(h);
        // Distance from the lip line, which sags in the middle when smiling (corners stay
        // at beta = 0, where the keypoints are).
        let bc = be - 0.6 * f.smile * (1.0 - al * al);
        let lips = [0.72, 0.28, 0.30];
        if self.mouth.visible && al.abs() <= 1.0 {
            let w = 1.0 - al * al;
            if f.mouth_open {
                if bc.abs() <= w.sqrt() {
                    class = MOUTH;
                    let inner = bc.abs() <= 0.7 * w.sqrt() && al.abs() < 0.9;
                    color = if !inner {
                        mix(f.skin, lips, 0.7)
                    } else if bc < -0.25 * w.sqrt() {
                        [0.92, 0.92, 0.88]
                    } else {
                        [0.25, 0.05, 0.06]
                    };
                }
            } else if bc.abs() <= 0.6 * w.sqrt() + 0.1 {
                class = MOUTH;
                color = mix(f.skin, lips, 0.75);
            }
        }
        Sample {
            color: self.shade(color, normal),
            class,
            depth: depth_at(zd),
        }
    }
}

/// One rendered face with its labels.
#[derive(Debug, Clone)]
pub struct ToyFace {
    /// Height and width.
    pub resolution: usize,
    /// Row-major RGB, 8 bits per channel.
    pub rgb: Vec<u8>,
    /// Row-major class ids (see [`CLASSES`]).
    pub mask: Vec<u8>,
    /// Row-major depth in [0, 1] (distance over [`FAR`]; background 1).
    pub depth: Vec<f32>,
    /// Pixel coordinates `(x, y)` of [`KEYPOINTS`] (pixel centres at integers).
    pub keypoints: [[f32; 2]; 5],
    /// Whether each keypoint is visible (not turned away).
    pub visible: [bool; 5],
    /// The face it was drawn from.
    pub face: Face,
}

impl ToyFace {
    /// The face's labels: mask, the five keypoints, depth.
    pub fn labels(&self) -> labelgan_dataset::ImageLabels {
        labelgan_dataset::ImageLabels {
            mask: Some(self.mask.iter().map(|&c| u32::from(c)).collect()),
            keypoints: Some(self.keypoints.to_vec()),
            depth: Some(self.depth.clone()),
        }
    }
}

/// Subsamples per pixel side: anti-aliasing at every resolution.
fn supersampling(resolution: usize) -> usize {
    match resolution {
        0..=64 => 4,
        65..=128 => 3,
        _ => 2,
    }
}

/// Renders `face` at `resolution` pixels: colour is the mean over `s x s` stratified
/// subsamples, depth the mean, the class the majority (ties to the later class, so thin
/// features are not lost to skin).
pub fn render(face: &Face, resolution: usize) -> ToyFace {
    render_with(face, resolution, supersampling(resolution))
}

/// [`render`] with `s x s` subsamples per pixel (1: point sampling, aliased).
pub fn render_with(face: &Face, resolution: usize, s: usize) -> ToyFace {
    let scene = Scene::new(face);
    let r = resolution;
    let s = s.max(1);
    let (mut rgb, mut mask, mut depth) = (
        Vec::with_capacity(r * r * 3),
        Vec::with_capacity(r * r),
        Vec::with_capacity(r * r),
    );
    for py in 0..r {
        for px in 0..r {
            let mut c = [0.0; 3];
            let mut d = 0.0;
            let mut counts = [0u16; CLASSES.len()];
            for sy in 0..s {
                for sx in 0..s {
                    let x = ((px as f64 + (sx as f64 + 0.5) / s as f64) / r as f64) * 2.0 - 1.0;
                    let y = ((py as f64 + (sy as f64 + 0.5) / s as f64) / r as f64) * 2.0 - 1.0;
                    let smp = scene.sample(x, y);
                    c.iter_mut().zip(smp.color).for_each(|(c, v)| *c += v);
                    d += smp.depth;
                    counts[smp.class as usize] += 1;
                }
            }
            let n = (s * s) as f64;
            rgb.extend(c.map(|v| ((v / n).clamp(0.0, 1.0) * 255.0).round() as u8));
            depth.push((d / n) as f32);
            let mut best = 0;
            for (k, &cnt) in counts.iter().enumerate() {
                if cnt >= counts[best] {
                    best = k;
                }
            }
            mask.push(best as u8);
        }
    }
    let kp = scene.keypoints();
    let to_px = |v: f64| ((v + 1.0) / 2.0 * r as f64 - 0.5) as f32;
    ToyFace {
        resolution: r,
        rgb,
        mask,
        depth,
        keypoints: kp.map(|(p, _)| [to_px(p[0]), to_px(p[1])]),
        visible: kp.map(|(_, v)| v),
        face: face.clone(),
    }
}
