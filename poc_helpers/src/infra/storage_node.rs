//! One process of the lab's embedded storage tier, in one of its three roles:
//!
//! - **combined** — PD and one store in one process (`storage-node --addr …`), the one-store lab;
//! - **PD** — the placement driver alone (`storage-node pd …`): timestamps, the store and
//!   region registries, routing;
//! - **store N** — one TiKV store (`storage-node store --store-id N --pd …`): a Raft peer of
//!   every region, answering the `surreal` nodes' transactional RPCs when it leads.
//!
//! Every `surreal` node in `StorageMode::Shared` connects to the combined node or to PD with
//! `tikv://127.0.0.1:<port>`; PD tells it which store leads which region.
//!
//! This module owns one such process the way [`crate::infra::node`] owns a `surreal` node: the
//! process itself (spawn with its own log and pidfile, state, stop / kill / pause, reaping) is
//! a `process::LabProcess`; this module adds the role, the arguments, the readiness check (the ready
//! line in the log) and the data directory. Its data directory survives restarts, which is how
//! the failure experiments show that nothing acknowledged is lost.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::infra::process::{LOG_TAIL_LINES, LabProcess, Managed, SignalError, Stopped, unix_ms};
use crate::vocab::config::LOOPBACK;
use crate::vocab::error::LabError;
use crate::vocab::nodes::NodeState;

/// PD's well-known client port; the lab uses it unless ports are ephemeral or it is taken.
pub const DEFAULT_STORAGE_PORT: u16 = 2379;

/// Which part of the storage tier a process plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// PD and one store in one process.
    Combined,
    /// The placement driver alone.
    Pd,
    /// Store `id` of a cluster whose PD listens on `pd`, one of `initial` stores.
    Store {
        /// 1, 2, 3…
        id: u64,
        /// PD's address.
        pd: SocketAddr,
        /// How many stores the first region is replicated on.
        initial: usize,
    },
}

impl Role {
    /// The process's name in logs, pidfiles and status tables: `storage`, `pd`, `store-2`.
    pub(crate) fn name(&self) -> String {
        match self {
            Role::Combined => "storage".into(),
            Role::Pd => "pd".into(),
            Role::Store { id, .. } => format!("store-{id}"),
        }
    }

    /// The line `storage-node` prints once it accepts connections in this role (see
    /// `storage_node/src/main.rs`).
    fn ready_line(&self) -> String {
        match self {
            Role::Combined => "storage-node ready on".into(),
            Role::Pd => "storage-node pd ready on".into(),
            Role::Store { id, .. } => format!("storage-node store {id} ready on"),
        }
    }
}

/// How often start-up polls the log.
const READY_POLL: Duration = Duration::from_millis(20);

/// The embedded storage node process, owned by the lab's actor: a [`LabProcess`] plus its
/// role, address, data directory and readiness check.
#[derive(Debug)]
pub(crate) struct StorageNode {
    /// Combined, PD or store N.
    pub role: Role,
    /// `127.0.0.1:<port>`.
    pub addr: SocketAddr,
    /// `<lab>/storage` (combined), `<lab>/pd` or `<lab>/stores/store-N`.
    pub data_dir: PathBuf,
    /// `<lab>/storage-trace.jsonl` when the operation trace is on.
    pub trace: Option<PathBuf>,
    /// Spawn → ready of the last start, in ms.
    pub ready_ms: Option<f64>,
    bin: PathBuf,
    process: LabProcess,
}

impl StorageNode {
    /// A combined storage node (PD + one store) that has not been started yet.
    pub(crate) fn new(lab_dir: &Path, port: u16, trace: bool, bin: PathBuf) -> Self {
        Self::with_role(Role::Combined, lab_dir, port, trace, bin)
    }

    /// A storage process in `role` that has not been started yet. All roles append to the
    /// same operation trace (one short line per write, so lines never interleave).
    pub(crate) fn with_role(
        role: Role,
        lab_dir: &Path,
        port: u16,
        trace: bool,
        bin: PathBuf,
    ) -> Self {
        let name = role.name();
        let data_dir = match &role {
            Role::Combined => lab_dir.join("storage"),
            Role::Pd => lab_dir.join("pd"),
            Role::Store { .. } => lab_dir.join("stores").join(&name),
        };
        StorageNode {
            addr: SocketAddr::from((LOOPBACK, port)),
            data_dir,
            process: LabProcess::new(&name, lab_dir),
            role,
            trace: trace.then(|| lab_dir.join("storage-trace.jsonl")),
            ready_ms: None,
            bin,
        }
    }

    /// Takes over this process by pid (from `state.json`, for `Cluster::attach`) if that pid
    /// still runs `storage-node … --addr <our address>`. True if adopted.
    pub(crate) fn adopt(&mut self, pid: u32, started_unix_ms: Option<u64>) -> bool {
        let port = self.addr.port();
        self.process
            .adopt_if(pid, started_unix_ms, |cmd| is_lab_storage_cmd(cmd, port))
    }

    /// The arguments of `storage-node`; `--addr 127.0.0.1:PORT` is also how the reaper
    /// recognises it.
    pub(crate) fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = match &self.role {
            Role::Combined => vec![],
            Role::Pd => vec!["pd".into()],
            Role::Store { id, pd, initial } => vec![
                "store".into(),
                "--store-id".into(),
                id.to_string(),
                "--pd".into(),
                pd.to_string(),
                "--initial-stores".into(),
                initial.to_string(),
            ],
        };
        args.extend([
            "--addr".to_string(),
            self.addr.to_string(),
            "--data-dir".to_string(),
            self.data_dir.display().to_string(),
            "--log".to_string(),
            "info".to_string(),
        ]);
        if let Some(t) = &self.trace {
            args.push("--trace".into());
            args.push(t.display().to_string());
        }
        args
    }

    /// The `storage-node` binary it runs.
    pub(crate) fn bin(&self) -> &Path {
        &self.bin
    }

    /// Spawns the process (own process group, log appended, pidfile written: see
    /// [`LabProcess::spawn`]).
    pub(crate) fn spawn(&mut self) -> Result<(), LabError> {
        crate::infra::process::create_dir(&self.data_dir)?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(self.args());
        self.ready_ms = None;
        let bin = self.bin.display().to_string();
        self.process.spawn(cmd, &[], |e| LabError::BinaryUnusable {
            name: "storage-node".into(),
            path: bin,
            reason: format!("starting it failed: {e}"),
            fix: "rebuild it with scripts/build-server.sh".into(),
        })?;
        Ok(())
    }

    /// Waits for the ready line of the current start; on exit or timeout the error quotes the
    /// log (a refused data directory, a taken port…) and nothing is left running.
    pub(crate) async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, LabError> {
        let begun = Instant::now();
        let spawned_at = self.started_unix_ms().unwrap_or_else(unix_ms);
        loop {
            if let NodeState::Exited(how) = self.refresh().clone() {
                return Err(LabError::StorageUnavailable {
                    mode: "shared".into(),
                    reason: format!("the storage process {} exited ({how}); log {}:\n{}", self.role.name(), self.log().display(), self.process.log_tail(LOG_TAIL_LINES)),
                    fix: "read the log above: a port in use needs another `.storage_port(..)`; a refused data directory \
                          needs `cluster.cleanup()` (or `lab clean`) to start from empty"
                        .into(),
                });
            }
            if current_start_is_ready(
                self.log(),
                &self.process.start_marker(),
                &self.role.ready_line(),
            ) {
                let took = Duration::from_millis(unix_ms().saturating_sub(spawned_at));
                self.ready_ms = Some(took.as_secs_f64() * 1000.0);
                return Ok(took);
            }
            if begun.elapsed() > timeout {
                self.kill().await;
                return Err(LabError::StorageUnavailable {
                    mode: "shared".into(),
                    reason: format!(
                        "the storage process {} did not become ready within {timeout:?}; log {}:\n{}",
                        self.role.name(),
                        self.log().display(),
                        self.process.log_tail(LOG_TAIL_LINES)
                    ),
                    fix: "read the log above".into(),
                });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// SIGTERM, up to `grace`, then SIGKILL.
    pub(crate) async fn stop(&mut self, grace: Duration) -> Stopped {
        self.process.stop(grace).await
    }

    /// SIGKILL, like a crash or a power cut.
    pub(crate) async fn kill(&mut self) -> Stopped {
        self.process.kill().await
    }

    /// SIGSTOP / SIGCONT: a hung storage tier.
    pub(crate) fn signal(&mut self, sig: Signal) -> Result<(), LabError> {
        self.process.signal(sig).map_err(|e| match e {
            SignalError::NoProcess => LabError::StorageUnavailable {
                mode: "shared".into(),
                reason: format!("the storage node is {}", self.state()),
                fix: "restart it with `cluster.restart_storage()`".into(),
            },
            SignalError::Failed(reason) => LabError::StorageUnavailable {
                mode: "shared".into(),
                reason,
                fix: "check the pid".into(),
            },
        })
    }

    /// Bytes on disk in the data directory.
    pub(crate) fn data_bytes(&self) -> u64 {
        dir_size(&self.data_dir)
    }
}

/// True if the log's last start header is followed by the ready line.
fn current_start_is_ready(log: &Path, header: &str, ready_line: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(log) else {
        return false;
    };
    let last_start = text.rfind(header).unwrap_or(0);
    text[last_start..].contains(ready_line)
}

/// Total size of the files under `dir`.
pub(crate) fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// True if `cmd` is a `storage-node … --addr 127.0.0.1:<port>` (any role): the only storage
/// process the lab will signal on the strength of a pidfile.
pub fn is_lab_storage_cmd(cmd: &[String], port: u16) -> bool {
    let is_storage = cmd
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n == "storage-node");
    let addr = format!("127.0.0.1:{port}");
    is_storage && cmd.windows(2).any(|w| w[0] == "--addr" && w[1] == addr)
}

impl Managed for StorageNode {
    fn process(&self) -> &LabProcess {
        &self.process
    }
    fn process_mut(&mut self) -> &mut LabProcess {
        &mut self.process
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn the_reaper_recognises_its_own_storage_node_only() {
        let node = StorageNode::new(
            Path::new("/lab"),
            2379,
            false,
            PathBuf::from("/bin/storage-node"),
        );
        let mut cmd = vec!["/x/storage-node".to_string()];
        cmd.extend(node.args());
        assert!(is_lab_storage_cmd(&cmd, 2379));
        assert!(!is_lab_storage_cmd(&cmd, 2380));
        cmd[0] = "/usr/bin/pd-server".into();
        assert!(!is_lab_storage_cmd(&cmd, 2379));
        let store = StorageNode::with_role(
            Role::Store {
                id: 2,
                pd: "127.0.0.1:2379".parse().unwrap(),
                initial: 3,
            },
            Path::new("/lab"),
            20161,
            false,
            PathBuf::from("/bin/storage-node"),
        );
        let mut cmd = vec!["/x/storage-node".to_string()];
        cmd.extend(store.args());
        assert!(is_lab_storage_cmd(&cmd, 20161), "{cmd:?}");
        assert!(
            !is_lab_storage_cmd(&cmd, 2379),
            "PD's address is not the store's own"
        );
        assert_eq!(store.log(), Path::new("/lab/logs/store-2.log"));
        assert_eq!(store.data_dir, Path::new("/lab/stores/store-2"));
    }

    #[test]
    fn readiness_is_judged_on_the_latest_start_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("storage.log");
        std::fs::write(&log, "=== lab: storage starting …\nstorage-node ready on 127.0.0.1:2379\n=== lab: storage starting …\n").unwrap();
        let ready = |log: &Path| {
            current_start_is_ready(
                log,
                "=== lab: storage starting",
                &Role::Combined.ready_line(),
            )
        };
        assert!(!ready(&log), "an earlier start's ready line does not count");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"storage-node ready on 127.0.0.1:2379 (cluster id 1)\n")
            .unwrap();
        assert!(ready(&log));
        let store = Role::Store {
            id: 3,
            pd: "127.0.0.1:2379".parse().unwrap(),
            initial: 3,
        };
        assert!(
            !current_start_is_ready(&log, "=== lab: storage starting", &store.ready_line()),
            "a store waits for its own ready line"
        );
    }
}
