//! `labelgan lpips`: perceptual distances between images, folders or tensor pairs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use clap::Args;
use image::{DynamicImage, RgbImage};
use labelgan_core::image_io::{load_image, rgb_to_chw, save_png};
use labelgan_core::io::{TensorFile, save_safetensors};
use labelgan_core::{Error, Result, ensure_finite};
use labelgan_lpips::Lpips;

use crate::device::DeviceArg;
use labelgan_core::io::check_output;

/// LPIPS distance: two PNGs, two folders (pairs matched by file name), or tensor pairs.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("inputs").required(true).args(["images", "dirs", "pairs"])))]
pub struct LpipsArgs {
    /// LPIPS weights (`tools/convert_lpips.py`, or a rotation-trained backbone).
    #[arg(long, value_name = "W.safetensors")]
    weights: PathBuf,
    /// Two images to compare.
    #[arg(num_args = 2, value_names = ["A.png", "B.png"])]
    images: Vec<PathBuf>,
    /// Two folders: every file name present in both is compared.
    #[arg(long, num_args = 2, value_names = ["DIR_A", "DIR_B"])]
    dirs: Option<Vec<PathBuf>>,
    /// A safetensors file with `x0`, `x1` [N, 3, H, W] in [-1, 1].
    #[arg(long, value_name = "IN.safetensors", requires = "out")]
    pairs: Option<PathBuf>,
    /// Where `--pairs` results go: `distance` `[N]` (and `spatial` `[N, 1, H, W]`).
    #[arg(long, value_name = "OUT.safetensors")]
    out: Option<PathBuf>,
    /// Also the spatial map: a heat-map PNG for two images (default lpips_spatial.png), a
    /// folder of them for `--dirs` (default lpips_spatial/), `spatial` in OUT for `--pairs`.
    #[arg(long, num_args = 0..=1, value_name = "PNG")]
    spatial: Option<Option<PathBuf>>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
}

/// An image file as `[1, 3, H, W]` in [-1, 1].
fn image_tensor(path: &Path, device: &Device) -> Result<Tensor> {
    let img = load_image(path)?.to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut data = Vec::with_capacity(3 * h * w);
    rgb_to_chw(img.as_raw(), &mut data);
    Ok(Tensor::from_vec(data, (1, 3, h, w), device)?)
}

fn pair(a: &Path, b: &Path, device: &Device) -> Result<(Tensor, Tensor)> {
    let (x0, x1) = (image_tensor(a, device)?, image_tensor(b, device)?);
    if x0.dims() != x1.dims() {
        return Err(Error::invalid(format!(
            "{} is {}x{} but {} is {}x{}: LPIPS compares images of one size",
            a.display(),
            x0.dims()[3],
            x0.dims()[2],
            b.display(),
            x1.dims()[3],
            x1.dims()[2]
        )));
    }
    Ok((x0, x1))
}

/// A heat map of `map [H, W]` (black, red, yellow, white), scaled to its maximum.
fn heat_png(map: &Tensor, path: &Path) -> Result<()> {
    let v = map.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let (h, w) = (v.len(), v.first().map_or(0, |r| r.len()));
    let max = v.iter().flatten().fold(1e-12f32, |a, &b| a.max(b));
    let img = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let t = (v[y as usize][x as usize] / max).clamp(0.0, 1.0) * 3.0;
        let c = |s: f32| (s.clamp(0.0, 1.0) * 255.0) as u8;
        image::Rgb([c(t), c(t - 1.0), c(t - 2.0)])
    });
    save_png(&DynamicImage::ImageRgb8(img), path)
}

pub fn run(a: LpipsArgs) -> Result<()> {
    let mut inputs = vec![("--weights", a.weights.as_path())];
    inputs.extend(a.images.iter().map(|p| ("an input image", p.as_path())));
    inputs.extend(a.dirs.iter().flatten().map(|p| ("--dirs", p.as_path())));
    inputs.extend(a.pairs.as_deref().map(|p| ("--pairs", p)));
    for (flag, out) in [
        ("--out", a.out.as_ref()),
        ("--spatial", a.spatial.as_ref().and_then(|s| s.as_ref())),
    ] {
        if let Some(out) = out {
            check_output((flag, out), &inputs)?;
        }
    }
    let device = a.device.open()?;
    let m = Lpips::load(&a.weights, &device)?;
    if let Some(inp) = &a.pairs {
        let out = a.out.as_ref().expect("clap requires --out with --pairs");
        let file = TensorFile::load(inp, &device)?;
        let x0 = file.get("x0")?.to_dtype(DType::F32)?;
        let x1 = file.get("x1")?.to_dtype(DType::F32)?;
        for (name, t) in [("x0", &x0), ("x1", &x1)] {
            if t.rank() != 4 || t.dims()[1] != 3 {
                return Err(Error::format(
                    inp,
                    format!("`{name}` must be [N, 3, H, W], found {:?}", t.dims()),
                ));
            }
            ensure_finite(t, name)?;
        }
        if x0.dims() != x1.dims() {
            return Err(Error::format(
                inp,
                format!("`x0` {:?} and `x1` {:?} differ in shape", x0.dims(), x1.dims()),
            ));
        }
        let mut t = BTreeMap::from([("distance".to_string(), m.distance(&x0, &x1)?)]);
        if a.spatial.is_some() {
            t.insert("spatial".into(), m.spatial(&x0, &x1)?);
        }
        let meta = BTreeMap::from([("net".to_string(), m.net.name().to_string())]);
        save_safetensors(out, &t, &meta)?;
        for d in t["distance"].to_vec1::<f32>()? {
            println!("{d:.6}");
        }
        return Ok(());
    }
    if let Some(dirs) = &a.dirs {
        let (da, db) = (&dirs[0], &dirs[1]);
        let list = |d: &Path| -> Result<Vec<String>> {
            let mut v: Vec<String> = std::fs::read_dir(d)
                .map_err(|e| Error::io(d, e))?
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    let l = n.to_ascii_lowercase();
                    l.ends_with(".png") || l.ends_with(".jpg") || l.ends_with(".jpeg")
                })
                .collect();
            v.sort();
            Ok(v)
        };
        let names_b = list(db)?;
        let common: Vec<String> = list(da)?.into_iter().filter(|n| names_b.contains(n)).collect();
        if common.is_empty() {
            return Err(Error::invalid(format!(
                "{} and {} have no image file names in common",
                da.display(),
                db.display()
            )));
        }
        let spatial_dir = a
            .spatial
            .as_ref()
            .map(|p| p.clone().unwrap_or_else(|| "lpips_spatial".into()));
        if let Some(d) = &spatial_dir {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
        for n in &common {
            let (x0, x1) = pair(&da.join(n), &db.join(n), &device)?;
            println!("{n}\t{:.6}", m.distance(&x0, &x1)?.to_vec1::<f32>()?[0]);
            if let Some(d) = &spatial_dir {
                heat_png(&m.spatial(&x0, &x1)?.squeeze(0)?.squeeze(0)?, &d.join(n))?;
            }
        }
        return Ok(());
    }
    let (x0, x1) = pair(&a.images[0], &a.images[1], &device)?;
    println!("{:.6}", m.distance(&x0, &x1)?.to_vec1::<f32>()?[0]);
    if let Some(p) = &a.spatial {
        let p = p.clone().unwrap_or_else(|| "lpips_spatial.png".into());
        heat_png(&m.spatial(&x0, &x1)?.squeeze(0)?.squeeze(0)?, &p)?;
    }
    Ok(())
}
