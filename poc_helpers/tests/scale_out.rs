//! Adding a node to a running lab and removing it, with real processes: the new node serves a
//! record written before it existed (nothing copied: its own data directory stays empty),
//! registers in the membership, is recorded in `state.json` (so `lab status/down/clean` see
//! it), and after `remove_node` its process is gone and the lab forgot it.

mod common;

use common::{assert_mentions, shared_lab, surreal_on_port};
use poc_helpers::actor::lab::StateFile;
use poc_helpers::infra::procs;
use poc_helpers::prelude::*;

#[test]
fn an_added_node_serves_existing_data_joins_the_membership_and_leaves_nothing_when_removed() {
    let (_root, builder) = shared_lab("scale");
    let cluster = builder.start().unwrap();
    cluster
        .sql("a", "CREATE note:1 SET text = 'before c existed'")
        .unwrap();

    let c = cluster.add_node().unwrap();
    assert_eq!(c, "node-c");
    assert_eq!(cluster.node_names(), ["node-a", "node-b", "node-c"]);

    // Serves the record written before it existed, at once.
    let seen = cluster.sql(c.as_str(), "SELECT * FROM note:1").unwrap();
    assert_eq!(seen.row_count(), 1, "node-c must see node-a's note");
    assert_eq!(seen.first().unwrap()["text"], "before c existed");
    // ...and nothing was copied to it: its own data directory holds no file.
    let data = cluster.lab_dir().join("nodes/node-c/data");
    let files = std::fs::read_dir(&data).map(|d| d.count()).unwrap_or(0);
    assert_eq!(files, 0, "{} should be empty", data.display());

    // It is in the membership, as another node sees it.
    let members = cluster.members("a").unwrap();
    assert!(
        members
            .iter()
            .any(|m| m.lab_node.as_deref() == Some("node-c") && m.status == "ACTIVE"),
        "{members:?}"
    );

    // The status table and state.json (what `lab status` reads) list it.
    let inst = cluster.instances().unwrap();
    let row = inst
        .iter()
        .find(|i| i.node == "node-c")
        .expect("node-c row");
    assert_eq!(row.state, NodeState::Running);
    let (pid, port) = (row.pid.expect("a pid"), row.port);
    let state = StateFile::read(cluster.lab_dir()).unwrap();
    let rec = state
        .nodes
        .iter()
        .find(|n| n.name == "node-c")
        .expect("in state.json");
    assert_eq!((rec.pid, rec.port), (Some(pid), port));
    assert_eq!(state.config.nodes, 3);
    let attached = Cluster::attach_dir(cluster.lab_dir()).unwrap();
    let status = attached.status().unwrap().to_string();
    assert_mentions(&status, &["node-c", &port.to_string()]);
    drop(attached);

    // Only the newest node goes.
    let e = cluster.remove_node("b").unwrap_err().to_string();
    assert_mentions(&e, &["node-c is newer", "remove node-c first"]);

    cluster.remove_node("c").unwrap();
    assert!(!procs::is_alive(pid), "pid {pid} must be gone");
    assert!(!surreal_on_port(port), "nothing may listen on {port}");
    assert_eq!(cluster.node_names(), ["node-a", "node-b"]);
    assert!(
        cluster
            .instances()
            .unwrap()
            .iter()
            .all(|i| i.node != "node-c")
    );
    let state = StateFile::read(cluster.lab_dir()).unwrap();
    assert!(state.nodes.iter().all(|n| n.name != "node-c"), "{state:?}");
    assert!(!cluster.lab_dir().join("run/node-c.pid").exists());
    let e = cluster.sql("c", "RETURN 1").unwrap_err().to_string();
    assert_mentions(&e, &["no node `c`", "node-a, node-b"]);

    // A node added again gets the same name and serves as well.
    let again = cluster.add_node().unwrap();
    assert_eq!(again, "node-c");
    assert_eq!(
        cluster
            .sql("c", "SELECT * FROM note:1")
            .unwrap()
            .row_count(),
        1
    );
    cluster.cleanup().unwrap();
}

#[test]
fn a_node_added_to_a_lab_with_fault_links_gets_its_own_links() {
    let (_root, builder) = shared_lab("scale-links");
    let cluster = builder.nodes(1).fault_links(true).start().unwrap();
    let b = cluster.add_node().unwrap();
    let links: Vec<String> = cluster
        .link_statuses()
        .unwrap()
        .iter()
        .map(|l| l.link.clone())
        .collect();
    assert_eq!(links.len(), 4, "{links:?}");
    assert!(links.iter().any(|l| l.contains("node-b")), "{links:?}");
    // Its storage traffic goes through its own proxy: cutting it stops only node-b.
    cluster.sql("a", "CREATE note:1").unwrap();
    cluster.cut_link(Link::client_to(b.as_str())).unwrap();
    assert!(cluster.sql(b.as_str(), "SELECT * FROM note:1").is_err());
    assert!(cluster.sql("a", "SELECT * FROM note:1").is_ok());
    cluster.heal_link(Link::client_to(b.as_str())).unwrap();
    assert_eq!(
        cluster
            .sql(b.as_str(), "SELECT * FROM note:1")
            .unwrap()
            .row_count(),
        1
    );
    let pid = cluster
        .instances()
        .unwrap()
        .iter()
        .find(|i| i.node == "node-b")
        .and_then(|i| i.pid)
        .unwrap();
    cluster.remove_node(b.as_str()).unwrap();
    assert!(!procs::is_alive(pid));
    assert_eq!(cluster.link_statuses().unwrap().len(), 2);
    cluster.cleanup().unwrap();
}

#[test]
fn a_node_cannot_join_while_storage_is_down_and_the_error_names_the_fix() {
    let (_root, builder) = shared_lab("scale-down");
    let cluster = builder.nodes(1).start().unwrap();
    cluster.pause_storage().unwrap();
    let e = cluster.add_node().unwrap_err().to_string();
    assert_mentions(&e, &["storage node is paused", "resume_storage()"]);
    cluster.resume_storage().unwrap();
    let e = cluster.resume_storage().unwrap_err().to_string();
    assert_mentions(&e, &["cannot resume storage", "not paused"]);
    let e = cluster.resume_node("a").unwrap_err().to_string();
    assert_mentions(&e, &["cannot resume node-a", "running, not paused"]);
    assert_eq!(
        cluster.node_names(),
        ["node-a"],
        "a refused add changes nothing"
    );
    let e = cluster.remove_node("a").unwrap_err().to_string();
    assert_mentions(&e, &["only node", "cleanup()"]);
    cluster.cleanup().unwrap();
}

/// Notebook 02's two traced claims, with real processes: node-b's read of a record node-a
/// wrote carries the same key at a later start timestamp, and a node joining copies nothing
/// (no record is written while it joins).
#[test]
fn the_read_on_another_node_hits_the_written_key_later_and_a_join_copies_nothing() {
    let (_root, builder) = shared_lab("scale-trace");
    let cluster = builder.storage_trace(true).start().unwrap();
    let (_, write) = cluster
        .sql_traced_rows("a", "CREATE note:2 SET text = 'traced'")
        .unwrap();
    let (_, read) = cluster
        .sql_traced_rows("b", "SELECT * FROM note:2")
        .unwrap();
    let h = Handoff::new(&write, &read).unwrap();
    println!("{}\n{}", h.frame().unwrap(), h.explain());
    assert_eq!(
        (h.writer(), h.reader(), h.record.as_str()),
        ("node-a", "node-b", "note:2")
    );
    assert!(h.read.start_ts > h.write.start_ts, "{h:?}");
    assert!(
        h.explain().contains("larger than the write's"),
        "{}",
        h.explain()
    );

    let mark = cluster.storage_trace_mark().unwrap();
    let c = cluster.add_node().unwrap();
    let join = NodeJoin::from_trace(&c, &cluster.storage_trace_rows_since(mark).unwrap());
    println!("{}", join.explain());
    assert_eq!(join.record_writes, 0, "{join:?}");
    assert!(join.by_new_node > 0 && join.new_node_writes > 0, "{join:?}");
    cluster.cleanup().unwrap();
}

/// In a lab of isolated nodes (each its own store), an added node starts empty, with the
/// schema, also when the lab was attached from `state.json` (as `lab add` does).
#[test]
fn a_node_added_to_isolated_nodes_gets_its_own_empty_store() {
    let (_root, builder) = common::lab("scale-isolated");
    let cluster = builder.start().unwrap();
    cluster.create_user("a", "Ada", "ada@example.com").unwrap();
    let attached = Cluster::attach_dir(cluster.lab_dir()).unwrap();
    let c = attached.add_node().unwrap();
    assert_eq!(
        attached
            .sql(c.as_str(), "SELECT * FROM user")
            .unwrap()
            .row_count(),
        0
    );
    assert_eq!(
        cluster.sql("a", "SELECT * FROM user").unwrap().row_count(),
        1
    );
    attached.remove_node(c.as_str()).unwrap();
    drop(attached);
    cluster.cleanup().unwrap();
}
