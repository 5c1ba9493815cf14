//! The lab's embedded storage tier: one `storage-node` process (PD + TiKV protocols on one
//! port) that every `surreal` node in `StorageMode::Shared` connects to with
//! `tikv://127.0.0.1:<port>`.
//!
//! This module owns that process the way [`crate::infra::node`] owns a `surreal` node: spawn it with
//! its own log and pidfile, wait until it says it is ready, stop / kill / pause / restart it,
//! and report its pid, RSS and data size. Its data directory survives restarts, which is how
//! the failure experiments show that nothing acknowledged is lost when storage crashes.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::infra::node::{LOG_TAIL_LINES, log_tail, unix_ms};
use crate::infra::procs::{self, Stopped};
use crate::vocab::config::LOOPBACK;
use crate::vocab::error::LabError;
use crate::vocab::nodes::NodeState;

/// PD's well-known client port; the lab uses it unless ports are ephemeral or it is taken.
pub const DEFAULT_STORAGE_PORT: u16 = 2379;

/// The line `storage-node` prints once it accepts connections (see `storage_node/src/main.rs`).
const READY_LINE: &str = "storage-node ready on";

/// How often start-up polls the log.
const READY_POLL: Duration = Duration::from_millis(20);

/// The embedded storage node process, owned by the lab's actor.
#[derive(Debug)]
pub(crate) struct StorageNode {
    /// `127.0.0.1:<port>`.
    pub addr: SocketAddr,
    /// `<lab>/storage`: the redb file, the TSO limit and the cluster identity.
    pub data_dir: PathBuf,
    /// `<lab>/logs/storage.log`.
    pub log: PathBuf,
    /// `<lab>/run/storage.pid`.
    pub pidfile: PathBuf,
    /// `<lab>/storage-trace.jsonl` when the operation trace is on.
    pub trace: Option<PathBuf>,
    /// Current state (same vocabulary as the nodes').
    pub state: NodeState,
    /// When the current process was spawned (Unix ms).
    pub started_unix_ms: Option<u64>,
    /// Spawn → ready of the last start, in ms.
    pub ready_ms: Option<f64>,
    bin: PathBuf,
    child: Option<Child>,
    adopted: Option<u32>,
}

impl StorageNode {
    /// A storage node that has not been started yet.
    pub(crate) fn new(lab_dir: &Path, port: u16, trace: bool, bin: PathBuf) -> Self {
        StorageNode {
            addr: SocketAddr::from((LOOPBACK, port)),
            data_dir: lab_dir.join("storage"),
            log: lab_dir.join("logs").join("storage.log"),
            pidfile: lab_dir.join("run").join("storage.pid"),
            trace: trace.then(|| lab_dir.join("storage-trace.jsonl")),
            state: NodeState::NotStarted,
            started_unix_ms: None,
            ready_ms: None,
            bin,
            child: None,
            adopted: None,
        }
    }

    /// Rebuilds around a pid found in `state.json` (for `Cluster::attach`).
    pub(crate) fn adopt(mut self, pid: u32, started_unix_ms: Option<u64>) -> Self {
        self.adopted = Some(pid);
        self.state = NodeState::Running;
        self.started_unix_ms = started_unix_ms;
        self
    }

    /// The arguments of `storage-node`; `--addr 127.0.0.1:PORT` is also how the reaper
    /// recognises it.
    pub(crate) fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--addr".to_string(),
            self.addr.to_string(),
            "--data-dir".to_string(),
            self.data_dir.display().to_string(),
            "--log".to_string(),
            "info".to_string(),
        ];
        if let Some(t) = &self.trace {
            args.push("--trace".into());
            args.push(t.display().to_string());
        }
        args
    }

    /// The process id while there is a process.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id).or(self.adopted)
    }

    /// Forgets the process without stopping it (`detach`).
    pub(crate) fn forget(&mut self) {
        self.child = None;
        self.adopted = None;
    }

    /// Re-reads the process state (exited by itself? paused?).
    pub(crate) fn refresh(&mut self) -> &NodeState {
        let own_pid = self.pid();
        let exited = match (&mut self.child, self.adopted) {
            (Some(child), _) => match child.try_wait() {
                Ok(Some(status)) => Some(format!("{status}")),
                _ => None,
            },
            (None, Some(pid)) => (!procs::is_alive(pid)).then(|| "unknown status".to_string()),
            _ => None,
        };
        if let Some(how) = exited {
            self.child = None;
            self.adopted = None;
            procs::remove_pidfile_if(&self.pidfile, own_pid);
            if matches!(self.state, NodeState::Running | NodeState::Paused) {
                self.state = NodeState::Exited(how);
            }
        } else if let Some(pid) = self.pid()
            && matches!(self.state, NodeState::Running | NodeState::Paused)
        {
            let paused = procs::inspect(pid).is_some_and(|p| p.stopped);
            self.state = if paused {
                NodeState::Paused
            } else {
                NodeState::Running
            };
        }
        &self.state
    }

    /// True while the process is alive (running or paused).
    pub(crate) fn is_up(&mut self) -> bool {
        matches!(self.refresh(), NodeState::Running | NodeState::Paused)
    }

    /// Spawns the process (own process group, log appended, pidfile written).
    pub(crate) fn spawn(&mut self) -> Result<(), LabError> {
        for dir in [
            &self.data_dir,
            self.log.parent().unwrap(),
            self.pidfile.parent().unwrap(),
        ] {
            std::fs::create_dir_all(dir).map_err(|e| {
                LabError::io(
                    "creating directory",
                    dir,
                    &e,
                    "check that the lab directory is writable (LAB_DIR)",
                )
            })?;
        }
        let args = self.args();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| {
                LabError::io(
                    "opening log",
                    &self.log,
                    &e,
                    "check that the lab directory is writable",
                )
            })?;
        let _ = writeln!(
            log,
            "=== lab: storage starting at unix {} ms: {} {}",
            unix_ms(),
            self.bin.display(),
            args.join(" ")
        );
        let stderr = log
            .try_clone()
            .map_err(|e| LabError::io("opening log", &self.log, &e, "check the lab directory"))?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|e| LabError::BinaryUnusable {
            name: "storage-node".into(),
            path: self.bin.display().to_string(),
            reason: format!("starting it failed: {e}"),
            fix: "rebuild it with scripts/build-server.sh".into(),
        })?;
        let pid = child.id();
        self.child = Some(child);
        self.adopted = None;
        self.state = NodeState::Running;
        self.started_unix_ms = Some(unix_ms());
        self.ready_ms = None;
        procs::write_pidfile(&self.pidfile, pid)
    }

    /// Waits for the ready line of the current start; on exit or timeout the error quotes the
    /// log (a refused data directory, a taken port…) and nothing is left running.
    pub(crate) async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, LabError> {
        let begun = Instant::now();
        let spawned_at = self.started_unix_ms.unwrap_or_else(unix_ms);
        loop {
            if let NodeState::Exited(how) = self.refresh().clone() {
                return Err(LabError::StorageUnavailable {
                    mode: "shared".into(),
                    reason: format!("the storage node exited ({how}); log {}:\n{}", self.log.display(), log_tail(&self.log, LOG_TAIL_LINES)),
                    fix: "read the log above: a port in use needs another `.storage_port(..)`; a refused data directory \
                          needs `cluster.cleanup()` (or `lab clean`) to start from empty"
                        .into(),
                });
            }
            if current_start_is_ready(&self.log) {
                let took = Duration::from_millis(unix_ms().saturating_sub(spawned_at));
                self.ready_ms = Some(took.as_secs_f64() * 1000.0);
                return Ok(took);
            }
            if begun.elapsed() > timeout {
                self.kill().await;
                return Err(LabError::StorageUnavailable {
                    mode: "shared".into(),
                    reason: format!(
                        "the storage node did not become ready within {timeout:?}; log {}:\n{}",
                        self.log.display(),
                        log_tail(&self.log, LOG_TAIL_LINES)
                    ),
                    fix: "read the log above".into(),
                });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// SIGTERM, up to `grace`, then SIGKILL.
    pub(crate) async fn stop(&mut self, grace: Duration) -> Stopped {
        let how = self.end(Some(grace)).await;
        self.state = NodeState::Stopped;
        how
    }

    /// SIGKILL, like a crash or a power cut.
    pub(crate) async fn kill(&mut self) -> Stopped {
        let how = self.end(None).await;
        self.state = NodeState::Killed;
        how
    }

    /// SIGSTOP / SIGCONT: a hung storage tier.
    pub(crate) fn signal(&mut self, sig: Signal) -> Result<(), LabError> {
        let pid = self.pid().ok_or_else(|| LabError::StorageUnavailable {
            mode: "shared".into(),
            reason: format!("the storage node is {}", self.state),
            fix: "restart it with `cluster.restart_storage()`".into(),
        })?;
        procs::send(pid, sig).map_err(|reason| LabError::StorageUnavailable {
            mode: "shared".into(),
            reason,
            fix: "check the pid".into(),
        })
    }

    async fn end(&mut self, grace: Option<Duration>) -> Stopped {
        let own_pid = self.pid();
        let how = if let Some(mut child) = self.child.take() {
            procs::end_child(&mut child, grace).await
        } else if let Some(pid) = self.adopted.take() {
            match grace {
                Some(g) => procs::terminate_pid(pid, g).await,
                None => {
                    let _ = procs::send(pid, Signal::SIGKILL);
                    procs::wait_gone(pid, Duration::from_secs(5)).await;
                    Stopped::Killed
                }
            }
        } else {
            Stopped::AlreadyGone
        };
        procs::remove_pidfile_if(&self.pidfile, own_pid);
        how
    }

    /// Bytes on disk in the data directory.
    pub(crate) fn data_bytes(&self) -> u64 {
        dir_size(&self.data_dir)
    }
}

/// True if the log's last start header is followed by the ready line.
fn current_start_is_ready(log: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(log) else {
        return false;
    };
    let last_start = text.rfind("=== lab: storage starting").unwrap_or(0);
    text[last_start..].contains(READY_LINE)
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

/// True if `cmd` is a `storage-node --addr 127.0.0.1:<port>`: the only storage process the lab
/// will signal on the strength of a pidfile.
pub fn is_lab_storage_cmd(cmd: &[String], port: u16) -> bool {
    let is_storage = cmd
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n == "storage-node");
    let addr = format!("127.0.0.1:{port}");
    is_storage && cmd.windows(2).any(|w| w[0] == "--addr" && w[1] == addr)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn readiness_is_judged_on_the_latest_start_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("storage.log");
        std::fs::write(&log, "=== lab: storage starting …\nstorage-node ready on 127.0.0.1:2379\n=== lab: storage starting …\n").unwrap();
        assert!(
            !current_start_is_ready(&log),
            "an earlier start's ready line does not count"
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"storage-node ready on 127.0.0.1:2379 (cluster id 1)\n")
            .unwrap();
        assert!(current_start_is_ready(&log));
    }
}
