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
//! The checks, the same as Jepsen's bank test (see [`checker`] for the full table):
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
//! # Where the code is
//!
//! - this file: the plan and the operation record;
//! - `run`: the run inside the lab's actor — workers with their own connections, the fault
//!   schedule (through the same `inject` as `cluster.kill_node(..)`, so every fault appears in
//!   `cluster.faults()`), healing, and the final snapshot read — producing a [`History`];
//! - [`checker`]: the pure `check(history) -> Verdict`;
//! - [`report`]: the report, its tables and its chart.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::vocab::error::LabError;
use crate::vocab::faults::{Fault, FaultStep, Link, LinkFault};

pub mod checker;
pub mod report;
pub(crate) mod run;

pub use checker::{
    Anomaly, FinalState, History, LedgerEntry, Observation, Validity, Verdict, check,
};
pub use report::{BankReport, BankSummary};

/// The accounts table (prefixed so a bank run never touches the learner's data).
pub(crate) const ACCOUNTS: &str = "bank_account";
/// The ledger table: one row per applied transfer, keyed by the transfer's unique id.
pub(crate) const LEDGER: &str = "bank_ledger";
/// Ids are `worker × ID_STRIDE + sequence`, unique across workers and runs of one plan.
pub(crate) const ID_STRIDE: u64 = 1_000_000_000;

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
    /// How long the final read may wait for the cluster to serve again (default 90 s).
    pub final_read_timeout: Duration,
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
            final_read_timeout: Duration::from_secs(90),
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
                FaultStep::at(3.0, Fault::kill_node("b")),
                FaultStep::at(6.0, Fault::restart_node("b")),
                FaultStep::at(8.0, Fault::pause_node("a")),
                FaultStep::at(12.0, Fault::resume_node("a")),
                FaultStep::at(14.0, Fault::kill_storage()),
                FaultStep::at(15.0, Fault::restart_storage()),
            ],
            ..BankPlan::default()
        }
    }

    /// Two minutes of everything: node kill/restart, graceful stop, pause, storage pause and
    /// crash, and — when `links` (the lab runs with `.fault_links(true)`) — a node cut from
    /// storage, a client link cut, latency with jitter and dropped connections.
    pub fn two_minutes(links: bool) -> BankPlan {
        let mut s = vec![
            FaultStep::at(8.0, Fault::kill_node("b")),
            FaultStep::at(14.0, Fault::restart_node("b")),
            FaultStep::at(22.0, Fault::pause_node("a")),
            FaultStep::at(26.0, Fault::resume_node("a")),
            FaultStep::at(34.0, Fault::kill_storage()),
            FaultStep::at(37.0, Fault::restart_storage()),
            FaultStep::at(48.0, Fault::stop_node("a")),
            FaultStep::at(54.0, Fault::restart_node("a")),
            FaultStep::at(62.0, Fault::pause_storage()),
            FaultStep::at(65.0, Fault::resume_storage()),
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

    pub(crate) fn validate(&self) -> Result<(), LabError> {
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
        for step in &self.schedule {
            step.fault.validate()?;
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

/// Transfer or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// A `BEGIN … COMMIT` moving money between two accounts.
    Transfer,
    /// One statement reading every balance (one snapshot).
    Read,
}

impl OpKind {
    /// `transfer` or `read`, as in the tables.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Transfer => "transfer",
            OpKind::Read => "read",
        }
    }
}

/// One operation of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BankOp {
    /// The node the client talked to.
    pub node: String,
    /// Transfer or read.
    pub kind: OpKind,
    /// Lab clock (ms since the lab started), like `timings()` and `faults()`.
    pub started_at_ms: f64,
    /// Round trip, ms (the operation ended at `started_at_ms + ms`).
    pub ms: f64,
    /// How it ended.
    pub outcome: Outcome,
    /// The transfer's id (transfers only).
    pub id: Option<u64>,
    /// Why it failed or is unknown, as a category (see [`BankReport::reasons_frame`]).
    pub reason: Option<String>,
    /// The error message, shortened.
    pub detail: Option<String>,
    /// The balances an answered read saw, in account order (reads only).
    pub balances: Option<Vec<i64>>,
    /// How many transfers the read's snapshot reflects (reads only): every committed transfer
    /// bumps a counter on both of its accounts, so this is half the counters' sum.
    pub applied: Option<u64>,
}
