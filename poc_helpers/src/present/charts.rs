//! Charts: plotters drawings rendered to SVG, shown inline in JupyterLab and saved as files.
//!
//! Every chart function returns a [`Chart`] (an SVG document). In a notebook, a `Chart` as the
//! last expression of a cell renders as an image (`image/svg+xml`); from the CLI or a
//! benchmark, [`Chart::save`] writes the `.svg` file. SVG keeps charts crisp at any zoom, and
//! since the browser draws the text, plotters needs no font files.
//!
//! The load-test charts take plain slices and numbers (their callers, such as the workload
//! report and `lab bench`, turn their own records into series), so a notebook and `lab bench`
//! draw exactly the same pictures, and this module imports nothing but the vocabulary:
//!
//! - [`latency_histogram`]: how latencies are distributed, log-scaled so the tail is visible;
//! - [`percentiles_vs_concurrency`]: p50/p95/p99 as clients are added (log–log), with the
//!   reference lines the caller names (the spec's 100 ms line, PR-002, and the PR-003 bound);
//! - [`throughput_vs_concurrency`]: operations per second as clients are added;
//! - [`rss_over_time`]: memory of every process during a run, with the spec's 200 MB line
//!   (PR-004).
//!
//! Every reference line is passed in by the caller with its legend label, so a chart never
//! draws a line its reader was not told about: the notebook that shows the chart explains each
//! label it passes.

use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use serde::{Deserialize, Serialize};

use crate::vocab::error::LabError;

/// Spec PR-004: memory per instance under 200 MB.
pub const SPEC_RSS_MB: f64 = 200.0;
/// Spec PR-002: a query across instances under 100 ms.
pub const SPEC_LATENCY_MS: f64 = 100.0;
/// The legend label of the PR-002 line.
pub const SPEC_LATENCY_LABEL: &str = "spec PR-002: 100 ms";
/// The legend label of the PR-004 line.
pub const SPEC_RSS_LABEL: &str = "spec PR-004: 200 MB";

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

    /// Records the legend labels of the chart's reference lines inside the SVG, as a
    /// `<metadata data-lab="reference-lines">` element (browsers ignore it), one label per line.
    /// The docs check reads it from the executed notebooks: every line drawn must be named in
    /// the notebook's text.
    pub(crate) fn with_reference_lines(mut self, lines: &[(String, f64)]) -> Chart {
        if lines.is_empty() {
            return self;
        }
        let labels: Vec<String> = lines
            .iter()
            .map(|(l, _)| super::display::escape(l))
            .collect();
        if let Some(end) = self
            .svg
            .find("<svg")
            .and_then(|i| self.svg[i..].find('>').map(|j| i + j + 1))
        {
            self.svg.insert_str(
                end,
                &format!(
                    "\n<metadata data-lab=\"reference-lines\">{}</metadata>",
                    labels.join("\n")
                ),
            );
        }
        self
    }

    /// The legend labels of the chart's reference lines (see `with_reference_lines`).
    pub fn reference_lines(&self) -> Vec<String> {
        let open = "<metadata data-lab=\"reference-lines\">";
        let Some(start) = self.svg.find(open).map(|i| i + open.len()) else {
            return Vec::new();
        };
        let end = self.svg[start..]
            .find("</metadata>")
            .map_or(start, |j| start + j);
        self.svg[start..end]
            .lines()
            .map(|l| {
                l.replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&")
            })
            .collect()
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

/// One bar of a latency histogram: successful `op`s that took between `lo_ms` and `hi_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyBucket {
    /// Operation (`read`, …).
    pub op: String,
    /// Lower edge, ms.
    pub lo_ms: f64,
    /// Upper edge, ms.
    pub hi_ms: f64,
    /// Operations in the bucket.
    pub count: u64,
}

/// Draws onto a fresh SVG canvas and wraps the result; `draw` gets the root area. Inside
/// `draw`, plotters' many error types are flattened to their message (`map_err(|e|
/// e.to_string())`); this is the one place they become a [`LabError::Chart`] naming the chart.
pub fn render(
    title: &str,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<Chart, LabError> {
    render_sized(title, (WIDTH, HEIGHT), draw)
}

/// [`render`] on a canvas of `size` pixels (charts whose height grows with their rows).
pub fn render_sized(
    title: &str,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<Chart, LabError> {
    let mut svg = String::new();
    let drawn = (|| {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root)?;
        root.present().map_err(|e| e.to_string())
    })();
    drawn.map_err(|message| LabError::Chart {
        chart: title.to_string(),
        message,
    })?;
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
) -> Result<Chart, LabError> {
    let xs = series.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x));
    let ys = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .chain(hlines.iter().map(|(_, y)| *y));
    let (x0, x1) = bounds(xs);
    let (_, y1) = bounds(ys);
    let axes = (x0..x1, 0.0..(y1 * 1.1).max(1e-9));
    xy_chart(
        title,
        x_label,
        y_label,
        axes,
        (x0, x1),
        series,
        hlines,
        false,
    )
}

/// Draws series `k` as a line in palette colour `k`, with its legend entry; returns the colour
/// (for markers drawn on top).
pub(crate) fn draw_line<X, Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, Y>>,
    k: usize,
    name: &str,
    points: &[(f64, f64)],
) -> Result<RGBAColor, String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let color = Palette99::pick(k).to_rgba();
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    Ok(color)
}

/// Reference lines: the spec's limit in red, the lab's goals in orange, then grey.
fn reference_color(k: usize) -> RGBColor {
    match k {
        0 => RED,
        1 => RGBColor(230, 140, 0),
        _ => RGBColor(120, 120, 120),
    }
}

/// Latency distribution of successful operations: one translucent bar series per operation on
/// a logarithmic ms axis (so a 0.5 ms median and a 50 ms tail fit one picture).
pub fn latency_histogram(title: &str, buckets: &[LatencyBucket]) -> Result<Chart, LabError> {
    let mut ops: Vec<&str> = Vec::new();
    for b in buckets {
        if !ops.contains(&b.op.as_str()) {
            ops.push(&b.op);
        }
    }
    let (x0, x1) = log_bounds(buckets.iter().flat_map(|b| [b.lo_ms, b.hi_ms]));
    let y1 = buckets.iter().map(|b| b.count).max().unwrap_or(1) as f64 * 1.1;
    render(title, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((x0..x1).log_scale(), 0.0..y1.max(1.0))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("latency (ms, log scale)")
            .y_desc("operations")
            // Few, short tick labels: plotters' default puts one at every integer step of a
            // log axis, which runs together ("80.090.0100.0") when the range is narrow.
            .x_labels(6)
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(|e| e.to_string())?;
        for (k, op) in ops.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            chart
                .draw_series(buckets.iter().filter(|b| b.op == *op).map(|b| {
                    Rectangle::new(
                        [(b.lo_ms, 0.0), (b.hi_ms, b.count as f64)],
                        color.mix(0.45).filled(),
                    )
                }))
                .map_err(|e| e.to_string())?
                .label(op.to_string())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())
    })
}

/// Latency percentiles against the number of concurrent clients, both axes logarithmic, with
/// dashed reference lines `refs` (`(legend label, ms)`, e.g. the spec's 100 ms line).
/// `series` is `(name, [(clients, ms)])`.
pub fn percentiles_vs_concurrency(
    title: &str,
    series: &[(String, Vec<(f64, f64)>)],
    refs: &[(String, f64)],
) -> Result<Chart, LabError> {
    let (x0, x1) = log_bounds(series.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x)));
    let (y0, y1) = log_bounds(
        series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
            .chain(refs.iter().map(|(_, ms)| *ms)),
    );
    xy_chart(
        title,
        "concurrent clients (log scale)",
        "latency (ms, log scale)",
        ((x0..x1).log_scale(), (y0..y1 * 1.5).log_scale()),
        (x0, x1),
        series,
        refs,
        true,
    )
}

/// Operations per second against the number of concurrent clients (log x axis), one line per
/// series (e.g. per setup of `lab bench`). `series` is `(name, [(clients, ops/s)])`.
pub fn throughput_vs_concurrency(
    title: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<Chart, LabError> {
    let (x0, x1) = log_bounds(series.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x)));
    let (_, y1) = bounds(series.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y)));
    xy_chart(
        title,
        "concurrent clients (log scale)",
        "throughput (operations/s)",
        ((x0..x1).log_scale(), 0.0..(y1 * 1.1).max(1.0)),
        (x0, x1),
        series,
        &[],
        true,
    )
}

/// Resident memory of every process over time (one line each), with the spec's 200 MB limit
/// (PR-004), the only line a reader of the memory chart is told about.
/// `series` is `(process, [(seconds, MB)])`.
pub fn rss_over_time(title: &str, series: &[(String, Vec<(f64, f64)>)]) -> Result<Chart, LabError> {
    lines(
        title,
        "time since start (s)",
        "RSS (MB)",
        series,
        &[(SPEC_RSS_LABEL.into(), SPEC_RSS_MB)],
    )
}

/// Lines over any pair of axes (linear or log), with dashed reference lines across `x_span`;
/// `markers` also draws each measured point (for sparse series such as concurrency levels).
#[allow(clippy::too_many_arguments)]
fn xy_chart<X, Y>(
    title: &str,
    x_label: &str,
    y_label: &str,
    axes: (X, Y),
    x_span: (f64, f64),
    series: &[(String, Vec<(f64, f64)>)],
    hlines: &[(String, f64)],
    markers: bool,
) -> Result<Chart, LabError>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    render(title, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(axes.0, axes.1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .draw()
            .map_err(|e| e.to_string())?;
        for (k, (name, points)) in series.iter().enumerate() {
            let color = draw_line(&mut chart, k, name, points)?;
            if markers {
                chart
                    .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                    .map_err(|e| e.to_string())?;
            }
        }
        for (k, (name, y)) in hlines.iter().enumerate() {
            let color = reference_color(k);
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(x_span.0, *y), (x_span.1, *y)],
                    6,
                    4,
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())
    })
    .map(|c| c.with_reference_lines(hlines))
}

/// A compact tick label: at most three significant digits, no trailing zeros (`0.25`, `80`).
fn tick(v: f64) -> String {
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else if v >= 1.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Bounds for a logarithmic axis: positive, finite, and at least a factor of 4 wide.
fn log_bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.1, 10.0);
    }
    if hi / lo < 4.0 {
        let mid = (lo * hi).sqrt();
        (mid / 2.0, mid * 2.0)
    } else {
        (lo, hi)
    }
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

    fn assert_has(c: &Chart, texts: &[&str]) {
        assert!(c.svg.starts_with("<svg"), "not an SVG");
        for text in texts {
            assert!(c.svg.contains(text), "missing `{text}` in the SVG");
        }
    }

    #[test]
    fn latency_histogram_has_title_axes_and_one_series_per_op() {
        let b = |op: &str, lo: f64, count: u64| LatencyBucket {
            op: op.into(),
            lo_ms: lo,
            hi_ms: lo * 1.26,
            count,
        };
        let c = latency_histogram(
            "Latency of mixed 90/10",
            &[
                b("read", 0.5, 900),
                b("read", 0.63, 300),
                b("write", 5.0, 100),
            ],
        )
        .unwrap();
        assert_has(
            &c,
            &[
                "Latency of mixed 90/10",
                "latency (ms, log scale)",
                "operations",
                "read",
                "write",
            ],
        );
        // Empty input still renders (an empty run must not break a notebook).
        latency_histogram("nothing", &[]).unwrap();
    }

    #[test]
    fn histogram_ticks_stay_few_and_short_on_a_narrow_range() {
        // 70–110 ms: less than a decade, where one label per integer step ran together.
        let buckets: Vec<LatencyBucket> = (0..8)
            .map(|k| LatencyBucket {
                op: "read".into(),
                lo_ms: 70.0 + 5.0 * k as f64,
                hi_ms: 75.0 + 5.0 * k as f64,
                count: 10 + k,
            })
            .collect();
        let c = latency_histogram("Narrow", &buckets).unwrap();
        let ticks: Vec<String> = c
            .svg
            .split("<text")
            .filter_map(|t| t.split('>').nth(1))
            .map(|t| t.split('<').next().unwrap_or("").trim().to_string())
            .filter(|t| t.parse::<f64>().is_ok())
            .collect();
        assert!(!ticks.iter().any(|t| t.ends_with(".0")), "{ticks:?}");
        assert_eq!(tick(80.0), "80");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(1.5), "1.5");
    }

    #[test]
    fn concurrency_charts_have_reference_lines_and_units() {
        let pts = vec![(1.0, 0.8), (10.0, 1.5), (100.0, 9.0), (200.0, 20.0)];
        let c = percentiles_vs_concurrency(
            "Percentiles vs clients",
            &[("p50".into(), pts.clone()), ("p99".into(), pts.clone())],
            &[
                (SPEC_LATENCY_LABEL.into(), SPEC_LATENCY_MS),
                ("PR-003 bound: 5 × 1-client p99 < 4 ms".into(), 4.0),
            ],
        )
        .unwrap();
        assert_has(
            &c,
            &[
                "Percentiles vs clients",
                "concurrent clients (log scale)",
                "latency (ms, log scale)",
                "p50",
                "p99",
                "spec PR-002: 100 ms",
                "PR-003 bound: 5 × 1-client p99 &lt; 4 ms",
            ],
        );
        assert_eq!(
            c.reference_lines(),
            [
                "spec PR-002: 100 ms",
                "PR-003 bound: 5 × 1-client p99 < 4 ms"
            ]
        );
        let c = throughput_vs_concurrency(
            "Throughput vs clients",
            &[
                ("2 nodes · shared".into(), pts.clone()),
                ("1 node · surrealkv".into(), pts),
            ],
        )
        .unwrap();
        assert_has(
            &c,
            &[
                "Throughput vs clients",
                "throughput (operations/s)",
                "2 nodes · shared",
                "1 node · surrealkv",
            ],
        );
    }

    #[test]
    fn rss_chart_has_one_line_per_process_and_only_the_spec_limit() {
        let c = rss_over_time(
            "Memory during the run",
            &[
                ("node-a".into(), vec![(0.0, 80.0), (0.25, 85.0)]),
                ("storage".into(), vec![(0.0, 40.0)]),
            ],
        )
        .unwrap();
        assert_has(
            &c,
            &[
                "Memory during the run",
                "time since start (s)",
                "RSS (MB)",
                "node-a",
                "storage",
                "spec PR-004: 200 MB",
            ],
        );
        assert!(
            !c.svg.contains("goal"),
            "a line nobody explains: {}",
            c.svg.len()
        );
        assert_eq!(c.reference_lines(), ["spec PR-004: 200 MB"]);
    }
}
