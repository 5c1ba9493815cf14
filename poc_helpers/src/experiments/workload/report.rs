//! What a workload run measured: per-(node, operation) summaries, the read-after-write check,
//! latency histograms, resource samples — as plain data, with tables and charts built on demand.

use std::fmt;

use polars::prelude::{Column, DataFrame};
use serde::{Deserialize, Serialize};

use super::{ErrorClass, Op, WorkloadPlan};
use crate::infra::sampler::{self, ResourceSample};
use crate::present::charts::{self, Chart, LatencyBucket};
use crate::present::display;
use crate::vocab::error::LabError;
use crate::vocab::frames::frame;

/// One (node, operation) row of the summary; `node = "all"` and/or `op = "all"` aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpSummary {
    /// `node-a`, … or `all`.
    pub node: String,
    /// `read`, `write`, `raw_write`, `raw_read` or `all`.
    pub op: String,
    /// Completed operations (successful + failed).
    pub ops: u64,
    /// Failed operations.
    pub errors: u64,
    /// … of which transaction conflicts.
    pub conflicts: u64,
    /// … of which timeouts.
    pub timeouts: u64,
    /// … of which connection failures.
    pub connection: u64,
    /// … of which anything else.
    pub other: u64,
    /// Completed operations per second of the measured window.
    pub ops_per_s: f64,
    /// Latency of successful operations, ms (NaN when there were none).
    pub mean_ms: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest successful operation, ms.
    pub max_ms: f64,
}

/// The read-after-write check: how many reads saw the value written just before on another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawCheck {
    /// Pairs whose write and read both succeeded.
    pub pairs: u64,
    /// … whose read returned the value just written.
    pub seen: u64,
    /// … whose read returned something else (a stale read: a consistency bug).
    pub missed: u64,
    /// True when the read went to a different node than the write.
    pub cross_node: bool,
}

/// One operation (only with `keep_samples`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpSample {
    /// Start, in ms since the measured window began.
    pub t_ms: f64,
    /// Client number.
    pub client: u32,
    /// Node name.
    pub node: String,
    /// Operation.
    pub op: Op,
    /// Latency, ms.
    pub ms: f64,
    /// `None` when it succeeded.
    pub error: Option<ErrorClass>,
}

/// What a run measured. Plain data; tables and charts are built on demand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadReport {
    /// The spec that ran.
    pub spec: WorkloadPlan,
    /// `spec.label()`.
    pub label: String,
    /// The lab's storage (`shared`, `surrealkv`, …).
    pub storage: String,
    /// The nodes that took part.
    pub nodes: Vec<String>,
    /// Sessions per node used.
    pub sessions_per_node: usize,
    /// Length of the measured window, s.
    pub measured_s: f64,
    /// Time spent opening sessions and preparing records before the run, ms.
    pub setup_ms: f64,
    /// Per node × operation, then `all` rows per operation, then the `all`/`all` total last.
    pub rows: Vec<OpSummary>,
    /// The read-after-write check (that workload only).
    pub raw: Option<RawCheck>,
    /// Latency histogram per operation over all nodes.
    pub histogram: Vec<LatencyBucket>,
    /// The first message of each error class seen, for diagnosis.
    pub error_examples: Vec<(ErrorClass, String)>,
    /// Per-operation samples (with `keep_samples`).
    pub samples: Vec<OpSample>,
    /// RSS and CPU of every lab process (and of the client) during the run.
    pub resources: Vec<ResourceSample>,
}

/// True for the processes the spec's "per instance" limits apply to: the SurrealDB nodes and the
/// storage node (not the load generator's own `client` row).
pub(crate) fn is_instance(process: &str) -> bool {
    process.starts_with("node-") || process == "storage"
}

impl WorkloadReport {
    /// The all-nodes, all-operations row.
    pub fn total(&self) -> &OpSummary {
        self.rows.last().expect("a report always has its total row")
    }

    /// The row for `node` (or `all`) and `op` (or `all`).
    pub fn row(&self, node: &str, op: &str) -> Option<&OpSummary> {
        self.rows.iter().find(|r| r.node == node && r.op == op)
    }

    /// Peak RSS per process, MB.
    pub fn peak_rss(&self) -> Vec<(String, f64)> {
        sampler::peak_rss(&self.resources)
    }

    /// Peak private memory per process (RSS without the shared code of the binary), MB.
    pub fn peak_anon(&self) -> Vec<(String, f64)> {
        sampler::peak_anon(&self.resources)
    }

    /// The summary table: node, op, ops, ops_per_s, mean/p50/p95/p99/max in ms, errors by class.
    pub fn summary_frame(&self) -> Result<DataFrame, LabError> {
        summary_frame(&self.rows)
    }

    /// One row per operation (empty unless the spec had `keep_samples(true)`): t_ms, client,
    /// node, op, ms, error.
    pub fn samples_frame(&self) -> Result<DataFrame, LabError> {
        let s = &self.samples;
        frame(vec![
            Column::new("t_ms".into(), s.iter().map(|x| x.t_ms).collect::<Vec<_>>()),
            Column::new(
                "client".into(),
                s.iter().map(|x| x.client).collect::<Vec<_>>(),
            ),
            Column::new(
                "node".into(),
                s.iter().map(|x| x.node.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "op".into(),
                s.iter().map(|x| x.op.as_str()).collect::<Vec<_>>(),
            ),
            Column::new("ms".into(), s.iter().map(|x| x.ms).collect::<Vec<_>>()),
            Column::new(
                "error".into(),
                s.iter()
                    .map(|x| x.error.map(ErrorClass::as_str))
                    .collect::<Vec<_>>(),
            ),
        ])
    }

    /// RSS and CPU of every process over time: t_ms, process, pid, rss_mb, cpu_pct.
    pub fn resources_frame(&self) -> Result<DataFrame, LabError> {
        sampler::resources_frame(&self.resources)
    }

    /// Latency histogram of the successful operations, one colour per operation.
    pub fn latency_chart(&self) -> Result<Chart, LabError> {
        charts::latency_histogram(
            &format!(
                "Latency — {} · {} clients",
                self.label, self.spec.concurrency
            ),
            &self.histogram,
        )
    }

    /// RSS of every process over the run, with the spec's 200 MB line (PR-004).
    pub fn rss_chart(&self) -> Result<Chart, LabError> {
        charts::rss_over_time(
            &format!(
                "Memory during {} · {} clients",
                self.label, self.spec.concurrency
            ),
            &sampler::rss_series(&self.resources),
        )
    }

    /// One line: what ran, ops/s, percentiles, errors, peak memory.
    pub fn headline(&self) -> String {
        let t = self.total();
        let mut s = format!(
            "{} · {} node(s) on {} · {} clients → {:.0} ops/s, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.1} ms, {} error(s)",
            self.label,
            self.nodes.len(),
            self.storage,
            self.spec.concurrency,
            t.ops_per_s,
            t.p50_ms,
            t.p95_ms,
            t.p99_ms,
            t.max_ms,
            t.errors
        );
        if t.errors > 0 {
            let parts: Vec<String> = [
                (t.conflicts, "conflict"),
                (t.timeouts, "timeout"),
                (t.connection, "connection"),
                (t.other, "other"),
            ]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
            s.push_str(&format!(" ({})", parts.join(", ")));
        }
        if let Some(raw) = self.raw {
            s.push_str(&format!(
                "; read-after-write {}: {}/{} reads saw their write",
                if raw.cross_node {
                    "across nodes"
                } else {
                    "on one node"
                },
                raw.seen,
                raw.pairs
            ));
        }
        s
    }

    /// Compact HTML for notebooks: the headline, peak memory, and the per-node table.
    pub fn evcxr_display(&self) {
        display::print_html(&self.to_html());
    }

    /// The HTML [`evcxr_display`](Self::evcxr_display) prints.
    pub fn to_html(&self) -> String {
        let anon = self.peak_anon();
        let peaks: Vec<String> = self
            .peak_rss()
            .iter()
            .map(|(p, mb)| match anon.iter().find(|(q, _)| q == p) {
                Some((_, private)) => format!("{p} {mb:.0} MB ({private:.0} MB private)"),
                None => format!("{p} {mb:.0} MB"),
            })
            .collect();
        format!(
            "<p><b>{}</b><br>peak RSS: {}</p>{}",
            display::escape(&self.headline()),
            display::escape(&peaks.join(", ")),
            display::result_html(&self.summary_frame())
        )
    }
}

impl fmt::Display for WorkloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline())
    }
}

/// The summary rows as a table.
pub fn summary_frame(rows: &[OpSummary]) -> Result<DataFrame, LabError> {
    let f = |g: fn(&OpSummary) -> f64| rows.iter().map(|r| round3(g(r))).collect::<Vec<_>>();
    let u = |g: fn(&OpSummary) -> u64| rows.iter().map(g).collect::<Vec<_>>();
    frame(vec![
        Column::new(
            "node".into(),
            rows.iter().map(|r| r.node.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "op".into(),
            rows.iter().map(|r| r.op.clone()).collect::<Vec<_>>(),
        ),
        Column::new("ops".into(), u(|r| r.ops)),
        Column::new("ops_per_s".into(), f(|r| r.ops_per_s)),
        Column::new("mean_ms".into(), f(|r| r.mean_ms)),
        Column::new("p50_ms".into(), f(|r| r.p50_ms)),
        Column::new("p95_ms".into(), f(|r| r.p95_ms)),
        Column::new("p99_ms".into(), f(|r| r.p99_ms)),
        Column::new("max_ms".into(), f(|r| r.max_ms)),
        Column::new("errors".into(), u(|r| r.errors)),
        Column::new("conflicts".into(), u(|r| r.conflicts)),
        Column::new("timeouts".into(), u(|r| r.timeouts)),
        Column::new("connection".into(), u(|r| r.connection)),
        Column::new("other".into(), u(|r| r.other)),
    ])
}

/// The same workload at several concurrency levels (see [`crate::facade::Cluster::run_sweep`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    /// One report per level, in the order run.
    pub runs: Vec<WorkloadReport>,
}

impl SweepReport {
    /// One row per level: concurrency, ops_per_s, p50/p95/p99/max in ms of every operation,
    /// retryable conflicts, failed operations (timeouts, lost connections, other), and the peak
    /// RSS of every process (`rss_<process>_mb`).
    pub fn summary_frame(&self) -> Result<DataFrame, LabError> {
        let runs = &self.runs;
        let mut cols = vec![
            Column::new(
                "concurrency".into(),
                runs.iter()
                    .map(|r| r.spec.concurrency as u32)
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "ops".into(),
                runs.iter().map(|r| r.total().ops).collect::<Vec<_>>(),
            ),
        ];
        for (name, get) in [
            (
                "ops_per_s",
                (|t: &OpSummary| t.ops_per_s) as fn(&OpSummary) -> f64,
            ),
            ("p50_ms", |t| t.p50_ms),
            ("p95_ms", |t| t.p95_ms),
            ("p99_ms", |t| t.p99_ms),
            ("max_ms", |t| t.max_ms),
        ] {
            cols.push(Column::new(
                name.into(),
                runs.iter()
                    .map(|r| round3(get(r.total())))
                    .collect::<Vec<_>>(),
            ));
        }
        // Conflicts apart from the rest: a conflict is SurrealDB's retryable answer to two
        // writes of one record at once, the rest (timeouts, lost connections, other) failed.
        cols.push(Column::new(
            "conflicts".into(),
            runs.iter().map(|r| r.total().conflicts).collect::<Vec<_>>(),
        ));
        cols.push(Column::new(
            "failed".into(),
            runs.iter()
                .map(|r| {
                    let t = r.total();
                    t.timeouts + t.connection + t.other
                })
                .collect::<Vec<_>>(),
        ));
        let mut procs: Vec<String> = Vec::new();
        for r in runs {
            for (p, _) in r.peak_rss() {
                if !procs.contains(&p) {
                    procs.push(p);
                }
            }
        }
        for p in procs {
            cols.push(Column::new(
                format!("rss_{p}_mb").into(),
                runs.iter()
                    .map(|r| {
                        r.peak_rss()
                            .into_iter()
                            .find(|(q, _)| *q == p)
                            .map(|(_, mb)| round3(mb))
                    })
                    .collect::<Vec<_>>(),
            ));
        }
        frame(cols)
    }

    fn title(&self) -> String {
        self.runs
            .first()
            .map(|r| format!("{} · {} node(s) on {}", r.label, r.nodes.len(), r.storage))
            .unwrap_or_default()
    }

    /// p50, p95 and p99 of every operation against concurrency, with the spec's 100 ms line
    /// (PR-002). PR-003 has no line here: its bound needs the single-node sweep (see
    /// [`super::spec_check`]).
    pub fn percentiles_chart(&self) -> Result<Chart, LabError> {
        let refs = vec![(
            charts::SPEC_LATENCY_LABEL.to_string(),
            charts::SPEC_LATENCY_MS,
        )];
        let pick = |g: fn(&OpSummary) -> f64| {
            self.runs
                .iter()
                .map(|r| (r.spec.concurrency as f64, g(r.total())))
                .collect::<Vec<_>>()
        };
        charts::percentiles_vs_concurrency(
            &format!("Latency percentiles vs concurrency — {}", self.title()),
            &[
                ("p50".into(), pick(|t| t.p50_ms)),
                ("p95".into(), pick(|t| t.p95_ms)),
                ("p99".into(), pick(|t| t.p99_ms)),
            ],
            &refs,
        )
    }

    /// Operations per second against concurrency.
    pub fn throughput_chart(&self) -> Result<Chart, LabError> {
        let points = self
            .runs
            .iter()
            .map(|r| (r.spec.concurrency as f64, r.total().ops_per_s))
            .collect::<Vec<_>>();
        charts::throughput_vs_concurrency(
            &format!("Throughput vs concurrency — {}", self.title()),
            &[(self.title(), points)],
        )
    }

    /// The summary as an HTML table with a caption, for notebooks.
    pub fn evcxr_display(&self) {
        display::print_html(&format!(
            "<p><b>{}</b></p>{}",
            display::escape(&self.title()),
            display::result_html(&self.summary_frame())
        ));
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

// ----- the run (actor side) -------------------------------------------------------------------
