//! Rate-distortion plots drawn with plotters: the same chart as SVG and as PNG.
//!
//! Text needs a font file: plotters' ab_glyph backend is pure Rust and links no system
//! font library, but it must be given the font's bytes. DejaVu Sans from Debian's
//! fonts-dejavu-core (installed by scripts/install-codecs) is read at run time; without
//! it the charts are drawn without any text, and the caller says so.

use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// Where Debian (fonts-dejavu-core) and other distributions put DejaVu Sans.
const FONT_FILES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
];

/// Registers the font once; whether text can be drawn.
pub fn font_available() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| {
        FONT_FILES.iter().any(|path| {
            let Ok(bytes) = std::fs::read(path) else {
                return false;
            };
            // plotters keeps fonts for the life of the program; this is done once.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        })
    })
}

/// One curve of a chart.
pub struct Curve {
    pub name: String,
    /// (rate, quality), drawn in this order after sorting by rate.
    pub points: Vec<(f64, f64)>,
    /// Published figures (thin dashed line, no markers) rather than our measurements.
    pub published: bool,
}

pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// The right end of the rate axis (points beyond it are left out).
    pub x_max: f64,
    pub curves: &'a [Curve],
}

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 700;

/// Colours told apart in print and by most colour-blind readers (Okabe-Ito, then
/// greys and darker tones for the many published curves).
const COLOURS: &[(u8, u8, u8)] = &[
    (0, 0, 0),
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (213, 94, 0),
    (0, 114, 178),
    (204, 121, 167),
    (240, 228, 66),
    (120, 120, 120),
    (150, 60, 60),
    (60, 100, 60),
    (90, 60, 140),
    (170, 170, 40),
    (40, 150, 150),
];

/// The chart as SVG text and as PNG bytes.
pub fn render(chart: &Chart, text: bool) -> Result<(String, Vec<u8>)> {
    let mut svg = String::new();
    draw(
        SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)),
        chart,
        text,
    )?;
    let mut rgb = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    draw(
        BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)),
        chart,
        text,
    )?;
    let img = image::RgbImage::from_raw(WIDTH, HEIGHT, rgb)
        .ok_or_else(|| anyhow!("the plot buffer has the wrong size"))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    Ok((svg, png))
}

fn draw<DB: DrawingBackend>(backend: DB, chart: &Chart, text: bool) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("cannot draw the plot: {e}");
    let root = backend.into_drawing_area();
    root.fill(&WHITE).map_err(err)?;

    let visible: Vec<(f64, f64)> = chart
        .curves
        .iter()
        .flat_map(|c| c.points.iter().copied())
        .filter(|&(x, y)| x.is_finite() && y.is_finite() && x >= 0.0 && x <= chart.x_max)
        .collect();
    let (mut y_lo, mut y_hi) = visible
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, y)| {
            (lo.min(y), hi.max(y))
        });
    if !(y_lo.is_finite() && y_hi.is_finite()) {
        (y_lo, y_hi) = (0.0, 1.0);
    }
    let margin = ((y_hi - y_lo) * 0.05).max(0.5);
    let x_max = if chart.x_max > 0.0 && chart.x_max.is_finite() {
        chart.x_max
    } else {
        1.0
    };

    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if text {
        builder
            .caption(chart.title, ("sans-serif", 24))
            .x_label_area_size(50)
            .y_label_area_size(60);
    }
    let mut ctx = builder
        .build_cartesian_2d(0f64..x_max, (y_lo - margin)..(y_hi + margin))
        .map_err(err)?;
    let mut mesh = ctx.configure_mesh();
    mesh.light_line_style(RGBColor(235, 235, 235));
    if text {
        mesh.x_desc(chart.x_label)
            .y_desc(chart.y_label)
            .label_style(("sans-serif", 16));
    } else {
        mesh.disable_x_axis().disable_y_axis();
    }
    mesh.draw().map_err(err)?;

    for (i, curve) in chart.curves.iter().enumerate() {
        let (r, g, b) = COLOURS[i % COLOURS.len()];
        let colour = RGBColor(r, g, b);
        let mut pts: Vec<(f64, f64)> = curve
            .points
            .iter()
            .copied()
            .filter(|&(x, y)| x.is_finite() && y.is_finite() && x >= 0.0 && x <= x_max)
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if pts.is_empty() {
            continue;
        }
        let series = if curve.published {
            let style = colour.stroke_width(1);
            ctx.draw_series(DashedLineSeries::new(pts, 6, 4, style))
                .map_err(err)?
        } else {
            let style = colour.stroke_width(2);
            ctx.draw_series(pts.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                .map_err(err)?;
            ctx.draw_series(LineSeries::new(pts, style)).map_err(err)?
        };
        if text {
            let width = if curve.published { 1 } else { 2 };
            let label = if curve.published {
                format!("{} (published)", curve.name)
            } else {
                curve.name.clone()
            };
            series.label(label).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(width))
            });
        }
    }
    if text {
        ctx.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart_curves() -> Vec<Curve> {
        vec![
            Curve {
                name: "ours".into(),
                points: vec![(0.2, 25.0), (0.5, 29.0), (1.0, 33.0), (3.0, 40.0)],
                published: false,
            },
            Curve {
                name: "theirs".into(),
                points: vec![(0.3, 27.0), (0.9, 31.0), (f64::NAN, 1.0)],
                published: true,
            },
        ]
    }

    #[test]
    fn renders_with_and_without_text() {
        let curves = chart_curves();
        let chart = Chart {
            title: "t",
            x_label: "bpp",
            y_label: "PSNR",
            x_max: 2.0,
            curves: &curves,
        };
        for text in [false, font_available()] {
            let (svg, png) = render(&chart, text).unwrap();
            assert!(svg.starts_with("<svg"));
            assert!(png.starts_with(b"\x89PNG"));
            assert_eq!(svg.contains("theirs (published)"), text);
        }
        // Nothing to draw is still a chart.
        let empty = Chart {
            curves: &[],
            ..chart
        };
        assert!(render(&empty, false).is_ok());
    }
}
