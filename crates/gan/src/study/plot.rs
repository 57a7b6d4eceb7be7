//! The study's curves as a PNG: one line per config, drawn with plotters and an
//! embedded font (so it renders the same on a machine without fonts).

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use labelgan_core::{Error, Result};

static FONT: Once = Once::new();

/// Registers the embedded DejaVu Sans as plotters' `sans-serif` (once per process).
fn register_font() {
    FONT.call_once(|| {
        // Only fails on a font it cannot parse; the embedded one parses.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Plots `curves` (a name and its (x, y) points each; a single point is a dot) into
/// `path`, the x axis from 0.
pub fn plot_curves(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    curves: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    register_font();
    let finite = || {
        curves
            .iter()
            .flat_map(|(_, p)| p.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let (x_max, y_min, y_max) = finite().fold((0f64, f64::INFINITY, f64::NEG_INFINITY), |(a, b, c), &(x, y)| {
        (a.max(x), b.min(y), c.max(y))
    });
    if !y_min.is_finite() {
        return Ok(());
    }
    let pad = ((y_max - y_min) * 0.05).max(1e-6);
    let err = |e: &dyn std::fmt::Display| Error::invalid(format!("plotting {}: {e}", path.display()));
    let tmp = path.with_extension("png.tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (960, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..x_max.max(1e-3) * 1.02, (y_min - pad)..(y_max + pad))
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, (name, points)) in curves.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let style = ShapeStyle::from(&color).stroke_width(2);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), style))
                .map_err(|e| err(&e))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
