//! Bad input and leftovers, one case per test: each must fail (or recover) with a message that
//! names the fix, and must leave no `surreal` process behind. Real processes throughout.

mod common;

use std::net::TcpListener;

use common::{assert_mentions, lab, surreal_on_port};
use poc_helpers::infra::{ports, procs};
use poc_helpers::prelude::*;

/// A block of `n` free ports outside the learner's 8000/8001.
fn free_block(n: usize) -> u16 {
    ports::pick_ephemeral_block(n).expect("free ports")
}

#[test]
fn a_port_held_by_another_process_is_named_with_its_holder() {
    let (root, builder) = lab("portbusy");
    let base = free_block(2);
    let _held = TcpListener::bind(("127.0.0.1", base + 1)).expect("hold node-b's port");
    let err = builder.base_port(base).start().unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, LabError::PortInUse { port, .. } if port == base + 1),
        "{text}"
    );
    assert_mentions(
        &text,
        &[
            &format!("port {}", base + 1),
            &format!("pid {}", std::process::id()),
            "ephemeral_ports",
        ],
    );
    assert!(
        !surreal_on_port(base) && !surreal_on_port(base + 1),
        "no node left running"
    );
    let run = root.path().join("portbusy/run");
    assert!(
        run.read_dir()
            .map(|mut d| d.next().is_none())
            .unwrap_or(true),
        "no pidfile left"
    );
}

#[test]
fn invalid_ports_and_node_counts_are_refused_before_anything_starts() {
    let e = Cluster::builder()
        .base_port(80)
        .start()
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["80", "below 1024", "Fix:"]);
    let e = Cluster::builder()
        .base_port(65535)
        .nodes(2)
        .start()
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["65536", "at most 65534"]);
    for n in [0, 100] {
        let e = Cluster::builder().nodes(n).start().unwrap_err().to_string();
        assert_mentions(&e, &["between 1 and 9"]);
    }
    let e = Cluster::builder()
        .bind("0.0.0.0")
        .start()
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["not a loopback address"]);
}

#[test]
fn a_missing_binary_names_the_path_and_the_fix() {
    let (_root, builder) = lab("nobin");
    let err = builder
        .surreal_bin("/nonexistent/surreal")
        .start()
        .unwrap_err();
    assert!(matches!(err, LabError::BinaryUnusable { .. }), "{err}");
    assert_mentions(
        &err.to_string(),
        &[
            "/nonexistent/surreal",
            "does not exist",
            "SURREAL_BIN",
            "scripts/build-server.sh",
        ],
    );
}

#[test]
fn a_failure_after_the_first_node_started_stops_that_node() {
    let (root, builder) = lab("partial");
    // node-b's data directory path is taken by a file, so preparing node-b fails after node-a
    // has already been spawned.
    let data = root.path().join("partial/nodes/node-b");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("data"), "not a directory").unwrap();
    let base = free_block(2);
    let err = builder
        .storage(StorageMode::Isolated(Engine::SurrealKv))
        .base_port(base)
        .start();
    let err = err.unwrap_err();
    assert_mentions(&err.to_string(), &["node-b", "Fix:"]);
    let log_a =
        std::fs::read_to_string(root.path().join("partial/logs/node-a.log")).unwrap_or_default();
    assert!(
        log_a.contains("=== lab: node-a starting"),
        "node-a was really spawned: {log_a}"
    );
    assert!(!surreal_on_port(base), "node-a was stopped again");
    let state: Option<String> =
        std::fs::read_to_string(root.path().join("partial/state.json")).ok();
    assert!(
        state.is_none(),
        "no state.json for a lab that failed to start"
    );
    let pid_a = root.path().join("partial/run/node-a.pid");
    assert!(!pid_a.exists(), "node-a's pidfile removed: it was stopped");
}

#[test]
fn wrong_credentials_are_refused_with_advice_and_leave_nothing_running() {
    let (root, builder) = lab("creds");
    let skv = StorageMode::Isolated(Engine::SurrealKv);
    // A surrealkv store remembers the root user of its first start …
    let first = builder
        .clone()
        .nodes(1)
        .storage(skv.clone())
        .start()
        .expect("first start");
    let port = first.config().base_port;
    first.stop_all().unwrap();
    drop(first);
    // … so starting it again with another password cannot sign in.
    let err = Cluster::builder()
        .name("creds")
        .lab_root(root.path())
        .base_port(port)
        .nodes(1)
        .storage(skv)
        .credentials("root", "not-the-password")
        .start()
        .unwrap_err();
    assert!(matches!(err, LabError::Auth { .. }), "{err}");
    assert_mentions(
        &err.to_string(),
        &[
            "refused the credentials",
            "root",
            ".credentials(user, pass)",
        ],
    );
    assert!(
        !surreal_on_port(port),
        "the node was stopped after the failed start"
    );
}

#[test]
fn malformed_surrealql_is_an_error_that_points_at_the_syntax() {
    let (_root, builder) = lab("parse");
    let cluster = builder.nodes(1).start().expect("lab starts");
    let err = cluster.sql("a", "SELEC * FROM user").unwrap_err();
    match &err {
        LabError::Query { kind, node, .. } => {
            assert_eq!(node, "node-a");
            assert_eq!(kind, "Validation", "{err}");
        }
        other => panic!("expected a query error, got {other}"),
    }
    assert_mentions(&err.to_string(), &["SELEC", "check the SurrealQL syntax"]);
    let log = cluster.op_log().unwrap();
    let last = log.last().unwrap();
    assert!(!last.ok);
    assert!(last.line().contains("→ ERROR "), "{}", last.line());
    // The session still works afterwards.
    cluster.sql("a", "RETURN 1").unwrap();
}

#[test]
fn schema_violations_name_the_schema() {
    let (_root, builder) = lab("schema");
    let cluster = builder.nodes(1).start().expect("lab starts");
    let err = cluster
        .create_user("a", "Ada", "not-an-email")
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["email"]);
    cluster.create_user("a", "Ada", "ada@example.com").unwrap();
    let dup = cluster
        .create_user("a", "Ada 2", "ada@example.com")
        .unwrap_err()
        .to_string();
    assert_mentions(&dup, &["UNIQUE index"]);
}

#[test]
fn a_stale_pidfile_from_a_dead_run_is_replaced() {
    let (root, builder) = lab("stale");
    let run = root.path().join("stale/run");
    std::fs::create_dir_all(&run).unwrap();
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    std::fs::write(run.join("node-a.pid"), format!("{dead_pid}\n")).unwrap();

    let cluster = builder
        .start()
        .expect("start succeeds despite the stale pidfile");
    assert!(
        cluster
            .start_report()
            .iter()
            .any(|l| l.contains("stale pidfile")),
        "{:?}",
        cluster.start_report()
    );
    let now: u32 = std::fs::read_to_string(run.join("node-a.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(now, dead_pid);
    assert_eq!(Some(now), cluster.instances().unwrap()[0].pid);
}

#[test]
fn a_pidfile_pointing_at_a_foreign_process_never_kills_it() {
    let (root, builder) = lab("foreign");
    let run = root.path().join("foreign/run");
    std::fs::create_dir_all(&run).unwrap();
    let mut sleeper = std::process::Command::new("sleep")
        .arg("100")
        .spawn()
        .unwrap();
    std::fs::write(run.join("node-a.pid"), format!("{}\n", sleeper.id())).unwrap();

    let cluster = builder.start().expect("start succeeds");
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "the foreign process must survive"
    );
    assert!(
        cluster
            .start_report()
            .iter()
            .any(|l| l.contains("left it running")),
        "{:?}",
        cluster.start_report()
    );
    drop(cluster);
    assert!(sleeper.try_wait().unwrap().is_none());
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
}

#[test]
fn nodes_left_running_by_a_crashed_run_are_reaped() {
    let (root, builder) = lab("reap");
    let first = builder.clone().start().expect("first run");
    let old = common::pids(&first);
    let _guard = common::KillOnDrop(common::pid_ports(&first));
    first.detach(); // as if the notebook kernel had died
    assert!(old.iter().all(|p| procs::is_alive(*p)));

    let second = Cluster::builder()
        .name("reap")
        .lab_root(root.path())
        .ephemeral_ports()
        .start()
        .expect("second run");
    for p in &old {
        assert!(!procs::is_alive(*p), "old node {p} reaped");
    }
    assert!(
        second
            .start_report()
            .iter()
            .any(|l| l.contains("left running by an earlier run"))
    );
    assert!(
        second
            .instances()
            .unwrap()
            .iter()
            .all(|i| i.state == NodeState::Running)
    );
}

#[test]
fn unknown_nodes_list_the_real_ones() {
    let (_root, builder) = lab("unknown");
    let cluster = builder.nodes(1).start().expect("lab starts");
    let e = cluster.sql("z", "RETURN 1").unwrap_err().to_string();
    assert_mentions(&e, &["no node `z`", "node-a"]);
    let e = cluster.kill_node(5).unwrap_err().to_string();
    assert_mentions(&e, &["no node `5`"]);
}

#[test]
fn unavailable_storage_modes_say_what_to_do() {
    let (_root, builder) = lab("storage");
    // The embedded storage node's port is taken by someone else.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let e = builder
        .clone()
        .storage(StorageMode::Shared)
        .storage_port(port)
        .start()
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &[&format!("port {port}"), "Fix:"]);
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = builder
        .clone()
        .storage(StorageMode::ExternalTikv {
            pd_endpoints: vec![format!("127.0.0.1:{dead}")],
        })
        .start()
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["nothing answers at PD", "tiup playground"]);
    let e = builder
        .storage(StorageMode::ExternalTikv {
            pd_endpoints: vec!["192.168.1.10:2379".into()],
        })
        .start()
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["not on loopback"]);
}

#[test]
fn a_missing_namespace_is_reported_when_the_lab_may_not_create_it() {
    let (_root, builder) = lab("nons");
    // SurrealDB 3.3.5 would silently create it on `use` for root; `.create_namespace(false)`
    // asks the lab to expect it instead.
    let err = builder
        .nodes(1)
        .namespace("nowhere")
        .create_namespace(false)
        .schema(false)
        .start()
        .unwrap_err();
    match &err {
        LabError::Query { kind, detail, .. } => {
            assert_eq!(kind, "NotFound");
            assert_eq!(detail.as_deref(), Some("Namespace"));
        }
        other => panic!("expected a query error, got {other}"),
    }
    assert_mentions(
        &err.to_string(),
        &[
            "nowhere",
            "does not exist",
            "DEFINE NAMESPACE",
            ".create_namespace(true)",
        ],
    );
}

#[test]
fn a_query_on_a_table_that_does_not_exist_says_so() {
    let (_root, builder) = lab("notable");
    let cluster = builder.nodes(1).start().expect("lab starts");
    let err = cluster.sql("a", "SELECT * FROM nosuchtable").unwrap_err();
    assert!(
        matches!(&err, LabError::Query { detail: Some(d), .. } if d == "Table"),
        "{err:?}"
    );
    assert_mentions(
        &err.to_string(),
        &["nosuchtable", "does not exist", "DEFINE TABLE"],
    );
}
