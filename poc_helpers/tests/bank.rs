//! The bank checker with real processes: transfers and reads through both nodes while a node is
//! killed, a node is paused and the storage node crashes. Nothing acknowledged may be lost and
//! every read must see the full total.

mod common;

use std::time::Duration;

use common::shared_lab;
use poc_helpers::experiments::bank::{BankPlan, BankReport, Validity};
use poc_helpers::vocab::faults::{Fault, FaultStep, Link, LinkFault};
use poc_helpers::vocab::nodes::NodeState;

fn print(report: &BankReport) {
    println!("{}", report.summary_frame().unwrap());
    for row in report.summary_rows() {
        println!("SUMMARY {row:?}");
    }
    println!("{}", report.reasons_frame().unwrap());
    println!("VERDICT {:?}", report.verdict.validity);
    for a in &report.verdict.anomalies {
        println!("ANOMALY {a}");
    }
    for f in &report.faults {
        println!(
            "FAULT {} {} {:.0}..{:?} {}",
            f.action, f.target, f.started_at_ms, f.ended_at_ms, f.detail
        );
    }
}

/// Valid: the final state was read, and the checker found no anomaly of any kind (lost
/// acknowledged write, phantom write, wrong total, negative balance, stale read, ledger
/// mismatch); the 8 accounts of 100 still hold 800.
fn assert_valid_with_total_800(report: &BankReport) {
    assert_eq!(
        report.verdict.validity,
        Validity::Valid,
        "{:?} {:?}",
        report.verdict.anomalies,
        report.verdict.unknown_because
    );
    assert_eq!(report.verdict.final_total, Some(800));
}

#[test]
fn the_bank_survives_a_kill_a_pause_and_a_storage_crash_with_nothing_lost() {
    let (root, builder) = shared_lab("bank");
    let cluster = builder
        .echo(false)
        .stop_timeout(Duration::from_secs(3))
        .start()
        .unwrap();
    let report = cluster.bank(BankPlan::short()).expect("bank run");
    print(&report);
    let all = report.summary_rows().pop().unwrap();
    assert_valid_with_total_800(&report);
    // Reads were judged for staleness: answered reads carry what their snapshot reflected.
    assert!(
        report.ops.iter().any(|o| o.applied.is_some_and(|n| n > 0)),
        "reads saw applied transfers"
    );
    assert!(all.acknowledged > 0 && all.reads > 0, "{all:?}");
    // The faults really happened and are in the report, in order.
    let actions: Vec<String> = report
        .faults
        .iter()
        .filter(|f| f.ok)
        .map(|f| f.label())
        .collect();
    for expected in [
        "kill node-b",
        "restart node-b",
        "pause node-a",
        "resume node-a",
        "kill storage",
        "restart storage",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} missing from {actions:?}"
        );
    }
    // Failures cluster in the fault windows: with node-b dead, its transfers fail.
    assert!(
        all.failed + all.unknown > 0,
        "the faults were felt: {all:?}"
    );
    assert!(report.reasons_frame().unwrap().height() >= 1);
    let tl = report.timeline_frame(500.0).unwrap();
    assert!(tl.height() >= 38, "{tl}");
    let chart = report.chart().unwrap();
    assert!(chart.svg.contains("kill storage"));
    chart.save(root.path().join("bank.svg")).unwrap();
    // Kept for people (and the docs) to look at: target/ is git-ignored.
    let _ = chart.save(manifest_dir().join("../target/bank-short.svg"));
    // The lab is healthy again afterwards.
    assert!(
        cluster
            .instances()
            .unwrap()
            .iter()
            .all(|i| i.state == NodeState::Running)
    );
    cluster.cleanup().unwrap();
}

#[test]
fn bank_plans_are_checked_before_anything_runs() {
    let (_root, builder) = shared_lab("bank-plan");
    let cluster = builder.echo(false).start().unwrap();
    let e = cluster
        .bank(BankPlan {
            accounts: 1,
            ..BankPlan::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains("at least 2 accounts"), "{e}");
    let e = cluster
        .bank(BankPlan {
            schedule: vec![FaultStep::at(1.0, Fault::kill_node("z"))],
            ..BankPlan::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains("no node `z`"), "{e}");
    let e = cluster
        .bank(BankPlan {
            schedule: vec![FaultStep::at(
                1.0,
                Fault::Link(Link::client_to("a"), LinkFault::Cut),
            )],
            ..BankPlan::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains(".fault_links(true)"), "{e}");
    // Nothing ran: no fault was logged.
    assert!(cluster.fault_records().unwrap().is_empty());
    cluster.cleanup().unwrap();
}

/// The 2-minute run for the closing note: every process fault plus every link fault.
/// `cargo test -p poc_helpers --test bank -- --ignored --nocapture`
#[test]
#[ignore]
fn two_minute_bank_run_with_every_fault() {
    let (root, builder) = shared_lab("bank2m");
    let cluster = builder
        .echo(false)
        .fault_links(true)
        .stop_timeout(Duration::from_secs(3))
        .start()
        .unwrap();
    let report = cluster.bank(BankPlan::two_minutes(true)).expect("bank run");
    print(&report);
    println!(
        "final read wait {:.1} s, unknown applied {}",
        report.final_read_wait_s, report.verdict.unknown_applied
    );
    let out = manifest_dir().join("../target/bank-2m.svg");
    report.chart().unwrap().save(&out).unwrap();
    println!("chart: {}", out.display());
    let _ = root;
    assert!(report.verdict.is_valid(), "{:?}", report.verdict);
    cluster.cleanup().unwrap();
}

/// This package's folder as `cargo test` reports it at run time (the compile-time value names the
/// clone that first compiled the test, which a clone sharing the cache's target folder reuses).
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}

/// The replicated tier under the bank: each of the three stores is killed and restarted in
/// turn, so whichever store leads the region dies once (the leader may move between kills,
/// but a kill of a follower leaves it in place, so the leader is hit at least once). The
/// verdict must stay Valid, and no operation may fail because of a kill: a store's death costs
/// an election, a pause inside the TiKV client's own retries, never an error or a transfer.
#[test]
fn the_bank_stays_valid_while_each_store_in_turn_is_killed() {
    let (_root, builder) = shared_lab("bank-stores");
    let cluster = builder
        .echo(false)
        .stores(3)
        .stop_timeout(Duration::from_secs(3))
        .start()
        .unwrap();
    let plan = BankPlan {
        duration: Duration::from_secs(10),
        schedule: vec![
            FaultStep::at(1.5, Fault::kill_store(1)),
            FaultStep::at(3.0, Fault::restart_store(1)),
            FaultStep::at(4.5, Fault::kill_store(2)),
            FaultStep::at(6.0, Fault::restart_store(2)),
            FaultStep::at(7.5, Fault::kill_store(3)),
            FaultStep::at(9.0, Fault::restart_store(3)),
        ],
        ..BankPlan::default()
    };
    let report = cluster.bank(plan).expect("bank run");
    print(&report);
    assert_valid_with_total_800(&report);
    let all = report.summary_rows().pop().unwrap();
    assert!(all.acknowledged > 0, "{all:?}");
    // SurrealDB saw a pause, not an error: the only failed transfers are the ones any run has
    // (lost conflicts, insufficient funds), none caused by a dead store.
    let from_faults: Vec<&str> = report
        .ops
        .iter()
        .filter_map(|o| o.reason.as_deref())
        .filter(|r| !matches!(*r, "conflict" | "insufficient funds"))
        .collect();
    assert!(
        from_faults.is_empty(),
        "{} operation(s) failed because of the store kills: {from_faults:?}",
        from_faults.len()
    );
    assert_eq!(
        report.faults.iter().filter(|f| f.ok).count(),
        6,
        "every kill and restart happened: {:?}",
        report.faults
    );
}
