//! Smoke test of the `lab` command line against real `surreal` processes: up, status, sql, down,
//! clean, plus the failures a learner is most likely to hit (unknown node, double `up`).
//! Ephemeral ports and a temporary lab root keep it away from a learner's lab on 8000/8001.

use std::process::{Command, Output};

// The storage node started outside any lab, shared with poc_helpers' tests (one copy).
#[path = "../../poc_helpers/tests/common/external_storage.rs"]
mod external_storage;
use external_storage::ExternalStorage;

fn lab(root: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(args)
        .env("LAB_DIR", root)
        .env_remove("LAB_BASE_PORT")
        .output()
        .expect("run lab")
}

/// A temporary lab root whose labs are all cleaned when the test ends — also when an assertion
/// fails halfway, which would otherwise leave `lab up`'s detached processes running.
struct Root(tempfile::TempDir);

impl Root {
    fn new() -> Self {
        Root(tempfile::tempdir().unwrap())
    }

    fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = lab(self.path(), &["clean", "--all"]);
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `lab sql` writes a user on node-a and reads it back on node-b of lab `name`: the two nodes
/// share one store.
fn write_on_a_read_on_b(root: &std::path::Path, name: &str) {
    let write = lab(
        root,
        &[
            "sql",
            "--name",
            name,
            "a",
            "CREATE user:ada SET name = 'Ada', email = 'ada@example.com'",
        ],
    );
    assert!(write.status.success(), "{}", text(&write));
    let read = lab(root, &["sql", "--name", name, "b", "SELECT * FROM user"]);
    assert!(text(&read).contains("ada@example.com"), "{}", text(&read));
}

/// The status table's row of the storage (the only line that starts with `storage`).
fn storage_line(table: &str) -> String {
    table
        .lines()
        .find(|l| {
            l.trim_start_matches(|c: char| !c.is_alphanumeric())
                .starts_with("storage")
        })
        .unwrap_or_else(|| panic!("no storage row in:\n{table}"))
        .to_string()
}

#[test]
fn up_status_sql_down_clean() {
    let root = Root::new();
    let up = lab(root.path(), &["up", "--ephemeral", "--name", "cli"]);
    assert!(up.status.success(), "{}", text(&up));
    let out = text(&up);
    assert!(
        out.contains("node-a") && out.contains("node-b") && out.contains("running"),
        "{out}"
    );
    assert!(out.contains("ready in"), "{out}");

    // The nodes outlived `lab up`: status, sql and a second `up` see them.
    let status = lab(root.path(), &["status", "--name", "cli"]);
    assert!(status.status.success(), "{}", text(&status));
    // Two nodes and the storage node they share (the default storage).
    assert_eq!(
        text(&status).matches("running").count(),
        3,
        "{}",
        text(&status)
    );

    let sql = lab(root.path(), &["sql", "--name", "cli", "b", "RETURN 40 + 2"]);
    assert!(sql.status.success(), "{}", text(&sql));
    assert!(text(&sql).contains("42"), "{}", text(&sql));
    assert!(
        text(&sql).contains("[node-b :"),
        "the log line names the node: {}",
        text(&sql)
    );

    // Written on A, read on B: the README's first example.
    write_on_a_read_on_b(root.path(), "cli");

    let again = lab(root.path(), &["up", "--ephemeral", "--name", "cli"]);
    assert!(!again.status.success());
    assert!(
        text(&again).contains("already running") && text(&again).contains("lab down"),
        "{}",
        text(&again)
    );

    let bad = lab(root.path(), &["sql", "--name", "cli", "z", "RETURN 1"]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("no node `z`"), "{}", text(&bad));

    let down = lab(root.path(), &["down", "--name", "cli"]);
    assert!(down.status.success(), "{}", text(&down));
    assert_eq!(text(&down).matches("stopped").count(), 3, "{}", text(&down));
    // The nodes and the storage node stay listed, as stopped.
    let status = lab(root.path(), &["status", "--name", "cli"]);
    assert_eq!(
        text(&status).matches("stopped").count(),
        3,
        "{}",
        text(&status)
    );
    assert!(
        storage_line(&text(&status)).contains("stopped"),
        "{}",
        text(&status)
    );

    let clean = lab(root.path(), &["clean", "--name", "cli"]);
    assert!(clean.status.success(), "{}", text(&clean));
    assert!(!root.path().join("cli").exists());

    let missing = lab(root.path(), &["status", "--name", "cli"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("lab up --name cli"),
        "{}",
        text(&missing)
    );
}

#[test]
fn clean_all_stops_every_lab_under_the_root() {
    let root = Root::new();
    for name in ["one", "two"] {
        let up = lab(
            root.path(),
            &[
                "up",
                "--ephemeral",
                "--nodes",
                "1",
                "--storage",
                "memory",
                "--name",
                name,
            ],
        );
        assert!(up.status.success(), "{}", text(&up));
    }
    let pids: Vec<u32> = ["one", "two"]
        .iter()
        .map(|n| {
            let state = std::fs::read_to_string(root.path().join(n).join("state.json")).unwrap();
            let v: poc_helpers::serde_json::Value =
                poc_helpers::serde_json::from_str(&state).unwrap();
            v["nodes"][0]["pid"].as_u64().expect("a pid in state.json") as u32
        })
        .collect();
    let clean = lab(root.path(), &["clean", "--all"]);
    assert!(clean.status.success(), "{}", text(&clean));
    for (pid, name) in pids.iter().zip(["one", "two"]) {
        assert!(
            !poc_helpers::infra::procs::is_alive(*pid),
            "lab {name}'s node (pid {pid}) still runs"
        );
        assert!(!root.path().join(name).exists());
    }
}

/// `lab up --storage tikv://…` on a storage node no lab started: both nodes share it, the
/// status table calls it `external`, and neither `lab down` nor `lab clean` stops it — a new
/// lab on it still reads the old data.
#[test]
fn a_lab_on_external_storage_shares_it_and_never_stops_it() {
    let mut ext = ExternalStorage::start();
    let tikv = format!("tikv://{}", ext.endpoint());
    let root = Root::new();
    let up = lab(
        root.path(),
        &["up", "--ephemeral", "--name", "ext", "--storage", &tikv],
    );
    assert!(up.status.success(), "{}", text(&up));

    write_on_a_read_on_b(root.path(), "ext");

    let status = lab(root.path(), &["status", "--name", "ext"]);
    assert!(status.status.success(), "{}", text(&status));
    // State `external`, its PD port, no pid. (The `tikv://…` cell may wrap onto the next lines
    // of the table when the output is not a wide terminal, so only its row's first line is read.)
    let row = storage_line(&text(&status));
    let cells: Vec<&str> = row
        .split(['│', '┆'])
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cells[..4],
        ["storage", &ext.port.to_string(), "null", "external"],
        "{}",
        text(&status)
    );

    let down = lab(root.path(), &["down", "--name", "ext"]);
    assert!(down.status.success(), "{}", text(&down));
    ext.assert_untouched("`lab down`");
    let status = lab(root.path(), &["status", "--name", "ext"]);
    assert!(
        storage_line(&text(&status)).contains("external"),
        "{}",
        text(&status)
    );

    let clean = lab(root.path(), &["clean", "--name", "ext"]);
    assert!(clean.status.success(), "{}", text(&clean));
    assert!(!root.path().join("ext").exists());
    ext.assert_untouched("`lab clean`");

    // Still serving: a new lab on it reads what the old one wrote; `clean --all` spares it too.
    let up = lab(
        root.path(),
        &[
            "up",
            "--ephemeral",
            "--nodes",
            "1",
            "--name",
            "ext2",
            "--storage",
            &tikv,
        ],
    );
    assert!(up.status.success(), "{}", text(&up));
    let read = lab(
        root.path(),
        &["sql", "--name", "ext2", "a", "SELECT * FROM user"],
    );
    assert!(text(&read).contains("ada@example.com"), "{}", text(&read));
    let clean = lab(root.path(), &["clean", "--all"]);
    assert!(clean.status.success(), "{}", text(&clean));
    ext.assert_untouched("`lab clean --all`");
}

/// The pid `state.json` records for `node` of lab `name`.
fn recorded_pid(root: &std::path::Path, name: &str, node: &str) -> Option<u32> {
    let state = std::fs::read_to_string(root.join(name).join("state.json")).ok()?;
    let v: poc_helpers::serde_json::Value = poc_helpers::serde_json::from_str(&state).ok()?;
    v["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == node)
        .and_then(|n| n["pid"].as_u64())
        .map(|p| p as u32)
}

/// The status table's row of `node` (its first line), for reading its state.
fn row(table: &str, node: &str) -> String {
    table
        .lines()
        .find(|l| l.contains(node))
        .unwrap_or_else(|| panic!("no {node} row in:\n{table}"))
        .to_string()
}

/// Runs `lab` and asserts it succeeded; returns its output.
fn ok(root: &std::path::Path, args: &[&str]) -> String {
    let o = lab(root, args);
    assert!(o.status.success(), "lab {args:?} failed:\n{}", text(&o));
    text(&o)
}

/// Runs `lab` and asserts it failed with every needle in its message.
fn fails(root: &std::path::Path, args: &[&str], needles: &[&str]) {
    let o = lab(root, args);
    assert!(
        !o.status.success(),
        "lab {args:?} should fail:\n{}",
        text(&o)
    );
    for n in needles {
        assert!(
            text(&o).contains(n),
            "expected `{n}` from lab {args:?}:\n{}",
            text(&o)
        );
    }
}

/// `lab add` and `lab remove`, and `kill | stop | pause | resume | restart` on a node and on the
/// storage node, each followed by the state `lab status` shows; bad input names the fix; and
/// `lab down` / `lab clean` stop an added node too.
#[test]
fn add_remove_and_the_node_verbs() {
    let root = Root::new();
    let r = root.path();
    let n = ["--name", "verbs"];
    let with = |args: &[&'static str]| -> Vec<&'static str> { [args, &n].concat() };
    ok(r, &with(&["up", "--ephemeral"]));
    write_on_a_read_on_b(r, "verbs");

    // add: node-c serves what node-a wrote before it existed.
    let out = ok(r, &with(&["add"]));
    assert!(
        out.contains("[node-c :") && out.contains("nothing copied"),
        "{out}"
    );
    let read = ok(r, &with(&["sql", "c", "SELECT * FROM user"]));
    assert!(read.contains("ada@example.com"), "{read}");
    let status = ok(r, &with(&["status"]));
    assert!(row(&status, "node-c").contains("running"), "{status}");
    assert_eq!(
        status.matches("running").count(),
        4,
        "3 nodes and storage:\n{status}"
    );
    let c_pid = recorded_pid(r, "verbs", "node-c").expect("node-c in state.json");

    // pause / resume, and a resume of a node that is not paused.
    ok(r, &with(&["pause", "c"]));
    assert!(row(&ok(r, &with(&["status"])), "node-c").contains("paused"));
    ok(r, &with(&["resume", "node-c"]));
    assert!(row(&ok(r, &with(&["status"])), "node-c").contains("running"));
    fails(
        r,
        &with(&["resume", "c"]),
        &["cannot resume node-c", "not paused"],
    );

    // kill / restart / stop.
    ok(r, &with(&["kill", "b"]));
    assert!(row(&ok(r, &with(&["status"])), "node-b").contains("killed"));
    fails(
        r,
        &with(&["resume", "b"]),
        &["killed, not paused", "lab restart node-b"],
    );
    ok(r, &with(&["restart", "b"]));
    assert!(row(&ok(r, &with(&["status"])), "node-b").contains("running"));
    assert!(ok(r, &with(&["sql", "b", "SELECT * FROM user"])).contains("ada@example.com"));
    ok(r, &with(&["stop", "a"]));
    assert!(row(&ok(r, &with(&["status"])), "node-a").contains("stopped"));
    ok(r, &with(&["restart", "a"]));

    // The storage node: pause, resume, stop, restart.
    ok(r, &with(&["pause", "storage"]));
    assert!(storage_line(&ok(r, &with(&["status"]))).contains("paused"));
    ok(r, &with(&["resume", "storage"]));
    fails(
        r,
        &with(&["resume", "storage"]),
        &["cannot resume storage", "not paused"],
    );
    ok(r, &with(&["stop", "storage"]));
    assert!(storage_line(&ok(r, &with(&["status"]))).contains("stopped"));
    ok(r, &with(&["restart", "storage"]));
    assert!(storage_line(&ok(r, &with(&["status"]))).contains("running"));
    // The nodes reconnect by themselves (the TiKV client retries); give them a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let o = lab(r, &with(&["sql", "c", "SELECT * FROM user"]));
        if text(&o).contains("ada@example.com") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", text(&o));
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    // Bad input names the fix.
    fails(
        r,
        &with(&["kill", "z"]),
        &["no node `z`", "node-a, node-b, node-c", "storage"],
    );
    fails(
        r,
        &with(&["remove", "b"]),
        &["node-c is newer", "remove node-c first"],
    );
    fails(
        r,
        &["kill", "a", "--name", "nolab"],
        &["no running lab `nolab`", "lab up --name nolab"],
    );
    fails(r, &["add", "--name", "nolab"], &["no running lab `nolab`"]);

    // remove: the process is gone and status forgot it.
    let c_pid = recorded_pid(r, "verbs", "node-c").unwrap_or(c_pid);
    let out = ok(r, &with(&["remove", "c"]));
    assert!(out.contains("removed"), "{out}");
    assert!(
        !poc_helpers::infra::procs::is_alive(c_pid),
        "node-c (pid {c_pid}) still runs"
    );
    assert!(!ok(r, &with(&["status"])).contains("node-c"));

    // An added node is stopped by `lab down` and `lab clean` like the others.
    ok(r, &with(&["add"]));
    let c_pid = recorded_pid(r, "verbs", "node-c").expect("node-c again");
    let down = ok(r, &with(&["down"]));
    assert!(
        down.contains("[node-c :") && down.contains("stopped"),
        "{down}"
    );
    assert!(!poc_helpers::infra::procs::is_alive(c_pid));
    assert!(row(&ok(r, &with(&["status"])), "node-c").contains("stopped"));
    fails(
        r,
        &with(&["add"]),
        &["storage node is stopped", "lab restart storage"],
    );
    ok(r, &with(&["clean"]));
    assert!(!r.join("verbs").exists());
}

/// A lab a notebook (here: this test process) started and still holds: the CLI may look and
/// signal, but must not start or forget processes behind its back.
#[test]
fn a_lab_held_by_another_process_refuses_add_remove_and_restart_from_the_cli() {
    let root = Root::new();
    let cluster = poc_helpers::facade::Cluster::builder()
        .name("held")
        .lab_root(root.path())
        .ephemeral_ports()
        .nodes(1)
        .echo(false)
        .start()
        .unwrap();
    let n = ["--name", "held"];
    for verb in [
        &["add"][..],
        &["restart", "a"],
        &["restart", "storage"],
        &["remove", "a"],
    ] {
        let args: Vec<&str> = [verb, &n].concat();
        fails(
            root.path(),
            &args,
            &["still holds it", "cluster.cleanup()", "lab up"],
        );
    }
    assert!(ok(root.path(), &["status", "--name", "held"]).contains("node-a"));
    assert_eq!(cluster.node_names(), ["node-a"]);
    cluster.cleanup().unwrap();
}

/// `lab up --stores 3`: PD and three stores outlive `lab up` like the nodes do; `lab placement`
/// shows the region on all three; `lab failover` kills the leader's store from another process
/// (the CLI attaches to the lab) and finds nothing lost; `lab down` stops all six processes.
#[test]
fn three_stores_placement_failover_and_down() {
    let root = Root::new();
    let up = lab(
        root.path(),
        &["up", "--ephemeral", "--name", "repl", "--stores", "3"],
    );
    assert!(up.status.success(), "{}", text(&up));
    let status = text(&lab(root.path(), &["status", "--name", "repl"]));
    for row in ["pd", "store-1", "store-2", "store-3"] {
        assert!(status.contains(row), "no {row} row:\n{status}");
    }
    assert_eq!(status.matches("running").count(), 6, "{status}");

    let placement = text(&lab(root.path(), &["placement", "--name", "repl"]));
    assert!(
        placement.contains("1,2,3"),
        "one region on all three stores:\n{placement}"
    );

    let drill = lab(root.path(), &["failover", "--name", "repl"]);
    let out = text(&drill);
    assert!(drill.status.success(), "{out}");
    assert!(
        out.contains("0 of ") && out.contains("acknowledged writes lost"),
        "{out}"
    );

    let bad = lab(root.path(), &["kill", "--name", "repl", "store-9"]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("from 1 to 3"), "{}", text(&bad));

    let down = lab(root.path(), &["down", "--name", "repl"]);
    assert!(down.status.success(), "{}", text(&down));
    assert_eq!(text(&down).matches("stopped").count(), 6, "{}", text(&down));
}
