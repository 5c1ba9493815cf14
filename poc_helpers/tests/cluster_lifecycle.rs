//! The lab's main path with real `surreal` processes: start two isolated nodes, talk to both,
//! see which node served each operation, prove isolated nodes share nothing, kill and restart a
//! node, and clean up without leaving a process or a directory behind.

mod common;

use std::time::Instant;

use common::{assert_mentions, lab, pids, surreal_on_port};
use poc_helpers::infra::procs;
use poc_helpers::prelude::*;

#[test]
fn two_isolated_nodes_start_answer_and_report_status() {
    let (_root, builder) = lab("status");
    let t = Instant::now();
    let cluster = builder.start().expect("lab starts");
    let startup = t.elapsed();

    for node in ["a", "b"] {
        let (code, _) = cluster.http(node, "/health").expect("health answers");
        assert_eq!(code, 200, "{node} /health");
        let r = cluster.sql(node, "RETURN 1 + 1").expect("query answers");
        assert_eq!(r.first(), Some(&json!(2)));
    }

    let status = cluster.instances().expect("status");
    assert_eq!(status.len(), 2);
    for (i, inst) in status.iter().enumerate() {
        assert_eq!(inst.node, ["node-a", "node-b"][i]);
        assert_eq!(inst.port, cluster.config().base_port + i as u16);
        assert_ne!(inst.port, 8000, "tests never use the learner's ports");
        assert_eq!(inst.state, NodeState::Running);
        let pid = inst.pid.expect("a running node has a pid");
        assert!(procs::is_alive(pid), "pid {pid} is alive");
        assert!(
            inst.version.as_deref().unwrap_or("").contains("3.3.5"),
            "{:?}",
            inst.version
        );
        let rss = inst.rss_mb.expect("rss");
        assert!(rss > 0.0, "rss {rss}");
        assert!(inst.ready_ms.unwrap() < 30_000.0, "spec PR-001");
        assert_eq!(inst.storage, "memory");
        println!(
            "MEASURED {} ready_ms={:.0} rss_mb={:.1}",
            inst.node,
            inst.ready_ms.unwrap(),
            rss
        );
    }
    println!(
        "MEASURED start-to-both-ready {:.0} ms",
        startup.as_secs_f64() * 1000.0
    );

    let df = cluster.status().expect("status frame");
    assert_eq!(df.height(), 2);
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "node", "port", "pid", "state", "version", "rss_mb", "uptime_s", "storage", "ready_ms",
            "data_mb"
        ]
    );
    assert!(df.show().to_html().contains("node-b"));

    let ep = cluster.endpoint("b").unwrap();
    assert_eq!(
        ep.ws,
        format!("ws://127.0.0.1:{}", cluster.config().base_port + 1)
    );
}

#[test]
fn crud_on_each_node_is_logged_with_the_right_node() {
    let (_root, builder) = lab("crud");
    let cluster = builder.start().expect("lab starts");
    let base = cluster.config().base_port;

    for (node, who) in [("node-a", "ada"), ("node-b", "bob")] {
        let user = cluster
            .create_user(node, who, &format!("{who}@example.com"))
            .expect("create");
        let id = user.id.clone().expect("created user has an id");
        assert!(id.starts_with("user:"), "record id as text: {id}");
        let read = cluster
            .sql(node, &format!("SELECT * FROM {id}"))
            .unwrap()
            .take::<User>()
            .unwrap();
        assert_eq!(read, vec![user.clone()]);
        let post = cluster
            .create_post(node, "Hello", "first post", &id)
            .expect("post with a record link");
        assert_eq!(post.author, id);
        let updated = cluster
            .sql_bind(
                node,
                "UPDATE type::record($id) SET name = $name",
                json!({"id": id, "name": "Renamed"}),
            )
            .unwrap();
        assert_eq!(updated.first().unwrap()["name"], "Renamed");
        let deleted = cluster
            .sql(node, &format!("DELETE {id} RETURN BEFORE"))
            .unwrap();
        assert_eq!(deleted.row_count(), 1);
        assert!(cluster.users(node).unwrap().is_empty());
    }

    let log = cluster.op_log().unwrap();
    // create, select, create post, update, delete, list users — six per node, in order.
    assert_eq!(log.len(), 12, "{log:#?}");
    for (k, rec) in log.iter().enumerate() {
        let (name, port) = if k < 6 {
            ("node-a", base)
        } else {
            ("node-b", base + 1)
        };
        assert_eq!(
            (rec.node.as_str(), rec.port),
            (name, port),
            "op {k}: {rec:?}"
        );
        assert!(rec.ok && rec.ms > 0.0, "{rec:?}");
        assert!(
            rec.line().starts_with(&format!("[{name} :{port}] ")),
            "{}",
            rec.line()
        );
    }
    let kinds: Vec<&str> = log[..6].iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["CREATE", "SELECT", "CREATE", "UPDATE", "DELETE", "SELECT"]
    );
    assert!(log[0].line().contains("→ 1 row,"), "{}", log[0].line());

    let timings = cluster.timings().unwrap();
    assert_eq!(timings.height(), 12);
    cluster.clear_timings().unwrap();
    assert_eq!(cluster.timings().unwrap().height(), 0);
}

#[test]
fn isolated_nodes_do_not_see_each_others_data() {
    let (_root, builder) = lab("isolated");
    let cluster = builder.start().expect("lab starts");
    cluster.create_user("a", "Ada", "ada@example.com").unwrap();
    assert_eq!(
        cluster.sql("a", "SELECT * FROM user").unwrap().row_count(),
        1
    );
    // The lesson of the contrast: node-b has its own empty store.
    assert_eq!(
        cluster.sql("b", "SELECT * FROM user").unwrap().row_count(),
        0
    );
    // And the same email is not a duplicate there, because the unique index is per store too.
    cluster
        .create_user("b", "Ada again", "ada@example.com")
        .expect("no shared unique index");
}

#[test]
fn a_killed_node_shows_down_and_answers_again_after_restart() {
    let (_root, builder) = lab("killrestart");
    let cluster = builder.start().expect("lab starts");
    let old_pid = cluster.instances().unwrap()[1].pid.unwrap();

    cluster.kill_node("b").unwrap();
    let b = &cluster.instances().unwrap()[1];
    assert_eq!(b.state, NodeState::Killed);
    assert_eq!(b.pid, None);
    assert!(!procs::is_alive(old_pid));
    let err = cluster.sql("b", "RETURN 1").unwrap_err();
    assert!(matches!(err, LabError::NodeDown { .. }), "{err}");
    assert_mentions(
        &err.to_string(),
        &["not running", "restart_node(\"node-b\")"],
    );
    // node-a is unaffected.
    cluster.sql("a", "RETURN 1").unwrap();

    let t = Instant::now();
    cluster.restart_node("b").unwrap();
    println!(
        "MEASURED restart {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let b = &cluster.instances().unwrap()[1];
    assert_eq!(b.state, NodeState::Running);
    assert_ne!(b.pid, Some(old_pid));
    assert_eq!(
        cluster.sql("b", "RETURN 'back'").unwrap().first(),
        Some(&json!("back"))
    );
    // The in-memory node came back empty, with its schema re-applied.
    cluster.create_user("b", "Bob", "bob@example.com").unwrap();

    cluster.stop_node("a").unwrap();
    assert_eq!(cluster.instances().unwrap()[0].state, NodeState::Stopped);
}

#[test]
fn cleanup_leaves_no_process_and_no_directory() {
    let (_root, builder) = lab("cleanup");
    let cluster = builder.start().expect("lab starts");
    let pids = pids(&cluster);
    let ports: Vec<u16> = cluster
        .instances()
        .unwrap()
        .iter()
        .map(|i| i.port)
        .collect();
    let dir = cluster.lab_dir().to_path_buf();
    assert!(dir.join("state.json").is_file());
    assert!(dir.join("logs/node-a.log").is_file());
    assert!(dir.join("run/node-b.pid").is_file());

    cluster.cleanup().unwrap();
    for pid in pids {
        assert!(!procs::is_alive(pid), "pid {pid} still alive");
    }
    for port in ports {
        assert!(!surreal_on_port(port));
    }
    assert!(!dir.exists(), "{} still exists", dir.display());
}

#[test]
fn dropping_the_handle_stops_the_nodes() {
    let (_root, builder) = lab("drop");
    let cluster = builder.start().expect("lab starts");
    let pids = pids(&cluster);
    assert_eq!(pids.len(), 2);
    drop(cluster);
    for pid in pids {
        assert!(!procs::is_alive(pid), "pid {pid} survived drop");
    }
}

#[test]
fn a_detached_lab_keeps_running_and_can_be_attached() {
    let (_root, builder) = lab("attach");
    let cluster = builder.start().expect("lab starts");
    cluster.create_user("a", "Ada", "ada@example.com").unwrap();
    let pids = pids(&cluster);
    let _guard = common::KillOnDrop(common::pid_ports(&cluster));
    let dir = cluster.lab_dir().to_path_buf();
    cluster.detach();
    for pid in &pids {
        assert!(procs::is_alive(*pid), "detach must leave pid {pid} running");
    }

    let attached = Cluster::attach(dir.to_str().unwrap()).expect("attach by directory");
    let status = attached.instances().unwrap();
    assert!(
        status.iter().all(|i| i.state == NodeState::Running),
        "{status:?}"
    );
    assert_eq!(
        status.iter().filter_map(|i| i.pid).collect::<Vec<_>>(),
        pids
    );
    assert_eq!(
        attached.users("a").unwrap().len(),
        1,
        "same data, new session"
    );
    // Dropping an attached handle leaves the nodes alone…
    drop(attached);
    assert!(pids.iter().all(|p| procs::is_alive(*p)));
    // …and stopping them through a second attach works on processes we did not spawn.
    let again = Cluster::attach(dir.to_str().unwrap()).unwrap();
    again.kill_node("a").unwrap();
    assert!(!procs::is_alive(pids[0]));
    again.restart_node("a").unwrap();
    assert_eq!(again.instances().unwrap()[0].state, NodeState::Running);
    again.cleanup().unwrap();
    assert!(pids.iter().all(|p| !procs::is_alive(*p)));
    assert!(!dir.exists());
}

#[test]
fn a_surrealkv_node_keeps_its_data_across_a_restart() {
    let (_root, builder) = lab("skv");
    let cluster = builder
        .nodes(1)
        .storage(StorageMode::Isolated(Engine::SurrealKv))
        .start()
        .expect("lab starts");
    assert_eq!(cluster.instances().unwrap()[0].storage, "surrealkv");
    cluster.create_user(0, "Ada", "ada@example.com").unwrap();
    cluster.restart_node(0).unwrap();
    assert_eq!(
        cluster.users(0).unwrap().len(),
        1,
        "surrealkv data survives a restart"
    );
    assert!(
        cluster
            .lab_dir()
            .join("nodes/node-a/data")
            .read_dir()
            .unwrap()
            .next()
            .is_some()
    );
}
