//! A Jepsen-style bank checker: money moves between accounts through every node while faults
//! are injected, and afterwards we prove that no money appeared or vanished and that every
//! transfer a client saw acknowledged really happened.
//!
//! # The idea
//!
//! `N` accounts start with the same balance, so the total is fixed. Writers on every node move
//! random amounts between random accounts, each transfer one `BEGIN … COMMIT` transaction that
//! also records the transfer, under a unique id, in a ledger table. Readers on every node read
//! all balances in one statement (one snapshot) over and over. Meanwhile a **fault schedule** —
//! plain data: at 4 s kill node-b, at 7 s restart it, at 13 s kill the storage node, … — runs.
//!
//! The checks, the same as Jepsen's bank test:
//!
//! 1. **Every read sees the full total** and no negative balance. A read that saw money in
//!    flight (debited here, not yet credited there) would break snapshot isolation.
//! 2. **Every acknowledged transfer is in the final ledger** ("no lost acknowledged write").
//! 3. **Nothing reported as failed was applied**, and the final balances equal the initial ones
//!    plus exactly the ledger's transfers.
//!
//! # Acknowledged, failed, unknown
//!
//! A distributed client cannot always know what happened. Each transfer is classified:
//!
//! * **acknowledged** — COMMIT returned OK.
//! * **failed** (definite) — the transaction certainly did not commit: a retryable conflict,
//!   the insufficient-funds check, an error *before* COMMIT (the transaction was cancelled), or
//!   the connection could not even be opened (nothing was sent).
//! * **unknown** — the request was sent but no clear answer came back: a timeout (a paused
//!   node), a connection lost mid-request (a killed node, a cut link), or an error *on* COMMIT
//!   other than a conflict (with TiKV's async commit, a transaction whose prewrites all
//!   succeeded is committed even if the reply is lost). Unknown transfers may or may not be in
//!   the ledger; both are correct. Treating them as failed would be the classic mistake.
//!
//! The whole run happens inside the lab's actor (one command): the workers are tasks with
//! their own connections, and the schedule's faults go through the same code as
//! `cluster.kill_node(..)`, so they appear in `cluster.faults()` and shade the timeline.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::client::{self, ConnectSpec, Db};
use crate::cluster::Cluster;
use crate::error::LabError;
use crate::faults::FaultRecord;
use crate::lab::Lab;
use crate::links::{Link, LinkFault};
use crate::runtime::{Command, NodeAction, NodeRef};

/// The accounts table (prefixed so a bank run never touches the learner's data).
const ACCOUNTS: &str = "bank_account";
/// The ledger table: one row per applied transfer, keyed by the transfer's unique id.
const LEDGER: &str = "bank_ledger";
/// Ids are `worker × ID_STRIDE + sequence`, unique across workers and runs of one plan.
const ID_STRIDE: u64 = 1_000_000_000;

/// One fault the schedule injects. Plain data, so a schedule can be written as a list.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// SIGKILL a node.
    KillNode(NodeRef),
    /// SIGTERM a node (then SIGKILL after the stop timeout).
    StopNode(NodeRef),
    /// SIGSTOP a node.
    PauseNode(NodeRef),
    /// SIGCONT a node.
    ResumeNode(NodeRef),
    /// Start a node again and wait until it is ready.
    RestartNode(NodeRef),
    /// SIGKILL the storage node.
    KillStorage,
    /// SIGTERM the storage node.
    StopStorage,
    /// SIGSTOP the storage node.
    PauseStorage,
    /// SIGCONT the storage node.
    ResumeStorage,
    /// Start the storage node again on the same data.
    RestartStorage,
    /// Change a link (needs `.fault_links(true)`).
    Link(Link, LinkFault),
}

/// `at` seconds into the run, inject `fault`.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultStep {
    /// Offset from the start of the load.
    pub at: Duration,
    /// What to do.
    pub fault: Fault,
}

impl FaultStep {
    /// `FaultStep::at(4.0, Fault::KillNode("b".into()))`.
    pub fn at(seconds: f64, fault: Fault) -> FaultStep {
        FaultStep {
            at: Duration::from_secs_f64(seconds),
            fault,
        }
    }
}

/// The bank run's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BankPlan {
    /// Number of accounts (≥ 2; default 8).
    pub accounts: usize,
    /// Starting balance of each (default 100).
    pub initial_balance: i64,
    /// How long the load runs (default 20 s).
    pub duration: Duration,
    /// Concurrent transfer clients per node (default 2).
    pub writers_per_node: usize,
    /// Concurrent reading clients per node (default 1).
    pub readers_per_node: usize,
    /// Transfers move 1..=max_amount (default 10).
    pub max_amount: i64,
    /// A request without an answer after this is "unknown" (default 3 s).
    pub op_timeout: Duration,
    /// How long the final audit may wait for the cluster to serve again (default 90 s).
    pub audit_timeout: Duration,
    /// Faults and when to inject them.
    pub schedule: Vec<FaultStep>,
}

impl Default for BankPlan {
    fn default() -> Self {
        BankPlan {
            accounts: 8,
            initial_balance: 100,
            duration: Duration::from_secs(20),
            writers_per_node: 2,
            readers_per_node: 1,
            max_amount: 10,
            op_timeout: Duration::from_secs(3),
            audit_timeout: Duration::from_secs(90),
            schedule: Vec::new(),
        }
    }
}

impl BankPlan {
    /// 20 s with one of each kind of process fault: node-b killed at 3 s and restarted at 6 s,
    /// node-a paused at 8 s and resumed at 12 s (longer than `op_timeout`, so its in-flight
    /// transfers become "unknown"), the storage node killed at 14 s and restarted at 15 s.
    /// Needs at least two nodes and shared storage.
    pub fn short() -> BankPlan {
        BankPlan {
            schedule: vec![
                FaultStep::at(3.0, Fault::KillNode("b".into())),
                FaultStep::at(6.0, Fault::RestartNode("b".into())),
                FaultStep::at(8.0, Fault::PauseNode("a".into())),
                FaultStep::at(12.0, Fault::ResumeNode("a".into())),
                FaultStep::at(14.0, Fault::KillStorage),
                FaultStep::at(15.0, Fault::RestartStorage),
            ],
            ..BankPlan::default()
        }
    }

    /// Two minutes of everything: node kill/restart, graceful stop, pause, storage pause and
    /// crash, and — when `links` (the lab runs with `.fault_links(true)`) — a node cut from
    /// storage, a client link cut, latency with jitter and dropped connections.
    pub fn two_minutes(links: bool) -> BankPlan {
        let mut s = vec![
            FaultStep::at(8.0, Fault::KillNode("b".into())),
            FaultStep::at(14.0, Fault::RestartNode("b".into())),
            FaultStep::at(22.0, Fault::PauseNode("a".into())),
            FaultStep::at(26.0, Fault::ResumeNode("a".into())),
            FaultStep::at(34.0, Fault::KillStorage),
            FaultStep::at(37.0, Fault::RestartStorage),
            FaultStep::at(48.0, Fault::StopNode("a".into())),
            FaultStep::at(54.0, Fault::RestartNode("a".into())),
            FaultStep::at(62.0, Fault::PauseStorage),
            FaultStep::at(65.0, Fault::ResumeStorage),
        ];
        if links {
            let lat = LinkFault::Latency {
                latency: Duration::from_millis(50),
                jitter: Duration::from_millis(25),
            };
            s.extend([
                FaultStep::at(74.0, Fault::Link(Link::to_storage("b"), LinkFault::Cut)),
                FaultStep::at(80.0, Fault::Link(Link::to_storage("b"), LinkFault::Heal)),
                FaultStep::at(86.0, Fault::Link(Link::client_to("a"), LinkFault::Cut)),
                FaultStep::at(90.0, Fault::Link(Link::client_to("a"), LinkFault::Heal)),
                FaultStep::at(94.0, Fault::Link(Link::to_storage("a"), lat)),
                FaultStep::at(102.0, Fault::Link(Link::to_storage("a"), LinkFault::Heal)),
                FaultStep::at(
                    106.0,
                    Fault::Link(Link::client_to("b"), LinkFault::Drop { fraction: 0.5 }),
                ),
                FaultStep::at(112.0, Fault::Link(Link::client_to("b"), LinkFault::Heal)),
            ]);
        }
        BankPlan {
            duration: Duration::from_secs(120),
            schedule: s,
            ..BankPlan::default()
        }
    }

    fn validate(&self) -> Result<(), LabError> {
        let bad = |reason: &str| {
            Err(LabError::config(
                "BankPlan",
                reason,
                "start from BankPlan::default() or BankPlan::short() and change one field",
            ))
        };
        if self.accounts < 2 {
            return bad("a bank needs at least 2 accounts");
        }
        if self.initial_balance < 1 || self.max_amount < 1 {
            return bad("balances and amounts must be positive");
        }
        if self.writers_per_node == 0 {
            return bad("at least one writer per node is needed");
        }
        if self.duration.is_zero() || self.op_timeout.is_zero() {
            return bad("duration and op_timeout must be longer than zero");
        }
        if let Some(late) = self.schedule.iter().find(|s| s.at > self.duration) {
            return bad(&format!(
                "the schedule has a fault at {:?}, after the run ends ({:?})",
                late.at, self.duration
            ));
        }
        Ok(())
    }
}

/// What a transfer or read ended as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// Acknowledged (transfers) / answered (reads).
    Ok,
    /// Certainly not applied (transfers) / no answer (reads).
    Failed,
    /// Sent, outcome unknown (transfers only).
    Unknown,
}

/// One operation of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BankOp {
    /// The node the client talked to.
    pub node: String,
    /// `transfer` or `read`.
    pub kind: String,
    /// Lab clock (ms since the lab started), like `timings()` and `faults()`.
    pub started_at_ms: f64,
    /// Round trip, ms.
    pub ms: f64,
    /// How it ended.
    pub outcome: Outcome,
    /// The transfer's id (transfers only).
    pub id: Option<u64>,
    /// Why it failed or is unknown, as a category (see [`BankReport::reasons_frame`]).
    pub reason: Option<String>,
    /// The error message, shortened.
    pub detail: Option<String>,
}

/// A transfer as the client saw it, for the audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Transfer {
    id: u64,
    outcome: Outcome,
}

/// Everything a bank run found. `passed()` is the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BankReport {
    /// Accounts × initial balance: what every read must add up to.
    pub expected_total: i64,
    /// When the load started and ended (lab clock, ms).
    pub started_at_ms: f64,
    /// End of the load (before healing and the audit).
    pub ended_at_ms: f64,
    /// Every operation.
    pub ops: Vec<BankOp>,
    /// Faults injected during the run (and the repairs after it).
    pub faults: Vec<FaultRecord>,
    /// Broken invariants, one line each (must be empty).
    pub violations: Vec<String>,
    /// Acknowledged transfers missing from the final ledger (must be empty).
    pub lost_acknowledged: Vec<u64>,
    /// Unknown-outcome transfers that turned out to be applied (the rest were not).
    pub unknown_applied: usize,
    /// Whether the final audit ran (false if the run was interrupted or storage never came back).
    pub audited: bool,
    /// Why the run ended early, if it did.
    pub interrupted: Option<String>,
    /// The final balances' sum, from the audit.
    pub final_total: Option<i64>,
    /// Seconds from the end of the load until the audit could read (the healing time).
    pub audit_wait_s: f64,
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
    /// Broken invariants (the `all` row only).
    pub violations: u64,
    /// Lost acknowledged transfers (the `all` row only).
    pub lost_acknowledged: u64,
}

impl BankReport {
    /// True when every check held: every read conserved the total, nothing acknowledged was
    /// lost, nothing failed was applied, and the audit ran.
    pub fn passed(&self) -> bool {
        self.audited && self.violations.is_empty() && self.lost_acknowledged.is_empty()
    }

    /// Per-node rows and an `all` row.
    pub fn summary(&self) -> Vec<BankSummary> {
        let mut by_node: BTreeMap<String, BankSummary> = BTreeMap::new();
        let blank = |node: &str| BankSummary {
            node: node.to_string(),
            transfers: 0,
            acknowledged: 0,
            failed: 0,
            unknown: 0,
            reads: 0,
            read_errors: 0,
            violations: 0,
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
                match (op.kind.as_str(), op.outcome) {
                    ("transfer", o) => {
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
        all.violations = self.violations.len() as u64;
        all.lost_acknowledged = self.lost_acknowledged.len() as u64;
        let mut rows: Vec<BankSummary> = by_node.into_values().collect();
        rows.push(all);
        rows
    }

    /// The summary as a table: node, transfers, acknowledged, failed, unknown, reads,
    /// read_errors, violations, lost_acknowledged.
    pub fn summary_frame(&self) -> PolarsResult<DataFrame> {
        let rows = self.summary();
        let u = |name: &str, f: &dyn Fn(&BankSummary) -> u64| {
            Column::new(name.into(), rows.iter().map(f).collect::<Vec<_>>())
        };
        DataFrame::new(
            rows.len(),
            vec![
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
                u("violations", &|r| r.violations),
                u("lost_acknowledged", &|r| r.lost_acknowledged),
            ],
        )
    }

    /// Why operations did not succeed: kind, outcome, reason, count — e.g. how many transfers
    /// lost a conflict (normal under contention) versus how many hit a fault.
    pub fn reasons_frame(&self) -> PolarsResult<DataFrame> {
        let mut counts: BTreeMap<(String, String, String), u64> = BTreeMap::new();
        for op in self.ops.iter().filter(|o| o.outcome != Outcome::Ok) {
            let key = (
                op.kind.clone(),
                format!("{:?}", op.outcome).to_lowercase(),
                op.reason.clone().unwrap_or_default(),
            );
            *counts.entry(key).or_default() += 1;
        }
        let rows: Vec<_> = counts.into_iter().collect();
        DataFrame::new(
            rows.len(),
            vec![
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
            ],
        )
    }

    /// Per `bucket_ms` (e.g. 500) from the start of the load: t_s, acknowledged, failed,
    /// unknown, reads, read_errors — throughput and errors over time.
    pub fn timeline_frame(&self, bucket_ms: f64) -> PolarsResult<DataFrame> {
        let buckets = self.buckets(bucket_ms);
        let col = |name: &str, k: usize| {
            Column::new(
                name.into(),
                buckets.iter().map(|b| b.1[k]).collect::<Vec<u64>>(),
            )
        };
        DataFrame::new(
            buckets.len(),
            vec![
                Column::new(
                    "t_s".into(),
                    buckets.iter().map(|b| b.0).collect::<Vec<f64>>(),
                ),
                col("acknowledged", 0),
                col("failed", 1),
                col("unknown", 2),
                col("reads", 3),
                col("read_errors", 4),
            ],
        )
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
            let slot = match (op.kind.as_str(), op.outcome) {
                ("transfer", Outcome::Ok) => 0,
                ("transfer", Outcome::Failed) => 1,
                ("transfer", Outcome::Unknown) => 2,
                (_, Outcome::Ok) => 3,
                _ => 4,
            };
            out[k as usize].1[slot] += 1;
        }
        out
    }

    /// Throughput and errors per 500 ms, with every fault's window shaded and labelled.
    pub fn chart(&self) -> Result<crate::charts::Chart, String> {
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
        crate::charts::timeline(
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

impl Cluster {
    /// Runs the bank checker (see `bank`): transfers and reads through every node for
    /// `plan.duration` while `plan.schedule` injects faults, then heals everything and audits.
    /// Blocks until done. `report.passed()` is the verdict; `report.summary_frame()` and
    /// `report.chart()` show it.
    pub fn bank(&self, plan: BankPlan) -> Result<BankReport, LabError> {
        plan.validate()?;
        self.actor.call(|reply| Command::Bank { plan, reply })?
    }
}

/// What a worker shares with the run.
struct Shared {
    ops: Mutex<Vec<BankOp>>,
    transfers: Mutex<Vec<Transfer>>,
    violations: Mutex<Vec<String>>,
    stop: AtomicBool,
    created_unix_ms: u64,
    plan: BankPlan,
}

impl Shared {
    fn now(&self) -> f64 {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0);
        unix - self.created_unix_ms as f64
    }

    fn push(&self, op: BankOp) {
        self.ops.lock().unwrap().push(op);
    }
}

/// The transfer transaction. Literal ids and amounts (all integers we generate), so the
/// statement is exactly what a reader of the log sees.
fn transfer_query(id: u64, from: usize, to: usize, amount: i64, node: &str) -> String {
    format!(
        "BEGIN TRANSACTION; \
         LET $from = (SELECT VALUE balance FROM ONLY {ACCOUNTS}:{from}); \
         IF $from < {amount} {{ THROW 'insufficient funds'; }}; \
         UPDATE {ACCOUNTS}:{from} SET balance -= {amount}; \
         UPDATE {ACCOUNTS}:{to} SET balance += {amount}; \
         CREATE {LEDGER}:{id} SET src = {from}, dst = {to}, amount = {amount}, node = '{node}'; \
         COMMIT TRANSACTION;"
    )
}

/// Opens a session, or says why not (then nothing was sent).
async fn open(spec: &ConnectSpec) -> Result<Db, String> {
    match tokio::time::timeout(spec.timeout, client::connect(spec)).await {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(first_line(&e.to_string())),
        Err(_) => Err("connecting timed out".into()),
    }
}

fn first_line(s: &str) -> String {
    crate::oplog::shorten(s.lines().next().unwrap_or(""), 120)
}

/// Classifies a transfer from its per-statement outcomes (see the module docs).
fn classify(
    spec: &ConnectSpec,
    outcomes: &[client::StatementOutcome],
) -> (Outcome, Option<&'static str>, Option<String>) {
    let errors: Vec<(usize, crate::error::LabError)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(k, o)| {
            o.as_ref()
                .err()
                .map(|e| (k, client::query_error(&spec.node, spec.port, "", e)))
        })
        .collect();
    if errors.is_empty() {
        return (Outcome::Ok, None, None);
    }
    let knock_on =
        |e: &LabError| matches!(e, LabError::Query { detail: Some(d), .. } if d == "NotExecuted");
    let Some((k, cause)) = errors.iter().find(|(_, e)| !knock_on(e)) else {
        return (
            Outcome::Unknown,
            Some("error on COMMIT"),
            Some("no cause reported".into()),
        );
    };
    let text = match cause {
        LabError::Query { message, .. } => first_line(message),
        other => first_line(&other.to_string()),
    };
    let last = outcomes.len() - 1;
    let thrown = matches!(cause, LabError::Query { kind, .. } if kind == "Thrown");
    if cause.is_transaction_conflict() {
        (Outcome::Failed, Some("conflict"), Some(text))
    } else if thrown {
        (Outcome::Failed, Some("insufficient funds"), Some(text))
    } else if *k < last {
        (Outcome::Failed, Some("error before COMMIT"), Some(text))
    } else {
        // An error on COMMIT itself that is not a conflict: it may have committed.
        (Outcome::Unknown, Some("error on COMMIT"), Some(text))
    }
}

async fn writer(shared: Arc<Shared>, spec: ConnectSpec, worker: u64) {
    let plan = &shared.plan;
    let mut db: Option<Db> = None;
    let mut seq = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        seq += 1;
        let id = worker * ID_STRIDE + seq;
        let from = fastrand::usize(0..plan.accounts);
        let to = (from + 1 + fastrand::usize(0..plan.accounts - 1)) % plan.accounts;
        let amount = fastrand::i64(1..=plan.max_amount);
        let started = shared.now();
        let t = Instant::now();
        let session = match db.take() {
            Some(d) => Ok(d),
            None => open(&spec).await,
        };
        let (outcome, reason, detail) = match session {
            Err(why) => (Outcome::Failed, Some("not sent: no connection"), Some(why)),
            Ok(d) => {
                let q = transfer_query(id, from, to, amount, &spec.node);
                match tokio::time::timeout(plan.op_timeout, client::run_query(&d, &q, None)).await {
                    Err(_) => (
                        Outcome::Unknown,
                        Some("no answer (timeout)"),
                        Some(format!("no answer within {:?}", plan.op_timeout)),
                    ),
                    Ok(Err(e)) => {
                        // The request as a whole failed: only a rejected parse is certain.
                        let (o, r) = if e.kind_str() == "Validation" {
                            (Outcome::Failed, "request rejected")
                        } else if e.is_connection() {
                            (Outcome::Unknown, "connection lost")
                        } else {
                            (Outcome::Unknown, "request failed")
                        };
                        (o, Some(r), Some(first_line(&e.to_string())))
                    }
                    Ok(Ok(outcomes)) => {
                        let c = classify(&spec, &outcomes);
                        db = Some(d);
                        c
                    }
                }
            }
        };
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        shared
            .transfers
            .lock()
            .unwrap()
            .push(Transfer { id, outcome });
        shared.push(BankOp {
            node: spec.node.clone(),
            kind: "transfer".into(),
            started_at_ms: started,
            ms,
            outcome,
            id: Some(id),
            reason: reason.map(str::to_string),
            detail,
        });
        if outcome != Outcome::Ok && db.is_none() {
            // Do not hammer a node that is down: one attempt per 200 ms.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn reader(shared: Arc<Shared>, spec: ConnectSpec) {
    let plan = &shared.plan;
    let expected = plan.accounts as i64 * plan.initial_balance;
    let mut db: Option<Db> = None;
    let q = format!("SELECT VALUE balance FROM {ACCOUNTS}");
    while !shared.stop.load(Ordering::Relaxed) {
        let started = shared.now();
        let t = Instant::now();
        let session = match db.take() {
            Some(d) => Ok(d),
            None => open(&spec).await,
        };
        let (outcome, reason, detail) = match session {
            Err(why) => (Outcome::Failed, Some("no connection"), Some(why)),
            Ok(d) => {
                match tokio::time::timeout(plan.op_timeout, client::run_query(&d, &q, None)).await {
                    Err(_) => (Outcome::Failed, Some("no answer (timeout)"), None),
                    Ok(Err(e)) => (
                        Outcome::Failed,
                        Some("request failed"),
                        Some(first_line(&e.to_string())),
                    ),
                    Ok(Ok(mut outcomes)) => {
                        db = Some(d);
                        match outcomes.pop() {
                            Some(Ok((rows, _))) => {
                                let balances: Vec<i64> =
                                    rows.iter().filter_map(|v| v.as_i64()).collect();
                                let total: i64 = balances.iter().sum();
                                if balances.len() != plan.accounts
                                    || total != expected
                                    || balances.iter().any(|b| *b < 0)
                                {
                                    shared.violations.lock().unwrap().push(format!(
                                    "read on {} at {:.0} ms saw {} accounts totalling {total} (expected {} totalling {expected}): {balances:?}",
                                    spec.node,
                                    started,
                                    balances.len(),
                                    plan.accounts
                                ));
                                }
                                (Outcome::Ok, None, None)
                            }
                            Some(Err(e)) => (
                                Outcome::Failed,
                                Some("query error"),
                                Some(first_line(&e.to_string())),
                            ),
                            None => (Outcome::Failed, Some("empty response"), None),
                        }
                    }
                }
            }
        };
        shared.push(BankOp {
            node: spec.node.clone(),
            kind: "read".into(),
            started_at_ms: started,
            ms: t.elapsed().as_secs_f64() * 1000.0,
            outcome,
            id: None,
            reason: reason.map(str::to_string),
            detail,
        });
        let pause = if outcome == Outcome::Ok { 20 } else { 200 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

impl Lab {
    /// The actor side of [`Cluster::bank`].
    pub(crate) async fn bank(&mut self, plan: BankPlan) -> Result<BankReport, LabError> {
        plan.validate()?;
        // Refuse a schedule naming unknown nodes or links before anything runs.
        for step in &plan.schedule {
            match &step.fault {
                Fault::KillNode(n)
                | Fault::StopNode(n)
                | Fault::PauseNode(n)
                | Fault::ResumeNode(n)
                | Fault::RestartNode(n) => {
                    self.resolve(n)?;
                }
                Fault::Link(link, _) => {
                    self.resolve(link.node())?;
                    if self.broken_links().is_empty() && !self.cfg().fault_links {
                        return Err(LabError::config(
                            "BankPlan",
                            "the schedule breaks links, but this lab has no fault proxies",
                            "start the lab with `.fault_links(true)`, or drop the link faults",
                        ));
                    }
                }
                _ => {
                    if self.storage_is_up().is_none() {
                        return Err(LabError::config(
                            "BankPlan",
                            "the schedule has storage faults, but this lab has no embedded storage node",
                            "use StorageMode::Shared (the default) or drop the storage faults",
                        ));
                    }
                }
            }
        }
        let first = (0..self.node_count())
            .find(|i| self.node_is_up(*i))
            .ok_or_else(|| {
                LabError::config(
                    "nodes",
                    "no node is running",
                    "restart one with `cluster.restart_node(\"a\")`",
                )
            })?;
        let setup = format!(
            "REMOVE TABLE IF EXISTS {ACCOUNTS}; REMOVE TABLE IF EXISTS {LEDGER}; \
             DEFINE TABLE {ACCOUNTS} SCHEMALESS; DEFINE TABLE {LEDGER} SCHEMALESS; \
             FOR $i IN 0..{} {{ CREATE type::record('{ACCOUNTS}', $i) SET balance = {}; }};",
            plan.accounts, plan.initial_balance
        );
        let (_, r) = self.sql(NodeRef::Index(first), setup, None).await;
        r?;

        let shared = Arc::new(Shared {
            ops: Mutex::new(Vec::new()),
            transfers: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            created_unix_ms: self.created_unix_ms(),
            plan: plan.clone(),
        });
        let faults_before = self.faults.records().len();
        let started_at_ms = self.clock_ms();
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        let mut worker = 0u64;
        for i in 0..self.node_count() {
            let mut spec = self.connect_spec(i);
            spec.timeout = plan.op_timeout;
            for _ in 0..plan.writers_per_node {
                worker += 1;
                tasks.push(tokio::spawn(writer(shared.clone(), spec.clone(), worker)));
            }
            for _ in 0..plan.readers_per_node {
                tasks.push(tokio::spawn(reader(shared.clone(), spec.clone())));
            }
        }

        // The schedule, then the rest of the duration.
        let mut interrupted = None;
        let mut steps = plan.schedule.clone();
        steps.sort_by_key(|s| s.at);
        for step in steps {
            if !self.sleep_until(t0 + step.at).await {
                interrupted = Some("stopped from another thread or the lab was cleaned up".into());
                break;
            }
            self.inject(&step.fault).await;
        }
        if interrupted.is_none() && !self.sleep_until(t0 + plan.duration).await {
            interrupted = Some("stopped from another thread or the lab was cleaned up".into());
        }
        shared.stop.store(true, Ordering::Relaxed);
        let ended_at_ms = self.clock_ms();
        let grace = plan.op_timeout * 2 + Duration::from_secs(1);
        for t in tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(grace, t).await.is_err() {
                abort.abort();
            }
        }

        let mut report = BankReport {
            expected_total: plan.accounts as i64 * plan.initial_balance,
            started_at_ms,
            ended_at_ms,
            ops: std::mem::take(&mut *shared.ops.lock().unwrap()),
            faults: Vec::new(),
            violations: std::mem::take(&mut *shared.violations.lock().unwrap()),
            lost_acknowledged: Vec::new(),
            unknown_applied: 0,
            audited: false,
            interrupted,
            final_total: None,
            audit_wait_s: 0.0,
        };
        report
            .ops
            .sort_by(|a, b| a.started_at_ms.total_cmp(&b.started_at_ms));
        if report.interrupted.is_none() {
            self.heal_everything().await;
            let t = Instant::now();
            let transfers = std::mem::take(&mut *shared.transfers.lock().unwrap());
            match self.audit(&plan, &transfers, &mut report).await {
                Ok(()) => report.audited = true,
                Err(e) => report.violations.push(format!(
                    "the final audit could not read the data: {}",
                    first_line(&e)
                )),
            }
            report.audit_wait_s = t.elapsed().as_secs_f64();
        }
        report.faults = self.faults.records()[faults_before..].to_vec();
        Ok(report)
    }

    /// Sleeps until `deadline` in short steps; false if the run should stop instead.
    async fn sleep_until(&self, deadline: Instant) -> bool {
        loop {
            if self.cancelled() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            tokio::time::sleep((deadline - now).min(Duration::from_millis(100))).await;
        }
    }

    /// Injects one fault through the same paths as the facade's calls, into the fault log.
    async fn inject(&mut self, fault: &Fault) {
        let started = self.clock_ms();
        let (target, action, result) = match fault {
            Fault::KillNode(n) => self.node_fault(n, NodeAction::Kill).await,
            Fault::StopNode(n) => self.node_fault(n, NodeAction::Stop).await,
            Fault::PauseNode(n) => self.node_fault(n, NodeAction::Pause).await,
            Fault::ResumeNode(n) => self.node_fault(n, NodeAction::Resume).await,
            Fault::RestartNode(n) => self.node_fault(n, NodeAction::Restart).await,
            Fault::KillStorage => self.storage_fault(NodeAction::Kill).await,
            Fault::StopStorage => self.storage_fault(NodeAction::Stop).await,
            Fault::PauseStorage => self.storage_fault(NodeAction::Pause).await,
            Fault::ResumeStorage => self.storage_fault(NodeAction::Resume).await,
            Fault::RestartStorage => self.storage_fault(NodeAction::Restart).await,
            Fault::Link(link, f) => {
                let r = self.link_fault(link, *f);
                let target = r
                    .as_ref()
                    .map(|(t, _)| t.clone())
                    .unwrap_or_else(|_| format!("{link:?}"));
                (target, f.action(), r.map(|(_, line)| line))
            }
        };
        self.log_fault(&target, action, started, &result);
    }

    async fn node_fault(
        &mut self,
        n: &NodeRef,
        action: NodeAction,
    ) -> (String, &'static str, Result<String, LabError>) {
        let target = self.target_name(n);
        let r = self.node_action(n.clone(), action).await;
        (target, action.name(), r)
    }

    async fn storage_fault(
        &mut self,
        action: NodeAction,
    ) -> (String, &'static str, Result<String, LabError>) {
        let r = self.storage_action(action).await;
        ("storage".into(), action.name(), r)
    }

    /// After the load: heal every link, resume what is paused, restart what is down —
    /// storage first, then the nodes — each recorded in the fault log.
    pub(crate) async fn heal_everything(&mut self) {
        for (i, client) in self.broken_links() {
            let name = self.target_name(&NodeRef::Index(i));
            let link = if client {
                Link::client_to(name)
            } else {
                Link::to_storage(name)
            };
            self.inject(&Fault::Link(link, LinkFault::Heal)).await;
        }
        if self.storage_is_paused() {
            self.inject(&Fault::ResumeStorage).await;
        }
        if self.storage_is_up() == Some(false) {
            self.inject(&Fault::RestartStorage).await;
        }
        for i in 0..self.node_count() {
            if self.node_is_paused(i) {
                self.inject(&Fault::ResumeNode(NodeRef::Index(i))).await;
            } else if !self.node_is_up(i) {
                self.inject(&Fault::RestartNode(NodeRef::Index(i))).await;
            }
        }
    }

    /// Reads the final balances and ledger in one snapshot (retrying until the cluster serves
    /// again) and checks them against what the clients saw.
    async fn audit(
        &mut self,
        plan: &BankPlan,
        transfers: &[Transfer],
        report: &mut BankReport,
    ) -> Result<(), String> {
        // BEGIN … COMMIT: both SELECTs read the same snapshot. Every statement, BEGIN and
        // COMMIT included, has a result: the SELECTs are statements 1 and 2.
        let q = format!(
            "BEGIN TRANSACTION; \
             SELECT VALUE [record::id(id), balance] FROM {ACCOUNTS}; \
             SELECT VALUE [record::id(id), src, dst, amount] FROM {LEDGER}; \
             COMMIT TRANSACTION;"
        );
        let deadline = Instant::now() + plan.audit_timeout;
        let result = 'found: loop {
            let mut last = String::from("no node is running");
            for i in 0..self.node_count() {
                if !self.node_is_up(i) {
                    continue;
                }
                let (_, r) = self.sql(NodeRef::Index(i), q.clone(), None).await;
                match r {
                    Ok(r) => break 'found r,
                    Err(e) => last = e.to_string(),
                }
            }
            if Instant::now() >= deadline || self.cancelled() {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let rows = |k: usize| -> Vec<Vec<i64>> {
            result
                .statement(k)
                .map(|s| {
                    s.rows
                        .iter()
                        .map(|r| {
                            r.as_array()
                                .map(|a| a.iter().filter_map(|v| v.as_i64()).collect())
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let accounts = rows(1);
        let ledger = rows(2);
        let v = &mut report.violations;

        // 1. The final state conserves the total, with no negative balance.
        let balances: BTreeMap<i64, i64> = accounts
            .iter()
            .filter(|r| r.len() == 2)
            .map(|r| (r[0], r[1]))
            .collect();
        let total: i64 = balances.values().sum();
        report.final_total = Some(total);
        if balances.len() != plan.accounts || total != report.expected_total {
            v.push(format!(
                "final state: {} accounts totalling {total}, expected {} totalling {}",
                balances.len(),
                plan.accounts,
                report.expected_total
            ));
        }
        if let Some((k, b)) = balances.iter().find(|(_, b)| **b < 0) {
            v.push(format!("final state: account {k} is negative ({b})"));
        }

        // 2. The balances are exactly the initial ones plus the ledger's transfers.
        let mut derived: BTreeMap<i64, i64> = (0..plan.accounts as i64)
            .map(|k| (k, plan.initial_balance))
            .collect();
        let mut in_ledger = HashSet::new();
        for row in ledger.iter().filter(|r| r.len() == 4) {
            let (id, src, dst, amount) = (row[0] as u64, row[1], row[2], row[3]);
            in_ledger.insert(id);
            *derived.entry(src).or_default() -= amount;
            *derived.entry(dst).or_default() += amount;
        }
        if derived != balances {
            v.push(format!(
                "final balances {balances:?} differ from initial balances plus the ledger {derived:?}"
            ));
        }

        // 3. Acknowledged ⊆ ledger ⊆ acknowledged ∪ unknown.
        let by_id: HashMap<u64, Outcome> = transfers.iter().map(|t| (t.id, t.outcome)).collect();
        report.lost_acknowledged = transfers
            .iter()
            .filter(|t| t.outcome == Outcome::Ok && !in_ledger.contains(&t.id))
            .map(|t| t.id)
            .collect();
        let mut phantoms = Vec::new();
        for id in &in_ledger {
            match by_id.get(id) {
                Some(Outcome::Unknown) => report.unknown_applied += 1,
                Some(Outcome::Ok) => {}
                Some(Outcome::Failed) => phantoms.push(format!("{id} (reported failed)")),
                None => phantoms.push(format!("{id} (never attempted)")),
            }
        }
        phantoms.sort();
        for p in phantoms.iter().take(10) {
            v.push(format!("transfer {p} is in the ledger"));
        }
        if phantoms.len() > 10 {
            v.push(format!("… and {} more such transfers", phantoms.len() - 10));
        }
        Ok(())
    }
}
