//! Every fault call of the lab, with real processes: its effect on queries, its recovery, and
//! its entry in the fault log (`cluster.faults()`), whose windows charts shade.

mod common;

use std::time::{Duration, Instant};

use common::{assert_mentions, shared_lab};
use poc_helpers::prelude::*;
use poc_helpers::vocab::faults::FaultRecord;
use poc_helpers::vocab::faults::Link;

/// A shared two-node lab with a short query timeout, so a hung node fails a query quickly.
fn start(name: &str, links: bool) -> (tempfile::TempDir, Cluster) {
    let (root, builder) = shared_lab(name);
    let cluster = builder
        .fault_links(links)
        .query_timeout(Duration::from_secs(4))
        .stop_timeout(Duration::from_secs(3))
        .start()
        .expect("shared lab starts");
    (root, cluster)
}

/// Retries a query until it succeeds (a recovering node or link), at most `limit`.
fn eventually(cluster: &Cluster, node: &str, q: &str, limit: Duration) -> QueryResult {
    let t = Instant::now();
    loop {
        match cluster.sql(node, q) {
            Ok(r) => return r,
            Err(e) if t.elapsed() < limit => {
                eprintln!("not yet: {}", e.to_string().lines().next().unwrap_or(""));
                std::thread::sleep(Duration::from_millis(300));
            }
            Err(e) => panic!("{node} did not recover within {limit:?}: {e}"),
        }
    }
}

fn find<'a>(log: &'a [FaultRecord], target: &str, action: &str) -> &'a FaultRecord {
    log.iter()
        .find(|r| r.target == target && r.action == action)
        .unwrap_or_else(|| panic!("no `{action} {target}` in {log:#?}"))
}

#[test]
fn kill_and_restart_of_a_node_are_logged_as_one_window() {
    let (_root, cluster) = start("f-kill", false);
    cluster.sql("a", "CREATE item:1 SET n = 1").unwrap();
    cluster.kill_node("b").unwrap();
    let e = cluster.sql("b", "SELECT * FROM item").unwrap_err();
    assert!(matches!(e, LabError::NodeDown { .. }), "{e}");
    assert_eq!(
        cluster.sql("a", "SELECT * FROM item").unwrap().row_count(),
        1,
        "the survivor keeps serving"
    );
    cluster.restart_node("b").unwrap();
    assert_eq!(
        cluster.sql("b", "SELECT * FROM item").unwrap().row_count(),
        1
    );

    let log = cluster.fault_records().unwrap();
    let kill = find(&log, "node-b", "kill");
    let restart = find(&log, "node-b", "restart");
    assert!(kill.ok && restart.ok);
    assert_eq!(
        kill.ended_at_ms, restart.ended_at_ms,
        "the kill's window ends when the restarted node is ready"
    );
    assert!(kill.started_at_ms < restart.started_at_ms);
    // Same clock as timings(): the kill happened between the two queries around it.
    let ops = cluster.op_log().unwrap();
    assert!(ops[0].started_at_ms < kill.started_at_ms);
    assert!(ops[1].started_at_ms > kill.started_at_ms);
    let df = cluster.faults().unwrap();
    assert_eq!(df.height(), 2);
    cluster.cleanup().unwrap();
}

#[test]
fn a_graceful_stop_is_logged_and_the_node_restarts_on_the_same_data() {
    let (_root, cluster) = start("f-stop", false);
    cluster.sql("b", "CREATE item:1 SET n = 1").unwrap();
    cluster.stop_node("a").unwrap();
    assert!(cluster.sql("a", "RETURN 1").is_err());
    let inst = cluster.instances().unwrap();
    assert_eq!(inst[0].state, NodeState::Stopped);
    cluster.restart_node("a").unwrap();
    assert_eq!(
        cluster.sql("a", "SELECT * FROM item").unwrap().row_count(),
        1
    );
    let log = cluster.fault_records().unwrap();
    let stop = find(&log, "node-a", "stop");
    assert!(stop.detail.contains("stopped"), "{}", stop.detail);
    assert!(stop.ended_at_ms.is_some());
    cluster.cleanup().unwrap();
}

#[test]
fn a_paused_node_times_out_and_answers_again_after_resume() {
    let (_root, cluster) = start("f-pause", false);
    cluster.pause_node("a").unwrap();
    assert_eq!(cluster.instances().unwrap()[0].state, NodeState::Paused);
    let e = cluster.sql("a", "RETURN 1").unwrap_err();
    assert!(matches!(e, LabError::Timeout { .. }), "{e}");
    assert_mentions(&e.to_string(), &["paused"]);
    cluster
        .sql("b", "RETURN 1")
        .expect("node-b is not affected");
    cluster.resume_node("a").unwrap();
    eventually(&cluster, "a", "RETURN 1", Duration::from_secs(20));
    let log = cluster.fault_records().unwrap();
    let pause = find(&log, "node-a", "pause");
    let resume = find(&log, "node-a", "resume");
    assert_eq!(pause.ended_at_ms, Some(resume.started_at_ms));
    cluster.cleanup().unwrap();
}

#[test]
fn storage_stop_pause_and_restart_are_logged_and_nodes_recover_by_themselves() {
    let (_root, cluster) = start("f-storage", false);
    cluster.sql("a", "CREATE item:1 SET n = 1").unwrap();
    cluster.pause_storage().unwrap();
    assert!(
        cluster.sql("a", "CREATE item:2 SET n = 2").is_err(),
        "a hung storage tier fails writes (after the query timeout)"
    );
    cluster.resume_storage().unwrap();
    eventually(
        &cluster,
        "a",
        "SELECT * FROM item:1",
        Duration::from_secs(30),
    );
    cluster.stop_storage().unwrap();
    assert!(cluster.sql("b", "SELECT * FROM item").is_err());
    cluster.restart_storage().unwrap();
    let rows = eventually(
        &cluster,
        "b",
        "SELECT * FROM item:1",
        Duration::from_secs(60),
    );
    assert_eq!(rows.row_count(), 1);
    let log = cluster.fault_records().unwrap();
    for action in ["pause", "resume", "stop", "restart"] {
        assert!(find(&log, "storage", action).ok);
    }
    assert!(find(&log, "storage", "stop").ended_at_ms.is_some());
    cluster.cleanup().unwrap();
}

#[test]
fn cutting_the_client_link_isolates_a_healthy_node_from_the_application() {
    let (_root, cluster) = start("f-cutclient", true);
    let links = cluster.link_statuses().unwrap();
    assert_eq!(links.len(), 4, "two links per node: {links:?}");
    assert_eq!(cluster.links().unwrap().width(), 14);
    cluster.sql("a", "CREATE item:1 SET n = 1").unwrap();
    cluster.cut_link(Link::client_to("a")).unwrap();
    let e = cluster.sql("a", "SELECT * FROM item").unwrap_err();
    assert!(
        matches!(e, LabError::Timeout { .. } | LabError::Connection { .. }),
        "{e}"
    );
    // The node itself is fine: it still answers HTTP directly and writes through node-b land.
    assert_eq!(cluster.http("a", "/health").unwrap().0, 200);
    cluster.sql("b", "CREATE item:2 SET n = 2").unwrap();
    cluster.heal_link(Link::client_to("a")).unwrap();
    let rows = eventually(&cluster, "a", "SELECT * FROM item", Duration::from_secs(30));
    assert_eq!(rows.row_count(), 2);
    let st = cluster.link_statuses().unwrap();
    let a = st.iter().find(|l| l.link == "client→node-a").unwrap();
    assert!(a.stats.reset + a.stats.refused >= 1, "{a:?}");
    assert!(a.settings.is_healthy());
    let log = cluster.fault_records().unwrap();
    let cut = find(&log, "client→node-a", "cut");
    assert_eq!(
        cut.ended_at_ms,
        Some(find(&log, "client→node-a", "heal").started_at_ms)
    );
    cluster.cleanup().unwrap();
}

#[test]
fn cutting_a_node_from_storage_stops_its_queries_but_not_the_other_node() {
    let (_root, cluster) = start("f-cutstorage", true);
    let st = cluster.instances().unwrap();
    let storage_port = st.iter().find(|i| i.node == "storage").unwrap().port;
    // Each node's storage address is its own proxy, not the storage node itself.
    for i in st.iter().filter(|i| i.node.starts_with("node-")) {
        assert!(i.storage.starts_with("tikv://127.0.0.1:"));
        assert!(
            !i.storage.ends_with(&format!(":{storage_port}")),
            "{}",
            i.storage
        );
    }
    cluster.sql("a", "CREATE item:1 SET n = 1").unwrap();
    cluster.cut_link(Link::to_storage("a")).unwrap();
    assert!(
        cluster.sql("a", "CREATE item:2 SET n = 2").is_err(),
        "node-a cannot reach the data"
    );
    cluster
        .sql("b", "CREATE item:3 SET n = 3")
        .expect("node-b still can");
    cluster.heal_link(Link::to_storage("a")).unwrap();
    let rows = eventually(
        &cluster,
        "a",
        "SELECT * FROM item:3",
        Duration::from_secs(60),
    );
    assert_eq!(
        rows.row_count(),
        1,
        "node-a sees node-b's write after healing"
    );
    let s = cluster.link_statuses().unwrap();
    let link = s.iter().find(|l| l.link == "node-a→storage").unwrap();
    assert_eq!(link.upstream_port, storage_port);
    assert!(link.stats.bytes_up > 0 && link.stats.reset >= 1, "{link:?}");
    cluster.cleanup().unwrap();
}

#[test]
fn latency_on_a_link_slows_every_query_through_it() {
    let (_root, cluster) = start("f-latency", true);
    cluster.sql("a", "RETURN 1").unwrap();
    cluster
        .add_latency(
            Link::client_to("a"),
            Duration::from_millis(150),
            Duration::from_millis(20),
        )
        .unwrap();
    // A query is one request and one response: at least two delayed chunks.
    let slow = cluster.sql("a", "RETURN 1").unwrap();
    assert!(slow.ms >= 2.0 * 130.0, "{} ms", slow.ms);
    let other = cluster.sql("b", "RETURN 1").unwrap();
    assert!(other.ms < slow.ms, "node-b's link is untouched");
    cluster
        .add_latency(Link::client_to("a"), Duration::ZERO, Duration::ZERO)
        .unwrap();
    let log = cluster.fault_records().unwrap();
    let lat: Vec<_> = log.iter().filter(|r| r.action == "latency").collect();
    assert_eq!(lat.len(), 2);
    assert_eq!(lat[0].ended_at_ms, Some(lat[1].started_at_ms));
    cluster.cleanup().unwrap();
}

#[test]
fn dropping_new_connections_fails_reconnects_until_the_fraction_is_zero() {
    let (_root, cluster) = start("f-drop", true);
    cluster.drop_connections(Link::client_to("b"), 1.0).unwrap();
    cluster
        .sql("b", "RETURN 1")
        .expect("the open session is not affected: only new connections are dropped");
    // A restart needs a new connection, which is dropped.
    let e = cluster.restart_node("b").unwrap_err();
    assert!(
        matches!(e, LabError::Connection { .. } | LabError::Timeout { .. }),
        "{e}"
    );
    let st = cluster.link_statuses().unwrap();
    assert!(
        st.iter()
            .find(|l| l.link == "client→node-b")
            .unwrap()
            .stats
            .dropped
            >= 1
    );
    cluster.drop_connections(Link::client_to("b"), 0.0).unwrap();
    eventually(&cluster, "b", "RETURN 1", Duration::from_secs(20));
    let e = cluster
        .drop_connections(Link::client_to("b"), 1.5)
        .unwrap_err();
    assert_mentions(&e.to_string(), &["between 0.0", "1.0"]);
    cluster.cleanup().unwrap();
}

#[test]
fn link_faults_without_fault_links_say_how_to_enable_them() {
    let (_root, cluster) = start("f-nolinks", false);
    let e = cluster.cut_link(Link::client_to("a")).unwrap_err();
    assert_mentions(&e.to_string(), &[".fault_links(true)"]);
    let e = cluster.cut_link(Link::client_to("z")).unwrap_err();
    assert_mentions(&e.to_string(), &["no node `z`"]);
    // Failed calls are in the log, but shade nothing.
    let log = cluster.fault_records().unwrap();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|r| !r.ok && r.window(1e9).is_none()));
    cluster.cleanup().unwrap();
}
