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

/// A timeline: one line per series over time, with fault windows shaded behind them.
///
/// `windows` are `(label, start, end)` in x units (e.g. seconds): each is drawn as a translucent
/// band from the bottom to the top of the plot with its label at the top, so a dip in a line can
/// be read against the fault that caused it (the way Jepsen draws its nemesis). Overlapping
/// windows get alternating colours and staggered labels.
pub fn timeline(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    windows: &[(String, f64, f64)],
) -> Result<Chart, String> {
    let xs = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .chain(windows.iter().flat_map(|(_, a, b)| [*a, *b]));
    let (x0, x1) = bounds(xs);
    let x0 = x0.min(0.0);
    let (_, y1) = bounds(series.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y)));
    // Headroom above the highest point for the window labels (top rows) and the legend
    // (below them), so neither hides a line.
    let y_top = (y1 * 2.2).max(1.0);
    render(title, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, 0.0..y_top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .draw()
            .map_err(|e| e.to_string())?;
        let shades = [
            RGBColor(230, 80, 60),
            RGBColor(60, 110, 220),
            RGBColor(150, 90, 200),
        ];
        for (k, (label, a, b)) in windows.iter().enumerate() {
            let shade = shades[k % shades.len()];
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(*a, 0.0), (*b, y_top)],
                    shade.mix(0.15).filled(),
                )))
                .map_err(|e| e.to_string())?;
            // Labels stagger down by row so neighbouring windows stay readable.
            let row = (k % 4) as f64;
            chart
                .draw_series(std::iter::once(Text::new(
                    label.clone(),
                    (*a, y_top * (0.98 - 0.045 * row)),
                    ("sans-serif", 12).into_font().color(&shade),
                )))
                .map_err(|e| e.to_string())?;
        }
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
        let (w, h) = chart.plotting_area().dim_in_pixel();
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::Coordinate(
                w as i32 - 200,
                (h as f64 * 0.2) as i32,
            ))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod timeline_tests {
    use super::*;

    #[test]
    fn a_timeline_shades_and_labels_fault_windows() {
        let c = timeline(
            "Bank transfers under faults",
            "seconds",
            "ops/s",
            &[(
                "acknowledged".into(),
                vec![(0.0, 40.0), (0.5, 10.0), (1.0, 42.0)],
            )],
            &[("kill node-b".into(), 0.4, 0.8)],
        )
        .unwrap();
        for text in [
            "Bank transfers under faults",
            "kill node-b",
            "acknowledged",
            "ops/s",
        ] {
            assert!(c.svg.contains(text), "missing {text}");
        }
        assert!(c.svg.contains("<rect"), "a shaded band");
    }
}
