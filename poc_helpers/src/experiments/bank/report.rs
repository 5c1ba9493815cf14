//! The bank run's report: the history's operations, the faults, and the checker's verdict,
//! with the tables and the chart the notebook shows.

use std::collections::BTreeMap;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::checker::Verdict;
use super::{BankOp, OpKind, Outcome};
use crate::present::charts::Chart;
use crate::present::timeline;
use crate::vocab::error::LabError;
use crate::vocab::faults::FaultRecord;
use crate::vocab::frames::frame;

/// Everything a bank run found. `verdict` is the answer; the rest is the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BankReport {
    /// Accounts × initial balance: what every read must add up to.
    pub expected_total: i64,
    /// When the load started (lab clock, ms).
    pub started_at_ms: f64,
    /// End of the load (before healing and the final read).
    pub ended_at_ms: f64,
    /// Every operation, in start order.
    pub ops: Vec<BankOp>,
    /// Faults injected during the run (and the repairs after it).
    pub faults: Vec<FaultRecord>,
    /// The checker's verdict: valid, unknown or invalid, with every anomaly found.
    pub verdict: Verdict,
    /// Why the run ended early, if it did.
    pub interrupted: Option<String>,
    /// Seconds from the end of the load until the final read succeeded (the healing time).
    pub final_read_wait_s: f64,
}

/// Counts for one node (or `all`), the summary table's rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BankSummary {
    /// `node-a`, …, or `all`.
    pub node: String,
    /// Transfers attempted.
    pub transfers: u64,
    /// Acknowledged.
    pub acknowledged: u64,
    /// Failed for certain.
    pub failed: u64,
    /// Unknown outcome.
    pub unknown: u64,
    /// Reads answered.
    pub reads: u64,
    /// Reads without an answer.
    pub read_errors: u64,
    /// Anomalies found by the checker (the `all` row only).
    pub anomalies: u64,
    /// Lost acknowledged transfers (the `all` row only).
    pub lost_acknowledged: u64,
}

impl BankReport {
    /// Per-node rows and an `all` row.
    pub fn summary_rows(&self) -> Vec<BankSummary> {
        let mut by_node: BTreeMap<String, BankSummary> = BTreeMap::new();
        let blank = |node: &str| BankSummary {
            node: node.to_string(),
            transfers: 0,
            acknowledged: 0,
            failed: 0,
            unknown: 0,
            reads: 0,
            read_errors: 0,
            anomalies: 0,
            lost_acknowledged: 0,
        };
        let mut all = blank("all");
        for op in &self.ops {
            for s in [
                by_node
                    .entry(op.node.clone())
                    .or_insert_with(|| blank(&op.node)),
                &mut all,
            ] {
                match (op.kind, op.outcome) {
                    (OpKind::Transfer, o) => {
                        s.transfers += 1;
                        match o {
                            Outcome::Ok => s.acknowledged += 1,
                            Outcome::Failed => s.failed += 1,
                            Outcome::Unknown => s.unknown += 1,
                        }
                    }
                    (_, Outcome::Ok) => s.reads += 1,
                    _ => s.read_errors += 1,
                }
            }
        }
        all.anomalies = self.verdict.anomalies.len() as u64;
        all.lost_acknowledged = self.verdict.count("LostAcknowledgedWrite") as u64;
        let mut rows: Vec<BankSummary> = by_node.into_values().collect();
        rows.push(all);
        rows
    }

    /// The summary as a table: node, transfers, acknowledged, failed, unknown, reads,
    /// read_errors, anomalies, lost_acknowledged.
    pub fn summary_frame(&self) -> Result<DataFrame, LabError> {
        let rows = self.summary_rows();
        let u = |name: &str, f: &dyn Fn(&BankSummary) -> u64| {
            Column::new(name.into(), rows.iter().map(f).collect::<Vec<_>>())
        };
        frame(vec![
            Column::new(
                "node".into(),
                rows.iter().map(|r| r.node.clone()).collect::<Vec<_>>(),
            ),
            u("transfers", &|r| r.transfers),
            u("acknowledged", &|r| r.acknowledged),
            u("failed", &|r| r.failed),
            u("unknown", &|r| r.unknown),
            u("reads", &|r| r.reads),
            u("read_errors", &|r| r.read_errors),
            u("anomalies", &|r| r.anomalies),
            u("lost_acknowledged", &|r| r.lost_acknowledged),
        ])
    }

    /// Why operations did not succeed: kind, outcome, reason, count — e.g. how many transfers
    /// lost a conflict (normal under contention) versus how many hit a fault.
    pub fn reasons_frame(&self) -> Result<DataFrame, LabError> {
        let mut counts: BTreeMap<(String, String, String), u64> = BTreeMap::new();
        for op in self.ops.iter().filter(|o| o.outcome != Outcome::Ok) {
            let key = (
                op.kind.as_str().to_string(),
                format!("{:?}", op.outcome).to_lowercase(),
                op.reason.clone().unwrap_or_default(),
            );
            *counts.entry(key).or_default() += 1;
        }
        let rows: Vec<_> = counts.into_iter().collect();
        frame(vec![
            Column::new(
                "kind".into(),
                rows.iter().map(|r| r.0.0.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "outcome".into(),
                rows.iter().map(|r| r.0.1.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "reason".into(),
                rows.iter().map(|r| r.0.2.clone()).collect::<Vec<_>>(),
            ),
            Column::new("count".into(), rows.iter().map(|r| r.1).collect::<Vec<_>>()),
        ])
    }

    /// Per `bucket_ms` (e.g. 500) from the start of the load: t_s, acknowledged, failed,
    /// unknown, reads, read_errors — throughput and errors over time.
    pub fn timeline_frame(&self, bucket_ms: f64) -> Result<DataFrame, LabError> {
        let buckets = self.buckets(bucket_ms);
        let col = |name: &str, k: usize| {
            Column::new(
                name.into(),
                buckets.iter().map(|b| b.1[k]).collect::<Vec<u64>>(),
            )
        };
        frame(vec![
            Column::new(
                "t_s".into(),
                buckets.iter().map(|b| b.0).collect::<Vec<f64>>(),
            ),
            col("acknowledged", 0),
            col("failed", 1),
            col("unknown", 2),
            col("reads", 3),
            col("read_errors", 4),
        ])
    }

    /// `(t_s, [acknowledged, failed, unknown, reads, read_errors])` per bucket.
    fn buckets(&self, bucket_ms: f64) -> Vec<(f64, [u64; 5])> {
        let span = (self.ended_at_ms - self.started_at_ms).max(bucket_ms);
        let n = (span / bucket_ms).ceil() as usize;
        let mut out: Vec<(f64, [u64; 5])> = (0..n)
            .map(|k| (k as f64 * bucket_ms / 1000.0, [0; 5]))
            .collect();
        for op in &self.ops {
            let k = ((op.started_at_ms - self.started_at_ms) / bucket_ms).floor();
            if k < 0.0 || k as usize >= n {
                continue;
            }
            let slot = match (op.kind, op.outcome) {
                (OpKind::Transfer, Outcome::Ok) => 0,
                (OpKind::Transfer, Outcome::Failed) => 1,
                (OpKind::Transfer, Outcome::Unknown) => 2,
                (_, Outcome::Ok) => 3,
                _ => 4,
            };
            out[k as usize].1[slot] += 1;
        }
        out
    }

    /// Throughput and errors per 500 ms, with every fault's window shaded and labelled.
    pub fn chart(&self) -> Result<Chart, LabError> {
        let bucket = 500.0;
        let per_s = 1000.0 / bucket;
        let b = self.buckets(bucket);
        let series = |name: &str, f: &dyn Fn(&[u64; 5]) -> u64| {
            (
                name.to_string(),
                b.iter()
                    .map(|(t, c)| (*t, f(c) as f64 * per_s))
                    .collect::<Vec<_>>(),
            )
        };
        let end = self.ended_at_ms;
        // Shade what was broken; a repair call gets its own band only when it repaired
        // nothing (e.g. a restart of a running node), else the broken window covers it.
        let closes_a_window = |f: &FaultRecord| {
            self.faults.iter().any(|b| {
                b.is_breaking() && b.ok && b.target == f.target && b.ended_at_ms == f.ended_at_ms
            })
        };
        let windows: Vec<(String, f64, f64)> = self
            .faults
            .iter()
            .filter(|f| f.is_breaking() || !(closes_a_window(f) || f.call_ms < 100.0))
            .filter_map(|f| {
                let (s, e) = f.window(end)?;
                let s = (s - self.started_at_ms) / 1000.0;
                let e = ((e - self.started_at_ms) / 1000.0).max(s + 0.1);
                (s <= (end - self.started_at_ms) / 1000.0).then(|| (f.label(), s, e))
            })
            .collect();
        timeline::timeline(
            "Bank transfers under faults",
            "seconds since the load started",
            "operations per second",
            &[
                series("transfers acknowledged", &|c| c[0]),
                series("transfers failed", &|c| c[1]),
                series("transfers unknown", &|c| c[2]),
                series("reads", &|c| c[3]),
                series("read errors", &|c| c[4]),
            ],
            &windows,
        )
    }
}
