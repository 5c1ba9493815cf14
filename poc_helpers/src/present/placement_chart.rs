//! The placement chart: stores × regions, a cell for each replica, the leader's cell dark and
//! labelled. The picture PD's map makes when a learner asks "where does my data live?": every
//! region (a key range) has a copy on several stores, and one copy leads.
//!
//! Takes plain data (the caller turns PD's map into [`RegionColumn`]s), like the other charts.

use plotters::prelude::*;

use super::charts::{Chart, WIDTH, render_sized};
use crate::vocab::error::LabError;

/// One region as the chart draws it: a column.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionColumn {
    /// The column's label, e.g. `region 2`.
    pub label: String,
    /// Stores holding a replica.
    pub stores: Vec<u64>,
    /// The store whose replica leads, if one does.
    pub leader: Option<u64>,
}

/// Draws `regions` as columns over `stores` as rows.
pub fn placement_grid(
    title: &str,
    stores: &[u64],
    regions: &[RegionColumn],
) -> Result<Chart, LabError> {
    let (cols, rows) = (regions.len().max(1) as f64, stores.len().max(1) as f64);
    let height = 120 + 60 * stores.len().max(1) as u32;
    render_sized(title, (WIDTH, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..cols, 0.0..rows)
            .map_err(|e| e.to_string())?;
        let col_label = |v: &f64| {
            let i = v.floor() as usize;
            // Labels sit at column centres; the grid lines at the edges stay unlabelled.
            if (v - i as f64 - 0.5).abs() < 1e-6 {
                regions.get(i).map(|r| r.label.clone()).unwrap_or_default()
            } else {
                String::new()
            }
        };
        let row_label = |v: &f64| {
            let i = v.floor() as usize;
            if (v - i as f64 - 0.5).abs() < 1e-6 {
                stores
                    .get(i)
                    .map(|s| format!("store {s}"))
                    .unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(2 * regions.len() + 1)
            .y_labels(2 * stores.len() + 1)
            .x_label_formatter(&col_label)
            .y_label_formatter(&row_label)
            .draw()
            .map_err(|e| e.to_string())?;
        let replica = BLUE.mix(0.25).filled();
        let leader = BLUE.mix(0.85).filled();
        for (c, region) in regions.iter().enumerate() {
            for (r, store) in stores.iter().enumerate() {
                if !region.stores.contains(store) {
                    continue;
                }
                let (x, y) = (c as f64, r as f64);
                let leads = region.leader == Some(*store);
                chart
                    .draw_series([Rectangle::new(
                        [(x + 0.08, y + 0.12), (x + 0.92, y + 0.88)],
                        if leads { leader } else { replica },
                    )])
                    .map_err(|e| e.to_string())?;
                let text = if leads { "leader" } else { "replica" };
                let color = if leads { &WHITE } else { &BLACK };
                chart
                    .draw_series([Text::new(
                        text.to_string(),
                        (x + 0.36, y + 0.45),
                        ("sans-serif", 15).into_font().color(color),
                    )])
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_replica_is_a_cell_and_the_leader_is_labelled() {
        let regions = [
            RegionColumn {
                label: "region 1000".into(),
                stores: vec![1, 2, 3],
                leader: Some(2),
            },
            RegionColumn {
                label: "region 2".into(),
                stores: vec![1, 2, 3],
                leader: None,
            },
        ];
        let chart = placement_grid("where the data lives", &[1, 2, 3], &regions).unwrap();
        // (plotters writes each text on its own line inside its <text> element)
        assert_eq!(chart.svg.matches("leader").count(), 1, "one leader drawn");
        assert_eq!(chart.svg.matches("replica").count(), 5);
        assert!(chart.svg.contains("store 3") && chart.svg.contains("region 1000"));
    }
}
