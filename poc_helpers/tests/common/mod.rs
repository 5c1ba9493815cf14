//! Shared set-up for the integration tests: every test gets its own lab name, its own temporary
//! lab root and ephemeral ports, so tests run in parallel and never touch a learner's lab on
//! 8000/8001. These tests start real `surreal` processes (no mocks): the binary must be built
//! (`scripts/build-server.sh`) or named by SURREAL_BIN.
#![allow(dead_code)] // each test file uses a different subset

use poc_helpers::prelude::*;

pub mod external_storage;

/// A temporary lab root plus a builder pointed at it, with isolated in-memory nodes (the
/// lifecycle and bad-input tests are about the nodes themselves). Keep the `TempDir` alive.
pub fn lab(name: &str) -> (tempfile::TempDir, ClusterBuilder) {
    let (root, builder) = shared_lab(name);
    (root, builder.storage(StorageMode::Isolated(Engine::Memory)))
}

/// Like [`lab`], with the default storage: shared, through the embedded storage node.
pub fn shared_lab(name: &str) -> (tempfile::TempDir, ClusterBuilder) {
    let root = tempfile::Builder::new()
        .prefix("lab-test-")
        .tempdir()
        .expect("temp dir");
    let builder = Cluster::builder()
        .name(name)
        .lab_root(root.path())
        .ephemeral_ports();
    (root, builder)
}

/// True if any process is a `surreal start` bound to this port (whoever started it).
pub fn surreal_on_port(port: u16) -> bool {
    any_process(|cmd| poc_helpers::infra::procs::is_lab_node_cmd(cmd, port))
}

/// True if any live (non-zombie) process's command line satisfies `matches`.
pub fn any_process(matches: impl Fn(&[String]) -> bool) -> bool {
    let mut sys = sysinfo::System::new().expect("sysinfo");
    sys.refresh_processes_specifics(
        sysinfo::ProcessesToUpdate::All,
        true,
        sysinfo::ProcessRefreshKind::nothing().with_cmd(sysinfo::UpdateKind::Always),
    );
    sys.processes().values().any(|p| {
        let cmd: Vec<String> = p
            .cmd()
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        p.status() != sysinfo::ProcessStatus::Zombie && matches(&cmd)
    })
}

/// The pids of all nodes that have one.
pub fn pids(cluster: &Cluster) -> Vec<u32> {
    cluster
        .instances()
        .expect("status")
        .iter()
        .filter_map(|i| i.pid)
        .collect()
}

/// Asserts `text` contains every needle, printing the text on failure.
pub fn assert_mentions(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "expected `{n}` in:\n{text}");
    }
}

/// SIGKILLs the given pids when dropped, if they are still lab nodes — so a test that detaches a
/// lab (whose nodes then outlive every handle) leaves nothing behind even when it fails midway.
pub struct KillOnDrop(pub Vec<(u32, u16)>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for (pid, port) in &self.0 {
            let ours = poc_helpers::infra::procs::inspect(*pid).is_some_and(|p| {
                !p.zombie && poc_helpers::infra::procs::is_lab_node_cmd(&p.cmd, *port)
            });
            if ours {
                let _ = poc_helpers::infra::procs::send(*pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

/// (pid, port) of every node that has a pid, for [`KillOnDrop`].
pub fn pid_ports(cluster: &Cluster) -> Vec<(u32, u16)> {
    cluster
        .instances()
        .expect("status")
        .iter()
        .filter_map(|i| i.pid.map(|p| (p, i.port)))
        .collect()
}
