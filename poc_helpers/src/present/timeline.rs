//! A timeline with fault windows: throughput (or any series) over time, with every fault's
//! window shaded behind the lines, the way Jepsen draws its nemesis activity, and optionally
//! operations drawn as intervals (start → end). The bank checker's chart uses it; inputs are
//! plain series, `(label, start, end)` windows and `(start, end)` intervals.

use plotters::prelude::*;

use crate::present::charts::{Chart, bounds, draw_line, render};
use crate::vocab::error::LabError;

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
) -> Result<Chart, LabError> {
    timeline_with_intervals(title, x_label, y_label, series, windows, ("", &[]))
}

/// [`timeline`] plus `intervals.1`, each `(start, end)` drawn as a short horizontal segment in a
/// band near the top (staggered so overlapping ones stay apart), with one legend entry
/// `intervals.0`. Jepsen draws operations of unknown outcome this way: they were in flight over
/// the whole segment, and may have taken effect anywhere in it.
pub fn timeline_with_intervals(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    windows: &[(String, f64, f64)],
    intervals: (&str, &[(f64, f64)]),
) -> Result<Chart, LabError> {
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
            draw_line(&mut chart, k, name, points)?;
        }
        let (label, spans) = intervals;
        if !spans.is_empty() {
            let color = RGBColor(200, 120, 0);
            chart
                .draw_series(spans.iter().enumerate().map(|(k, (a, b))| {
                    // Ten rows between 64% and 82% of the height, under the window labels.
                    let y = y_top * (0.64 + 0.02 * (k % 10) as f64);
                    PathElement::new(vec![(*a, y), (b.max(a + 0.02), y)], color.stroke_width(3))
                }))
                .map_err(|e| e.to_string())?
                .label(label.to_string())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(3))
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
mod tests {
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

    #[test]
    fn intervals_get_their_own_legend_entry() {
        let c = timeline_with_intervals(
            "Bank",
            "seconds",
            "ops/s",
            &[("acknowledged".into(), vec![(0.0, 40.0), (1.0, 42.0)])],
            &[],
            ("unknown: sent, no answer", &[(0.2, 0.7), (0.3, 0.9)]),
        )
        .unwrap();
        assert!(c.svg.contains("unknown: sent, no answer"));
    }
}
