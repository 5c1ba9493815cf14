//! Conflicts between nodes on shared storage: who wins a race, retrying, the conflict rate under
//! contention (with no lost update), and write skew with its fix. Real processes throughout.

mod common;

use common::shared_lab;
use poc_helpers::experiments::conflicts::{ContentionPlan, RetryPolicy};
use poc_helpers::prelude::*;

const INCREMENT: &str = "BEGIN TRANSACTION; \
     LET $n = (SELECT VALUE n FROM ONLY counter:c); \
     SLEEP 300ms; \
     UPDATE counter:c SET n = $n + 1; \
     COMMIT TRANSACTION;";

#[test]
fn the_same_transaction_from_both_nodes_one_commits_one_gets_the_retryable_conflict() {
    let (_root, builder) = shared_lab("c-race");
    let cluster = builder.start().unwrap();
    cluster.sql("a", "CREATE counter:c SET n = 0").unwrap();
    let outcomes = cluster.race_transaction(&["a", "b"], INCREMENT).unwrap();
    assert_eq!(
        outcomes.iter().filter(|o| o.committed()).count(),
        1,
        "{outcomes:?}"
    );
    let loser = outcomes.iter().find(|o| !o.committed()).unwrap();
    assert!(loser.conflicted(), "{loser:?}");
    assert_eq!(loser.kind.as_deref(), Some("Query/TransactionConflict"));
    let df = poc_helpers::experiments::conflicts::outcomes_frame(&outcomes).unwrap();
    assert_eq!(df.height(), 2);

    // Retrying the loser with backoff gives the right total.
    let retried = cluster
        .retry_on_conflict(loser.node.as_str(), INCREMENT, RetryPolicy::default())
        .unwrap();
    assert!(retried.attempts >= 1);
    let n = cluster
        .sql("b", "SELECT VALUE n FROM ONLY counter:c")
        .unwrap();
    assert_eq!(n.first(), Some(&json!(2)));
    cluster.cleanup().unwrap();
}

#[test]
fn retry_on_conflict_wins_eventually_and_never_retries_other_errors() {
    let (_root, builder) = shared_lab("c-retry");
    let cluster = builder.echo(false).start().unwrap();
    cluster.sql("a", "CREATE counter:c SET n = 0").unwrap();
    // Four clients (two per node) increment with retries at the same time: all must land.
    std::thread::scope(|s| {
        for k in 0..4 {
            let cluster = &cluster;
            s.spawn(move || {
                let node = if k % 2 == 0 { "a" } else { "b" };
                for _ in 0..3 {
                    cluster
                        .retry_on_conflict(
                            node,
                            "BEGIN; LET $n = (SELECT VALUE n FROM ONLY counter:c); \
                             UPDATE counter:c SET n = $n + 1; COMMIT;",
                            RetryPolicy {
                                max_attempts: 50,
                                ..RetryPolicy::default()
                            },
                        )
                        .expect("retries until it commits");
                }
            });
        }
    });
    let n = cluster
        .sql("a", "SELECT VALUE n FROM ONLY counter:c")
        .unwrap();
    assert_eq!(
        n.first(),
        Some(&json!(12)),
        "every increment landed exactly once"
    );
    let e = cluster
        .retry_on_conflict("a", "SELEC nonsense", RetryPolicy::default())
        .unwrap_err();
    assert!(!e.is_transaction_conflict());
    cluster.cleanup().unwrap();
}

#[test]
fn the_conflict_rate_falls_as_keys_spread_and_no_update_is_lost() {
    let (_root, builder) = shared_lab("c-rate");
    let cluster = builder.echo(false).start().unwrap();
    let rows = cluster
        .conflict_rate(ContentionPlan {
            workers_per_node: 3,
            txns_per_worker: 10,
            hot_keys: vec![1, 64],
        })
        .unwrap()
        .rows;
    for r in &rows {
        println!("MEASURED contention {r:?}");
        assert_eq!(r.attempts, 60);
        assert_eq!(
            r.lost_updates, 0,
            "snapshot isolation lost no update: {r:?}"
        );
        assert_eq!(r.committed + r.conflicts + r.other_errors, r.attempts);
    }
    assert!(
        rows[0].conflicts > 0,
        "six clients on one key collide: {:?}",
        rows[0]
    );
    assert!(
        rows[0].conflict_rate >= rows[1].conflict_rate,
        "more keys, fewer conflicts: {rows:?}"
    );
    let df = cluster.conflict_rate(ContentionPlan {
        workers_per_node: 1,
        txns_per_worker: 2,
        hot_keys: vec![2],
    });
    assert_eq!(df.unwrap().summary_frame().unwrap().height(), 1);
    assert!(
        cluster
            .conflict_rate(ContentionPlan {
                hot_keys: vec![0],
                ..ContentionPlan::default()
            })
            .is_err()
    );
    cluster.cleanup().unwrap();
}

#[test]
fn write_skew_is_allowed_by_snapshot_isolation_and_a_guard_record_prevents_it() {
    let (_root, builder) = shared_lab("c-skew");
    let cluster = builder.start().unwrap();
    let skew = cluster.write_skew(false).unwrap();
    assert!(
        skew.outcomes.iter().all(|o| o.committed()),
        "both transactions commit: {skew:?}"
    );
    assert!(skew.anomaly(), "and nobody is on call any more: {skew:?}");
    assert_eq!(skew.on_call_after, 0);

    let fixed = cluster.write_skew(true).unwrap();
    assert_eq!(fixed.on_call_after, 1, "{fixed:?}");
    assert!(!fixed.anomaly());
    let tally = poc_helpers::experiments::conflicts::tally(&fixed.outcomes);
    assert_eq!(tally.get("committed"), Some(&1), "{fixed:?}");
    assert_eq!(
        tally.get("conflict"),
        Some(&1),
        "the loser got a retryable conflict: {fixed:?}"
    );
    cluster.cleanup().unwrap();
}
