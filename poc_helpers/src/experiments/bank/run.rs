//! The bank run, inside the lab's actor: set up the accounts, start writers and readers on
//! every node (each with connections of its own), play the fault schedule through the lab's one
//! `inject`, heal, read the final state in one snapshot, and hand the [`History`] to the pure
//! [`check`]er.
//!
//! The run reaches the lab only through [`Harness`]; the workers only through a
//! [`ConnectSpec`] each, so nothing here can touch the lab's processes directly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::checker::{FinalState, History, LedgerEntry, check};
use super::report::BankSetup;
use super::{ACCOUNTS, BankOp, BankPlan, BankReport, ID_STRIDE, LEDGER, OpKind, Outcome};
use crate::experiments::harness::{self, Harness};
use crate::infra::client::{self, ConnectSpec, Db};
use crate::vocab::error::LabError;
use crate::vocab::faults::Fault;
use crate::vocab::nodes::NodeRef;

/// Runs `plan` on the lab behind `h` and judges the history.
pub(crate) async fn run(plan: BankPlan, h: &mut impl Harness) -> Result<BankReport, LabError> {
    plan.validate()?;
    // Refuse a schedule naming unknown nodes or links before anything runs.
    for step in &plan.schedule {
        match &step.fault {
            Fault::Node(n, _) => {
                h.resolve(n)?;
            }
            Fault::Link(link, _) => {
                h.resolve(link.node())?;
                if !h.config().fault_links {
                    return Err(LabError::config(
                        "BankPlan",
                        "the schedule breaks links, but this lab has no fault proxies",
                        "start the lab with `.fault_links(true)`, or drop the link faults",
                    ));
                }
            }
            Fault::Storage(_) | Fault::Store(..) | Fault::StoreNet(..) | Fault::Pd(_) => {
                if h.storage_is_up().is_none() {
                    return Err(LabError::config(
                        "BankPlan",
                        "the schedule has storage faults, but this lab has no embedded storage node",
                        "use StorageMode::Shared (the default) or drop the storage faults",
                    ));
                }
            }
        }
    }
    let first = harness::first_up(h)?;
    let setup = format!(
        "REMOVE TABLE IF EXISTS {ACCOUNTS}; REMOVE TABLE IF EXISTS {LEDGER}; \
         DEFINE TABLE {ACCOUNTS} SCHEMALESS; DEFINE TABLE {LEDGER} SCHEMALESS; \
         FOR $i IN 0..{} {{ CREATE type::record('{ACCOUNTS}', $i) SET balance = {}, n = 0; }};",
        plan.accounts, plan.initial_balance
    );
    let (_, r) = h.sql(NodeRef::Index(first), setup).await;
    r?;

    let shared = Arc::new(Shared {
        ops: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        created_unix_ms: h.created_unix_ms(),
        plan: plan.clone(),
    });
    let faults_before = h.fault_records().len();
    let started_at_ms = h.clock_ms();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    let mut worker = 0u64;
    for i in 0..h.node_count() {
        let mut spec = h.connect_spec(i);
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
    let stopped = "stopped from another thread or the lab was cleaned up";
    let mut interrupted = None;
    let mut steps = plan.schedule.clone();
    steps.sort_by_key(|s| s.at);
    for step in steps {
        if !sleep_until(h, t0 + step.at).await {
            interrupted = Some(stopped.to_string());
            break;
        }
        // A failed injection is in the fault log with its error; the run goes on.
        let _ = h.inject(&step.fault).await;
    }
    if interrupted.is_none() && !sleep_until(h, t0 + plan.duration).await {
        interrupted = Some(stopped.to_string());
    }
    shared.stop.store(true, Ordering::Relaxed);
    let ended_at_ms = h.clock_ms();
    let grace = plan.op_timeout * 2 + Duration::from_secs(1);
    for t in tasks {
        let abort = t.abort_handle();
        if tokio::time::timeout(grace, t).await.is_err() {
            abort.abort();
        }
    }
    let mut ops = std::mem::take(&mut *shared.ops.lock().unwrap());
    ops.sort_by(|a, b| a.started_at_ms.total_cmp(&b.started_at_ms));

    let t = Instant::now();
    let final_state = match &interrupted {
        Some(why) => Err(format!("the run was interrupted ({why})")),
        None => {
            harness::heal_everything(h).await;
            final_read(h, &plan).await
        }
    };
    let final_read_wait_s = t.elapsed().as_secs_f64();
    let history = History {
        accounts: plan.accounts,
        initial_balance: plan.initial_balance,
        ops,
        final_state,
    };
    let verdict = check(&history);
    Ok(BankReport {
        expected_total: history.expected_total(),
        started_at_ms,
        ended_at_ms,
        ops: history.ops,
        faults: h.fault_records()[faults_before..].to_vec(),
        verdict,
        interrupted,
        final_read_wait_s,
        setup: BankSetup {
            accounts: plan.accounts,
            writers: worker as usize,
            op_timeout_s: plan.op_timeout.as_secs_f64(),
        },
    })
}

/// Sleeps until `deadline` in short steps; false if the run should stop instead.
async fn sleep_until(h: &impl Harness, deadline: Instant) -> bool {
    loop {
        if h.cancelled() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(100))).await;
    }
}

/// Reads the final balances and ledger in one snapshot, retrying on every node until the
/// cluster serves again or `plan.final_read_timeout` passes.
async fn final_read(h: &mut impl Harness, plan: &BankPlan) -> Result<FinalState, String> {
    // BEGIN … COMMIT: both SELECTs read the same snapshot. Every statement, BEGIN and
    // COMMIT included, has a result: the SELECTs are statements 1 and 2.
    let q = format!(
        "BEGIN TRANSACTION; \
         SELECT VALUE [record::id(id), balance] FROM {ACCOUNTS}; \
         SELECT VALUE [record::id(id), src, dst, amount] FROM {LEDGER}; \
         COMMIT TRANSACTION;"
    );
    let deadline = Instant::now() + plan.final_read_timeout;
    let result = 'found: loop {
        let mut last = String::from("no node is running");
        for i in 0..h.node_count() {
            if !h.node_is_up(i) {
                continue;
            }
            match h.sql(NodeRef::Index(i), q.clone()).await.1 {
                Ok(r) => break 'found r,
                Err(e) => last = e.to_string(),
            }
        }
        if Instant::now() >= deadline || h.cancelled() {
            return Err(format!(
                "the final read could not read the data: {}",
                first_line(&last)
            ));
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
    let balances: BTreeMap<i64, i64> = rows(1)
        .iter()
        .filter(|r| r.len() == 2)
        .map(|r| (r[0], r[1]))
        .collect();
    let ledger = rows(2)
        .iter()
        .filter(|r| r.len() == 4)
        .map(|r| LedgerEntry {
            id: r[0] as u64,
            src: r[1],
            dst: r[2],
            amount: r[3],
        })
        .collect();
    Ok(FinalState { balances, ledger })
}

/// What a worker shares with the run.
struct Shared {
    ops: Mutex<Vec<BankOp>>,
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
/// statement is exactly what a reader of the log sees. Both accounts' `n` counts the transfers
/// applied to them, so a read can tell how many transfers its snapshot reflects.
fn transfer_query(id: u64, from: usize, to: usize, amount: i64, node: &str) -> String {
    format!(
        "BEGIN TRANSACTION; \
         LET $from = (SELECT VALUE balance FROM ONLY {ACCOUNTS}:{from}); \
         IF $from < {amount} {{ THROW 'insufficient funds'; }}; \
         UPDATE {ACCOUNTS}:{from} SET balance -= {amount}, n += 1; \
         UPDATE {ACCOUNTS}:{to} SET balance += {amount}, n += 1; \
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
    crate::vocab::oplog::shorten(s.lines().next().unwrap_or(""), 120)
}

/// Classifies a transfer from its per-statement outcomes (see the module docs).
fn classify(
    spec: &ConnectSpec,
    outcomes: &[client::StatementOutcome],
) -> (Outcome, Option<&'static str>, Option<String>) {
    let errors: Vec<(usize, crate::vocab::error::LabError)> = outcomes
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
        let _t = Instant::now();
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
        shared.push(BankOp {
            node: spec.node.clone(),
            kind: OpKind::Transfer,
            started_at_ms: started,
            // On the lab clock, like `started`: the checker orders reads after acknowledgements.
            ms: shared.now() - started,
            outcome,
            id: Some(id),
            reason: reason.map(str::to_string),
            detail,
            balances: None,
            applied: None,
        });
        if outcome != Outcome::Ok && db.is_none() {
            // Do not hammer a node that is down: one attempt per 200 ms.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn reader(shared: Arc<Shared>, spec: ConnectSpec) {
    let plan = &shared.plan;
    let mut db: Option<Db> = None;
    // One statement, so one snapshot: every balance and every transfer counter.
    let q = format!("SELECT VALUE [balance, n] FROM {ACCOUNTS}");
    while !shared.stop.load(Ordering::Relaxed) {
        let started = shared.now();
        let session = match db.take() {
            Some(d) => Ok(d),
            None => open(&spec).await,
        };
        let mut seen: Option<(Vec<i64>, u64)> = None;
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
                                seen = Some(balances_and_applied(&rows));
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
        let (balances, applied) = match seen {
            Some((b, a)) => (Some(b), Some(a)),
            None => (None, None),
        };
        shared.push(BankOp {
            node: spec.node.clone(),
            kind: OpKind::Read,
            started_at_ms: started,
            ms: shared.now() - started,
            outcome,
            id: None,
            reason: reason.map(str::to_string),
            detail,
            balances,
            applied,
        });
        let pause = if outcome == Outcome::Ok { 20 } else { 200 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// `[balance, n]` rows → the balances and the number of transfers they reflect (each applied
/// transfer bumped `n` on two accounts).
fn balances_and_applied(rows: &[serde_json::Value]) -> (Vec<i64>, u64) {
    let mut balances = Vec::with_capacity(rows.len());
    let mut counters = 0i64;
    for r in rows {
        let pair = r.as_array();
        balances.push(
            pair.and_then(|p| p.first())
                .and_then(|v| v.as_i64())
                .unwrap_or(0),
        );
        counters += pair
            .and_then(|p| p.get(1))
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
    }
    (balances, (counters / 2).max(0) as u64)
}
