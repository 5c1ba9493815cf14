//! `state.json`: the file in the lab directory that describes a running lab, so another
//! process (the `lab` CLI) can attach to it, and so a newer start of the same lab can tell an
//! older handle that it has been taken over.

use crate::infra::process::Managed as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::*;
use crate::infra::binary::{self, LocatedBinary};
use crate::infra::embedded_tier::EmbeddedTier;
use crate::infra::procs::{self};
use crate::infra::storage::StorageTier;
use crate::infra::storage_node::Role;
use crate::vocab::config::{LabConfig, StorageMode, validate_loopback_endpoint};
use crate::vocab::error::LabError;
use crate::vocab::nodes::NodeState;

/// The file in the lab directory that describes the running lab.
pub const STATE_FILE: &str = "state.json";

/// Bumped when `state.json` changes incompatibly, so old files are refused with a clear message.
const STATE_FORMAT: u32 = 1;

/// One node in `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// `node-a`, …
    pub name: String,
    /// Its port.
    pub port: u16,
    /// Its pid while running.
    pub pid: Option<u32>,
    /// Its state when the file was written.
    pub state: NodeState,
    /// The storage path given to `surreal start`.
    pub path_arg: Option<String>,
    /// When the process was spawned (Unix ms).
    pub started_unix_ms: Option<u64>,
    /// Spawn-to-ready time of that start (ms).
    pub ready_ms: Option<f64>,
    /// Paths, for people reading the file.
    pub data_dir: PathBuf,
    /// The node's log file.
    pub log: PathBuf,
    /// The node's pidfile.
    pub pidfile: PathBuf,
}

/// One store of a replicated embedded tier in `state.json` (PD's is the `storage_*` fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreRecord {
    /// Store id: 1, 2, 3…
    pub id: u64,
    /// Its port (kept across restarts: PD knows the store by it).
    pub port: u16,
    /// Its pid while running.
    pub pid: Option<u32>,
    /// Its state when the file was written.
    pub state: NodeState,
    /// When the process was spawned (Unix ms).
    pub started_unix_ms: Option<u64>,
}

/// The content of `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    /// Layout version of this file.
    pub format: u32,
    /// When the lab was started (Unix ms); timings count from here.
    pub created_unix_ms: u64,
    /// The lab's settings.
    pub config: LabConfig,
    /// The `surreal` binary in use.
    pub binary: Option<LocatedBinary>,
    /// Storage label for humans, e.g. `memory`.
    pub storage_label: String,
    /// Pid of a storage process the lab started (the storage node, or tiup).
    pub storage_pid: Option<u32>,
    /// Port of the embedded storage node, when there is one.
    #[serde(default)]
    pub storage_port: Option<u16>,
    /// When the storage process was spawned (Unix ms).
    #[serde(default)]
    pub storage_started_unix_ms: Option<u64>,
    /// The embedded storage node's state when the file was written (`stopped` after
    /// `lab down`, `killed` after a storage fault…), so an attached status table can show it
    /// in every state, not only while its pid lives. Absent in files of older versions.
    #[serde(default)]
    pub storage_state: Option<NodeState>,
    /// The stores of a replicated embedded tier (`.stores(3)`); empty for one combined process.
    #[serde(default)]
    pub stores: Vec<StoreRecord>,
    /// The nodes.
    pub nodes: Vec<NodeRecord>,
    /// Pid of the process that started the lab and still holds it (a notebook kernel, a
    /// test); `None` once it detached (`lab up`). Another process must not add, remove or
    /// restart processes behind that holder's back: it would not know them (see
    /// `Lab::check_not_held_elsewhere` in the lab actor).
    #[serde(default)]
    pub owner_pid: Option<u32>,
    /// A random id of the start that wrote this file: a handle whose id differs was taken
    /// over by a newer start of the same lab and must not touch the directory any more.
    #[serde(default)]
    pub run_id: u64,
}

impl StateFile {
    /// Reads `<lab_dir>/state.json`.
    pub fn read(lab_dir: &Path) -> Result<StateFile, LabError> {
        let path = lab_dir.join(STATE_FILE);
        let not_found = || LabError::LabNotFound {
            name: lab_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.display().to_string(),
        };
        let text = std::fs::read_to_string(&path).map_err(|_| not_found())?;
        let state: StateFile = serde_json::from_str(&text).map_err(|e| LabError::Io {
            action: "reading".into(),
            path: path.display().to_string(),
            message: e.to_string(),
            fix:
                "the file is damaged or from another version: stop leftover nodes with `lab down` \
                  (or kill the pids in run/*.pid) and delete the lab directory"
                    .into(),
        })?;
        if state.format != STATE_FORMAT {
            return Err(LabError::Io {
                action: "reading".into(),
                path: path.display().to_string(),
                message: format!(
                    "format {} (this version reads format {STATE_FORMAT})",
                    state.format
                ),
                fix: "delete the lab directory (stop its nodes first) and start the lab again"
                    .into(),
            });
        }
        Ok(state)
    }

    /// Writes the file atomically (temp file + rename), so a reader never sees half a file.
    pub fn write(&self, lab_dir: &Path) -> Result<(), LabError> {
        let path = lab_dir.join(STATE_FILE);
        let tmp = lab_dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).expect("state serialises");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                LabError::io(
                    "writing",
                    &path,
                    &e,
                    "check that the lab directory is writable",
                )
            })
    }
}

impl Lab {
    /// A lab rebuilt from `state.json` (for `Cluster::attach`): live pids that are really our
    /// nodes are adopted; anything else shows as not running.
    pub(crate) fn from_state(state: StateFile) -> Self {
        let mut lab = Lab::new(state.config.clone());
        lab.created_unix_ms = state.created_unix_ms;
        // An attached handle acts for the run that wrote the file.
        lab.run_id = state.run_id;
        lab.owner_pid = state.owner_pid;
        lab.claimed = true;
        lab.live = true;
        lab.binary = state.binary.clone();
        lab.adopted_storage_pid = state.storage_pid.filter(|p| procs::is_alive(*p));
        if let (StorageMode::Shared, Some(port)) = (&state.config.storage, state.storage_port) {
            // Our own storage node: adopt it as a tier, so stop/kill/restart/status work.
            let bin =
                binary::locate_workspace_binary("storage-node", "STORAGE_NODE_BIN", None, None)
                    .map(|b| b.path)
                    .unwrap_or_default();
            let store_ports: Vec<u16> = state.stores.iter().map(|r| r.port).collect();
            let planned = EmbeddedTier::plan(
                &lab.cfg.lab_dir,
                port,
                state.stores.len().max(1),
                &store_ports,
                lab.cfg.storage_trace,
                bin,
            );
            if let Ok(tier) = planned {
                // Each process is adopted when its pid still runs `storage-node --addr <its
                // port>`; otherwise it shows the state the file recorded (stopped, killed…).
                let procs = tier
                    .procs
                    .into_iter()
                    .enumerate()
                    .map(|(k, p)| {
                        let (pid, started, recorded) = match k {
                            0 => (
                                lab.adopted_storage_pid,
                                state.storage_started_unix_ms,
                                state.storage_state.clone(),
                            ),
                            _ => {
                                let rec = &state.stores[k - 1];
                                (rec.pid, rec.started_unix_ms, Some(rec.state.clone()))
                            }
                        };
                        let mut p = p;
                        if !pid.is_some_and(|pid| p.adopt(pid, started)) {
                            p.set_gone_state(gone_state(recorded.as_ref()));
                        }
                        p
                    })
                    .collect();
                lab.storage = Some(StorageTier::Embedded(EmbeddedTier { procs }));
            }
            lab.adopted_storage_pid = None;
        }
        if let StorageMode::ExternalTikv { pd_endpoints } = &state.config.storage
            && let Some(pd) = pd_endpoints
                .first()
                .and_then(|e| validate_loopback_endpoint(e).ok())
        {
            // Not ours: remembered only so status shows it (`external`) — never signalled.
            lab.storage = Some(StorageTier::External { pd });
        }
        for (i, rec) in state.nodes.iter().enumerate() {
            let mut node = lab.make_node(i, rec.port);
            node.path_arg = rec.path_arg.clone();
            // Adopted only if the pid still runs our `surreal start` on this port.
            let adopted = rec
                .pid
                .is_some_and(|pid| node.adopt(pid, rec.started_unix_ms, rec.ready_ms));
            if !adopted {
                node.set_gone_state(gone_state(Some(&rec.state)));
                node.ready_ms = rec.ready_ms;
            }
            lab.nodes.push(node);
            lab.clients.push(None);
        }
        lab
    }

    /// Writes `state.json` from the current nodes.
    pub(super) fn save_state(&mut self) -> Result<(), LabError> {
        let storage_pid = self
            .storage
            .as_ref()
            .and_then(StorageTier::pid)
            .or(self.adopted_storage_pid);
        let (storage_port, storage_started_unix_ms, storage_state, stores) =
            match self.storage.as_mut().and_then(StorageTier::embedded) {
                Some(tier) => {
                    tier.refresh();
                    let stores = tier.procs[1..]
                        .iter()
                        .map(|p| StoreRecord {
                            id: match p.role {
                                Role::Store { id, .. } => id,
                                _ => 0,
                            },
                            port: p.addr.port(),
                            pid: p.pid(),
                            state: p.state().clone(),
                            started_unix_ms: p.started_unix_ms(),
                        })
                        .collect();
                    let front = tier.front();
                    (
                        Some(front.addr.port()),
                        front.started_unix_ms(),
                        Some(front.state().clone()),
                        stores,
                    )
                }
                None => (None, None, None, Vec::new()),
            };
        let nodes = self
            .nodes
            .iter_mut()
            .map(|n| {
                n.refresh();
                NodeRecord {
                    name: n.name.clone(),
                    port: n.port,
                    pid: n.pid(),
                    state: n.state().clone(),
                    path_arg: n.path_arg.clone(),
                    started_unix_ms: n.started_unix_ms(),
                    ready_ms: n.ready_ms,
                    data_dir: n.data_dir.clone(),
                    log: n.log().to_path_buf(),
                    pidfile: n.pidfile().to_path_buf(),
                }
            })
            .collect();
        if !self.live || !self.cfg.lab_dir.exists() || self.check_owner().is_err() {
            return Ok(()); // never started, cleaned up, or taken over by a newer start
        }
        self.claimed = true;
        StateFile {
            format: STATE_FORMAT,
            created_unix_ms: self.created_unix_ms,
            config: self.cfg.clone(),
            binary: self.binary.clone(),
            storage_label: self.cfg.storage.label(),
            storage_pid,
            storage_port,
            storage_started_unix_ms,
            storage_state,
            stores,
            nodes,
            owner_pid: self.owner_pid,
            run_id: self.run_id,
        }
        .write(&self.cfg.lab_dir)
    }

    /// `Err(WrongState)` when another live process started this lab and still holds it (a
    /// notebook kernel, a test) and this handle attached to it (the `lab` CLI): a process
    /// started here (`add`, `restart`) would be unknown to the holder, which rewrites
    /// `state.json` without it — an orphan — and a node removed here would still be in its
    /// tables. Stopping, killing, pausing and resuming are fine: the holder notices those.
    pub(crate) fn check_not_held_elsewhere(&self, action: &str) -> Result<(), LabError> {
        let Some(pid) = self.owner_pid.filter(|p| *p != std::process::id()) else {
            return Ok(());
        };
        let Some(holder) = procs::inspect(pid).filter(|p| !p.zombie) else {
            return Ok(()); // the holder is gone: whatever it started is ours to manage now
        };
        Err(LabError::WrongState {
            action: action.into(),
            target: format!("lab `{}`", self.cfg.name),
            reason: format!(
                "it was started by process {pid} (`{}`), which still holds it and would not know about the change",
                crate::vocab::oplog::shorten(&holder.cmd.join(" "), 60)
            ),
            fix: "do it from that process (in its notebook: `cluster.add_node()`, `cluster.restart_node(..)`, …), \
                  or end it there (`cluster.cleanup()`) and start a lab you can manage from here with `lab up`"
                .into(),
        })
    }

    /// `Err(TakenOver)` when `state.json` was written by another start of this lab: that start
    /// reaped our processes, and the directory is its now.
    pub(crate) fn check_owner(&self) -> Result<(), LabError> {
        if !self.live || !self.claimed {
            return Ok(());
        }
        match StateFile::read(&self.cfg.lab_dir) {
            Ok(state) if state.run_id != 0 && self.run_id != 0 && state.run_id != self.run_id => {
                Err(LabError::TakenOver {
                    name: self.cfg.name.clone(),
                    path: self.cfg.lab_dir.display().to_string(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// The state to show for a process of `state.json` whose pid is gone (or not ours): what the
/// file recorded when that was already final (`stopped`, `killed`, …), else — it was running
/// when the file was written, or the file predates the field — it ended without the lab.
fn gone_state(recorded: Option<&NodeState>) -> NodeState {
    match recorded {
        None | Some(NodeState::Running | NodeState::Paused) => {
            NodeState::Exited("unknown status".into())
        }
        Some(other) => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::lab::tests::config;

    #[test]
    fn state_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::new(1, 8001, dir.path());
        let state = StateFile {
            format: STATE_FORMAT,
            created_unix_ms: 42,
            config: config(dir.path()),
            binary: Some(LocatedBinary {
                path: "/x/surreal".into(),
                version: "3.3.5".into(),
                version_line: "3.3.5 for linux on x86_64".into(),
            }),
            storage_label: "memory".into(),
            storage_pid: None,
            storage_port: None,
            storage_started_unix_ms: None,
            storage_state: Some(NodeState::Stopped),
            stores: vec![],
            nodes: vec![NodeRecord {
                name: node.name.clone(),
                port: node.port,
                pid: Some(1234),
                state: NodeState::Exited("code 1".into()),
                path_arg: Some("memory".into()),
                started_unix_ms: Some(7),
                ready_ms: Some(350.5),
                data_dir: node.data_dir.clone(),
                log: node.log().to_path_buf(),
                pidfile: node.pidfile().to_path_buf(),
            }],
            owner_pid: Some(42),
            run_id: 7,
        };
        state.write(dir.path()).unwrap();
        assert_eq!(StateFile::read(dir.path()).unwrap(), state);
        assert!(!dir.path().join("state.json.tmp").exists());
    }

    #[test]
    fn a_gone_process_keeps_a_final_recorded_state() {
        let exited = NodeState::Exited("unknown status".into());
        assert_eq!(gone_state(None), exited, "older file without the field");
        assert_eq!(gone_state(Some(&NodeState::Running)), exited);
        assert_eq!(gone_state(Some(&NodeState::Paused)), exited);
        assert_eq!(gone_state(Some(&NodeState::Stopped)), NodeState::Stopped);
        assert_eq!(gone_state(Some(&NodeState::Killed)), NodeState::Killed);
    }

    #[test]
    fn missing_or_foreign_state_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            StateFile::read(dir.path()),
            Err(LabError::LabNotFound { .. })
        ));
        std::fs::write(dir.path().join(STATE_FILE), "{}").unwrap();
        let e = StateFile::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("damaged or from another version"), "{e}");
    }
}
