//! The storage tier as TiKV runs it, under unmodified `surreal` nodes: `.stores(3)` starts PD
//! and three store processes, every region is replicated on all three with Raft, and PD's map
//! (`cluster.placement()`) shows which store leads. The claims, each challenged by a real
//! SIGKILL:
//!
//! - killing the store that leads the region loses no acknowledged write, and SurrealDB's
//!   statements keep succeeding once the two survivors elect a leader (a pause, not an outage);
//! - PD names the new leader, and the killed store comes back and rejoins;
//! - the default one-store lab shows one region with one replica: the single point of failure
//!   the three-store tier removes;
//! - the store-failover drill of notebook 05 measures that pause and checks every write.

mod common;

use std::time::{Duration, Instant};

use common::{assert_mentions, shared_lab};
use poc_helpers::prelude::*;

fn count(cluster: &Cluster, node: &str) -> usize {
    cluster
        .sql(node, "SELECT VALUE n FROM item")
        .expect("read back through the node")
        .row_count()
}

/// Polls PD until `ok` holds for its map, or panics with the last map after `limit`.
fn placement_until(
    cluster: &Cluster,
    limit: Duration,
    ok: impl Fn(&Placement) -> bool,
) -> Placement {
    let start = Instant::now();
    loop {
        let p = cluster.placement().expect("PD answers");
        if ok(&p) {
            return p;
        }
        assert!(start.elapsed() < limit, "PD's map never got there: {p:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn killing_the_leader_store_pauses_writes_and_loses_nothing() {
    let (_root, builder) = shared_lab("repl");
    let cluster = builder
        .stores(3)
        .start()
        .expect("PD and three stores start");

    // Status: one row per storage process, PD first.
    let names: Vec<String> = cluster
        .instances()
        .unwrap()
        .into_iter()
        .map(|i| i.node)
        .collect();
    for want in ["pd", "store-1", "store-2", "store-3"] {
        assert!(
            names.iter().any(|n| n == want),
            "no `{want}` row in {names:?}"
        );
    }

    // Placement: one region, a replica on each store, one leader.
    let before = placement_until(&cluster, Duration::from_secs(10), |p| {
        p.busiest_leader().is_some() && p.stores.len() == 3
    });
    assert_eq!(before.regions.len(), 1, "{before:?}");
    assert_eq!(
        before.regions[0].stores.len(),
        3,
        "three replicas: {before:?}"
    );
    let leader = before.busiest_leader().unwrap();

    for i in 0..20 {
        let node = if i % 2 == 0 { "a" } else { "b" };
        cluster
            .sql(node, &format!("CREATE item:{i} SET n = {i}"))
            .expect("acknowledged write");
    }

    cluster.kill_store(leader).expect("kill the leader's store");
    // SurrealDB's TiKV client retries region errors by itself; the first statement after the
    // kill should already succeed, but a retry loop keeps the test about loss, not timing.
    let start = Instant::now();
    let mut failures = Vec::new();
    loop {
        match cluster.sql("a", "CREATE item:after SET n = 20") {
            Ok(_) => break,
            Err(e) => failures.push(e.to_string()),
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no write succeeded after the leader's store died: {failures:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "first write after killing leader store {leader}: {:?}, {} failed attempt(s) before it",
        start.elapsed(),
        failures.len()
    );
    assert_eq!(
        count(&cluster, "b"),
        21,
        "every acknowledged write, read through B"
    );

    let after = placement_until(&cluster, Duration::from_secs(10), |p| {
        p.busiest_leader().is_some_and(|l| l != leader)
    });
    eprintln!("PD's map after the kill: {after:?}");

    // The dead store comes back on its data and rejoins; PD sees it heartbeat again.
    cluster.restart_store(leader).expect("restart the store");
    placement_until(&cluster, Duration::from_secs(10), |p| {
        p.stores.iter().all(|s| s.state == "Up")
    });
    cluster.sql("b", "CREATE item:rejoined SET n = 21").unwrap();
    assert_eq!(count(&cluster, "a"), 22);

    // Store ids outside the tier are refused, naming the range.
    let err = cluster.kill_store(7).unwrap_err().to_string();
    assert_mentions(&err, &["no store 7", "from 1 to 3"]);
}

/// The storage tier counts as started only once PD names a leader for every region: its
/// stores serve before their regions have elected one, and a `surreal` node started in that
/// moment fails its start-up check ("Leader of region 2 is not found"; seen in a test run).
/// A whole-tier restart on existing data is the slow case (a restarted store waits an
/// election timeout before it votes), so PD's map is read the moment the restart returns.
#[test]
fn the_storage_tier_starts_and_restarts_with_a_leader_for_every_region() {
    let (_root, builder) = shared_lab("leaders");
    let cluster = builder
        .stores(3)
        .start()
        .expect("PD and three stores start");
    let p = cluster.placement().expect("PD's map");
    assert!(p.not_serving().is_empty(), "after start: {p:?}");
    cluster.split_table("user").expect("a second region");
    cluster.restart_storage().expect("the tier restarts");
    let p = cluster.placement().expect("PD's map");
    assert_eq!(p.regions.len(), 2, "{p:?}");
    assert!(p.not_serving().is_empty(), "after restart: {p:?}");
    let added = cluster
        .add_node()
        .expect("a node starts on the restarted tier");
    cluster
        .sql(added.as_str(), "CREATE restarted:1 SET ok = true")
        .expect("a write through it");
    cluster.cleanup().expect("cleanup");
}

#[test]
fn the_default_lab_has_one_region_with_one_replica() {
    let (_root, builder) = shared_lab("one-store");
    let cluster = builder.start().expect("lab starts");
    let p = placement_until(&cluster, Duration::from_secs(10), |p| {
        p.busiest_leader().is_some()
    });
    assert_eq!(p.regions.len(), 1, "{p:?}");
    assert_eq!(p.regions[0].stores.len(), 1, "one copy: {p:?}");
    assert_eq!(cluster.regions().unwrap().height(), 1);
    // There is no store process to fault on its own: the error says how to get one.
    let err = cluster.kill_store(1).unwrap_err().to_string();
    assert_mentions(&err, &[".stores(3)", "kill_storage()"]);
    let err = cluster.store_failover("a").unwrap_err().to_string();
    assert_mentions(&err, &["1 store(s)", ".stores(3)"]);
}

#[test]
fn the_store_failover_drill_measures_the_pause_and_checks_every_write() {
    let (_root, builder) = shared_lab("drill");
    let cluster = builder
        .stores(3)
        .start()
        .expect("PD and three stores start");
    let drill = cluster.store_failover("a").expect("the drill runs");
    eprintln!("{}", drill.explain());
    assert!(drill.claim_holds(), "{}", drill.explain());
    assert!(drill.acknowledged() > 20, "a steady writer: {drill:?}");
    // PD's map, sampled during the drill, shows the leader moving off the killed store.
    assert!(drill.leader_moved_s().is_some(), "{:?}", drill.leaders);
    assert!(drill.leader_chart().is_ok());
    assert!(
        drill
            .writes
            .iter()
            .any(|w| w.at_s >= drill.kill_at_s && w.ok)
    );
    assert!(
        drill.rejoin_s.is_some(),
        "the killed store rejoined: {drill:?}"
    );
    // The drill left the tier whole: every store up, one leader.
    let p = cluster.placement().unwrap();
    assert!(p.stores.iter().all(|s| s.state == "Up"), "{p:?}");
}

/// Splitting at a table (TiDB's `SPLIT TABLE`) gives its records a region of their own, and
/// `where_is` finds each record's region from the key SurrealDB stores it under. A transaction
/// that writes to both regions commits (the client's two-phase commit across regions), and
/// every record reads back. Splitting a table that does not exist names the fix.
#[test]
fn a_table_split_gives_its_records_a_region_and_where_is_finds_them() {
    let (_root, builder) = shared_lab("split");
    let cluster = builder
        .stores(3)
        .start()
        .expect("PD and three stores start");
    cluster
        .sql(
            "node-a",
            "CREATE user:ada SET name = 'Ada', email = 'ada@example.com'; CREATE order:1 SET total = 5",
        )
        .expect("two records");
    let err = cluster.split_table("nosuch").unwrap_err().to_string();
    assert_mentions(&err, &["nosuch", "DEFINE TABLE"]);
    let err = cluster.where_is("ada").unwrap_err().to_string();
    assert_mentions(&err, &["table:id"]);

    let before = cluster.placement().unwrap().regions.len();
    let after = cluster.split_table("user").expect("the split");
    assert_eq!(
        after.regions.len(),
        before + 1,
        "one more region: {after:?}"
    );
    let ada = cluster.where_is("user:ada").expect("user:ada is somewhere");
    let order = cluster.where_is("order:1").expect("order:1 is somewhere");
    assert_ne!(ada.region.id, order.region.id, "the split put them apart");
    assert_eq!(
        ada.region.start_meaning(),
        "table `user` (its first record)"
    );
    assert_eq!(ada.region.stores.len(), 3, "three replicas");
    assert_eq!(ada.followers().len(), 2, "{}", ada.explain());
    assert!(ada.explain().contains("user:ada"), "{}", ada.explain());
    println!("{}\n{}", ada.explain(), order.explain());

    // One transaction across both regions, through the other node.
    cluster
        .sql(
            "node-b",
            "BEGIN; UPDATE user:ada SET name = 'Ada Lovelace'; UPDATE order:1 SET by = user:ada; COMMIT;",
        )
        .expect("a two-region transaction commits");
    let row = cluster
        .sql(
            "node-a",
            "SELECT VALUE name FROM user:ada; SELECT VALUE by FROM order:1",
        )
        .expect("read back");
    assert_eq!(
        row.statements[0].rows,
        [serde_json::json!("Ada Lovelace")],
        "{row:?}"
    );
    assert_eq!(row.rows(), [serde_json::json!("user:ada")], "{row:?}");

    // The leader of user:ada's region moved by hand; a store without a replica is refused.
    let region = ada.region.id;
    let err = cluster.transfer_leader(region, 9).unwrap_err().to_string();
    assert_mentions(&err, &["store 9 holds no replica", "1, 2, 3"]);
    let to = ada.followers()[0];
    let after = cluster
        .transfer_leader(region, to)
        .expect("the leader moves");
    let moved = after.regions.iter().find(|r| r.id == region).unwrap();
    assert_eq!(moved.leader_store, Some(to));
    let chart = cluster.placement_chart().expect("the placement chart");
    assert_eq!(
        chart.svg.matches("leader").count(),
        2,
        "one leader per region"
    );
    cluster.cleanup().expect("cleanup");
}

/// Two of three stores killed under a steady writer (notebook 05, section 10): no write is
/// acknowledged without a majority, the failures carry an error the learner can read, every
/// acknowledged write survives, and restarting one store brings writes back. The drill leaves
/// the tier whole. On a one-store lab the drill names the fix.
#[test]
fn two_of_three_stores_down_stop_writes_and_one_back_resumes_them() {
    let (_root, builder) = shared_lab("majority");
    let cluster = builder
        .stores(3)
        .start()
        .expect("PD and three stores start");
    let drill = cluster.majority_loss("a").expect("the drill runs");
    eprintln!("{}", drill.explain());
    assert!(drill.claim_holds(), "{}", drill.explain());
    assert!(drill.failed_while_down() > 0, "{drill:?}");
    assert_eq!(
        drill.acknowledged_while_down(),
        0,
        "a write committed without a majority: {drill:?}"
    );
    assert!(drill.lost.is_empty(), "{drill:?}");
    assert!(
        drill
            .errors_while_down()
            .iter()
            .all(|e| !e.trim().is_empty()),
        "every failure carries a message: {drill:?}"
    );
    assert!(
        drill.rejoin_s.is_some(),
        "the last store rejoined: {drill:?}"
    );
    assert_eq!(drill.frame().unwrap().height(), drill.writes.len());
    // The tier is whole again: three stores up, and a write commits.
    let p = placement_until(&cluster, Duration::from_secs(15), |p| {
        p.stores.len() == 3 && p.stores.iter().all(|s| s.state == "Up")
    });
    eprintln!("PD's map after the drill: {p:?}");
    cluster
        .sql("b", "CREATE majority:after SET n = 1000000")
        .expect("a write after the drill");
}

/// Replication's cost to one write (notebook 04): a traced one-store lab's write waits for no
/// other store (its quorum step is bookkeeping, shorter than its own fsync), a three-replica
/// lab's write waits for a follower, and both fsync their leader's log. Misuse names
/// the fix: the labs swapped, an untraced replicated lab, the majority drill on one store.
#[test]
fn a_three_replica_write_waits_for_a_quorum_a_one_store_write_does_not() {
    let (_root1, b1) = shared_lab("cost-one");
    let one = b1.storage_trace(true).start().expect("one store, traced");
    let (_root3, b3) = shared_lab("cost-three");
    let three = b3
        .stores(3)
        .storage_trace(true)
        .start()
        .expect("three stores, traced");
    let cost = one
        .replica_write_cost(&three, "a", 20)
        .expect("the same write on both labs");
    eprintln!("{}", cost.explain());
    assert_eq!((cost.one.replicas, cost.many.replicas), (1, 3));
    assert_eq!((cost.one.ms.len(), cost.many.ms.len()), (20, 20));
    let (r1, r3) = (cost.one.raft().unwrap(), cost.many.raft().unwrap());
    assert!(r1.writes > 0 && r3.writes > 0, "{cost:?}");
    // One replica: the leader is the majority, so its quorum step is Raft's bookkeeping (a few
    // µs), never a second store's fsync: shorter than the leader's own fsync.
    assert!(
        r1.quorum < r1.persist,
        "one replica waits for nobody: {r1:?}"
    );
    assert!(
        r3.quorum > 0.0,
        "three replicas wait for a follower: {r3:?}"
    );
    assert!(r1.persist > 0.0 && r3.persist > 0.0, "{r1:?} {r3:?}");
    assert_eq!(cost.frame().unwrap().height(), 2);

    let err = three
        .replica_write_cost(&one, "a", 5)
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["1 store(s)", ".stores(3)"]);
    let err = one
        .replica_write_cost(&three, "a", 0)
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["1 to 2000"]);
    let err = one.majority_loss("a").unwrap_err().to_string();
    assert_mentions(&err, &["1 store(s)", ".stores(3)"]);
    drop(three);
    let (_root4, b4) = shared_lab("cost-untraced");
    let untraced = b4.stores(3).start().expect("three stores, untraced");
    let err = one
        .replica_write_cost(&untraced, "a", 5)
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &[".storage_trace(true)"]);
}

/// A store's machine is lost and replaced (notebook 05's drill): PD removes it, a new store
/// joins, and each lost replica is rebuilt there while a writer carries on; nothing is lost and
/// the old id may not come back. With three stores left, removing one more is answered with
/// what to do instead.
#[test]
fn a_lost_store_is_replaced_and_its_replicas_rebuilt_on_a_new_store() {
    let (_root, builder) = shared_lab("replace");
    let cluster = builder
        .stores(3)
        .start()
        .expect("PD and three stores start");
    cluster
        .sql(
            "a",
            "CREATE user:ada SET name = 'Ada', email = 'ada@example.com'",
        )
        .unwrap();
    cluster.split_table("user").expect("two regions");

    let r = cluster
        .store_replacement("a")
        .expect("the replacement drill");
    eprintln!("{}", r.explain());
    assert!(r.claim_holds(), "{}", r.explain());
    assert_eq!(r.new_store, 4);
    assert!(r.replicas_to_rebuild() >= 2, "{}", r.explain());
    let names: Vec<String> = cluster
        .instances()
        .unwrap()
        .into_iter()
        .map(|i| i.node)
        .collect();
    assert!(names.iter().any(|n| n == "store-4"), "{names:?}");
    assert_eq!(
        cluster
            .sql("b", "SELECT VALUE name FROM user:ada")
            .unwrap()
            .rows(),
        vec![serde_json::json!("Ada")]
    );

    let said = cluster.remove_store(1).expect("PD answers");
    assert_mentions(&said, &["offline", "add a store"]);
}

/// A partition inside the storage tier (notebook 05's drill and bank run): the leader's store
/// cut off from the other two loses the region to them and commits nothing alone; writes
/// resume; and the bank test with a leader store killed and restarted, then a store cut off
/// and healed, is judged Valid.
#[test]
fn a_partitioned_leader_store_loses_its_region_and_the_bank_stays_valid() {
    let (_root, builder) = shared_lab("partition");
    let cluster = builder
        .stores(3)
        .start()
        .expect("PD and three stores start");
    let p = cluster.store_partition("a").expect("the partition drill");
    eprintln!("{}", p.explain());
    assert!(p.claim_holds(), "{}", p.explain());
    assert!(p.explain().contains("cut off"), "{}", p.explain());

    let leader = placement_until(&cluster, Duration::from_secs(10), |p| {
        p.busiest_leader().is_some()
    })
    .busiest_leader()
    .unwrap();
    let other = (1..=3).find(|s| *s != leader).unwrap();
    let bank = cluster
        .bank(BankPlan {
            duration: Duration::from_secs(6),
            schedule: vec![
                FaultStep::at(1.0, Fault::kill_store(leader)),
                FaultStep::at(2.5, Fault::restart_store(leader)),
                FaultStep::at(3.5, Fault::partition_store(other)),
                FaultStep::at(5.0, Fault::heal_store(other)),
            ],
            ..BankPlan::default()
        })
        .expect("the bank run");
    let v = &bank.verdict;
    eprintln!("{}", bank.explain());
    assert_eq!(v.validity, Validity::Valid, "{v:?}");
    // The breaking faults (a kill, a cut); their repairs close the windows.
    assert_eq!(
        bank.injected_faults().len(),
        2,
        "{:?}",
        bank.injected_faults()
    );
}

/// PD alone killed (`lab kill pd`): the stores keep their data, but no transaction can start
/// without a timestamp; restarted on its data, PD hears from the stores again and statements
/// succeed. On a one-store lab, a PD fault is refused naming `.stores(3)`.
#[test]
fn killing_pd_stops_new_transactions_until_it_is_back() {
    let (_root, builder) = shared_lab("pd");
    let cluster = builder
        .stores(3)
        .start()
        .expect("PD and three stores start");
    cluster.sql("a", "CREATE item:1 SET n = 1").unwrap();
    cluster.kill_pd().expect("kill PD");
    assert!(
        cluster.sql("a", "CREATE item:2 SET n = 2").is_err(),
        "no transaction starts without PD's timestamps"
    );
    cluster.restart_pd().expect("restart PD");
    let start = Instant::now();
    while cluster.sql("a", "CREATE item:3 SET n = 3").is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no write succeeded within 30 s of PD's restart"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("first write after PD's restart: {:?}", start.elapsed());
    // Each node's TiKV client reconnects its timestamp stream to PD by itself, at its first
    // request after the restart, which may fail: node-b gets the same wait node-a got.
    let read_b = loop {
        match cluster.sql("b", "SELECT VALUE n FROM item") {
            Ok(rows) => break rows.row_count(),
            Err(e) => assert!(
                start.elapsed() < Duration::from_secs(30),
                "node-b read nothing within 30 s of PD's restart: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(read_b, 2, "item:1 and item:3 (item:2 never started)");

    let (_root1, one) = shared_lab("pd-one");
    let one = one.start().expect("a one-store lab");
    let err = one.kill_pd().unwrap_err().to_string();
    assert_mentions(&err, &[".stores(3)", "kill_storage()"]);
}
