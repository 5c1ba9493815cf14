//! The bank run's report: the history's operations, the faults, and the checker's verdict,
//! with the tables and the chart the notebook shows.

use std::collections::BTreeMap;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::checker::Verdict;

/// The outcome columns of the timeline, in order: a transfer that failed is split by cause
/// (see [`failure_cause`]); one the bank's own rule refused (insufficient funds) is *rejected*,
/// a correct answer rather than a failure; one of unknown outcome is counted apart, like reads.
pub const SLOTS: [&str; 9] = [
    "acknowledged",
    "rejected",
    "failed_conflict",
    "failed_node_down",
    "failed_storage_down",
    "failed_other",
    "unknown",
    "reads",
    "read_errors",
];

/// Why a transfer certainly did not happen: `rejected` (the bank's rule refused it: insufficient
/// funds, a business answer and not a failure), `conflict` (lost a race; normal under
/// contention), `node down` (no connection to its node), `storage down` (the node answered, but
/// storage did not), or `other`.
pub fn failure_cause(op: &BankOp) -> &'static str {
    let reason = op.reason.as_deref().unwrap_or("");
    let detail = op.detail.as_deref().unwrap_or("").to_ascii_lowercase();
    if reason == "insufficient funds" {
        "rejected"
    } else if reason == "conflict" {
        "conflict"
    } else if reason.contains("no connection") || reason.contains("connection lost") {
        "node down"
    } else if [
        "tikv",
        "pd ",
        "region",
        "grpc",
        "transport",
        "storage",
        "timestamp",
    ]
    .iter()
    .any(|w| detail.contains(w))
    {
        "storage down"
    } else {
        "other"
    }
}

/// The [`SLOTS`] column an operation counts in.
fn slot(op: &BankOp) -> usize {
    match (op.kind, op.outcome) {
        (OpKind::Transfer, Outcome::Ok) => 0,
        (OpKind::Transfer, Outcome::Failed) => match failure_cause(op) {
            "rejected" => 1,
            "conflict" => 2,
            "node down" => 3,
            "storage down" => 4,
            _ => 5,
        },
        (OpKind::Transfer, Outcome::Unknown) => 6,
        (_, Outcome::Ok) => 7,
        _ => 8,
    }
}
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
    /// The plan's settings that explain the numbers (contention, timeouts).
    #[serde(default)]
    pub setup: BankSetup,
}

/// What of the plan a reader needs to explain the run: how many accounts the transfers
/// share, how many clients write at once, and when an unanswered request becomes unknown.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BankSetup {
    /// Accounts the transfers move money between.
    pub accounts: usize,
    /// Transfer clients, over all nodes.
    pub writers: usize,
    /// A request without an answer after this many seconds counts as unknown.
    pub op_timeout_s: f64,
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
    /// Refused by the bank's own rule (insufficient funds): a correct answer, not a failure.
    #[serde(default)]
    pub rejected: u64,
    /// Failed for certain (conflicts, faults), rejections not included.
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
            rejected: 0,
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
                            Outcome::Failed if failure_cause(op) == "rejected" => s.rejected += 1,
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

    /// The summary as a table: node, transfers, acknowledged, rejected, failed, unknown, reads,
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
            u("rejected", &|r| r.rejected),
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

    /// Per `bucket_ms` (e.g. 500) from the start of the load, each operation counted when it
    /// **ended** (that is when its client learned the outcome): t_s, acknowledged, then one
    /// `failed_<cause>` column per cause (conflict, node down, storage down, other), unknown,
    /// reads, read_errors.
    pub fn timeline_frame(&self, bucket_ms: f64) -> Result<DataFrame, LabError> {
        let buckets = self.buckets(bucket_ms);
        let mut cols = vec![Column::new(
            "t_s".into(),
            buckets.iter().map(|b| b.0).collect::<Vec<f64>>(),
        )];
        for (k, name) in SLOTS.iter().enumerate() {
            cols.push(Column::new(
                (*name).into(),
                buckets.iter().map(|b| b.1[k]).collect::<Vec<u64>>(),
            ));
        }
        frame(cols)
    }

    /// Counts per bucket of completion time, in the order of [`SLOTS`].
    fn buckets(&self, bucket_ms: f64) -> Vec<(f64, [u64; SLOTS.len()])> {
        let span = (self.ended_at_ms - self.started_at_ms).max(bucket_ms);
        let n = (span / bucket_ms).ceil() as usize;
        let mut out: Vec<(f64, [u64; SLOTS.len()])> = (0..n)
            .map(|k| (k as f64 * bucket_ms / 1000.0, [0; SLOTS.len()]))
            .collect();
        for op in &self.ops {
            let ended = op.started_at_ms + op.ms;
            let k = ((ended - self.started_at_ms) / bucket_ms).floor();
            if k < 0.0 || k as usize >= n {
                continue;
            }
            out[k as usize].1[slot(op)] += 1;
        }
        out
    }

    /// The distinct faults that took effect, first injected first: `kill node-b`, …
    /// (breaking calls that succeeded, each action on a target once).
    pub fn injected_faults(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in self.faults.iter().filter(|f| f.ok && f.is_breaking()) {
            if !out.contains(&f.label()) {
                out.push(f.label());
            }
        }
        out
    }

    /// Transfers whose outcome is unknown, as `(start_s, end_s)` from the start of the load.
    pub fn unknown_intervals(&self) -> Vec<(f64, f64)> {
        self.ops
            .iter()
            .filter(|o| o.kind == OpKind::Transfer && o.outcome == Outcome::Unknown)
            .map(|o| {
                let s = (o.started_at_ms - self.started_at_ms) / 1000.0;
                (s, s + o.ms / 1000.0)
            })
            .collect()
    }

    /// The fault windows to shade, `(label, start_s, end_s)` from the start of the load.
    pub fn fault_windows(&self) -> Vec<(String, f64, f64)> {
        let end = self.ended_at_ms;
        // Shade what was broken; a repair call gets its own band only when it repaired
        // nothing (e.g. a restart of a running node), else the broken window covers it.
        let closes_a_window = |f: &FaultRecord| {
            self.faults.iter().any(|b| {
                b.is_breaking() && b.ok && b.target == f.target && b.ended_at_ms == f.ended_at_ms
            })
        };
        self.faults
            .iter()
            .filter(|f| f.is_breaking() || !(closes_a_window(f) || f.call_ms < 100.0))
            .filter_map(|f| {
                let (s, e) = f.window(end)?;
                let s = (s - self.started_at_ms) / 1000.0;
                let e = ((e - self.started_at_ms) / 1000.0).max(s + 0.1);
                (s <= (end - self.started_at_ms) / 1000.0).then(|| (f.label(), s, e))
            })
            .collect()
    }

    /// Throughput per 500 ms by outcome and cause, counted at completion, with every fault's
    /// window shaded and every unknown-outcome transfer drawn as its start → end interval.
    pub fn chart(&self) -> Result<Chart, LabError> {
        let bucket = 500.0;
        let per_s = 1000.0 / bucket;
        let b = self.buckets(bucket);
        let series: Vec<(String, Vec<(f64, f64)>)> = SLOTS
            .iter()
            .enumerate()
            .filter(|(k, name)| **name != "unknown" && b.iter().any(|(_, c)| c[*k] > 0))
            .map(|(k, name)| {
                (
                    name.replace('_', " "),
                    b.iter().map(|(t, c)| (*t, c[k] as f64 * per_s)).collect(),
                )
            })
            .collect();
        timeline::timeline_with_intervals(
            "Bank transfers under faults (counted when each ended)",
            "seconds since the load started",
            "operations per second",
            &series,
            &self.fault_windows(),
            ("unknown: sent → no clear answer", &self.unknown_intervals()),
        )
    }

    /// Why transfers conflict even before any fault, from the plan: each writes two of a few
    /// accounts, so transfers in flight at the same time often share one. Empty when no
    /// transfer ended before `until_s` (or the plan is unknown).
    fn explain_contention(&self, until_s: f64) -> String {
        let until_s = if until_s.is_finite() {
            until_s
        } else {
            (self.ended_at_ms - self.started_at_ms) / 1000.0
        };
        let done: Vec<&BankOp> = self
            .ops
            .iter()
            .filter(|o| {
                o.kind == OpKind::Transfer
                    && (o.started_at_ms + o.ms - self.started_at_ms) / 1000.0 < until_s
            })
            .collect();
        let (accounts, writers) = (self.setup.accounts, self.setup.writers);
        if done.is_empty() || accounts < 2 || until_s <= 0.0 {
            return String::new();
        }
        let cause = |c: &str| {
            done.iter()
                .filter(|o| o.outcome == Outcome::Failed && failure_cause(o) == c)
                .count()
        };
        let (conflicts, rejected) = (cause("conflict"), cause("rejected"));
        let per_s = done.len() as f64 / until_s;
        let mean_ms = done.iter().map(|o| o.ms).sum::<f64>() / done.len() as f64;
        // The chance that one other transfer avoids both of mine: it picks 2 of the other
        // accounts, C(a-2, 2) / C(a, 2) = (a-2)(a-3) / (a(a-1)).
        let a = accounts as f64;
        let avoid = ((a - 2.0) * (a - 3.0) / (a * (a - 1.0))).max(0.0);
        let shared = 1.0 - avoid.powi(writers.saturating_sub(1) as i32);
        format!(
            "Contention, from the plan: {writers} clients transfer money between only \
             {accounts} accounts, and every transfer writes two of them, so while {writers} are \
             in flight another one shares an account with yours {:.0} % of the time. Before any \
             fault, {per_s:.0} transfers a second ended, each taking {mean_ms:.1} ms on average: \
             {conflicts} of {} ({:.0} %) lost such a race (a retryable conflict, not a fault), \
             and {rejected} were rejected by the bank's own rule, insufficient funds (a correct \
             answer, not a failure).\n",
            shared * 100.0,
            done.len(),
            conflicts as f64 * 100.0 / done.len() as f64,
        )
    }

    /// The window `(from_s, to_s)` of the first fault whose label contains `fault`.
    fn window_of(&self, fault: &str) -> Option<(f64, f64)> {
        self.fault_windows()
            .into_iter()
            .find(|w| w.0.contains(fault))
            .map(|(_, from, to)| (from, to))
    }

    /// `node`'s transfers (every node's, for `None`) in slot `slot_name` (`failed` sums every
    /// failure cause), with their start and end in seconds from the start of the load.
    fn transfers_in<'a>(
        &'a self,
        node: Option<&'a str>,
        slot_name: &'a str,
    ) -> impl Iterator<Item = (&'a BankOp, f64, f64)> + 'a {
        let secs = |ms: f64| (ms - self.started_at_ms) / 1000.0;
        self.ops
            .iter()
            .filter(move |o| o.kind == OpKind::Transfer && node.is_none_or(|n| o.node == n))
            .filter(move |o| {
                let name = SLOTS[slot(o)];
                name == slot_name || (slot_name == "failed" && name.starts_with("failed_"))
            })
            .map(move |o| (o, secs(o.started_at_ms), secs(o.started_at_ms + o.ms)))
    }

    /// Transfers in the fault window whose label contains `fault` (e.g. `pause node-a`), by
    /// outcome slot (`acknowledged`, `unknown`, `failed_conflict`, …; `failed` sums every
    /// failure cause): an unknown transfer counts where it *started* (it was sent into the
    /// fault), every other where it *ended* (when its client learned the outcome).
    pub fn count_in_window(&self, fault: &str, slot_name: &str) -> usize {
        let Some((from, to)) = self.window_of(fault) else {
            return 0;
        };
        self.transfers_in(None, slot_name)
            .map(|(o, start, end)| {
                if o.outcome == Outcome::Unknown {
                    start
                } else {
                    end
                }
            })
            .filter(|t| *t >= from && *t < to)
            .count()
    }

    /// `node`'s transfers that were in flight at any moment of the fault window whose label
    /// contains `fault` (sent before its end, answered after its start), in slot `slot_name`
    /// (`failed` sums every failure cause): how the transfers a fault caught ended.
    pub fn count_in_flight(&self, fault: &str, node: &str, slot_name: &str) -> usize {
        let Some((from, to)) = self.window_of(fault) else {
            return 0;
        };
        self.transfers_in(Some(node), slot_name)
            .filter(|(_, start, end)| *start < to && *end >= from)
            .count()
    }

    /// What the chart shows, in sentences computed from this run: each series' rate before the
    /// first fault and inside each fault window, and what became of the unknown transfers.
    pub fn explain(&self) -> String {
        let rate = |from_s: f64, to_s: f64, k: usize| -> f64 {
            let n = self
                .ops
                .iter()
                .filter(|o| {
                    let t = (o.started_at_ms + o.ms - self.started_at_ms) / 1000.0;
                    t >= from_s && t < to_s && slot(o) == k
                })
                .count();
            n as f64 / (to_s - from_s).max(1e-9)
        };
        let describe = |from_s: f64, to_s: f64| -> String {
            let parts = SLOTS
                .iter()
                .enumerate()
                .map(|(k, name)| (name, rate(from_s, to_s, k)))
                .filter(|(_, r)| *r > 0.0)
                // Small rates keep a decimal, so a rare event never reads as "0/s".
                .map(|(name, r)| match r < 10.0 {
                    true => format!("{} {r:.1}/s", name.replace('_', " ")),
                    false => format!("{} {r:.0}/s", name.replace('_', " ")),
                })
                .collect::<Vec<_>>();
            match parts.is_empty() {
                true => "no operation completed at all".to_string(),
                false => parts.join(", "),
            }
        };
        let windows = self.fault_windows();
        let first = windows.iter().map(|w| w.1).fold(f64::INFINITY, f64::min);
        let mut s = self.explain_contention(first);
        if first.is_finite() && first > 0.0 {
            s.push_str(&format!(
                "Before any fault (0–{first:.1} s): {}.",
                describe(0.0, first)
            ));
        }
        for (label, a, b) in &windows {
            s.push_str(&format!(
                "\nDuring `{label}` ({a:.1}–{b:.1} s): {}.",
                describe(*a, *b)
            ));
        }
        let unknown = self.unknown_intervals().len();
        s.push_str(&format!(
            "\n{unknown} transfer(s) got no clear answer within the {:.0} s operation timeout \
             (unknown); the final read found {} of them applied and {} not — both are correct \
             outcomes for an unknown transfer.",
            self.setup.op_timeout_s,
            self.verdict.unknown_applied,
            unknown as u64 - self.verdict.unknown_applied.min(unknown as u64)
        ));
        s
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
