//! A node's life, measured: a clean stop (SIGTERM) against a crash (SIGKILL). SurrealDB 3.3.5
//! marks a stopping node ARCHIVED itself on the way out (`Datastore::delete_node`); a crashed
//! node stays ACTIVE until a peer's check finds its heartbeat older than 30 s (a constant in
//! `Datastore::expire_nodes`). Archived nodes are removed on the next cleanup tick
//! (`--node-membership-cleanup-interval`). Meanwhile every node's `/health` and `/ready` are
//! probed, so the chart shows what a load balancer would see.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::present::charts::Chart;
use crate::present::timeline;
use crate::vocab::error::LabError;
use crate::vocab::frames::frame;

/// One probe of one node: the HTTP status of `/health` and `/ready`, `None` for no answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Seconds since the run started.
    pub t_s: f64,
    /// Index of the node (0 = node-a).
    pub node: usize,
    /// `/health`'s status.
    pub health: Option<u16>,
    /// `/ready`'s status.
    pub ready: Option<u16>,
}

/// One stop of one node, watched from another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifeRun {
    /// `SIGTERM` or `SIGKILL`.
    pub signal: String,
    /// The node stopped.
    pub victim: String,
    /// The node whose `INFO FOR ROOT` was polled.
    pub observer: String,
    /// The membership settings of the lab (`refresh 1 s · check 1 s · cleanup 10 s`).
    pub settings: String,
    /// The cleanup interval in seconds (what removal waits for).
    pub cleanup_s: f64,
    /// Seconds from the run's start to the signal.
    pub signalled_at_s: f64,
    /// Seconds from the signal until the observer listed the victim ARCHIVED (None: never seen).
    pub archived_s: Option<f64>,
    /// Seconds from the signal until the victim left the list (None: not within the limit).
    pub removed_s: Option<f64>,
    /// Seconds from the run's start to the victim's restart call.
    pub restarted_at_s: f64,
    /// Node names, by index.
    pub nodes: Vec<String>,
    /// Every probe.
    pub probes: Vec<Probe>,
}

impl LifeRun {
    /// Probes of node `i` where `/ready` answered 200, and all of node `i`'s probes, between
    /// the signal and the restart.
    pub fn ready_while_down(&self, i: usize) -> (usize, usize) {
        let during: Vec<&Probe> = self
            .probes
            .iter()
            .filter(|p| {
                p.node == i && p.t_s > self.signalled_at_s + 0.3 && p.t_s < self.restarted_at_s
            })
            .collect();
        (
            during.iter().filter(|p| p.ready == Some(200)).count(),
            during.len(),
        )
    }

    /// `/health` and `/ready` of every node over time: each line high while it answers 200.
    pub fn chart(&self) -> Result<Chart, LabError> {
        let mut series = Vec::new();
        let n = self.nodes.len();
        for (i, name) in self.nodes.iter().enumerate() {
            for (j, path) in ["/health", "/ready"].iter().enumerate() {
                let base = ((n - 1 - i) * 2 + (1 - j)) as f64 * 1.2;
                let points = self
                    .probes
                    .iter()
                    .filter(|p| p.node == i)
                    .map(|p| {
                        let code = if j == 0 { p.health } else { p.ready };
                        (p.t_s, base + if code == Some(200) { 1.0 } else { 0.0 })
                    })
                    .collect();
                series.push((format!("{name} {path} (high = 200)"), points));
            }
        }
        let mut windows = vec![(
            format!("{} → restart", self.signal),
            self.signalled_at_s,
            self.restarted_at_s,
        )];
        if let Some(a) = self.archived_s {
            let end = self
                .removed_s
                .unwrap_or(self.restarted_at_s - self.signalled_at_s);
            windows.push((
                "ARCHIVED".into(),
                self.signalled_at_s + a,
                self.signalled_at_s + end,
            ));
        }
        timeline::timeline(
            &format!(
                "{} of {}: /health and /ready ({})",
                self.signal, self.victim, self.settings
            ),
            "seconds",
            "each line: up = 200, down = anything else",
            &series,
            &windows,
        )
    }
}

/// Every run of the section, across labs with different settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LifeReport {
    /// The runs, in order.
    pub runs: Vec<LifeRun>,
}

impl LifeReport {
    /// The run for `signal` under `settings`, if any.
    pub fn find(&self, signal: &str, settings: &str) -> Option<&LifeRun> {
        self.runs
            .iter()
            .find(|r| r.signal == signal && r.settings == settings)
    }

    /// One row per run: signal, settings, to_archived_s, to_removed_s, cleanup_s, and how long
    /// the stopped node's `/ready` and the survivor's stayed 200 while it was down.
    pub fn frame(&self) -> Result<DataFrame, LabError> {
        let r = &self.runs;
        let round = |x: Option<f64>| x.map(|v| (v * 10.0).round() / 10.0);
        frame(vec![
            Column::new(
                "signal".into(),
                r.iter().map(|x| x.signal.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "settings".into(),
                r.iter().map(|x| x.settings.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "to_archived_s".into(),
                r.iter().map(|x| round(x.archived_s)).collect::<Vec<_>>(),
            ),
            Column::new(
                "to_removed_s".into(),
                r.iter().map(|x| round(x.removed_s)).collect::<Vec<_>>(),
            ),
            Column::new(
                "cleanup_s".into(),
                r.iter().map(|x| x.cleanup_s).collect::<Vec<_>>(),
            ),
            Column::new(
                "survivor_ready_while_down".into(),
                r.iter()
                    .map(|x| {
                        let s = x.nodes.iter().position(|n| *n == x.observer).unwrap_or(0);
                        let (ok, all) = x.ready_while_down(s);
                        format!("{ok}/{all}")
                    })
                    .collect::<Vec<_>>(),
            ),
        ])
    }

    /// The answer in sentences, from this run.
    pub fn explain(&self) -> String {
        let s = |x: Option<f64>| {
            x.map(|v| format!("{v:.1} s"))
                .unwrap_or_else(|| "not seen".into())
        };
        self.runs
            .iter()
            .map(|r| {
                format!(
                    "{} ({}): ARCHIVED after {}, removed after {}.",
                    r.signal,
                    r.settings,
                    s(r.archived_s),
                    s(r.removed_s)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_while_down_counts_only_the_down_window() {
        let probes = (0..10)
            .map(|k| Probe {
                t_s: k as f64,
                node: 1,
                health: Some(200),
                ready: if k < 5 { Some(200) } else { None },
            })
            .collect();
        let run = LifeRun {
            signal: "SIGKILL".into(),
            victim: "node-b".into(),
            observer: "node-a".into(),
            settings: "x".into(),
            cleanup_s: 10.0,
            signalled_at_s: 3.0,
            archived_s: Some(31.0),
            removed_s: None,
            restarted_at_s: 9.0,
            nodes: vec!["node-a".into(), "node-b".into()],
            probes,
        };
        // Probes at 4 … 8 s: 4 answered 200, 5–8 did not.
        assert_eq!(run.ready_while_down(1), (1, 5));
        assert!(run.chart().unwrap().svg.contains("<svg"));
        let report = LifeReport { runs: vec![run] };
        assert!(
            report
                .explain()
                .contains("ARCHIVED after 31.0 s, removed after not seen")
        );
    }
}
