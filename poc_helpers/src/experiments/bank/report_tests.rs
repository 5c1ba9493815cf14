//! Tests of the bank report: counting by outcome and cause, the computed sentences, the
//! contention explanation (kept apart so report.rs stays readable).

use std::collections::BTreeMap;

use super::*;
use crate::experiments::bank::checker::{FinalState, History, check};

fn op(kind: OpKind, start: f64, ms: f64, outcome: Outcome, reason: Option<&str>) -> BankOp {
    BankOp {
        node: "node-a".into(),
        kind,
        started_at_ms: start,
        ms,
        outcome,
        id: (kind == OpKind::Transfer).then_some(start as u64),
        reason: reason.map(str::to_string),
        detail: None,
        balances: None,
        applied: None,
    }
}

fn report(ops: Vec<BankOp>) -> BankReport {
    let verdict = check(&History {
        accounts: 2,
        initial_balance: 100,
        ops: ops.clone(),
        final_state: Ok(FinalState {
            balances: BTreeMap::from([(0, 100), (1, 100)]),
            ledger: Vec::new(),
        }),
    });
    BankReport {
        expected_total: 200,
        started_at_ms: 0.0,
        ended_at_ms: 2000.0,
        ops,
        faults: vec![FaultRecord {
            target: "node-b".into(),
            action: "kill".into(),
            started_at_ms: 1000.0,
            ended_at_ms: Some(1500.0),
            call_ms: 5.0,
            ok: true,
            detail: String::new(),
        }],
        verdict,
        interrupted: None,
        final_read_wait_s: 0.0,
        setup: BankSetup {
            accounts: 2,
            writers: 4,
            op_timeout_s: 3.0,
        },
    }
}

#[test]
fn outcomes_are_counted_when_they_end_and_failures_by_cause() {
    let r = report(vec![
        // Started at 0.1 s, answered at 1.2 s: it belongs to the second bucket, not the first.
        op(
            OpKind::Transfer,
            100.0,
            1100.0,
            Outcome::Unknown,
            Some("no answer (timeout)"),
        ),
        op(
            OpKind::Transfer,
            200.0,
            10.0,
            Outcome::Failed,
            Some("conflict"),
        ),
        op(
            OpKind::Transfer,
            1100.0,
            5.0,
            Outcome::Failed,
            Some("not sent: no connection"),
        ),
    ]);
    let b = r.buckets(1000.0);
    assert_eq!(
        b[0].1[6], 0,
        "the unknown transfer is not counted where it started"
    );
    assert_eq!(b[1].1[6], 1, "it is counted where it ended");
    assert_eq!((b[0].1[2], b[1].1[3]), (1, 1), "conflict, then node down");
    assert_eq!(r.unknown_intervals(), vec![(0.1, 1.2000000000000002)]);
    let text = r.explain();
    assert!(
        text.contains("Before any fault (0–1.0 s): failed conflict 1.0/s"),
        "{text}"
    );
    assert!(text.contains("During `kill node-b` (1.0–1.5 s)"), "{text}");
    assert!(text.contains("failed node down 2.0/s"), "{text}");
    let mut quiet = r.clone();
    quiet.faults[0].started_at_ms = 1800.0;
    quiet.faults[0].ended_at_ms = Some(1900.0);
    assert!(
        quiet
            .explain()
            .contains("(1.8–1.9 s): no operation completed at all"),
        "{}",
        quiet.explain()
    );
    let svg = r.chart().unwrap().svg;
    assert!(svg.contains("unknown: sent → no clear answer") && svg.contains("failed node down"));
}

#[test]
fn insufficient_funds_is_a_rejection_and_contention_is_explained_from_the_plan() {
    let mut r = report(vec![
        op(OpKind::Transfer, 100.0, 10.0, Outcome::Ok, None),
        op(
            OpKind::Transfer,
            200.0,
            10.0,
            Outcome::Failed,
            Some("conflict"),
        ),
        op(
            OpKind::Transfer,
            300.0,
            10.0,
            Outcome::Failed,
            Some("insufficient funds"),
        ),
    ]);
    r.setup.accounts = 8;
    let all = r.summary_rows().pop().unwrap();
    assert_eq!((all.acknowledged, all.rejected, all.failed), (1, 1, 1));
    let text = r.explain();
    // 4 writers, 8 accounts: 1 − (6·5 / (8·7))³ ≈ 85 % share an account with yours.
    assert!(text.contains("yours 85 % of the time"), "{text}");
    assert!(text.contains("1 of 3 (33 %) lost such a race"), "{text}");
    assert!(
        text.contains("1 were rejected by the bank's own rule"),
        "{text}"
    );
    assert!(text.contains("within the 3 s operation timeout"), "{text}");
    assert!(r.timeline_frame(1000.0).unwrap().column("rejected").is_ok());
    // The kill window is 1.0–1.5 s: nothing of the three ended inside it.
    assert_eq!(r.count_in_window("kill node-b", "failed"), 0);
    let mut late = r.clone();
    late.ops[1].started_at_ms = 1100.0;
    assert_eq!(late.count_in_window("kill node-b", "failed"), 1);
    assert_eq!(late.count_in_window("kill node-b", "failed_conflict"), 1);
    assert_eq!(late.count_in_window("no such fault", "failed"), 0);
    // In flight during 1.0–1.5 s: the conflict now runs 1.1–1.11 s on node-a.
    assert_eq!(late.count_in_flight("kill node-b", "node-a", "failed"), 1);
    assert_eq!(late.count_in_flight("kill node-b", "node-b", "failed"), 0);
    assert_eq!(
        late.count_in_flight("kill node-b", "node-a", "acknowledged"),
        0
    );
}

#[test]
fn injected_faults_counts_breaking_calls_that_took_effect_once_each() {
    let mut r = report(Vec::new());
    let kill = r.faults[0].clone();
    let call = |target: &str, action: &str, ok: bool| {
        let (target, action) = (target.into(), action.into());
        FaultRecord {
            target,
            action,
            ok,
            ..kill.clone()
        }
    };
    r.faults.extend([
        call("node-b", "restart", true),
        call("node-b", "kill", true),
        call("client→node-a", "cut", true),
        call("node-z", "kill", false),
    ]);
    assert_eq!(
        r.injected_faults(),
        vec!["kill node-b", "cut client→node-a"]
    );
}
