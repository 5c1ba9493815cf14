//! The load generator: many concurrent clients running a fixed mix of reads and writes against
//! the lab's nodes, every operation's latency recorded, errors sorted by cause.
//!
//! ```no_run
//! use poc_helpers::prelude::*;
//! use std::time::Duration;
//!
//! let cluster = Cluster::builder().ephemeral_ports().start().unwrap();
//! let spec = WorkloadSpec::read_after_write()
//!     .concurrency(100)
//!     .duration(Duration::from_secs(5));
//! let report = cluster.run_workload(spec).unwrap();
//! println!("{report}");                 // one line: ops/s, p50/p95/p99/max, errors
//! report.summary().show();              // per node and operation, as a table
//! report.latency_chart().unwrap();      // histogram (an SVG in a notebook)
//! ```
//!
//! # The moving parts
//!
//! * [`WorkloadSpec`] is plain data (see `runtime` for why): what to run (read-only, write-only,
//!   mixed, read-after-write across nodes), on which nodes (round-robin, pinned, random), with how
//!   many concurrent clients, for how long, on how many records, from which seed.
//! * The lab's actor runs it (`Command::Workload`): it opens a **pool of SDK sessions per node**
//!   once and keeps it between runs, prepares the records, starts the resource [`sampler`], and
//!   drives the clients.
//! * Each client is a future; all of them are polled by the actor thread with `join_all`, while
//!   the SDK's WebSocket tasks run on the runtime's worker threads. One polling thread means the
//!   clients share one recorder through a `RefCell` — no lock, no atomic per operation — and the
//!   cost per operation on the client side is a string format and a histogram increment.
//! * Latencies go into HDR histograms (`hdrhistogram`, 3 significant digits, 1 µs to 1 h): exact
//!   percentiles at any concurrency for a fixed, small amount of memory per (node, operation).
//!
//! # Why a session pool, and why not one session per client
//!
//! In SDK 3.x `Surreal::clone()` opens a *new* server session and signs in again (a root sign-in
//! verifies a password hash, ~30 ms of CPU), so sessions are opened up front and borrowed:
//! client `k` always uses session `k % pool` of whichever node it talks to. SurrealDB 3.3.5
//! serves the requests of one WebSocket concurrently, so a few sessions carry any number of
//! clients. Measured on 2 cores (32 clients, mixed 90/10): 1, 2, 8 or 32 sessions per node gave
//! the same throughput, but every session costs the server memory (32 sessions: +45 MB RSS).
//! The default is therefore `min(concurrency, 2)`; raise it with
//! [`WorkloadSpec::sessions_per_node`] on a machine with more cores.
//!
//! # Making runs comparable
//!
//! * **Fixed seeds**: client `k` draws keys from its own generator seeded with `seed` and `k`, so
//!   the sequence of operations is the same in every run.
//! * **Fixed record counts**: reads and writes address `records` existing records
//!   (`<table>:0 … <table>:records-1`), inserted once per lab before the first run.
//! * **Warm-up**: operations that start during the warm-up are executed but not recorded, so
//!   connection set-up, caches and the first TSO batches do not colour the numbers.
//! * Repetitions and medians are the benchmark's job (`lab bench`).
//!
//! # What is measured
//!
//! Latency is the client's round trip of one statement (query sent → result decoded), recorded
//! for successful operations only; failed ones are counted by [`ErrorClass`]. Throughput is
//! completed operations (successful or not) per second of the measured window. In the
//! read-after-write workload every pair counts as two operations (`raw_write` on one node,
//! `raw_read` on the next), and each read checks that it saw the value just written.

use std::cell::RefCell;
use std::fmt;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use polars::prelude::{Column, DataFrame};
use serde::{Deserialize, Serialize};

use crate::charts::{self, Chart};
use crate::client::Db;
use crate::error::LabError;
use crate::sampler::{self, ResourceSample};

/// The concurrency levels of a default sweep: one client up to twice the spec's 100 (PR-003).
pub const SWEEP_LEVELS: [usize; 6] = [1, 10, 50, 100, 150, 200];

/// At most this many clients: far above what a 2-core laptop can serve, low enough to catch a typo.
pub const MAX_CONCURRENCY: usize = 1000;

/// Default session pool per node (see the module docs).
pub const DEFAULT_SESSIONS: usize = 2;

/// Per-client keys of the read-after-write table: every client overwrites its own small ring of
/// records, so clients never conflict with each other and the table never grows.
const RAW_KEYS_PER_CLIENT: u64 = 64;

/// Records inserted per statement while preparing: big enough to be quick, small enough for one
/// storage transaction.
const PREPARE_CHUNK: u64 = 500;

/// At most this many per-operation samples are kept (a 10 s run at 10k ops/s is 100k).
const MAX_SAMPLES: usize = 2_000_000;

/// Histogram range: 1 µs to one hour, 3 significant digits (0.1 % resolution).
const HIST_MAX_US: u64 = 3_600_000_000;

/// What the clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkloadKind {
    /// `SELECT * FROM ONLY <table>:<k>` on random existing records.
    ReadOnly,
    /// `UPSERT <table>:<k> SET …` on random existing records (two clients writing the same
    /// record at the same moment conflict, as in any optimistic database).
    WriteOnly,
    /// Reads with probability `read_percent` %, writes otherwise.
    Mixed {
        /// Share of reads, 0–100.
        read_percent: u8,
    },
    /// Write a fresh value on one node, read it back on the next node, check it was seen.
    ReadAfterWrite,
}

/// Which node each operation goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodePolicy {
    /// Node by node, each client starting at a different one, so load spreads evenly.
    RoundRobin,
    /// Always this node (0-based index: 0 is node-a).
    Pinned(usize),
    /// A random node per operation (from the client's seeded generator).
    Random,
}

/// One kind of operation, as it appears in tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// A point read.
    Read,
    /// A point write (upsert of an existing record).
    Write,
    /// The write half of a read-after-write pair.
    RawWrite,
    /// The read half of a read-after-write pair, on another node.
    RawRead,
}

impl Op {
    const ALL: [Op; 4] = [Op::Read, Op::Write, Op::RawWrite, Op::RawRead];

    /// `read`, `write`, `raw_write`, `raw_read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::RawWrite => "raw_write",
            Op::RawRead => "raw_read",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why an operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorClass {
    /// SurrealDB's retryable "transaction conflict": another transaction won the race.
    Conflict,
    /// No answer within the operation timeout (or SurrealDB's own statement timeout).
    Timeout,
    /// The session or the connection broke.
    Connection,
    /// Anything else (the message is kept in `error_examples`).
    Other,
}

impl ErrorClass {
    /// `conflict`, `timeout`, `connection`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Conflict => "conflict",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Connection => "connection",
            ErrorClass::Other => "other",
        }
    }

    /// Sorts an SDK error by cause. The SDK's kinds are used first; messages only as a fallback
    /// (a conflict inside a failed transaction carries the detail kind, not the code).
    fn of(err: &surrealdb::Error) -> ErrorClass {
        if err.is_connection() {
            return ErrorClass::Connection;
        }
        let lab = crate::client::query_error("", 0, "", err);
        if lab.is_transaction_conflict() {
            return ErrorClass::Conflict;
        }
        let m = err.message().to_ascii_lowercase();
        if m.contains("conflict") {
            ErrorClass::Conflict
        } else if m.contains("timed out") || m.contains("timeout") {
            ErrorClass::Timeout
        } else if m.contains("connection") || m.contains("websocket") || m.contains("socket") {
            ErrorClass::Connection
        } else {
            ErrorClass::Other
        }
    }
}

/// Everything about one run, as plain data. Build it with the constructors and setters:
/// `WorkloadSpec::mixed(90).concurrency(100).duration(Duration::from_secs(5))`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// What the clients do.
    pub kind: WorkloadKind,
    /// Which node each operation goes to.
    pub nodes: NodePolicy,
    /// Concurrent clients (each has at most one operation in flight).
    pub concurrency: usize,
    /// SDK sessions per node; 0 = `min(concurrency, 2)`.
    pub sessions_per_node: usize,
    /// Records the reads and writes address (`<table>:0 …`).
    pub records: u64,
    /// Size of each written value in bytes.
    pub value_bytes: usize,
    /// Length of the measured window.
    pub duration: Duration,
    /// Operations started before this much time has passed are not recorded.
    pub warmup: Duration,
    /// Stop once this many operations have been recorded (whichever comes first with
    /// `duration`). Handy for short, deterministic runs in tests.
    pub max_ops: Option<u64>,
    /// Seed of the clients' random generators.
    pub seed: u64,
    /// Table of the records (the read-after-write pairs use `<table>_raw`).
    pub table: String,
    /// Limit for one operation; a slower one counts as a timeout.
    pub op_timeout: Duration,
    /// Keep every operation as a row of [`WorkloadReport::samples`].
    pub keep_samples: bool,
    /// Resource sampling interval.
    pub sample_every: Duration,
    /// Make sure the records exist before the run (done once per lab and table).
    pub prepare: bool,
    /// Pause of each client between two operations (read-after-write: between two pairs).
    /// Zero (the default) is a *closed loop*: every client starts its next operation as soon as
    /// the last one returns, which measures capacity — and by Little's law the mean latency is
    /// then clients ÷ throughput. A think time models paced clients, like users of an app.
    #[serde(default)]
    pub think_time: Duration,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            kind: WorkloadKind::Mixed { read_percent: 90 },
            nodes: NodePolicy::RoundRobin,
            concurrency: 10,
            sessions_per_node: 0,
            records: 10_000,
            value_bytes: 100,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            max_ops: None,
            seed: 42,
            table: "bench".into(),
            op_timeout: Duration::from_secs(10),
            keep_samples: false,
            sample_every: sampler::DEFAULT_EVERY,
            prepare: true,
            think_time: Duration::ZERO,
        }
    }
}

impl WorkloadSpec {
    /// Point reads only.
    pub fn read_only() -> Self {
        Self::of(WorkloadKind::ReadOnly)
    }
    /// Point writes only.
    pub fn write_only() -> Self {
        Self::of(WorkloadKind::WriteOnly)
    }
    /// `read_percent` % reads, the rest writes (90 is a typical web workload).
    pub fn mixed(read_percent: u8) -> Self {
        Self::of(WorkloadKind::Mixed { read_percent })
    }
    /// Write on one node, read back on the next, check the read saw the write.
    pub fn read_after_write() -> Self {
        Self::of(WorkloadKind::ReadAfterWrite)
    }
    /// A spec of this kind with the defaults.
    pub fn of(kind: WorkloadKind) -> Self {
        WorkloadSpec {
            kind,
            ..Default::default()
        }
    }
    /// Node selection policy.
    pub fn nodes(mut self, policy: NodePolicy) -> Self {
        self.nodes = policy;
        self
    }
    /// Concurrent clients.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }
    /// SDK sessions per node (0 = automatic).
    pub fn sessions_per_node(mut self, n: usize) -> Self {
        self.sessions_per_node = n;
        self
    }
    /// Number of records addressed.
    pub fn records(mut self, n: u64) -> Self {
        self.records = n;
        self
    }
    /// Bytes per written value.
    pub fn value_bytes(mut self, n: usize) -> Self {
        self.value_bytes = n;
        self
    }
    /// Measured window.
    pub fn duration(mut self, d: Duration) -> Self {
        self.duration = d;
        self
    }
    /// Warm-up before the measured window.
    pub fn warmup(mut self, d: Duration) -> Self {
        self.warmup = d;
        self
    }
    /// Stop after this many recorded operations.
    pub fn max_ops(mut self, n: u64) -> Self {
        self.max_ops = Some(n);
        self
    }
    /// Seed of the random generators.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Table name (a plain word).
    pub fn table(mut self, name: &str) -> Self {
        self.table = name.to_string();
        self
    }
    /// Limit per operation.
    pub fn op_timeout(mut self, d: Duration) -> Self {
        self.op_timeout = d;
        self
    }
    /// Keep per-operation samples.
    pub fn keep_samples(mut self, on: bool) -> Self {
        self.keep_samples = on;
        self
    }
    /// Resource sampling interval.
    pub fn sample_every(mut self, d: Duration) -> Self {
        self.sample_every = d;
        self
    }
    /// Prepare the records first (default true; skipped when already done).
    pub fn prepare(mut self, on: bool) -> Self {
        self.prepare = on;
        self
    }
    /// Pause between a client's operations (default zero: a closed loop).
    pub fn think_time(mut self, d: Duration) -> Self {
        self.think_time = d;
        self
    }

    /// `read-only`, `write-only`, `mixed 90/10`, `read-after-write`.
    pub fn label(&self) -> String {
        let kind = match self.kind {
            WorkloadKind::ReadOnly => "read-only".into(),
            WorkloadKind::WriteOnly => "write-only".into(),
            WorkloadKind::Mixed { read_percent } => {
                format!("mixed {read_percent}/{}", 100 - read_percent.min(100))
            }
            WorkloadKind::ReadAfterWrite => "read-after-write".into(),
        };
        if self.think_time.is_zero() {
            kind
        } else {
            format!("{kind}, {} ms think time", self.think_time.as_millis())
        }
    }

    /// The session pool size this spec asks for.
    pub fn sessions(&self) -> usize {
        match self.sessions_per_node {
            0 => self.concurrency.clamp(1, DEFAULT_SESSIONS),
            n => n.min(self.concurrency.max(1)),
        }
    }

    /// Checks the settings against `nodes` nodes; every message names the fix.
    pub fn validate(&self, nodes: usize) -> Result<(), LabError> {
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(LabError::config(
                "concurrency",
                format!("{} concurrent clients", self.concurrency),
                format!("use .concurrency(n) with n between 1 and {MAX_CONCURRENCY}"),
            ));
        }
        if self.records == 0 && self.kind != WorkloadKind::ReadAfterWrite {
            return Err(LabError::config(
                "records",
                "0 records to read and write",
                "use .records(n) with n ≥ 1 (default 10,000)",
            ));
        }
        if let WorkloadKind::Mixed { read_percent } = self.kind
            && read_percent > 100
        {
            return Err(LabError::config(
                "read_percent",
                format!("{read_percent} % reads"),
                "use WorkloadSpec::mixed(p) with p between 0 and 100",
            ));
        }
        if let NodePolicy::Pinned(i) = self.nodes
            && i >= nodes
        {
            return Err(LabError::config(
                "nodes",
                format!("NodePolicy::Pinned({i}) but the lab has {nodes} node(s)"),
                format!("pin a node between 0 and {}", nodes.saturating_sub(1)),
            ));
        }
        let table_ok = !self.table.is_empty()
            && self.table.len() <= 60
            && self
                .table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !self.table.starts_with(|c: char| c.is_ascii_digit());
        if !table_ok {
            return Err(LabError::config(
                "table",
                format!("`{}` is not a plain table name", self.table),
                "use letters, digits and `_`, starting with a letter (default `bench`)",
            ));
        }
        if self.duration.is_zero() && self.max_ops.is_none() {
            return Err(LabError::config(
                "duration",
                "a zero-length run",
                "set .duration(..) (default 5 s) or .max_ops(n)",
            ));
        }
        Ok(())
    }
}

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
    pub spec: WorkloadSpec,
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
    pub fn summary(&self) -> DataFrame {
        summary_frame(&self.rows)
    }

    /// One row per operation (empty unless the spec had `keep_samples(true)`): t_ms, client,
    /// node, op, ms, error.
    pub fn samples(&self) -> DataFrame {
        let s = &self.samples;
        DataFrame::new(
            s.len(),
            vec![
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
            ],
        )
        .expect("columns of equal length")
    }

    /// RSS and CPU of every process over time: t_ms, process, pid, rss_mb, cpu_pct.
    pub fn resources(&self) -> DataFrame {
        sampler::resources_frame(&self.resources).expect("columns of equal length")
    }

    /// Latency histogram of the successful operations, one colour per operation.
    pub fn latency_chart(&self) -> Result<Chart, String> {
        charts::latency_histogram(
            &format!(
                "Latency — {} · {} clients",
                self.label, self.spec.concurrency
            ),
            &self.histogram,
        )
    }

    /// RSS of every process over the run, with the spec's 200 MB line and the 100 MB goal.
    pub fn rss_chart(&self) -> Result<Chart, String> {
        charts::rss_over_time(
            &format!(
                "Memory during {} · {} clients",
                self.label, self.spec.concurrency
            ),
            &self.resources,
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
        crate::display::print_html(&self.to_html());
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
            crate::display::escape(&self.headline()),
            crate::display::escape(&peaks.join(", ")),
            crate::display::frame_html(&self.summary())
        )
    }
}

impl fmt::Display for WorkloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline())
    }
}

/// The summary rows as a table.
pub fn summary_frame(rows: &[OpSummary]) -> DataFrame {
    let f = |g: fn(&OpSummary) -> f64| rows.iter().map(|r| round3(g(r))).collect::<Vec<_>>();
    let u = |g: fn(&OpSummary) -> u64| rows.iter().map(g).collect::<Vec<_>>();
    DataFrame::new(
        rows.len(),
        vec![
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
        ],
    )
    .expect("columns of equal length")
}

/// The same workload at several concurrency levels (see [`crate::cluster::Cluster::run_sweep`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    /// One report per level, in the order run.
    pub runs: Vec<WorkloadReport>,
}

impl SweepReport {
    /// One row per level: concurrency, ops_per_s, p50/p95/p99/max in ms, errors, and the peak
    /// RSS of every process (`rss_<process>_mb`).
    pub fn summary(&self) -> DataFrame {
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
        cols.push(Column::new(
            "errors".into(),
            runs.iter().map(|r| r.total().errors).collect::<Vec<_>>(),
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
        DataFrame::new(runs.len(), cols).expect("columns of equal length")
    }

    fn title(&self) -> String {
        self.runs
            .first()
            .map(|r| format!("{} · {} node(s) on {}", r.label, r.nodes.len(), r.storage))
            .unwrap_or_default()
    }

    /// p50, p95 and p99 against concurrency, with the spec's 100 ms line (PR-002).
    pub fn percentiles_chart(&self) -> Result<Chart, String> {
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
        )
    }

    /// Operations per second against concurrency.
    pub fn throughput_chart(&self) -> Result<Chart, String> {
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
        crate::display::print_html(&format!(
            "<p><b>{}</b></p>{}",
            crate::display::escape(&self.title()),
            crate::display::frame_html(&self.summary())
        ));
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

// ----- the run (actor side) -------------------------------------------------------------------

/// One node as the runner sees it: its name and its borrowed session pool.
pub(crate) struct Target<'a> {
    pub name: String,
    pub sessions: &'a [Db],
}

/// What the actor hands the runner besides the spec.
pub(crate) struct RunContext<'a> {
    pub targets: Vec<Target<'a>>,
    /// Unique per run, so a read-after-write check can never be fooled by an earlier run's value.
    pub nonce: u64,
}

/// Recorded counts and latencies of one (node, operation).
struct Cell {
    hist: Histogram<u64>,
    errors: [u64; 4],
}

impl Cell {
    fn new() -> Cell {
        Cell {
            hist: Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds"),
            errors: [0; 4],
        }
    }
}

/// Shared by all clients of a run. Only the actor thread touches it (all clients are polled
/// there), so a `RefCell` suffices; no borrow is ever held across an `.await`.
struct Recorder {
    /// `cells[node * 4 + op]`, created on first use.
    cells: Vec<Option<Cell>>,
    recorded: u64,
    last_done: Option<Instant>,
    raw: RawCheck,
    error_examples: Vec<(ErrorClass, String)>,
    samples: Vec<OpSample>,
}

/// What one operation produced.
enum Outcome {
    Ok(surrealdb::types::Value),
    Failed(ErrorClass, String),
}

struct Shared<'a> {
    spec: &'a WorkloadSpec,
    targets: &'a [Target<'a>],
    measure_from: Instant,
    end: Instant,
    nonce: u64,
    rec: RefCell<Recorder>,
}

impl Shared<'_> {
    fn done(&self) -> bool {
        Instant::now() >= self.end
            || self
                .spec
                .max_ops
                .is_some_and(|max| self.rec.borrow().recorded >= max)
    }

    /// Records one finished operation if it started inside the measured window.
    fn record(
        &self,
        client: usize,
        node: usize,
        op: Op,
        started: Instant,
        outcome: &Outcome,
    ) -> bool {
        if started < self.measure_from {
            return false;
        }
        let now = Instant::now();
        let took = now.duration_since(started);
        let mut rec = self.rec.borrow_mut();
        if self.spec.max_ops.is_some_and(|max| rec.recorded >= max) {
            return false;
        }
        rec.recorded += 1;
        rec.last_done = Some(rec.last_done.map_or(now, |t| t.max(now)));
        let cell = rec.cells[node * 4 + op.index()].get_or_insert_with(Cell::new);
        let error = match outcome {
            Outcome::Ok(_) => {
                cell.hist
                    .saturating_record((took.as_micros() as u64).max(1));
                None
            }
            Outcome::Failed(class, message) => {
                cell.errors[*class as usize] += 1;
                if !rec.error_examples.iter().any(|(c, _)| c == class) {
                    rec.error_examples.push((*class, message.clone()));
                }
                Some(*class)
            }
        };
        if self.spec.keep_samples && rec.samples.len() < MAX_SAMPLES {
            rec.samples.push(OpSample {
                t_ms: started.duration_since(self.measure_from).as_secs_f64() * 1000.0,
                client: client as u32,
                node: self.targets[node].name.clone(),
                op,
                ms: took.as_secs_f64() * 1000.0,
                error,
            });
        }
        true
    }
}

/// Runs one statement with the op timeout and returns its first result.
async fn exec(db: &Db, query: String, limit: Duration) -> Outcome {
    let run = async {
        let mut response = db.query(query).await?;
        response.take::<surrealdb::types::Value>(0)
    };
    match tokio::time::timeout(limit, run).await {
        Err(_) => Outcome::Failed(
            ErrorClass::Timeout,
            format!("no answer within {limit:?} (op timeout)"),
        ),
        Ok(Err(e)) => Outcome::Failed(ErrorClass::of(&e), e.message().to_string()),
        Ok(Ok(v)) => Outcome::Ok(v),
    }
}

/// One client: picks nodes and keys from its own seeded generator until the run ends.
async fn client(k: usize, sh: &Shared<'_>) {
    let spec = sh.spec;
    let n = sh.targets.len();
    let mut rng = fastrand::Rng::with_seed(
        spec.seed
            .wrapping_add((k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
    );
    // A fixed value per client: the content does not matter, its size does.
    let payload: String = (0..spec.value_bytes).map(|_| rng.alphanumeric()).collect();
    let mut turn = k; // round-robin position; starting at k spreads clients over the nodes
    let mut seq: u64 = 0;
    let table = &spec.table;
    while !sh.done() {
        if !spec.think_time.is_zero() && seq > 0 {
            // Paced clients: the pause is not part of any operation's latency.
            tokio::time::sleep(spec.think_time).await;
            if sh.done() {
                break;
            }
        }
        let node = match spec.nodes {
            NodePolicy::RoundRobin => {
                turn = turn.wrapping_add(1);
                turn % n
            }
            NodePolicy::Pinned(i) => i,
            NodePolicy::Random => rng.usize(0..n),
        };
        let session = |i: usize| {
            let pool = sh.targets[i].sessions;
            &pool[k % pool.len()]
        };
        seq += 1;
        let read = match spec.kind {
            WorkloadKind::ReadOnly => Some(true),
            WorkloadKind::WriteOnly => Some(false),
            WorkloadKind::Mixed { read_percent } => Some(rng.u8(0..100) < read_percent),
            WorkloadKind::ReadAfterWrite => None,
        };
        match read {
            Some(read) => {
                let key = rng.u64(0..spec.records);
                let (op, query) = if read {
                    (Op::Read, format!("SELECT * FROM ONLY {table}:{key}"))
                } else {
                    (
                        Op::Write,
                        format!("UPSERT {table}:{key} SET v = '{payload}', n = {seq} RETURN NONE"),
                    )
                };
                let started = Instant::now();
                let outcome = exec(session(node), query, spec.op_timeout).await;
                sh.record(k, node, op, started, &outcome);
            }
            None => {
                // The token is unique per run, client and step: seeing it proves the read saw
                // exactly this write, not an older value of the same record.
                let key = k as u64 * RAW_KEYS_PER_CLIENT + seq % RAW_KEYS_PER_CLIENT;
                let token = format!("{}-{k}-{seq}", sh.nonce);
                let started = Instant::now();
                let written = exec(
                    session(node),
                    format!("UPSERT {table}_raw:{key} SET v = '{token}' RETURN NONE"),
                    spec.op_timeout,
                )
                .await;
                sh.record(k, node, Op::RawWrite, started, &written);
                if !matches!(written, Outcome::Ok(_)) {
                    continue;
                }
                let reader = (node + 1) % n;
                let started = Instant::now();
                let read = exec(
                    session(reader),
                    format!("SELECT VALUE v FROM ONLY {table}_raw:{key}"),
                    spec.op_timeout,
                )
                .await;
                let counted = sh.record(k, reader, Op::RawRead, started, &read);
                if let (true, Outcome::Ok(value)) = (counted, read) {
                    let seen = value.into_json_value() == serde_json::Value::String(token);
                    let mut rec = sh.rec.borrow_mut();
                    rec.raw.pairs += 1;
                    if seen {
                        rec.raw.seen += 1;
                    } else {
                        rec.raw.missed += 1;
                    }
                }
            }
        }
    }
}

/// Runs the workload on the given session pools and summarises it. The caller (the actor)
/// owns the sessions, prepared the records and runs the resource sampler around this.
pub(crate) async fn run(spec: &WorkloadSpec, ctx: RunContext<'_>) -> Measured {
    let n = ctx.targets.len();
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration.max(Duration::from_millis(1));
    let end = if spec.duration.is_zero() {
        // Only `max_ops` limits the run; an hour is the safety net.
        measure_from + Duration::from_secs(3600)
    } else {
        end
    };
    let shared = Shared {
        spec,
        targets: &ctx.targets,
        measure_from,
        end,
        nonce: ctx.nonce,
        rec: RefCell::new(Recorder {
            cells: (0..n * 4).map(|_| None).collect(),
            recorded: 0,
            last_done: None,
            raw: RawCheck {
                pairs: 0,
                seen: 0,
                missed: 0,
                cross_node: n > 1,
            },
            error_examples: Vec::new(),
            samples: Vec::new(),
        }),
    };
    futures::future::join_all((0..spec.concurrency).map(|k| client(k, &shared))).await;
    let rec = shared.rec.into_inner();
    let measured = rec
        .last_done
        .map(|t| t.saturating_duration_since(measure_from))
        .unwrap_or_default()
        .max(Duration::from_millis(1));
    let names: Vec<String> = ctx.targets.iter().map(|t| t.name.clone()).collect();
    summarise(rec, &names, measured.as_secs_f64(), spec)
}

/// The runner's result before the actor adds resources and context.
pub(crate) struct Measured {
    pub measured_s: f64,
    pub rows: Vec<OpSummary>,
    pub raw: Option<RawCheck>,
    pub histogram: Vec<LatencyBucket>,
    pub error_examples: Vec<(ErrorClass, String)>,
    pub samples: Vec<OpSample>,
}

fn summarise(rec: Recorder, names: &[String], secs: f64, spec: &WorkloadSpec) -> Measured {
    let row = |node: &str, op: &str, cells: &[&Cell]| -> OpSummary {
        let mut hist = Histogram::<u64>::new_with_bounds(1, HIST_MAX_US, 3).expect("bounds");
        let mut errors = [0u64; 4];
        for c in cells {
            hist.add(&c.hist).expect("same bounds");
            for (e, x) in errors.iter_mut().zip(c.errors) {
                *e += x;
            }
        }
        let errs: u64 = errors.iter().sum();
        let ops = hist.len() + errs;
        let ms = |us: u64| us as f64 / 1000.0;
        let (mean, p50, p95, p99, max) = if hist.is_empty() {
            (f64::NAN, f64::NAN, f64::NAN, f64::NAN, f64::NAN)
        } else {
            (
                hist.mean() / 1000.0,
                ms(hist.value_at_quantile(0.50)),
                ms(hist.value_at_quantile(0.95)),
                ms(hist.value_at_quantile(0.99)),
                ms(hist.max()),
            )
        };
        OpSummary {
            node: node.to_string(),
            op: op.to_string(),
            ops,
            errors: errs,
            conflicts: errors[ErrorClass::Conflict as usize],
            timeouts: errors[ErrorClass::Timeout as usize],
            connection: errors[ErrorClass::Connection as usize],
            other: errors[ErrorClass::Other as usize],
            ops_per_s: ops as f64 / secs,
            mean_ms: mean,
            p50_ms: p50,
            p95_ms: p95,
            p99_ms: p99,
            max_ms: max,
        }
    };
    let cell = |node: usize, op: Op| rec.cells[node * 4 + op.index()].as_ref();
    let used_ops: Vec<Op> = Op::ALL
        .into_iter()
        .filter(|op| (0..names.len()).any(|i| cell(i, *op).is_some()))
        .collect();
    let mut rows = Vec::new();
    for (i, name) in names.iter().enumerate() {
        for op in &used_ops {
            if let Some(c) = cell(i, *op) {
                rows.push(row(name, op.as_str(), &[c]));
            }
        }
    }
    let mut histogram = Vec::new();
    for op in &used_ops {
        let cells: Vec<&Cell> = (0..names.len()).filter_map(|i| cell(i, *op)).collect();
        rows.push(row("all", op.as_str(), &cells));
        histogram.extend(buckets(op.as_str(), &cells));
    }
    let all: Vec<&Cell> = rec.cells.iter().flatten().collect();
    rows.push(row("all", "all", &all));
    Measured {
        measured_s: secs,
        rows,
        raw: (spec.kind == WorkloadKind::ReadAfterWrite).then_some(rec.raw),
        histogram,
        error_examples: rec.error_examples,
        samples: rec.samples,
    }
}

/// Buckets per decade of a latency histogram: 10 gives bars ~26 % wide — fine enough to see
/// two modes (e.g. reads vs. reads that waited for a lock), coarse enough to have counts.
const BUCKETS_PER_DECADE: f64 = 10.0;

/// The cells' latencies as log-spaced buckets (only non-empty ones).
fn buckets(op: &str, cells: &[&Cell]) -> Vec<LatencyBucket> {
    let mut counts: std::collections::BTreeMap<i64, u64> = std::collections::BTreeMap::new();
    for c in cells {
        for v in c.hist.iter_recorded() {
            let ms = v.value_iterated_to() as f64 / 1000.0;
            let b = (ms.max(1e-3).log10() * BUCKETS_PER_DECADE).floor() as i64;
            *counts.entry(b).or_default() += v.count_at_value();
        }
    }
    counts
        .into_iter()
        .map(|(b, count)| LatencyBucket {
            op: op.to_string(),
            lo_ms: 10f64.powf(b as f64 / BUCKETS_PER_DECADE),
            hi_ms: 10f64.powf((b + 1) as f64 / BUCKETS_PER_DECADE),
            count,
        })
        .collect()
}

/// The statements that make sure `records` records exist in `table` (and that both tables are
/// defined, so the first concurrent writes do not race to create them).
pub(crate) fn prepare_statements(spec: &WorkloadSpec) -> Vec<String> {
    let t = &spec.table;
    let mut out = vec![format!(
        "DEFINE TABLE IF NOT EXISTS {t} SCHEMALESS; DEFINE TABLE IF NOT EXISTS {t}_raw SCHEMALESS"
    )];
    let value: String = "x".repeat(spec.value_bytes);
    let mut from = 0;
    while from < spec.records {
        let to = (from + PREPARE_CHUNK).min(spec.records);
        let rows: Vec<String> = (from..to)
            .map(|k| format!("{{ id: {k}, v: '{value}', n: 0 }}"))
            .collect();
        // IGNORE: records already there are left as they are, so preparing twice is cheap.
        out.push(format!("INSERT IGNORE INTO {t} [{}]", rows.join(", ")));
        from = to;
    }
    out
}

/// Runs the preparation statements on one session.
pub(crate) async fn prepare(db: &Db, spec: &WorkloadSpec) -> Result<(), surrealdb::Error> {
    for statement in prepare_statements(spec) {
        db.query(statement).await?.check()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_validate_with_fixes() {
        assert!(WorkloadSpec::mixed(90).validate(2).is_ok());
        let e = WorkloadSpec::read_only()
            .concurrency(0)
            .validate(2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("between 1 and"), "{e}");
        let e = WorkloadSpec::mixed(150)
            .validate(2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("between 0 and 100"), "{e}");
        let e = WorkloadSpec::read_only()
            .nodes(NodePolicy::Pinned(2))
            .validate(2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("between 0 and 1"), "{e}");
        let e = WorkloadSpec::read_only()
            .table("user; DELETE user")
            .validate(1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("plain table name"), "{e}");
    }

    #[test]
    fn labels_and_session_pools() {
        assert_eq!(WorkloadSpec::mixed(90).label(), "mixed 90/10");
        assert_eq!(WorkloadSpec::read_after_write().label(), "read-after-write");
        assert_eq!(
            WorkloadSpec::read_after_write()
                .think_time(Duration::from_millis(500))
                .label(),
            "read-after-write, 500 ms think time"
        );
        assert_eq!(WorkloadSpec::read_only().concurrency(1).sessions(), 1);
        assert_eq!(WorkloadSpec::read_only().concurrency(200).sessions(), 2);
        assert_eq!(
            WorkloadSpec::read_only()
                .concurrency(200)
                .sessions_per_node(32)
                .sessions(),
            32
        );
    }

    #[test]
    fn preparation_is_chunked_and_idempotent() {
        let s = prepare_statements(&WorkloadSpec::read_only().records(1200).value_bytes(3));
        assert_eq!(s.len(), 1 + 3);
        assert!(s[0].contains("DEFINE TABLE IF NOT EXISTS bench_raw"));
        assert!(s[1].starts_with("INSERT IGNORE INTO bench [{ id: 0, v: 'xxx', n: 0 }"));
        assert!(s[3].contains("id: 1199"));
        assert!(!s[3].contains("id: 1200"));
    }

    fn cell_with(values_us: &[u64], errors: [u64; 4]) -> Cell {
        let mut c = Cell::new();
        for v in values_us {
            c.hist.record(*v).unwrap();
        }
        c.errors = errors;
        c
    }

    #[test]
    fn summaries_have_ordered_percentiles_and_totals() {
        let mut rec = Recorder {
            cells: (0..8).map(|_| None).collect(),
            recorded: 0,
            last_done: None,
            raw: RawCheck {
                pairs: 3,
                seen: 3,
                missed: 0,
                cross_node: true,
            },
            error_examples: Vec::new(),
            samples: Vec::new(),
        };
        let values: Vec<u64> = (1..=1000).map(|i| i * 10).collect();
        rec.cells[Op::Read.index()] = Some(cell_with(&values, [0; 4]));
        rec.cells[4 + Op::Write.index()] = Some(cell_with(&[5_000], [2, 0, 0, 1]));
        let m = summarise(
            rec,
            &["node-a".into(), "node-b".into()],
            2.0,
            &WorkloadSpec::mixed(50),
        );
        let names: Vec<(String, String)> = m
            .rows
            .iter()
            .map(|r| (r.node.clone(), r.op.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("node-a".into(), "read".into()),
                ("node-b".into(), "write".into()),
                ("all".into(), "read".into()),
                ("all".into(), "write".into()),
                ("all".into(), "all".into()),
            ]
        );
        let total = m.rows.last().unwrap();
        assert_eq!(total.ops, 1000 + 1 + 3);
        assert_eq!((total.errors, total.conflicts, total.other), (3, 2, 1));
        assert!((total.ops_per_s - 502.0).abs() < 1e-9);
        let read = &m.rows[0];
        assert!(
            read.p50_ms <= read.p95_ms && read.p95_ms <= read.p99_ms && read.p99_ms <= read.max_ms
        );
        assert!((read.p50_ms - 5.0).abs() < 0.01, "{}", read.p50_ms);
        assert!((read.max_ms - 10.0).abs() < 0.01);
        assert!(m.raw.is_none(), "only read-after-write reports the check");
        let bucketed: u64 = m.histogram.iter().map(|b| b.count).sum();
        assert_eq!(bucketed, 1001);
        assert!(m.histogram.iter().all(|b| b.lo_ms < b.hi_ms));
    }
}
