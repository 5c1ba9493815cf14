//! `poc_helpers`: start a small SurrealDB cluster on this machine, talk to each node, see which node
//! served every operation, measure it, break it, and clean up — from a notebook, a test or the
//! `lab` CLI, through one synchronous API.
//!
//! ```no_run
//! use poc_helpers::prelude::*;
//!
//! let cluster = Cluster::builder().start().expect("two nodes on 8000 and 8001");
//! cluster.create_user("a", "Ada", "ada@example.com").unwrap();   // [node-a :8000] CREATE … → 1 row
//! cluster.sql("b", "SELECT * FROM user").unwrap();               // [node-b :8001] SELECT … → 0 rows
//! cluster.status().unwrap().show();                               // HTML table in a notebook
//! cluster.cleanup().unwrap();
//! ```
//!
//! # Layout
//!
//! The facade and what it is made of, top-down:
//!
//! - [`cluster`]: `ClusterBuilder` (settings, validation) and `Cluster`, the synchronous facade.
//!   Every method sends one command to the lab's actor and waits for the reply.
//! - [`runtime`]: the actor — a dedicated thread with its own tokio runtime, driven by plain-data
//!   `Command`s over `std::sync::mpsc`. Read its docs for why notebooks (evcxr) need this.
//! - [`lab`]: the actor-side state of one lab (nodes, SDK sessions, op log, `state.json`) and the
//!   interpretation of each command.
//! - [`node`]: one `surreal start` process — spawn with its own log, wait for `/health` + `/ready`,
//!   stop / kill / restart, pidfile.
//! - [`storage`]: `StorageMode` (isolated memory or surrealkv, shared, external TiKV, tiup
//!   playground) and what each passes to `surreal start`.
//! - [`storage_node`]: the embedded `storage-node` process behind `StorageMode::Shared` (the
//!   lab's single-process PD + TiKV): start, stop, kill, pause, restart, status.
//! - [`trace`]: the storage node's per-RPC trace as a DataFrame, attributed to nodes.
//! - [`client`]: per-node SDK WebSocket sessions, `QueryResult`, SurrealDB errors mapped to advice,
//!   and a small HTTP GET for `/health`, `/version`, `/metrics`.
//! - [`oplog`]: the operation log — one `OpRecord` and one printed line per query.
//! - [`metrics`]: status (`Instance`) and timings as polars DataFrames; process RSS via `sysinfo`.
//! - [`workload`]: the load generator — `WorkloadSpec` (read-only, write-only, mixed,
//!   read-after-write across nodes), HDR-histogram latencies, errors by cause, reports as
//!   DataFrames, concurrency sweeps.
//! - [`sampler`]: RSS and CPU of every lab process sampled during a run.
//! - [`entities`]: the spec's `User` and `Post`, their schema (`schema/entities.surql`) and helpers.
//! - [`consistency`]: the same query on every node, compared (do all nodes agree?).
//! - [`charts`]: plotters charts as SVG (`Chart`), inline in JupyterLab, saved as files.
//! - [`display`]: DataFrames and query rows as HTML tables for evcxr (`.show()`).
//! - [`binary`]: finding the `surreal` binary (and other workspace binaries) and checking its version.
//! - [`ports`]: port plan validation, free-port checks, ephemeral port blocks, who holds a port.
//! - [`procs`]: processes by pid — liveness, command line, signals, pidfiles and reaping.
//! - [`error`]: `LabError`; every message says what happened and how to fix it.
//!
//! Failure modes (notebook 05):
//!
//! - [`faults`]: the fault log — every kill/stop/pause/resume/restart and link fault with its
//!   window, on the clock of `timings()`, for shading charts.
//! - [`proxy`]: a small in-process TCP fault proxy (cut, heal, latency ± jitter, drop a fraction
//!   of new connections); [`links`]: the lab's breakable client→node and node→storage links.
//! - [`conflicts`]: the same transaction from several nodes, retry with backoff, conflict rate
//!   under contention, write skew and its fix.
//! - [`bank`]: the Jepsen-style bank checker: transfers and reads under a fault schedule,
//!   acknowledged / failed / unknown, and an audit that nothing acknowledged was lost.
//! - [`membership`]: `INFO FOR ROOT` members, heartbeat expiry and archiving, recovery times.
//! - [`live`]: LIVE SELECT across nodes with the inline and the experimental router engine.
//!
//! Notebook cells can only name crates they `:dep` themselves, so this crate re-exports the two it
//! hands out: [`polars`] (DataFrames) and [`serde_json`] (query rows).

// `LabError` carries a whole explanation (node, statement, message, fix) by design: errors are
// rare, read by people, and cross threads as plain data, so their size does not matter.
#![allow(clippy::result_large_err)]

pub mod bank;
pub mod binary;
pub mod charts;
pub mod client;
pub mod cluster;
pub mod conflicts;
pub mod consistency;
pub mod display;
pub mod entities;
pub mod error;
pub mod faults;
pub mod lab;
pub mod links;
pub mod live;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod oplog;
pub mod ports;
pub mod procs;
pub mod proxy;
pub mod runtime;
pub mod sampler;
pub mod storage;
pub mod storage_node;
pub mod trace;
pub mod workload;

pub use polars;
pub use serde_json;

/// Everything a notebook usually needs: `use poc_helpers::prelude::*;`.
pub mod prelude {
    pub use crate::bank::{BankPlan, BankReport, Fault, FaultStep};
    pub use crate::charts::Chart;
    pub use crate::client::{QueryResult, StatementResult};
    pub use crate::cluster::{Cluster, ClusterBuilder, Endpoint};
    pub use crate::conflicts::{ContentionPlan, RetryPolicy};
    pub use crate::consistency::Comparison;
    pub use crate::display::{ShowExt, Table};
    pub use crate::entities::{Post, User};
    pub use crate::error::LabError;
    pub use crate::links::{Link, LinkFault};
    pub use crate::live::LiveQueryEngine;
    pub use crate::membership::MembershipIntervals;
    pub use crate::metrics::Instance;
    pub use crate::oplog::OpRecord;
    pub use crate::runtime::NodeRef;
    pub use crate::storage::{Engine, StorageMode};
    pub use crate::trace::TraceRow;
    pub use crate::workload::{
        ErrorClass, NodePolicy, Op, SWEEP_LEVELS, SweepReport, WorkloadKind, WorkloadReport,
        WorkloadSpec,
    };
    pub use polars::prelude::DataFrame;
    // Cells name the crate (`serde_json::json!`, `serde_json::Value`) without a `:dep` of their own.
    pub use crate::serde_json;
    pub use serde_json::{Value, json};
}
