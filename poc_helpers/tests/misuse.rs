//! Misuse, one case per test (the rest of the troubleshooting table is in `bad_input.rs`,
//! `faults.rs` and `bank.rs`; `docs/troubleshooting.md` lists them all). Each case must
//! fail with a message that names the fix, leave no process behind and lose no data.

#![allow(clippy::result_large_err)] // LabError is a whole explanation by design (see lib.rs)

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{assert_mentions, lab, shared_lab, surreal_on_port};
use poc_helpers::experiments::bank::BankPlan;
use poc_helpers::infra::procs;
use poc_helpers::prelude::*;

/// True if any `storage-node` process serves this port.
fn storage_on_port(port: u16) -> bool {
    common::any_process(|cmd| poc_helpers::infra::storage_node::is_lab_storage_cmd(cmd, port))
}

/// Ports of every node and of the storage node.
fn all_ports(cluster: &Cluster) -> Vec<(String, u16)> {
    cluster
        .instances()
        .unwrap()
        .into_iter()
        .map(|i| (i.node, i.port))
        .collect()
}

fn assert_nothing_runs(ports: &[(String, u16)]) {
    for (name, port) in ports {
        if name == "storage" {
            assert!(
                !storage_on_port(*port),
                "storage node on {port} left running"
            );
        } else {
            assert!(!surreal_on_port(*port), "{name} on {port} left running");
        }
    }
}

/// SIGKILLs leftover lab processes (nodes and storage) when dropped, so a failing test
/// leaves nothing behind.
struct Reaper(Vec<(String, u16, u32)>);
impl Drop for Reaper {
    fn drop(&mut self) {
        for (name, port, pid) in &self.0 {
            let ours = procs::inspect(*pid).is_some_and(|p| {
                !p.zombie
                    && if name == "storage" {
                        poc_helpers::infra::storage_node::is_lab_storage_cmd(&p.cmd, *port)
                    } else {
                        procs::is_lab_node_cmd(&p.cmd, *port)
                    }
            });
            if ours {
                let _ = procs::send(*pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}
fn reaper(cluster: &Cluster) -> Reaper {
    Reaper(
        cluster
            .instances()
            .unwrap()
            .into_iter()
            .filter_map(|i| i.pid.map(|p| (i.node, i.port, p)))
            .collect(),
    )
}

// ----- settings -----------------------------------------------------------------------------

#[test]
fn a_port_held_by_another_lab_names_that_lab_and_how_to_stop_it() {
    let (_root, builder) = lab("owner");
    let owner = builder.nodes(1).start().unwrap();
    let port = owner.config().base_port;
    let (_root2, builder2) = lab("intruder");
    let e = builder2.nodes(1).base_port(port).start().unwrap_err();
    assert!(matches!(e, LabError::PortInUse { .. }), "{e}");
    assert_mentions(
        &e.to_string(),
        &[
            &format!("port {port}"),
            "the lab `owner`",
            "lab down --name owner",
        ],
    );
    assert!(surreal_on_port(port), "the other lab's node is untouched");
    assert_eq!(owner.sql("a", "RETURN 1").unwrap().row_count(), 1);
    owner.cleanup().unwrap();
}

#[test]
fn a_privileged_base_port_is_refused_before_anything_starts() {
    let e = Cluster::builder().base_port(80).start().unwrap_err();
    assert!(matches!(e, LabError::InvalidConfig { .. }), "{e}");
    assert_mentions(&e.to_string(), &["below 1024", "Fix:"]);
}

#[test]
fn a_base_port_whose_last_node_overflows_is_refused() {
    let e = Cluster::builder()
        .base_port(65530)
        .nodes(9)
        .start()
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["65538", "ports end at 65535", "at most 65527"]);
}

#[test]
fn zero_nodes_are_refused() {
    let e = Cluster::builder().nodes(0).start().unwrap_err().to_string();
    assert_mentions(&e, &["0 nodes", "between 1 and 9"]);
}

#[test]
fn a_hundred_nodes_are_refused() {
    let e = Cluster::builder()
        .nodes(100)
        .start()
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["100 nodes", "between 1 and 9"]);
}

#[test]
fn a_surreal_binary_of_the_wrong_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("surreal");
    std::fs::write(&fake, "#!/bin/sh\necho '2.1.4 for linux on x86_64'\n").unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&fake).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (_root, builder) = lab("oldbin");
    let e = builder.surreal_bin(&fake).start().unwrap_err();
    assert!(matches!(e, LabError::BinaryUnusable { .. }), "{e}");
    assert_mentions(
        &e.to_string(),
        &["2.1.4", "needs 3.x", "scripts/build-server.sh"],
    );
}

// ----- storage --------------------------------------------------------------------------------

#[test]
fn an_unreachable_external_storage_says_what_to_start() {
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_root, builder) = lab("nopd");
    let e = builder
        .storage(StorageMode::ExternalTikv {
            pd_endpoints: vec![format!("127.0.0.1:{dead}")],
        })
        .start()
        .unwrap_err();
    assert!(matches!(e, LabError::StorageUnavailable { .. }), "{e}");
    assert_mentions(&e.to_string(), &["nothing answers at PD", "Fix:"]);
}

#[test]
fn queries_while_the_storage_node_is_down_say_to_restart_it() {
    let (_root, builder) = shared_lab("storagedown");
    let cluster = builder
        .query_timeout(Duration::from_secs(5))
        .start()
        .unwrap();
    cluster.sql("a", "CREATE item:1 SET n = 1").unwrap();
    cluster.kill_storage().unwrap();
    let e = cluster.sql("a", "SELECT * FROM item").unwrap_err();
    assert_mentions(
        &e.to_string(),
        &["storage node is killed", "restart_storage()"],
    );
    cluster.restart_storage().unwrap();
    let t = Instant::now();
    loop {
        match cluster.sql("a", "SELECT * FROM item") {
            Ok(r) => {
                assert_eq!(r.row_count(), 1, "no data lost");
                break;
            }
            Err(_) if t.elapsed() < Duration::from_secs(60) => {
                std::thread::sleep(Duration::from_millis(300))
            }
            Err(e) => panic!("{e}"),
        }
    }
    cluster.cleanup().unwrap();
}

/// Writes a redb file like the storage node's, stamped with `format`, plus a marker.
fn forge_storage(dir: &Path, format: u64) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("storage.redb");
    let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
    let db = redb::Database::create(&file).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(meta).unwrap();
        t.insert("format_version", format.to_be_bytes().as_slice())
            .unwrap();
        t.insert("marker", b"keep me".as_slice()).unwrap();
    }
    txn.commit().unwrap();
    file
}

fn read_marker(file: &Path) -> (u64, Vec<u8>) {
    use redb::ReadableDatabase;
    let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
    let db = redb::Database::create(file).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(meta).unwrap();
    let v = t.get("format_version").unwrap().unwrap().value().to_vec();
    let m = t.get("marker").unwrap().unwrap().value().to_vec();
    (u64::from_be_bytes(v.try_into().unwrap()), m)
}

#[test]
fn a_storage_directory_from_another_format_is_refused_and_left_untouched() {
    let (root, builder) = shared_lab("oldstore");
    // A format from a future build (this one reads 2 and upgrades 1 in place).
    let file = forge_storage(&root.path().join("oldstore/storage"), 3);
    let e = builder.start().unwrap_err();
    assert!(matches!(e, LabError::StorageUnavailable { .. }), "{e}");
    assert_mentions(
        &e.to_string(),
        &["format 3", "reads format 2", "left untouched", "cleanup()"],
    );
    assert_eq!(
        read_marker(&file),
        (3, b"keep me".to_vec()),
        "nothing was reset"
    );
    let state = root.path().join("oldstore/state.json");
    assert!(
        !state.exists(),
        "no state.json for a lab that did not start"
    );
}

#[test]
fn a_corrupt_storage_file_is_refused_and_left_untouched() {
    let (root, builder) = shared_lab("corrupt");
    let dir = root.path().join("corrupt/storage");
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = b"this is not a redb file, and must survive".repeat(100);
    std::fs::write(dir.join("storage.redb"), &garbage).unwrap();
    let e = builder.start().unwrap_err();
    assert!(matches!(e, LabError::StorageUnavailable { .. }), "{e}");
    assert_mentions(&e.to_string(), &["storage.redb", "Fix:"]);
    assert_eq!(std::fs::read(dir.join("storage.redb")).unwrap(), garbage);
}

// ----- the lab directory ----------------------------------------------------------------------

/// Makes `dir` unwritable: `chattr +i` works even for root (root ignores mode bits);
/// otherwise (not root, or no ext4) plain permissions do.
struct ReadOnly(PathBuf, bool);
impl ReadOnly {
    fn new(dir: &Path) -> ReadOnly {
        let chattr = std::process::Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !chattr {
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o555))
                .unwrap();
        }
        ReadOnly(dir.to_path_buf(), chattr)
    }
}
impl Drop for ReadOnly {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.0)
                .status();
        } else {
            let _ = std::fs::set_permissions(
                &self.0,
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            );
        }
    }
}

#[test]
fn a_read_only_lab_root_is_reported_with_the_path_and_the_fix() {
    let (root, builder) = lab("readonly");
    let _ro = ReadOnly::new(root.path());
    let e = builder.start().unwrap_err();
    assert!(matches!(e, LabError::Io { .. }), "{e}");
    assert_mentions(
        &e.to_string(),
        &[&root.path().display().to_string(), "writable", "LAB_DIR"],
    );
}

// ----- lifecycle misuse -----------------------------------------------------------------------

#[test]
fn starting_the_same_lab_twice_hands_it_over_to_the_newer_handle() {
    let (root, builder) = shared_lab("twice");
    let first = builder.clone().echo(false).start().unwrap();
    let _guard = reaper(&first);
    first.sql("a", "CREATE item:1 SET n = 1").unwrap();
    let old_ports = all_ports(&first);
    // As when a notebook cell with `start()` is run again.
    let second = builder
        .echo(false)
        .start()
        .expect("the second start takes over");
    let _guard2 = reaper(&second);
    assert!(
        second
            .start_report()
            .iter()
            .any(|l| l.contains("left running by an earlier run")),
        "{:?}",
        second.start_report()
    );
    let rows = second.sql("b", "SELECT * FROM item").unwrap();
    assert_eq!(rows.row_count(), 1, "the shared data survived the takeover");
    // The old handle is told what happened instead of acting on the new lab's files.
    let e = first.sql("a", "RETURN 1").unwrap_err();
    assert!(matches!(e, LabError::TakenOver { .. }), "{e}");
    assert_mentions(&e.to_string(), &["newer handle"]);
    let e = first.restart_node("a").unwrap_err();
    assert!(matches!(e, LabError::TakenOver { .. }), "{e}");
    let e = first.cleanup().unwrap_err();
    assert!(matches!(e, LabError::TakenOver { .. }), "{e}");
    // …and dropping it harmed nothing.
    assert!(root.path().join("twice/state.json").exists());
    assert!(root.path().join("twice/run/node-a.pid").exists());
    assert_eq!(
        second.sql("a", "SELECT * FROM item").unwrap().row_count(),
        1
    );
    let new_ports = all_ports(&second);
    second.cleanup().unwrap();
    assert_nothing_runs(&old_ports);
    assert_nothing_runs(&new_ports);
}

#[test]
fn stopping_an_unknown_node_lists_the_real_ones() {
    let (_root, builder) = lab("stopz");
    let cluster = builder.nodes(2).start().unwrap();
    let e = cluster.stop_node("z").unwrap_err();
    assert!(matches!(e, LabError::UnknownNode { .. }), "{e}");
    assert_mentions(&e.to_string(), &["no node `z`", "node-a, node-b"]);
    assert!(
        cluster
            .instances()
            .unwrap()
            .iter()
            .all(|i| i.state == NodeState::Running)
    );
}

#[test]
fn a_query_on_a_killed_node_says_how_to_restart_it() {
    let (_root, builder) = lab("killedq");
    let cluster = builder.nodes(1).start().unwrap();
    cluster.kill_node("a").unwrap();
    let e = cluster.sql("a", "RETURN 1").unwrap_err();
    assert!(matches!(e, LabError::NodeDown { .. }), "{e}");
    assert_mentions(&e.to_string(), &["killed", "restart_node(\"node-a\")"]);
}

#[test]
fn storage_faults_without_a_storage_node_say_which_mode_has_one() {
    let (_root, builder) = lab("nostorage");
    let cluster = builder.nodes(1).start().unwrap();
    let e = cluster.kill_storage().unwrap_err();
    assert!(matches!(e, LabError::StorageUnavailable { .. }), "{e}");
    assert_mentions(&e.to_string(), &["StorageMode::Shared"]);
}

#[test]
fn a_kernel_restart_with_a_shared_lab_running_reaps_nodes_and_storage_and_keeps_the_data() {
    let (root, builder) = shared_lab("kernel");
    let first = builder.clone().echo(false).start().unwrap();
    let _guard = reaper(&first);
    first.sql("a", "CREATE item:1 SET n = 1").unwrap();
    let old: Vec<(String, u16, u32)> = first
        .instances()
        .unwrap()
        .into_iter()
        .filter_map(|i| i.pid.map(|p| (i.node, i.port, p)))
        .collect();
    assert_eq!(old.len(), 3, "two nodes and the storage node: {old:?}");
    first.detach(); // the kernel died: no Drop ran
    let second = Cluster::builder()
        .name("kernel")
        .lab_root(root.path())
        .ephemeral_ports()
        .echo(false)
        .start()
        .expect("a new Cluster with the same name starts");
    for (name, _, pid) in &old {
        assert!(!procs::is_alive(*pid), "old {name} (pid {pid}) was reaped");
    }
    let report = second.start_report().join("\n");
    assert_mentions(
        &report,
        &[
            "stopped a storage process left running",
            "left running by an earlier run",
        ],
    );
    assert_eq!(
        second.sql("b", "SELECT * FROM item").unwrap().row_count(),
        1,
        "the data in the storage directory is kept"
    );
    second.cleanup().unwrap();
}

#[test]
fn cleaning_up_from_another_handle_while_a_bank_runs_stops_everything() {
    let (root, builder) = shared_lab("cleanload");
    let cluster = builder
        .echo(false)
        .stop_timeout(Duration::from_secs(3))
        .start()
        .unwrap();
    let _guard = reaper(&cluster);
    let ports = all_ports(&cluster);
    let dir = cluster.lab_dir().to_path_buf();
    let report = std::thread::scope(|s| {
        let load = s.spawn(|| {
            cluster.bank(BankPlan {
                duration: Duration::from_secs(60),
                ..BankPlan::default()
            })
        });
        std::thread::sleep(Duration::from_secs(4));
        // `lab clean` from a terminal while the notebook's load runs.
        Cluster::attach_dir(&dir)
            .unwrap()
            .cleanup()
            .expect("cleanup succeeds while a load runs");
        load.join().unwrap()
    });
    let report = report.expect("the bank run ends with a report");
    assert!(report.interrupted.is_some(), "it stopped early: {report:?}");
    assert_eq!(
        report.verdict.validity,
        poc_helpers::prelude::Validity::Unknown,
        "an interrupted run is unknown, not failed"
    );
    assert!(
        !root.path().join("cleanload").exists(),
        "the lab directory is gone"
    );
    assert_nothing_runs(&ports);
    drop(cluster);
    assert!(!root.path().join("cleanload").exists(), "and not recreated");
}

#[test]
fn stop_all_from_another_thread_interrupts_a_bank_run() {
    let (_root, builder) = shared_lab("stopload");
    let cluster = builder
        .echo(false)
        .stop_timeout(Duration::from_secs(3))
        .start()
        .unwrap();
    let ports = all_ports(&cluster);
    let t = Instant::now();
    let report = std::thread::scope(|s| {
        let load = s.spawn(|| {
            cluster.bank(BankPlan {
                duration: Duration::from_secs(60),
                ..BankPlan::default()
            })
        });
        std::thread::sleep(Duration::from_secs(3));
        cluster.stop_all().unwrap();
        load.join().unwrap()
    })
    .unwrap();
    assert!(report.interrupted.is_some());
    assert!(
        t.elapsed() < Duration::from_secs(45),
        "stop_all did not wait for the 60 s run"
    );
    assert_nothing_runs(&ports);
    // The lab is usable again: a later command is not interrupted.
    cluster.restart_node("a").ok();
    cluster.cleanup().unwrap();
}
