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
