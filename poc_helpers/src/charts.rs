//! Charts: plotters drawings rendered to SVG, shown inline in JupyterLab and saved as files.
//!
//! Every chart function returns a [`Chart`] (an SVG document). In a notebook, a `Chart` as the
//! last expression of a cell renders as an image (`image/svg+xml`); from the CLI or a
//! benchmark, [`Chart::save`] writes the `.svg` file. SVG keeps charts crisp at any zoom, and
//! since the browser draws the text, plotters needs no font files.

use std::path::Path;

use plotters::prelude::*;

/// Default size in pixels: fits a JupyterLab output area without scrolling.
pub const WIDTH: u32 = 860;
/// Default height in pixels.
pub const HEIGHT: u32 = 420;

/// A rendered chart (an SVG document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    /// Title, also used for file names.
    pub title: String,
    /// The SVG text.
    pub svg: String,
}

impl Chart {
    /// Shows the chart in evcxr (JupyterLab) as an SVG image.
    pub fn evcxr_display(&self) {
        println!(
            "EVCXR_BEGIN_CONTENT image/svg+xml\n{}\nEVCXR_END_CONTENT",
            self.svg
        );
    }

    /// Writes the SVG to `path` (creating parent directories).
    pub fn save(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        let path = path.as_ref();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, &self.svg)
    }
}

/// Draws onto a fresh SVG canvas and wraps the result; `draw` gets the root area.
pub fn render(
    title: &str,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<Chart, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(Chart {
        title: title.to_string(),
        svg,
    })
}

/// A line per series over a shared x axis: `series` is `(name, points)`; `hlines` are labelled
/// horizontal reference lines (e.g. the spec's 200 MB limit).
pub fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    hlines: &[(String, f64)],
) -> Result<Chart, String> {
    let xs = series.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x));
    let ys = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .chain(hlines.iter().map(|(_, y)| *y));
    let (x0, x1) = bounds(xs);
    let (_, y1) = bounds(ys);
    render(title, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, 0.0..(y1 * 1.1).max(1e-9))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .draw()
            .map_err(|e| e.to_string())?;
        for (k, (name, points)) in series.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        for (name, y) in hlines {
            chart
                .draw_series(LineSeries::new(
                    vec![(x0, *y), (x1, *y)],
                    RED.stroke_width(1),
                ))
                .map_err(|e| e.to_string())?
                .label(name.clone())
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())
    })
}

/// `(min, max)` of the values, widened so a constant series still gets an axis.
pub fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_chart_is_an_svg_with_title_axes_and_reference_line() {
        let c = lines(
            "RSS over time",
            "time (s)",
            "RSS (MB)",
            &[("node-a".into(), vec![(0.0, 90.0), (1.0, 95.0)])],
            &[("spec limit 200 MB".into(), 200.0)],
        )
        .unwrap();
        assert!(c.svg.starts_with("<svg"));
        for text in [
            "RSS over time",
            "time (s)",
            "RSS (MB)",
            "node-a",
            "spec limit 200 MB",
        ] {
            assert!(c.svg.contains(text), "missing {text}");
        }
    }
}
