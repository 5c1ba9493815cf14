//! The lab's core claim, end to end: two unmodified `surreal` nodes over the embedded
//! storage node share one database. Write on A, read on B; update on B, read on A; delete on
//! A, gone on B; a conflicting write from both at once loses one, retryably; membership is in
//! storage; and a storage crash loses nothing that was acknowledged.

mod common;

use common::{assert_mentions, shared_lab};
use poc_helpers::prelude::*;

fn names(r: &QueryResult) -> Vec<String> {
    r.rows()
        .iter()
        .filter_map(|v| v.get("name").and_then(|n| n.as_str()).map(String::from))
        .collect()
}

#[test]
fn a_write_on_one_node_is_read_on_the_other() {
    let (_root, builder) = shared_lab("share");
    let cluster = builder.start().expect("shared lab starts");
    cluster.create_user("a", "Ada", "ada@example.com").unwrap();
    assert_eq!(
        names(&cluster.sql("b", "SELECT * FROM user").unwrap()),
        ["Ada"],
        "created on A, read on B"
    );

    cluster
        .sql(
            "b",
            "UPDATE user SET name = 'Ada L.' WHERE email = 'ada@example.com'",
        )
        .unwrap();
    assert_eq!(
        names(&cluster.sql("a", "SELECT * FROM user").unwrap()),
        ["Ada L."],
        "updated on B, read on A"
    );

    // A post created on A links to the user; B follows the link.
    let ada = cluster.sql("a", "SELECT VALUE id FROM user").unwrap();
    let id = ada.first().and_then(|v| v.as_str()).unwrap().to_string();
    cluster
        .sql(
            "a",
            &format!(
                "CREATE post SET title = 'Hi', content = 'first', author = type::record('{id}')"
            ),
        )
        .unwrap();
    let r = cluster
        .sql("b", "SELECT title, author.name AS author FROM post")
        .unwrap();
    assert_eq!(r.first().unwrap()["author"], json!("Ada L."));

    cluster.sql("a", "DELETE post; DELETE user").unwrap();
    assert_eq!(
        cluster.sql("b", "SELECT * FROM user").unwrap().row_count(),
        0,
        "deleted on A, gone on B"
    );

    // Membership lives in storage: either node lists both.
    for node in ["a", "b"] {
        let info = cluster.sql(node, "INFO FOR ROOT").unwrap();
        let nodes = info.first().unwrap()["nodes"].as_object().unwrap().clone();
        assert_eq!(nodes.len(), 2, "{node} sees both nodes: {nodes:?}");
        assert!(
            nodes
                .values()
                .all(|v| v.as_str().unwrap().contains("ACTIVE"))
        );
    }

    // The storage node is part of the status table.
    let st = cluster.instances().unwrap();
    let storage = st
        .iter()
        .find(|i| i.node == "storage")
        .expect("storage row");
    assert_eq!(storage.state, NodeState::Running);
    assert!(
        storage.pid.is_some() && storage.rss_mb.unwrap() > 0.0 && storage.data_mb.unwrap() > 0.0
    );
    assert!(
        st.iter()
            .filter(|i| i.node.starts_with("node-"))
            .all(|i| i.storage.starts_with("tikv://127.0.0.1:"))
    );
    println!(
        "MEASURED storage rss_mb={:.1} ready_ms={:.0}",
        storage.rss_mb.unwrap(),
        storage.ready_ms.unwrap()
    );
    cluster.cleanup().unwrap();
}

#[test]
fn concurrent_conflicting_updates_one_retryable_conflict_then_correct_result() {
    let (_root, builder) = shared_lab("conflict");
    let cluster = builder.start().unwrap();
    cluster.sql("a", "CREATE counter:c SET n = 0").unwrap();
    // Read, pause (so both transactions overlap), write: a lost update unless storage objects.
    let txn = "BEGIN TRANSACTION; \
               LET $n = (SELECT VALUE n FROM ONLY counter:c); \
               SLEEP 300ms; \
               UPDATE counter:c SET n = $n + 1; \
               COMMIT TRANSACTION;";
    let outcomes = cluster.race(vec![("a", txn), ("b", txn)]).unwrap();
    let conflicts: Vec<&LabError> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(
        conflicts.len(),
        1,
        "exactly one of the two loses: {outcomes:?}"
    );
    assert!(
        conflicts[0].is_transaction_conflict(),
        "and its error is SurrealDB's retryable conflict: {:?}",
        conflicts[0]
    );
    assert_mentions(&conflicts[0].to_string(), &["can be retried"]);
    // Retrying the loser gives the right total: no update lost.
    let loser = if outcomes[0].is_err() { "a" } else { "b" };
    cluster.sql(loser, txn).unwrap();
    let n = cluster
        .sql("a", "SELECT VALUE n FROM ONLY counter:c")
        .unwrap();
    assert_eq!(n.first(), Some(&json!(2)));
    cluster.cleanup().unwrap();
}

#[test]
fn the_storage_trace_shows_which_node_touched_which_keys() {
    let (_root, builder) = shared_lab("trace");
    let cluster = builder.storage_trace(true).start().unwrap();
    let (_, trace) = cluster
        .sql_traced(
            "b",
            "CREATE user:grace SET name = 'Grace', email = 'grace@example.com'",
        )
        .unwrap();
    let nodes = trace.column("node").unwrap().str().unwrap();
    let rpcs: Vec<&str> = trace
        .column("rpc")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert!(
        rpcs.contains(&"KvPrewrite"),
        "a write reaches storage as a prewrite: {rpcs:?}"
    );
    assert!(
        nodes.iter().flatten().all(|n| n == "node-b"),
        "every request came from node-b:\n{trace}"
    );
    let keys: Vec<&str> = trace
        .column("keys")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert!(
        keys.iter()
            .any(|k| k.contains("user") && k.contains("grace")),
        "the record's key is in the trace: {keys:?}"
    );
    cluster.cleanup().unwrap();
}

#[test]
fn a_storage_crash_loses_nothing_acknowledged_and_nodes_reconnect_by_themselves() {
    let (_root, builder) = shared_lab("crash");
    let cluster = builder.echo(false).start().unwrap();
    let node_pids: Vec<u32> = cluster
        .instances()
        .unwrap()
        .iter()
        .filter(|i| i.node.starts_with("node-"))
        .filter_map(|i| i.pid)
        .collect();
    for i in 0..40 {
        let node = if i % 2 == 0 { "a" } else { "b" };
        cluster
            .sql(node, &format!("CREATE item:{i} SET n = {i}"))
            .expect("acknowledged write");
    }
    cluster.kill_storage().unwrap();
    assert!(
        cluster.sql("a", "CREATE item:lost SET n = -1").is_err(),
        "no storage, no writes"
    );
    cluster.restart_storage().unwrap();
    // The same `surreal` processes (not restarted) serve again once their TiKV client reconnects.
    let t = std::time::Instant::now();
    let count = loop {
        match cluster.sql("b", "SELECT VALUE id FROM item WHERE n >= 0") {
            Ok(r) => break r.row_count(),
            Err(e) if t.elapsed().as_secs() < 60 => {
                eprintln!("not yet: {e}");
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            Err(e) => panic!("node-b never came back: {e}"),
        }
    };
    println!(
        "MEASURED recovery after storage restart: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(
        count, 40,
        "all 40 acknowledged writes survived the storage crash"
    );
    let after: Vec<u32> = cluster
        .instances()
        .unwrap()
        .iter()
        .filter(|i| i.node.starts_with("node-"))
        .filter_map(|i| i.pid)
        .collect();
    assert_eq!(after, node_pids, "the query nodes were not restarted");
    cluster
        .sql("a", "CREATE item:after SET n = 41")
        .expect("writes work again on A");
    cluster.cleanup().unwrap();
}

#[test]
fn a_waterfall_shows_the_timestamp_the_definition_reads_and_the_record() {
    let (_root, builder) = shared_lab("waterfall");
    let cluster = builder.storage_trace(true).start().unwrap();
    cluster
        .sql("a", "CREATE note:1 SET text = 'written on A'")
        .unwrap();
    let read = cluster.sql_waterfall("b", "SELECT * FROM note:1").unwrap();
    println!("{}\n{}", read.explain(), read.steps_frame().unwrap());
    let groups: Vec<&str> = read.steps.iter().map(|s| s.meaning.group()).collect();
    // A transaction starts with a timestamp from PD, then reads the definitions, then the record.
    assert_eq!(groups.first(), Some(&"timestamp (PD)"), "{groups:?}");
    assert!(
        read.definition_reads() >= 3,
        "namespace, database, table: {groups:?}"
    );
    assert!(
        read.steps
            .iter()
            .any(|s| s.meaning.to_string() == "record `note:1`" && s.rpc == "KvGet"),
        "the record itself is read: {groups:?}"
    );
    assert!(
        read.steps
            .windows(2)
            .all(|w| w[0].start_ms <= w[1].start_ms)
    );
    assert!(
        read.steps
            .iter()
            .all(|s| s.start_ms >= 0.0 && s.start_ms <= read.client_ms + 0.5),
        "every step is inside the round trip"
    );
    let parts: f64 = read.breakdown().iter().map(|p| p.1).sum();
    assert!(
        (parts - read.client_ms).abs() < 0.01 || read.server_ms.is_none(),
        "the parts add up to the round trip: {:?} vs {}",
        read.breakdown(),
        read.client_ms
    );
    let write = cluster
        .sql_waterfall("a", "UPDATE note:1 SET edits += 1")
        .unwrap();
    assert!(
        write.steps.iter().any(|s| s.rpc == "KvPrewrite"),
        "a write is prewritten: {:?}",
        write.steps
    );
    assert!(read.chart().unwrap().svg.contains("note:1"));
    cluster.cleanup().unwrap();
}

/// The storage node's row in every state, as this handle sees it and as an attached handle
/// (what `lab status` uses) rebuilds it from `state.json`: running, paused, stopped, killed,
/// exited by itself, and stopped after `stop_all()` (`lab down`).
#[test]
fn the_storage_row_shows_every_state_here_and_when_attached() {
    let (_root, builder) = shared_lab("st-states");
    let cluster = builder.echo(false).start().unwrap();
    let dir = cluster.lab_dir().to_path_buf();
    let row = |c: &Cluster| {
        c.instances()
            .unwrap()
            .into_iter()
            .find(|i| i.node == "storage")
    };
    let here = || row(&cluster).map(|i| i.state);
    let attached = || row(&Cluster::attach_dir(&dir).unwrap()).map(|i| i.state);
    let both = |want: NodeState, when: &str| {
        assert_eq!(here(), Some(want.clone()), "{when}: this handle");
        assert_eq!(attached(), Some(want), "{when}: attached from state.json");
    };

    both(NodeState::Running, "after start");
    cluster.pause_storage().unwrap();
    both(NodeState::Paused, "after pause_storage");
    cluster.resume_storage().unwrap();
    both(NodeState::Running, "after resume_storage");
    cluster.stop_storage().unwrap();
    both(NodeState::Stopped, "after stop_storage");
    cluster.restart_storage().unwrap();
    both(NodeState::Running, "after restart_storage");
    cluster.kill_storage().unwrap();
    both(NodeState::Killed, "after kill_storage");
    cluster.restart_storage().unwrap();

    // It dies without the lab doing it: `exited`, with how when this handle saw it happen.
    let pid = row(&cluster)
        .and_then(|i| i.pid)
        .expect("a running storage pid");
    poc_helpers::infra::procs::send(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let t = std::time::Instant::now();
    while here() == Some(NodeState::Running) && t.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        matches!(here(), Some(NodeState::Exited(how)) if how.contains("signal")),
        "{:?}",
        here()
    );
    assert!(
        matches!(attached(), Some(NodeState::Exited(_))),
        "{:?}",
        attached()
    );

    cluster.restart_storage().unwrap();
    both(
        NodeState::Running,
        "after the restart of an exited storage node",
    );
    cluster.stop_all().unwrap();
    both(NodeState::Stopped, "after stop_all (lab down)");
    cluster.cleanup().unwrap();
}
