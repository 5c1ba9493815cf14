//! A Gantt-style chart: one horizontal bar per lane on a shared ms axis, coloured by group.
//! It draws latency waterfalls (a statement's storage RPCs under its round trip), but takes
//! only plain bars, so anything with a start and a duration can use it.

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::present::charts::{Chart, WIDTH, render_sized};
use crate::vocab::error::LabError;

/// One bar: `lane` is its row label, `group` picks its colour and legend entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GanttBar {
    /// Row label, top to bottom in the order given.
    pub lane: String,
    /// Start, ms.
    pub start_ms: f64,
    /// Length, ms.
    pub ms: f64,
    /// Colour group (one legend entry each).
    pub group: String,
}

/// Pixels per lane: room for a label in a readable size.
const LANE_PX: u32 = 22;

/// Draws `bars` one per lane, the first at the top, with a legend of the groups.
pub fn gantt(title: &str, bars: &[GanttBar]) -> Result<Chart, LabError> {
    let lanes = bars.len().max(1);
    let height = (120 + LANE_PX * lanes as u32).max(240);
    let x1 = bars
        .iter()
        .map(|b| b.start_ms + b.ms)
        .fold(0.0_f64, f64::max)
        .max(0.01)
        * 1.05;
    let mut groups: Vec<&str> = Vec::new();
    for b in bars {
        if !groups.contains(&b.group.as_str()) {
            groups.push(&b.group);
        }
    }
    let label_px = bars
        .iter()
        .map(|b| b.lane.chars().count() as u32 * 7)
        .max()
        .unwrap_or(60)
        .clamp(60, 420);
    render_sized(title, (WIDTH, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(label_px)
            .build_cartesian_2d(0.0..x1, 0.0..lanes as f64)
            .map_err(|e| e.to_string())?;
        // Lane k is drawn in [lanes-k-1, lanes-k): the first bar on top.
        let lane_of = |y: f64| -> String {
            let k = lanes as i64 - 1 - y.floor() as i64;
            bars.get(k.max(0) as usize)
                .map(|b| b.lane.clone())
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .x_desc("ms after the client sent the statement")
            .y_labels(lanes * 2 + 1)
            .y_label_formatter(&|y| {
                // Label only lane centres.
                if (y.fract() - 0.5).abs() < 1e-6 {
                    lane_of(*y)
                } else {
                    String::new()
                }
            })
            .disable_y_mesh()
            .draw()
            .map_err(|e| e.to_string())?;
        for (g, group) in groups.iter().enumerate() {
            let color = Palette99::pick(g).to_rgba();
            chart
                .draw_series(
                    bars.iter()
                        .enumerate()
                        .filter(|(_, b)| b.group == *group)
                        .map(|(k, b)| {
                            let y0 = (lanes - k - 1) as f64 + 0.15;
                            Rectangle::new(
                                [(b.start_ms, y0), (b.start_ms + b.ms, y0 + 0.7)],
                                color.filled(),
                            )
                        }),
                )
                .map_err(|e| e.to_string())?
                .label(group.to_string())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
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
    fn a_gantt_chart_labels_every_lane_and_every_group() {
        let bar = |lane: &str, start_ms: f64, ms: f64, group: &str| GanttBar {
            lane: lane.into(),
            start_ms,
            ms,
            group: group.into(),
        };
        let c = gantt(
            "Where the time goes",
            &[
                bar("client round trip", 0.0, 2.0, "client"),
                bar("1 KvGet namespace", 0.3, 0.05, "definition"),
                bar("2 KvGet record", 0.9, 0.04, "record"),
            ],
        )
        .unwrap();
        for text in [
            "Where the time goes",
            "client round trip",
            "1 KvGet namespace",
            "2 KvGet record",
            "definition",
            "record",
            "ms after the client sent the statement",
        ] {
            assert!(c.svg.contains(text), "missing {text}");
        }
    }
}
