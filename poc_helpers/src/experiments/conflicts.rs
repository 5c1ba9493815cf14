//! Conflicts: what happens when two nodes change the same data at the same moment, how to
//! retry, how often it happens under contention, and the one anomaly snapshot isolation allows.
//!
//! # Why conflicts exist at all
//!
//! SurrealDB on TiKV runs every transaction **optimistically** under **snapshot isolation**:
//! a transaction reads a snapshot as of its start, buffers its writes, and at COMMIT the storage
//! checks (Percolator's prewrite) whether any key it writes was changed by a transaction that
//! committed after it started. If so the commit is refused — SurrealDB reports a
//! `TransactionConflict` (wire code -32009; inside `BEGIN … COMMIT` it surfaces on the COMMIT
//! statement as "Cannot COMMIT: Transaction conflict … can be retried"). Nothing was written, so
//! running the whole transaction again is always safe. [`LabError::is_transaction_conflict`]
//! recognises it by kind and code, never by message text.
//!
//! Which node a transaction runs on does not matter: both nodes are stateless and the check
//! happens in storage. The helpers here make that visible:
//!
//! * [`Cluster::race_transaction`](crate::facade::Cluster::race_transaction) — the same transaction from several nodes at once: who
//!   committed, who got the retryable conflict.
//! * [`Cluster::retry_on_conflict`](crate::facade::Cluster::retry_on_conflict) — the standard client-side answer: retry with exponential
//!   backoff and jitter, only on conflicts.
//! * [`Cluster::conflict_rate`](crate::facade::Cluster::conflict_rate) — how the conflict rate grows as more clients fight over fewer
//!   keys, and a check that no increment was lost.
//! * [`Cluster::write_skew`](crate::facade::Cluster::write_skew) — snapshot isolation only detects *write-write* conflicts. Two
//!   transactions that each read what the other writes, but write different keys, both commit:
//!   the doctors-on-call anomaly. The fix makes them write a common key (a guard record), which
//!   turns the hidden read-write dependency into a write-write conflict.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::experiments::harness::Harness;
use crate::infra::client;
use crate::vocab::error::LabError;
use crate::vocab::frames::frame;
use crate::vocab::nodes::NodeRef;
use crate::vocab::query::QueryResult;

/// How one transaction of a race ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnOutcome {
    /// The node that ran it.
    pub node: String,
    /// `committed`, `conflict` (retryable) or `failed` (anything else).
    pub outcome: String,
    /// SurrealDB's wire code when it failed (-32009 for a conflict).
    pub code: Option<i64>,
    /// SurrealDB's error kind and detail, e.g. `Query/TransactionConflict`.
    pub kind: Option<String>,
    /// Client-side round trip, ms.
    pub ms: f64,
    /// The first line of the error, if any.
    pub message: Option<String>,
}

impl TxnOutcome {
    /// How `r`, which took `ms` at the client, ended on `node`.
    pub(crate) fn from_result(node: &str, r: &Result<QueryResult, LabError>, ms: f64) -> Self {
        match r {
            Ok(q) => TxnOutcome {
                node: q.node.clone(),
                outcome: "committed".into(),
                code: None,
                kind: None,
                ms: q.ms,
                message: None,
            },
            Err(e) => {
                let (code, kind) = match e {
                    LabError::Query {
                        code, kind, detail, ..
                    } => (
                        Some(*code),
                        Some(match detail {
                            Some(d) => format!("{kind}/{d}"),
                            None => kind.clone(),
                        }),
                    ),
                    _ => (None, None),
                };
                TxnOutcome {
                    node: node.to_string(),
                    outcome: if e.is_transaction_conflict() {
                        "conflict".into()
                    } else {
                        "failed".into()
                    },
                    code,
                    kind,
                    // A refused transaction took time too: its reads, its wait, its commit.
                    ms,
                    message: e.to_string().lines().next().map(str::to_string),
                }
            }
        }
    }

    /// True if it committed.
    pub fn committed(&self) -> bool {
        self.outcome == "committed"
    }

    /// True if it lost a conflict (and may simply be retried).
    pub fn conflicted(&self) -> bool {
        self.outcome == "conflict"
    }
}

/// Race outcomes as a table: node, outcome, code, kind, ms, message.
pub fn outcomes_frame(rows: &[TxnOutcome]) -> Result<DataFrame, LabError> {
    frame(vec![
        Column::new(
            "node".into(),
            rows.iter().map(|r| r.node.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "outcome".into(),
            rows.iter().map(|r| r.outcome.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "code".into(),
            rows.iter().map(|r| r.code).collect::<Vec<_>>(),
        ),
        Column::new(
            "kind".into(),
            rows.iter().map(|r| r.kind.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "ms".into(),
            rows.iter()
                .map(|r| (r.ms * 10.0).round() / 10.0)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "message".into(),
            rows.iter().map(|r| r.message.clone()).collect::<Vec<_>>(),
        ),
    ])
}

/// How [`Cluster::retry_on_conflict`](crate::facade::Cluster::retry_on_conflict) retries: exponential backoff with full jitter (each wait
/// is random in `[0, min(max_delay, base_delay × 2^attempt)]`), so two clients that collided
/// do not collide again in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in total, including the first (default 8).
    pub max_attempts: u32,
    /// The first backoff ceiling (default 10 ms).
    pub base_delay: Duration,
    /// The largest backoff ceiling (default 1 s).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max_delay);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// What [`Cluster::retry_on_conflict`](crate::facade::Cluster::retry_on_conflict) returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retried {
    /// The successful attempt's result.
    pub result: QueryResult,
    /// Attempts made (1 = no conflict).
    pub attempts: u32,
    /// Total time spent waiting between attempts, ms.
    pub backoff_ms: f64,
}

/// The contention experiment's settings (see [`Cluster::conflict_rate`](crate::facade::Cluster::conflict_rate)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentionPlan {
    /// Concurrent clients per node (default 4).
    pub workers_per_node: usize,
    /// Transactions each client runs per level (default 15).
    pub txns_per_worker: usize,
    /// The levels: how many counters the clients share (default 1, 4, 16). Fewer keys, more
    /// contention.
    pub hot_keys: Vec<usize>,
}

impl Default for ContentionPlan {
    fn default() -> Self {
        ContentionPlan {
            workers_per_node: 4,
            txns_per_worker: 15,
            hot_keys: vec![1, 4, 16],
        }
    }
}

impl ContentionPlan {
    /// Refuses a plan that would measure nothing.
    pub fn validate(&self) -> Result<(), LabError> {
        if self.workers_per_node == 0 || self.txns_per_worker == 0 || self.hot_keys.contains(&0) {
            return Err(LabError::config(
                "ContentionPlan",
                "workers, transactions and hot keys must all be at least 1",
                "use ContentionPlan::default() and change one field at a time",
            ));
        }
        Ok(())
    }
}

/// What a contention run measured: one row per hot-key level, in the plan's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentionReport {
    /// The plan that ran.
    pub plan: ContentionPlan,
    /// One row per level of `plan.hot_keys`.
    pub rows: Vec<ContentionRow>,
}

impl ContentionReport {
    /// The rows as a table: hot_keys, clients, attempts, committed, conflicts, other_errors,
    /// conflict_rate, lost_updates, p50_ms.
    pub fn summary_frame(&self) -> Result<DataFrame, LabError> {
        contention_frame(&self.rows)
    }
}

/// One contention level's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentionRow {
    /// Counters shared by all clients.
    pub hot_keys: usize,
    /// Concurrent clients (all nodes).
    pub clients: usize,
    /// Transactions attempted.
    pub attempts: u64,
    /// Committed.
    pub committed: u64,
    /// Refused with a retryable conflict.
    pub conflicts: u64,
    /// Failed otherwise (timeouts, connection errors).
    pub other_errors: u64,
    /// conflicts / attempts.
    pub conflict_rate: f64,
    /// Committed increments missing from the counters (must be 0: no lost update).
    pub lost_updates: i64,
    /// Median transaction round trip, ms.
    pub p50_ms: f64,
}

/// Contention rows as a table.
pub fn contention_frame(rows: &[ContentionRow]) -> Result<DataFrame, LabError> {
    let f = |name: &str, v: Vec<f64>| Column::new(name.into(), v);
    let u = |name: &str, v: Vec<u64>| Column::new(name.into(), v);
    frame(vec![
        u("hot_keys", rows.iter().map(|r| r.hot_keys as u64).collect()),
        u("clients", rows.iter().map(|r| r.clients as u64).collect()),
        u("attempts", rows.iter().map(|r| r.attempts).collect()),
        u("committed", rows.iter().map(|r| r.committed).collect()),
        u("conflicts", rows.iter().map(|r| r.conflicts).collect()),
        u(
            "other_errors",
            rows.iter().map(|r| r.other_errors).collect(),
        ),
        f(
            "conflict_rate",
            rows.iter()
                .map(|r| (r.conflict_rate * 1000.0).round() / 1000.0)
                .collect(),
        ),
        Column::new(
            "lost_updates".into(),
            rows.iter().map(|r| r.lost_updates).collect::<Vec<_>>(),
        ),
        f(
            "p50_ms",
            rows.iter()
                .map(|r| (r.p50_ms * 10.0).round() / 10.0)
                .collect(),
        ),
    ])
}

/// What [`Cluster::write_skew`](crate::facade::Cluster::write_skew) saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteSkewReport {
    /// Whether the transactions touched the shared guard record (the fix).
    pub guarded: bool,
    /// The two transactions: Alice going off call on one node, Bob on the other.
    pub outcomes: Vec<TxnOutcome>,
    /// Doctors still on call afterwards. The rule is "at least one"; 0 is the anomaly.
    pub on_call_after: usize,
}

impl WriteSkewReport {
    /// True if the invariant "at least one doctor on call" was broken.
    pub fn anomaly(&self) -> bool {
        self.on_call_after == 0
    }

    /// What happened, from the outcomes: which committed, which were refused, who is on call.
    pub fn explain(&self) -> String {
        let committed = self.outcomes.iter().filter(|o| o.committed()).count();
        let refused: Vec<&TxnOutcome> = self.outcomes.iter().filter(|o| o.conflicted()).collect();
        let mut s = format!(
            "{}: {committed} of {} transactions committed, {} refused with a conflict; {} doctor(s) \
             on call afterwards.",
            if self.guarded { "Guarded" } else { "Unguarded" },
            self.outcomes.len(),
            refused.len(),
            self.on_call_after
        );
        if self.anomaly() {
            s.push_str(
                " Write skew: each transaction saw two doctors on call in its own snapshot and \
                 wrote a different record, so nothing conflicted and both went off call.",
            );
        } else if let Some(loser) = refused.first() {
            s.push_str(&format!(
                " Both wrote the shared `shift:today`, so the storage tier refused the second \
                 commit: {}'s transaction changed nothing (a conflict means none of it \
                 happened), and its doctor is still on call. Retried, it would read one doctor \
                 on call and stay.",
                loser.node
            ));
        }
        s
    }
}

/// The doctors' transaction: read how many are on call, wait (so the two overlap), and go off
/// call if someone else still is. `guard` adds a write to the shared `shift:today` record.
pub(crate) fn off_call_txn(doctor: &str, guard: bool) -> String {
    format!(
        "BEGIN TRANSACTION; \
         LET $on_call = count(SELECT * FROM doctor WHERE on_call = true); \
         {} \
         SLEEP 300ms; \
         IF $on_call >= 2 {{ UPDATE doctor:{doctor} SET on_call = false; }}; \
         COMMIT TRANSACTION;",
        if guard {
            "UPSERT shift:today SET changes += 1;"
        } else {
            ""
        }
    )
}

/// One contention transaction's result, as a worker records it.
enum Attempt {
    Committed(f64),
    Conflict,
    Other,
}

/// The contention experiment (see `Cluster::conflict_rate`), run inside the actor.
pub(crate) async fn contention(
    plan: ContentionPlan,
    h: &mut impl Harness,
) -> Result<ContentionReport, LabError> {
    plan.validate()?;
    let up: Vec<usize> = (0..h.node_count()).filter(|i| h.node_is_up(*i)).collect();
    if up.is_empty() {
        return Err(LabError::config(
            "nodes",
            "no node is running",
            "restart a node with `cluster.restart_node(\"a\")`",
        ));
    }
    let mut rows = Vec::new();
    for &keys in &plan.hot_keys {
        let setup = format!(
            "REMOVE TABLE IF EXISTS counter; DEFINE TABLE counter SCHEMALESS; FOR $k IN 0..{keys} {{ CREATE type::record('counter', $k) SET n = 0; }};"
        );
        let (_, r) = h.sql(NodeRef::Index(up[0]), setup).await;
        r?;
        let results: Arc<Mutex<Vec<Attempt>>> = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for &i in &up {
            for _ in 0..plan.workers_per_node {
                let spec = h.connect_spec(i);
                let results = results.clone();
                let txns = plan.txns_per_worker;
                tasks.push(tokio::spawn(async move {
                    let Ok(db) = client::connect(&spec).await else {
                        results
                            .lock()
                            .unwrap()
                            .extend((0..txns).map(|_| Attempt::Other));
                        return;
                    };
                    for _ in 0..txns {
                        let k = fastrand::usize(0..keys);
                        let q = format!(
                            "BEGIN TRANSACTION; \
                             LET $n = (SELECT VALUE n FROM ONLY counter:{k}); \
                             UPDATE counter:{k} SET n = $n + 1; \
                             COMMIT TRANSACTION;"
                        );
                        let t = Instant::now();
                        let out =
                            tokio::time::timeout(spec.timeout, client::run_query(&db, &q, None))
                                .await;
                        let ms = t.elapsed().as_secs_f64() * 1000.0;
                        let attempt = match out {
                            Ok(Ok(outcomes)) => {
                                match outcomes.iter().find_map(|o| o.as_ref().err()) {
                                    None => Attempt::Committed(ms),
                                    Some(_) => {
                                        let conflict = outcomes.iter().any(|o| {
                                            o.as_ref().err().is_some_and(|e| {
                                                client::query_error(&spec.node, spec.port, "", e)
                                                    .is_transaction_conflict()
                                            })
                                        });
                                        if conflict {
                                            Attempt::Conflict
                                        } else {
                                            Attempt::Other
                                        }
                                    }
                                }
                            }
                            _ => Attempt::Other,
                        };
                        results.lock().unwrap().push(attempt);
                    }
                }));
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        let results = std::mem::take(&mut *results.lock().unwrap());
        let mut ms: Vec<f64> = results
            .iter()
            .filter_map(|a| match a {
                Attempt::Committed(ms) => Some(*ms),
                _ => None,
            })
            .collect();
        ms.sort_by(|a, b| a.total_cmp(b));
        let committed = ms.len() as u64;
        let conflicts = results
            .iter()
            .filter(|a| matches!(a, Attempt::Conflict))
            .count() as u64;
        let attempts = results.len() as u64;
        let (_, total) = h
            .sql(
                NodeRef::Index(up[0]),
                "RETURN math::sum(SELECT VALUE n FROM counter)".into(),
            )
            .await;
        let total = total?.first().and_then(|v| v.as_i64()).unwrap_or_default();
        rows.push(ContentionRow {
            hot_keys: keys,
            clients: up.len() * plan.workers_per_node,
            attempts,
            committed,
            conflicts,
            other_errors: attempts - committed - conflicts,
            conflict_rate: if attempts == 0 {
                0.0
            } else {
                conflicts as f64 / attempts as f64
            },
            lost_updates: committed as i64 - total,
            p50_ms: ms.get(ms.len() / 2).copied().unwrap_or(0.0),
        });
    }
    Ok(ContentionReport { plan, rows })
}

/// Counts outcomes by kind, for summaries: `{"committed": 1, "conflict": 1}`.
pub fn tally(outcomes: &[TxnOutcome]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for o in outcomes {
        *m.entry(o.outcome.clone()).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        };
        for attempt in 1..30 {
            assert!(p.backoff(attempt) <= Duration::from_millis(50));
        }
        assert!(p.backoff(1) <= Duration::from_millis(20));
    }

    #[test]
    fn outcomes_are_classified_by_code_not_text() {
        let conflict = LabError::Query {
            node: "node-b".into(),
            port: 1,
            statement: "COMMIT".into(),
            message: "anything at all".into(),
            kind: "Query".into(),
            detail: Some("TransactionConflict".into()),
            code: -32000,
            fix: String::new(),
        };
        let o = TxnOutcome::from_result("node-b", &Err(conflict), 311.4);
        assert!(o.conflicted());
        assert_eq!(o.kind.as_deref(), Some("Query/TransactionConflict"));
        let t = TxnOutcome::from_result(
            "node-a",
            &Err(LabError::ActorGone { reason: "x".into() }),
            0.0,
        );
        assert_eq!(t.outcome, "failed");
        let df = outcomes_frame(&[o, t]).unwrap();
        assert_eq!(df.height(), 2);
        assert!(off_call_txn("bob", true).contains("shift:today"));
        assert!(!off_call_txn("bob", false).contains("shift:today"));
    }
}
