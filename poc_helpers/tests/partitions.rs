//! Partitions as an application meets them, and the concurrent duplicate email, with real
//! processes: a client cut from its node while another serves, latency with jitter on a link,
//! dropped connections with every acknowledged write kept, and two nodes racing one email
//! under a UNIQUE index. One lab per test, ephemeral ports, real `surreal` nodes.

mod common;

use std::time::Duration;

use common::shared_lab;
use poc_helpers::prelude::*;

fn start(name: &str) -> (tempfile::TempDir, Cluster) {
    let (root, builder) = shared_lab(name);
    let cluster = builder
        .fault_links(true)
        .query_timeout(Duration::from_secs(4))
        .start()
        .expect("shared lab with fault links starts");
    (root, cluster)
}

#[test]
fn a_client_cut_from_its_node_is_served_by_the_other_node() {
    let (_root, cluster) = start("p-clientcut");
    let r = cluster.client_cut_drill("a", "b").expect("drill");
    assert!(r.claim_holds(), "{r:#?}");
    assert!(
        ["connection", "timeout"].contains(&r.error_class.as_str()),
        "{r:#?}"
    );
    assert_eq!(r.health_status, Some(200), "node-a itself stays healthy");
    assert!(r.back_after_s < 30.0);
    assert!(
        r.explain().contains("any node can serve it"),
        "{}",
        r.explain()
    );
    // The cut and its heal are in the fault log, and the link is healthy again.
    let log = cluster.fault_records().unwrap();
    assert!(
        log.iter()
            .any(|f| f.target == "client→node-a" && f.action == "cut" && f.ended_at_ms.is_some())
    );
    let links = cluster.link_statuses().unwrap();
    assert!(links.iter().all(|l| l.settings.is_healthy()), "{links:?}");
    cluster.cleanup().unwrap();
}

#[test]
fn latency_with_jitter_moves_the_median_and_the_tail() {
    let (_root, cluster) = start("p-latency");
    cluster.set_echo(false);
    let r = cluster
        .latency_drill("a", Duration::from_millis(25), Duration::from_millis(15))
        .expect("drill");
    let ((b50, b99), (d50, d99)) = r.percentiles();
    eprintln!("before p50 {b50} p99 {b99}; during p50 {d50} p99 {d99}");
    assert!(r.claim_holds(), "{}", r.explain());
    assert!(r.p50_shift_ms() >= r.min_added_ms(), "{}", r.explain());
    assert!(!r.before.samples.is_empty() && !r.during.samples.is_empty());
    let svg = r.chart().unwrap().svg;
    for label in [
        "p50 per 0.5 s",
        "p99 per 0.5 s",
        "latency 25 ± 15 ms on client→node-a",
    ] {
        assert!(svg.contains(label), "missing {label}");
    }
    assert_eq!(r.summary_frame().unwrap().height(), 2);
    assert!(
        cluster
            .link_statuses()
            .unwrap()
            .iter()
            .all(|l| l.settings.is_healthy()),
        "the link is healed afterwards"
    );
    cluster.cleanup().unwrap();
}

#[test]
fn dropped_connections_are_retried_and_no_acknowledged_write_is_lost() {
    let (_root, cluster) = start("p-drops");
    let r = cluster.drop_drill(DropPlan::default()).expect("drill");
    eprintln!("{}", r.explain());
    assert!(
        r.refused() > 0,
        "half the new connections are dropped: {r:#?}"
    );
    assert!(r.lost().is_empty(), "{r:#?}");
    assert!(
        r.open_session_ok,
        "the session opened before the fault is not dropped"
    );
    assert!(r.claim_holds());
    // A dropped connection never reached the node: nothing unacknowledged was written.
    assert!(r.unacknowledged_found().is_empty(), "{r:#?}");
    assert_eq!(r.stored.len(), r.acknowledged().len());
    let drop = cluster
        .link_statuses()
        .unwrap()
        .into_iter()
        .find(|l| l.link == "client→node-a")
        .unwrap();
    assert_eq!(drop.stats.dropped, u64::from(r.refused()), "{drop:?}");
    cluster.cleanup().unwrap();
}

#[test]
fn two_nodes_racing_one_email_leave_exactly_one_user() {
    let (_root, cluster) = start("p-unique");
    let r = cluster
        .duplicate_email_race(["a", "b"], "ada@example.com")
        .expect("race");
    eprintln!("{}", r.explain());
    assert_eq!(r.winners(), 1, "{r:#?}");
    assert!(
        matches!(r.loser_saw(), LoserSaw::Conflict | LoserSaw::Duplicate),
        "{r:#?}"
    );
    assert_eq!(
        r.retry_saw(),
        Some(LoserSaw::Duplicate),
        "a retry meets the index: {r:#?}"
    );
    assert!(r.claim_holds(), "{r:#?}");
    // It starts from a clean slate (deletes the email first), so a rerun ends the same way.
    let again = cluster
        .duplicate_email_race(["b", "a"], "ada@example.com")
        .expect("race again");
    assert_eq!(
        again.rows_per_node,
        vec![("node-b".into(), 1), ("node-a".into(), 1)]
    );
    let e = cluster
        .duplicate_email_race(["a", "b"], "x' OR true")
        .unwrap_err();
    assert!(e.to_string().contains("plain email"), "{e}");
    cluster.cleanup().unwrap();
}
