//! The random parameters of one toy face, drawn from a seeded stream.

use labelgan_core::SplitMix64;
use serde::Serialize;

/// Hair styles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HairStyle {
    /// A cap above a high hairline and a thin volume around the crown.
    Short,
    /// A cap, hair over the sides, and a mane behind the head down to the shoulders.
    Long,
    /// Short hair with a fringe reaching down towards the brows.
    Bangs,
    /// No hair (brows only).
    Bald,
}

/// Background patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// A linear gradient.
    Gradient,
    /// Sinusoidal stripes.
    Stripes,
    /// A soft checkerboard.
    Checker,
    /// Blobs: a sum of three plane waves.
    Blobs,
}

/// A textured background: two colours mixed by a pattern.
#[derive(Debug, Clone, Serialize)]
pub struct Background {
    /// The pattern.
    pub pattern: Pattern,
    /// Its two colours (RGB in [0, 1]).
    pub colors: [[f64; 3]; 2],
    /// Spatial frequency (radians per image half-width).
    pub frequency: f64,
    /// Direction of the pattern (radians).
    pub angle: f64,
    /// Phase of the pattern.
    pub phase: f64,
}

/// Every parameter of one face. Angles are radians; positions are in image coordinates
/// `[-1, 1]` with y pointing down. Feature positions are longitude/latitude on the head
/// sphere in the face's own frame (latitude positive downwards), so yaw and pitch move
/// and foreshorten them as on a real head.
#[derive(Debug, Clone, Serialize)]
pub struct Face {
    /// Head centre in image units.
    pub center: [f64; 2],
    /// Half-height of the head ellipse.
    pub half_height: f64,
    /// Half-width over half-height.
    pub aspect: f64,
    /// In-plane rotation.
    pub roll: f64,
    /// Turn about the vertical axis (positive: towards image right).
    pub yaw: f64,
    /// Nod (positive: looking up).
    pub pitch: f64,
    /// Skin colour.
    pub skin: [f64; 3],
    /// Hair colour.
    pub hair: [f64; 3],
    /// Iris colour.
    pub iris: [f64; 3],
    /// Hair style.
    pub hair_style: HairStyle,
    /// Latitude of the hairline at the centre of the forehead.
    pub hairline: f64,
    /// Eye centres at longitude ±eye_spacing, latitude eye_height.
    pub eye_spacing: f64,
    /// Eye height on the head.
    pub eye_height: f64,
    /// Eye half-sizes (longitude, latitude).
    pub eye_size: [f64; 2],
    /// Horizontal offset of the irises, in eye half-widths.
    pub gaze: f64,
    /// Brow centre above the eye centre (latitude).
    pub brow_gap: f64,
    /// Brow thickness.
    pub brow_thickness: f64,
    /// Brow arch.
    pub brow_arch: f64,
    /// Nose tip below the eyes (latitude), half-width at the nostrils, protrusion.
    pub nose_length: f64,
    /// Nose width.
    pub nose_width: f64,
    /// Nose height.
    pub nose_height: f64,
    /// Mouth centre below the eyes (latitude), half-width, half-height.
    pub mouth_drop: f64,
    /// Mouth width.
    pub mouth_width: f64,
    /// Mouth height.
    pub mouth_height: f64,
    /// Whether the mouth is open.
    pub mouth_open: bool,
    /// Positive: corners up.
    pub smile: f64,
    /// Unit light direction (x right, y down, z towards the camera).
    pub light: [f64; 3],
    /// Ambient light share.
    pub ambient: f64,
    /// Distance of the head centre from the camera (depth units; the far plane is 2).
    pub distance: f64,
    /// The background behind the head.
    pub background: Background,
}

fn range(rng: &mut SplitMix64, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.uniform()
}

fn jitter(rng: &mut SplitMix64, c: [f64; 3], amount: f64) -> [f64; 3] {
    c.map(|v| (v + range(rng, -amount, amount)).clamp(0.0, 1.0))
}

fn pick<T: Copy>(rng: &mut SplitMix64, items: &[T]) -> T {
    items[rng.below(items.len() as u64) as usize]
}

impl Face {
    /// Draws a face from `rng` (the same stream gives the same face).
    pub fn random(rng: &mut SplitMix64) -> Self {
        let t = rng.uniform();
        let light_skin = [0.98, 0.84, 0.72];
        let dark_skin = [0.40, 0.26, 0.17];
        let skin = std::array::from_fn(|i| light_skin[i] + (dark_skin[i] - light_skin[i]) * t);
        let skin = jitter(rng, skin, 0.03);
        let hair = pick(
            rng,
            &[
                [0.08, 0.06, 0.05],
                [0.33, 0.19, 0.09],
                [0.85, 0.70, 0.40],
                [0.62, 0.24, 0.09],
                [0.68, 0.68, 0.68],
            ],
        );
        let hair = jitter(rng, hair, 0.05);
        let iris = pick(
            rng,
            &[
                [0.20, 0.40, 0.80],
                [0.25, 0.55, 0.30],
                [0.38, 0.23, 0.10],
                [0.50, 0.55, 0.60],
            ],
        );
        let iris = jitter(rng, iris, 0.05);
        let u = rng.uniform();
        let hair_style = if u < 0.35 {
            HairStyle::Short
        } else if u < 0.65 {
            HairStyle::Long
        } else if u < 0.9 {
            HairStyle::Bangs
        } else {
            HairStyle::Bald
        };
        let eye_height = range(rng, -0.1, 0.02);
        let eye_size = [range(rng, 0.17, 0.22), range(rng, 0.09, 0.13)];
        let brow_gap = eye_size[1] + range(rng, 0.09, 0.14);
        let brow_thickness = range(rng, 0.035, 0.06);
        let brow_top = eye_height - brow_gap - brow_thickness;
        let hairline = match hair_style {
            HairStyle::Bangs => brow_top - range(rng, 0.05, 0.1),
            _ => range(rng, -0.72, -0.6),
        };
        let (az, el) = (range(rng, 0.0, std::f64::consts::TAU), range(rng, 0.5, 1.3));
        let light = [el.cos() * az.cos(), el.cos() * az.sin(), el.sin()];
        let pattern = pick(
            rng,
            &[Pattern::Gradient, Pattern::Stripes, Pattern::Checker, Pattern::Blobs],
        );
        let background = Background {
            pattern,
            colors: [
                std::array::from_fn(|_| range(rng, 0.08, 0.92)),
                std::array::from_fn(|_| range(rng, 0.08, 0.92)),
            ],
            frequency: range(rng, 3.0, 10.0),
            angle: range(rng, 0.0, std::f64::consts::PI),
            phase: range(rng, 0.0, std::f64::consts::TAU),
        };
        Self {
            center: [range(rng, -0.12, 0.12), range(rng, -0.12, 0.08)],
            half_height: range(rng, 0.52, 0.7),
            aspect: range(rng, 0.74, 0.86),
            roll: range(rng, -0.3, 0.3),
            yaw: range(rng, -0.55, 0.55),
            pitch: range(rng, -0.15, 0.15),
            skin,
            hair,
            iris,
            hair_style,
            hairline,
            eye_spacing: range(rng, 0.36, 0.46),
            eye_height,
            eye_size,
            gaze: range(rng, -0.25, 0.25),
            brow_gap,
            brow_thickness,
            brow_arch: range(rng, 0.2, 0.8),
            nose_length: range(rng, 0.26, 0.34),
            nose_width: range(rng, 0.09, 0.13),
            nose_height: range(rng, 0.12, 0.22),
            mouth_drop: range(rng, 0.5, 0.6),
            mouth_width: range(rng, 0.26, 0.36),
            mouth_height: range(rng, 0.07, 0.11),
            mouth_open: rng.uniform() < 0.4,
            smile: range(rng, -0.3, 0.8),
            light,
            ambient: range(rng, 0.4, 0.6),
            distance: range(rng, 1.1, 1.35),
            background,
        }
    }
}
