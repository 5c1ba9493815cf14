//! The load generator: many concurrent clients running a fixed mix of reads and writes against
//! the lab's nodes, every operation's latency recorded, errors sorted by cause.
//!
//! ```no_run
//! use poc_helpers::prelude::*;
//! use std::time::Duration;
//!
//! let cluster = Cluster::builder().ephemeral_ports().start().unwrap();
//! let spec = WorkloadPlan::read_after_write()
//!     .concurrency(100)
//!     .duration(Duration::from_secs(5));
//! let report = cluster.run_workload(spec).unwrap();
//! println!("{report}");                 // one line: ops/s, p50/p95/p99/max, errors
//! report.summary_frame().unwrap().show(); // per node and operation, as a table
//! report.latency_chart().unwrap();      // histogram (an SVG in a notebook)
//! ```
//!
//! # The moving parts
//!
//! * [`WorkloadPlan`] is plain data (see `runtime` for why): what to run (read-only, write-only,
//!   mixed, read-after-write across nodes), on which nodes (round-robin, pinned, random), with how
//!   many concurrent clients, for how long, on how many records, from which seed.
//! * The lab's actor runs it (`Command::Workload`): it opens a **pool of SDK sessions per node**
//!   once and keeps it between runs, prepares the records, starts the resource [`sampler`](crate::infra::sampler), and
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
//! [`WorkloadPlan::sessions_per_node`] on a machine with more cores.
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

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::vocab::error::LabError;

pub mod explain;
pub mod report;
pub(crate) mod run;
pub mod scaling;
pub mod spec_check;

pub use report::{OpSample, OpSummary, RawCheck, SweepReport, WorkloadReport, summary_frame};
pub use scaling::ScaleOutReport;
pub use spec_check::{DEGRADATION_K, Requirement, SpecCheck};

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
        let lab = crate::infra::client::query_error("", 0, "", err);
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
/// `WorkloadPlan::mixed(90).concurrency(100).duration(Duration::from_secs(5))`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadPlan {
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
    /// Only the first `n` nodes serve the run (`None`: all of them). Notebook 04 measures
    /// scale-out this way: one lab, the same storage, 1, 2 and 3 query nodes in turn.
    #[serde(default)]
    pub on_nodes: Option<usize>,
}

impl Default for WorkloadPlan {
    fn default() -> Self {
        WorkloadPlan {
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
            sample_every: crate::infra::sampler::DEFAULT_EVERY,
            prepare: true,
            think_time: Duration::ZERO,
            on_nodes: None,
        }
    }
}

impl WorkloadPlan {
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
        WorkloadPlan {
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

    /// Only the first `n` nodes (node-a, node-b, …) serve the run.
    pub fn on_nodes(mut self, n: usize) -> Self {
        self.on_nodes = Some(n);
        self
    }

    /// How many of a lab's `nodes` nodes serve the run.
    pub fn serving(&self, nodes: usize) -> usize {
        self.on_nodes.unwrap_or(nodes)
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
                "use WorkloadPlan::mixed(p) with p between 0 and 100",
            ));
        }
        if let Some(n) = self.on_nodes
            && !(1..=nodes).contains(&n)
        {
            return Err(LabError::config(
                "on_nodes",
                format!(".on_nodes({n}) but the lab has {nodes} node(s)"),
                format!(
                    "use .on_nodes(n) with n between 1 and {nodes}, or add nodes with cluster.add_node()"
                ),
            ));
        }
        let nodes = self.serving(nodes);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_validate_with_fixes() {
        assert!(WorkloadPlan::mixed(90).validate(2).is_ok());
        let e = WorkloadPlan::read_only()
            .concurrency(0)
            .validate(2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("between 1 and"), "{e}");
        let e = WorkloadPlan::mixed(150)
            .validate(2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("between 0 and 100"), "{e}");
        let e = WorkloadPlan::read_only()
            .nodes(NodePolicy::Pinned(2))
            .validate(2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("between 0 and 1"), "{e}");
        let e = WorkloadPlan::read_only()
            .table("user; DELETE user")
            .validate(1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("plain table name"), "{e}");
        let e = WorkloadPlan::read_only()
            .on_nodes(3)
            .validate(2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("add_node"), "{e}");
        assert!(WorkloadPlan::read_only().on_nodes(0).validate(2).is_err());
        // Pinning is checked against the serving nodes, not the lab's.
        let e = WorkloadPlan::read_only()
            .on_nodes(1)
            .nodes(NodePolicy::Pinned(1))
            .validate(2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("between 0 and 0"), "{e}");
    }

    #[test]
    fn labels_and_session_pools() {
        assert_eq!(WorkloadPlan::mixed(90).label(), "mixed 90/10");
        assert_eq!(WorkloadPlan::read_after_write().label(), "read-after-write");
        assert_eq!(
            WorkloadPlan::read_after_write()
                .think_time(Duration::from_millis(500))
                .label(),
            "read-after-write, 500 ms think time"
        );
        assert_eq!(WorkloadPlan::read_only().concurrency(1).sessions(), 1);
        assert_eq!(WorkloadPlan::read_only().concurrency(200).sessions(), 2);
        assert_eq!(
            WorkloadPlan::read_only()
                .concurrency(200)
                .sessions_per_node(32)
                .sessions(),
            32
        );
    }
}
