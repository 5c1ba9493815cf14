//! The lab as the actor thread sees it: its configuration, its nodes and their SDK connections,
//! the shared storage tier, the operation log and the `state.json` that lets another process
//! (the `lab` CLI) attach. `Lab::handle` interprets one `Command` (see `runtime`).
//!
//! Everything here runs on the actor thread (see `runtime`), so nothing needs a lock: one command
//! at a time owns the whole lab.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::binary::{self, LocatedBinary};
use crate::client::{self, ConnectSpec, Db, QueryResult, StatementResult};
use crate::error::LabError;
use crate::faults::FaultLog;
use crate::links::{self, Link, LinkFault, LinkStatus, NodeLinks};
use crate::metrics::{self, Instance};
use crate::node::{Node, NodeState};
use crate::oplog::{self, OpRecord};
use crate::ports;
use crate::procs::{self, Reaped, Stopped};
use crate::runtime::{Command, NodeAction, NodeRef};
use crate::storage::{StorageMode, StorageTier, TierPlan};
use crate::storage_node::StorageNode;
use crate::workload::{self, WorkloadReport, WorkloadSpec};

/// The file in the lab directory that describes the running lab.
pub const STATE_FILE: &str = "state.json";

/// Bumped when `state.json` changes incompatibly, so old files are refused with a clear message.
const STATE_FORMAT: u32 = 1;

/// How many operations the log keeps. Old entries are dropped first, so a long notebook session
/// cannot grow memory without bound; load tests keep their own histograms.
const OPLOG_CAPACITY: usize = 100_000;

/// How long to wait for a stopped process's ports to be released before calling them busy.
const PORT_RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Every setting of a lab, fully resolved (the builder fills it; `state.json` stores it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabConfig {
    /// Lab name; the lab directory is `<lab root>/<name>`.
    pub name: String,
    /// The lab directory.
    pub lab_dir: PathBuf,
    /// Number of nodes (1–9).
    pub nodes: usize,
    /// Port of node-a; node i listens on `base_port + i`.
    pub base_port: u16,
    /// Pick a free port block at start instead of `base_port`.
    pub ephemeral_ports: bool,
    /// Root user name.
    pub user: String,
    /// Root password. Stored in `state.json` so the CLI can attach: lab credentials only.
    pub pass: String,
    /// Namespace the clients use.
    pub namespace: String,
    /// Database the clients use.
    pub database: String,
    /// Create namespace and database when missing.
    pub create_namespace: bool,
    /// Apply `schema/entities.surql` at start.
    pub apply_schema: bool,
    /// Where the data lives.
    pub storage: StorageMode,
    /// Explicit `surreal` binary (else the normal search).
    pub surreal_bin: Option<PathBuf>,
    /// Limit for one node to become ready (spec PR-001: 30 s).
    pub start_timeout: Duration,
    /// Grace period between SIGTERM and SIGKILL.
    pub stop_timeout: Duration,
    /// Limit for one query (also for connecting).
    pub query_timeout: Duration,
    /// Port of the embedded storage node (shared mode); 0 = 2379, or a free one with
    /// ephemeral ports.
    #[serde(default)]
    pub storage_port: u16,
    /// Write the storage node's operation trace (one JSON line per RPC).
    #[serde(default)]
    pub storage_trace: bool,
    /// Put a fault proxy on every client→node and node→storage link (see `links`).
    #[serde(default)]
    pub fault_links: bool,
    /// Shortened `--node-membership-*-interval` flags for every node (see `membership`).
    #[serde(default)]
    pub membership_intervals: Option<crate::membership::MembershipIntervals>,
    /// `SURREAL_LIVE_QUERY_ENGINE` for every node (see `live`); `None` = SurrealDB's default.
    #[serde(default)]
    pub live_query_engine: Option<crate::live::LiveQueryEngine>,
}

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
    /// The nodes.
    pub nodes: Vec<NodeRecord>,
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

/// The actor-side lab.
pub(crate) struct Lab {
    cfg: LabConfig,
    binary: Option<LocatedBinary>,
    nodes: Vec<Node>,
    clients: Vec<Option<Db>>,
    storage: Option<StorageTier>,
    /// Pid of a storage process found in `state.json` by `attach` (not our child).
    adopted_storage_pid: Option<u32>,
    oplog: VecDeque<OpRecord>,
    created_unix_ms: u64,
    /// True once the lab has started (or was attached): only then does `state.json` describe it.
    live: bool,
    /// Every fault injected so far (see `faults`).
    pub(crate) faults: FaultLog,
    /// This start's id, written to `state.json` (see [`StateFile::run_id`]).
    run_id: u64,
    /// True once this handle has written `state.json` (a start) or read it (an attach): from
    /// then on a different `run_id` in the file means a newer start took the lab over.
    claimed: bool,
    /// SurrealDB's member id of each lab node start (`INFO FOR ROOT` → node name), learned
    /// right after each start (see `membership`).
    pub(crate) member_ids: HashMap<String, String>,
    /// The fault proxies of each node (empty without `.fault_links(true)`).
    links: Vec<NodeLinks>,
    /// Set by the facade (from any thread) to ask a long-running command — a bank run, a
    /// contention run — to finish early, e.g. because `stop_all()` is waiting behind it.
    cancel: Arc<AtomicBool>,
    /// The load generator's sessions, one pool per node, kept between runs (see `workload`).
    load_pools: Vec<LoadPool>,
    /// What the last workload preparation did: (table, records, node pids). Preparing again
    /// with the same values is skipped; a restarted in-memory node has a new pid.
    prepared: Option<(String, u64, Vec<Option<u32>>)>,
    /// Workload runs so far (part of each run's unique nonce).
    runs: u64,
}

/// SDK sessions of one node for the load generator, and the pid they were opened against
/// (a restarted node has a new pid and gets a fresh pool).
#[derive(Default)]
struct LoadPool {
    pid: Option<u32>,
    sessions: Vec<Db>,
}

impl Lab {
    /// A lab that has not started yet.
    pub(crate) fn new(cfg: LabConfig) -> Self {
        Lab {
            cfg,
            binary: None,
            nodes: Vec::new(),
            clients: Vec::new(),
            storage: None,
            adopted_storage_pid: None,
            oplog: VecDeque::new(),
            created_unix_ms: crate::node::unix_ms(),
            live: false,
            faults: FaultLog::default(),
            member_ids: HashMap::new(),
            run_id: fastrand::u64(1..),
            claimed: false,
            links: Vec::new(),
            cancel: Arc::new(AtomicBool::new(false)),
            load_pools: Vec::new(),
            prepared: None,
            runs: 0,
        }
    }

    /// The flag the facade sets to interrupt a long-running command (see [`Lab::cancelled`]).
    pub(crate) fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// True when a long-running command should wrap up: the facade asked (e.g. `stop_all()`
    /// from another thread), or someone deleted the lab under us (`lab clean` in a terminal).
    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
            || (self.live && !self.cfg.lab_dir.join(STATE_FILE).exists())
    }

    /// A node with this lab's extra flags and environment.
    fn make_node(&self, i: usize, port: u16) -> Node {
        let mut node = Node::new(i, port, &self.cfg.lab_dir);
        if let Some(m) = &self.cfg.membership_intervals {
            node.extra_args = m.flags();
        }
        if let Some(engine) = self.cfg.live_query_engine {
            node.extra_env.push((
                crate::live::ENGINE_ENV.to_string(),
                engine.as_str().to_string(),
            ));
        }
        node
    }

    /// A lab rebuilt from `state.json` (for `Cluster::attach`): live pids that are really our
    /// nodes are adopted; anything else shows as not running.
    pub(crate) fn from_state(state: StateFile) -> Self {
        let mut lab = Lab::new(state.config.clone());
        lab.created_unix_ms = state.created_unix_ms;
        // An attached handle acts for the run that wrote the file.
        lab.run_id = state.run_id;
        lab.claimed = true;
        lab.live = true;
        lab.binary = state.binary.clone();
        lab.adopted_storage_pid = state.storage_pid.filter(|p| procs::is_alive(*p));
        if let (StorageMode::Shared, Some(port)) = (&state.config.storage, state.storage_port) {
            // Our own storage node: adopt it as a tier, so stop/kill/restart/status work.
            let ours = lab.adopted_storage_pid.filter(|pid| {
                procs::inspect(*pid)
                    .is_some_and(|p| crate::storage_node::is_lab_storage_cmd(&p.cmd, port))
            });
            let bin =
                binary::locate_workspace_binary("storage-node", "STORAGE_NODE_BIN", None, None)
                    .map(|b| b.path)
                    .unwrap_or_default();
            let mut node = StorageNode::new(&lab.cfg.lab_dir, port, lab.cfg.storage_trace, bin);
            if let Some(pid) = ours {
                node = node.adopt(pid, state.storage_started_unix_ms);
            } else {
                node.state = NodeState::Exited("unknown status".into());
            }
            lab.storage = Some(StorageTier::Embedded(node));
            lab.adopted_storage_pid = None;
        }
        for (i, rec) in state.nodes.iter().enumerate() {
            let mut node = lab.make_node(i, rec.port);
            node.path_arg = rec.path_arg.clone();
            let ours = rec.pid.filter(|pid| {
                procs::inspect(*pid)
                    .is_some_and(|p| !p.zombie && procs::is_lab_node_cmd(&p.cmd, rec.port))
            });
            node = match ours {
                Some(pid) => node.adopt(pid, rec.started_unix_ms, rec.ready_ms),
                None => {
                    node.state = match &rec.state {
                        NodeState::Running | NodeState::Paused => {
                            NodeState::Exited("unknown status".into())
                        }
                        other => other.clone(),
                    };
                    node.ready_ms = rec.ready_ms;
                    node
                }
            };
            lab.nodes.push(node);
            lab.clients.push(None);
        }
        lab
    }

    /// Number of nodes.
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// True while node `i`'s process is alive (running or paused).
    pub(crate) fn node_is_up(&mut self, i: usize) -> bool {
        self.nodes[i].is_up()
    }

    /// The embedded storage node's state, if the lab runs one: `Some(true)` while it is alive.
    pub(crate) fn storage_is_up(&mut self) -> Option<bool> {
        self.storage
            .as_mut()
            .and_then(StorageTier::embedded)
            .map(|s| s.is_up())
    }

    /// True if node `i` or the storage node is paused (SIGSTOPped).
    pub(crate) fn node_is_paused(&mut self, i: usize) -> bool {
        self.nodes[i].refresh() == &NodeState::Paused
    }

    /// The embedded storage node is paused.
    pub(crate) fn storage_is_paused(&mut self) -> bool {
        self.storage
            .as_mut()
            .and_then(StorageTier::embedded)
            .is_some_and(|s| s.refresh() == &NodeState::Paused)
    }

    /// When node `i`'s current process was spawned (Unix ms).
    pub(crate) fn node_started_unix_ms(&self, i: usize) -> Option<u64> {
        self.nodes[i].started_unix_ms
    }

    /// Unix ms at which the lab's clock reads 0.
    pub(crate) fn created_unix_ms(&self) -> u64 {
        self.created_unix_ms
    }

    /// The lab's settings.
    pub(crate) fn cfg(&self) -> &LabConfig {
        &self.cfg
    }

    /// The names of the link proxies that are not healthy.
    pub(crate) fn broken_links(&self) -> Vec<(usize, bool)> {
        let mut out = Vec::new();
        for (i, l) in self.links.iter().enumerate() {
            if l.client
                .as_ref()
                .is_some_and(|p| !p.settings().is_healthy())
            {
                out.push((i, true));
            }
            if l.storage
                .as_ref()
                .is_some_and(|p| !p.settings().is_healthy())
            {
                out.push((i, false));
            }
        }
        out
    }

    /// The lab's name (for the actor thread's name).
    pub(crate) fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Interprets one command and sends its reply. A dropped receiver (the caller gave up) is fine.
    pub(crate) async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Start { reply } => {
                let result = self.start().await.map(|lines| (lines, self.cfg.clone()));
                let _ = reply.send(result);
            }
            Command::Instances { reply } => {
                let _ = reply.send(Ok(self.instances().await));
            }
            Command::Sql {
                node,
                query,
                vars,
                reply,
            } => {
                let _ = reply.send(self.sql(node, query, vars).await);
            }
            Command::Http { node, path, reply } => {
                let _ = reply.send(self.http(node, &path).await);
            }
            Command::OpLog { reply } => {
                let _ = reply.send(self.oplog.iter().cloned().collect());
            }
            Command::ClearOpLog { reply } => {
                self.oplog.clear();
                let _ = reply.send(());
            }
            Command::Node {
                node,
                action,
                reply,
            } => {
                let target = self.target_name(&node);
                let started = self.clock_ms();
                let result = self.node_action(node, action).await;
                self.log_fault(&target, action.name(), started, &result);
                let _ = reply.send(result);
            }
            Command::LinkFault { link, fault, reply } => {
                let started = self.clock_ms();
                let result = self.link_fault(&link, fault);
                let target = match &result {
                    Ok((target, _)) => target.clone(),
                    Err(_) => format!("{link:?}"),
                };
                let result = result.map(|(_, line)| line);
                self.log_fault(&target, fault.action(), started, &result);
                let _ = reply.send(result);
            }
            Command::Links { reply } => {
                let _ = reply.send(self.link_statuses());
            }
            Command::Contention { plan, reply } => {
                let _ = reply.send(self.contention(plan).await);
            }
            Command::Bank { plan, reply } => {
                let _ = reply.send(self.bank(plan).await);
            }
            Command::MemberIds { reply } => {
                let _ = reply.send(self.member_ids.clone());
            }
            Command::LiveWatch {
                listen,
                table,
                writes,
                wait,
                reply,
            } => {
                let _ = reply.send(self.live_watch(listen, table, writes, wait).await);
            }
            Command::Faults { reply } => {
                let _ = reply.send(self.faults.records());
            }
            Command::Race { queries, reply } => {
                let _ = reply.send(self.race(queries).await);
            }
            Command::TraceMark { reply } => {
                let _ = reply.send(self.trace_path().map(|p| crate::trace::mark(&p)));
            }
            Command::TraceSince { mark, reply } => {
                let _ = reply.send(self.trace_since(mark));
            }
            Command::Storage { action, reply } => {
                let started = self.clock_ms();
                let result = self.storage_action(action).await;
                self.log_fault("storage", action.name(), started, &result);
                let _ = reply.send(result);
            }
            Command::Workload { spec, reply } => {
                let _ = reply.send(self.workload(spec).await);
            }
            Command::Processes { reply } => {
                let _ = reply.send(self.processes());
            }
            Command::StopAll { reply } => {
                let lines = self.stop_all().await;
                // Whatever was interrupted to get here has finished: later commands run normally.
                self.cancel.store(false, Ordering::Relaxed);
                let _ = reply.send(Ok(lines));
            }
            Command::Cleanup { reply } => {
                let _ = reply.send(self.cleanup().await);
            }
            Command::Shutdown { stop_nodes, reply } => {
                if stop_nodes {
                    self.stop_everything().await;
                } else {
                    self.detach();
                }
                let _ = reply.send(());
            }
        }
    }

    // ----- start -----------------------------------------------------------------------------

    /// Starts the lab: reap leftovers, check ports, start storage and nodes, connect, create
    /// namespace/database, apply the schema, write `state.json`. On failure nothing is left
    /// running. With ephemeral ports a port race with another process is retried on a new block.
    async fn start(&mut self) -> Result<Vec<String>, LabError> {
        let bin = binary::locate_surreal(self.cfg.surreal_bin.as_deref())?;
        self.binary = Some(bin);
        for sub in ["nodes", "logs", "run"] {
            let dir = self.cfg.lab_dir.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| {
                LabError::io(
                    "creating directory",
                    &dir,
                    &e,
                    "check that the lab root is writable (env LAB_DIR)",
                )
            })?;
        }
        let mut lines = self.reap_previous_run().await;
        let reaped_nodes = lines
            .iter()
            .any(|l| l.contains("left running by an earlier run"));
        let mut attempts_left = if self.cfg.ephemeral_ports { 3 } else { 1 };
        loop {
            attempts_left -= 1;
            let base = if self.cfg.ephemeral_ports {
                ports::pick_ephemeral_block(self.cfg.nodes)?
            } else {
                self.cfg.base_port
            };
            self.cfg.base_port = base;
            self.nodes = (0..self.cfg.nodes)
                .map(|i| self.make_node(i, base + i as u16))
                .collect();
            self.clients = vec![None; self.cfg.nodes];
            if reaped_nodes && !self.cfg.ephemeral_ports {
                // The reaped processes may still be releasing these very ports.
                let _ = ports::wait_ports_free(base, self.cfg.nodes, PORT_RELEASE_WAIT).await;
            }
            match self.try_start().await {
                Ok(mut started) => {
                    lines.append(&mut started);
                    return Ok(lines);
                }
                Err(e) => {
                    self.live = false;
                    self.stop_everything().await;
                    let _ = std::fs::remove_file(self.cfg.lab_dir.join(STATE_FILE));
                    if attempts_left > 0 && is_port_race(&e) {
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    async fn try_start(&mut self) -> Result<Vec<String>, LabError> {
        ports::ensure_ports_free(self.cfg.base_port, self.cfg.nodes)?;
        if self.cfg.storage == StorageMode::Shared && self.cfg.storage_port == 0 {
            self.cfg.storage_port = if self.cfg.ephemeral_ports {
                // A block of one, outside the nodes' block.
                loop {
                    let p = ports::pick_ephemeral_block(1)?;
                    if !(self.cfg.base_port..self.cfg.base_port + self.cfg.nodes as u16)
                        .contains(&p)
                    {
                        break p;
                    }
                }
            } else {
                crate::storage_node::DEFAULT_STORAGE_PORT
            };
        }
        let plan = TierPlan {
            lab_dir: &self.cfg.lab_dir,
            storage_port: self.cfg.storage_port,
            trace: self.cfg.storage_trace,
            timeout: self.cfg.start_timeout,
        };
        let tier = StorageTier::start(&self.cfg.storage, &plan).await?;
        let bin = self.binary.clone().expect("located above").path;
        let shared = self.cfg.storage.is_shared();
        let mut paths: Vec<String> = self
            .nodes
            .iter()
            .map(|n| tier.node_path(&n.data_dir))
            .collect();
        self.storage = Some(tier);
        if self.cfg.fault_links {
            self.start_link_proxies(&mut paths).await?;
        }
        if shared {
            // One after another: concurrent first starts on one store race to bootstrap it.
            for (i, path) in paths.iter().enumerate() {
                let node = &mut self.nodes[i];
                node.spawn(&bin, path, &self.cfg.user, &self.cfg.pass)?;
                node.wait_ready(self.cfg.start_timeout).await?;
                // Before the next node registers: the only new member is this one.
                self.learn_member_id(i).await;
            }
        } else {
            for (node, path) in self.nodes.iter_mut().zip(&paths) {
                node.spawn(&bin, path, &self.cfg.user, &self.cfg.pass)?;
            }
            let timeout = self.cfg.start_timeout;
            let waits = self.nodes.iter_mut().map(|n| n.wait_ready(timeout));
            for result in futures::future::join_all(waits).await {
                result?;
            }
        }
        for i in 0..self.nodes.len() {
            self.connect(i).await?;
            if self.cfg.apply_schema && (!shared || i == 0) {
                self.apply_schema(i).await?;
            }
        }
        self.live = true;
        self.save_state()?;
        Ok(self
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "[{} :{}] started (pid {}, {}) → ready in {:.0} ms",
                    n.name,
                    n.port,
                    n.pid().map(|p| p.to_string()).unwrap_or_default(),
                    self.cfg.storage.label(),
                    n.ready_ms.unwrap_or(0.0)
                )
            })
            .collect())
    }

    /// Stops processes an earlier run of this lab left behind (see `procs` for the rules).
    async fn reap_previous_run(&mut self) -> Vec<String> {
        let old_state = StateFile::read(&self.cfg.lab_dir).ok();
        let old_storage_port = old_state.as_ref().and_then(|s| s.storage_port);
        let old_ports: HashMap<String, u16> = old_state
            .map(|s| s.nodes.into_iter().map(|n| (n.name, n.port)).collect())
            .unwrap_or_default();
        let run_dir = self.cfg.lab_dir.join("run");
        let Ok(entries) = std::fs::read_dir(&run_dir) else {
            return Vec::new();
        };
        let mut lines = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "pid") {
                continue;
            }
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name == "storage" {
                // The storage node of an earlier run: recognised by its `--addr` port.
                let port = old_storage_port.unwrap_or(crate::storage_node::DEFAULT_STORAGE_PORT);
                let reaped = procs::reap_pidfile_if(&path, self.cfg.stop_timeout, |cmd| {
                    crate::storage_node::is_lab_storage_cmd(cmd, port)
                })
                .await;
                if let Reaped::Stopped { pid, how } = reaped {
                    lines.push(format!("[storage :{port}] stopped a storage node left running by an earlier run (pid {pid}, {how:?})"));
                }
                continue;
            }
            let planned = (0..self.cfg.nodes)
                .find(|i| crate::node::node_name(*i) == name)
                .map(|i| self.cfg.base_port.saturating_add(i as u16));
            let Some(port) = old_ports.get(&name).copied().or(planned) else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            let line = match procs::reap_pidfile(&path, port, self.cfg.stop_timeout).await {
                Reaped::NoPidfile => continue,
                Reaped::StaleRemoved { pid } => {
                    format!("[{name}] removed a stale pidfile (pid {pid} is no longer running)")
                }
                Reaped::ForeignLeftAlone { pid, cmd } => format!(
                    "[{name}] removed a pidfile pointing at pid {pid} (`{}`), which is not a lab node: left it running",
                    oplog::shorten(&cmd, 60)
                ),
                Reaped::Stopped { pid, how } => {
                    format!(
                        "[{name} :{port}] stopped a node left running by an earlier run (pid {pid}, {how:?})"
                    )
                }
            };
            lines.push(line);
        }
        lines
    }

    /// Opens (or re-opens) node `i`'s SDK session.
    ///
    /// The handle is kept and only ever borrowed: in SDK 3.x `Surreal::clone()` opens a *new*
    /// server session and replays sign-in and `use` on it — a root sign-in verifies the password
    /// hash, ~30 ms — so cloning per query would make every query 30 ms slower.
    async fn connect(&mut self, i: usize) -> Result<(), LabError> {
        let spec = self.connect_spec(i);
        let db = client::connect(&spec).await?;
        self.clients[i] = Some(db);
        Ok(())
    }

    /// How a client reaches node `i`: through its client-link proxy when there is one.
    pub(crate) fn connect_spec(&self, i: usize) -> ConnectSpec {
        let node = &self.nodes[i];
        let dial_port = self
            .links
            .get(i)
            .and_then(|l| l.client.as_ref())
            .map(|p| p.listen_addr().port())
            .unwrap_or(node.port);
        ConnectSpec {
            node: node.name.clone(),
            port: node.port,
            dial_port,
            user: self.cfg.user.clone(),
            pass: self.cfg.pass.clone(),
            namespace: self.cfg.namespace.clone(),
            database: self.cfg.database.clone(),
            create_ns_db: self.cfg.create_namespace,
            timeout: self.cfg.query_timeout,
        }
    }

    /// Starts a proxy on each node's client link and, for shared storage, on its storage link;
    /// rewrites each node's `tikv://` path to its own storage proxy.
    async fn start_link_proxies(&mut self, paths: &mut [String]) -> Result<(), LabError> {
        let io_err = |e: std::io::Error| {
            LabError::config(
                "fault_links",
                format!("could not start a fault proxy: {e}"),
                "free some ports or file descriptors, or start without `.fault_links(true)`",
            )
        };
        self.links.clear();
        for (i, path) in paths.iter_mut().enumerate() {
            let mut l = NodeLinks {
                client: Some(
                    crate::proxy::Proxy::start(self.nodes[i].addr())
                        .await
                        .map_err(io_err)?,
                ),
                storage: None,
            };
            if let Some(addr) = path.strip_prefix("tikv://") {
                let upstream: std::net::SocketAddr = addr.parse().map_err(|_| {
                    LabError::config(
                        "fault_links",
                        format!("storage address `{addr}` is not IP:PORT"),
                        "use 127.0.0.1:PORT storage endpoints",
                    )
                })?;
                let proxy = crate::proxy::Proxy::start(upstream).await.map_err(io_err)?;
                *path = format!("tikv://{}", proxy.listen_addr());
                l.storage = Some(proxy);
            }
            self.links.push(l);
        }
        Ok(())
    }

    /// Applies `schema/entities.surql` through node `i`.
    async fn apply_schema(&mut self, i: usize) -> Result<(), LabError> {
        let (name, port) = (self.nodes[i].name.clone(), self.nodes[i].port);
        let db = self.client(i).await?;
        let outcomes = client::run_query(db, crate::entities::SCHEMA, None)
            .await
            .map_err(|e| client::query_error(&name, port, "schema/entities.surql", &e))?;
        let parts = oplog::split_statements(crate::entities::SCHEMA);
        for (k, outcome) in outcomes.into_iter().enumerate() {
            if let Err(e) = outcome {
                let stmt = parts
                    .get(k)
                    .map(String::as_str)
                    .unwrap_or("schema/entities.surql");
                return Err(client::query_error(&name, port, stmt, &e));
            }
        }
        Ok(())
    }

    /// Node `i`'s session, connecting first if there is none (after a restart or an attach).
    async fn client(&mut self, i: usize) -> Result<&Db, LabError> {
        if self.clients[i].is_none() {
            self.connect(i).await?;
        }
        Ok(self.clients[i].as_ref().expect("connected above"))
    }

    // ----- queries ---------------------------------------------------------------------------

    /// Runs a query on one node and records it in the operation log.
    pub(crate) async fn sql(
        &mut self,
        node: NodeRef,
        query: String,
        vars: Option<serde_json::Value>,
    ) -> (Option<String>, Result<QueryResult, LabError>) {
        let i = match self.resolve(&node) {
            Ok(i) => i,
            Err(e) => return (None, Err(e)),
        };
        if let Err(e) = self.check_owner() {
            return (None, Err(e));
        }
        let started_at_ms = self.clock_ms();
        let (result, ms) = self.sql_on(i, &query, vars).await;
        let result = result.map_err(|e| self.with_storage_hint(e));
        let node = &self.nodes[i];
        let (rows, server_ms, statements) = match &result {
            Ok(r) => (
                r.row_count() as u64,
                r.statements
                    .iter()
                    .map(|s| s.server_ms)
                    .sum::<Option<f64>>(),
                r.statements.len(),
            ),
            Err(_) => (0, None, oplog::split_statements(&query).len().max(1)),
        };
        let record = OpRecord {
            node: node.name.clone(),
            port: node.port,
            kind: oplog::op_kind(&query),
            statement: oplog::shorten(&query, oplog::RECORD_STATEMENT),
            statements,
            started_at_ms,
            ms,
            server_ms,
            rows,
            ok: result.is_ok(),
            error: result.as_ref().err().map(short_error),
        };
        let line = record.line();
        if self.oplog.len() == OPLOG_CAPACITY {
            self.oplog.pop_front();
        }
        self.oplog.push_back(record);
        (Some(line), result)
    }

    /// Runs the queries concurrently (one per node session) and logs each like `sql` does.
    /// Commands are otherwise handled one at a time; this is how two nodes are made to
    /// compete for the same data at the same moment (conflict experiments).
    pub(crate) async fn race(
        &mut self,
        queries: Vec<(NodeRef, String)>,
    ) -> Vec<(Option<String>, Result<QueryResult, LabError>)> {
        let mut targets = Vec::with_capacity(queries.len());
        for (node, query) in queries {
            let i = match self.resolve(&node) {
                Ok(i) if self.nodes[i].is_up() => match self.client(i).await {
                    Ok(_) => Ok(i),
                    Err(e) => Err(e),
                },
                Ok(i) => Err(LabError::NodeDown {
                    node: self.nodes[i].name.clone(),
                    port: self.nodes[i].port,
                    state: self.nodes[i].state.to_string(),
                }),
                Err(e) => Err(e),
            };
            targets.push((i, query));
        }
        let started_at_ms = self.clock_ms();
        let limit = self.cfg.query_timeout;
        let runs = targets.iter().map(|(i, query)| {
            let db = i.as_ref().ok().and_then(|i| self.clients[*i].as_ref());
            async move {
                match db {
                    Some(db) => Some(
                        client::timed(tokio::time::timeout(
                            limit,
                            client::run_query(db, query, None),
                        ))
                        .await,
                    ),
                    None => None,
                }
            }
        });
        let outcomes = futures::future::join_all(runs).await;
        let mut out = Vec::with_capacity(outcomes.len());
        for ((i, query), outcome) in targets.into_iter().zip(outcomes) {
            let i = match i {
                Ok(i) => i,
                Err(e) => {
                    out.push((None, Err(e)));
                    continue;
                }
            };
            let (name, port) = (self.nodes[i].name.clone(), self.nodes[i].port);
            let (outcome, ms) = outcome.expect("a session exists for every resolved node");
            let result = match outcome {
                Err(_) => Err(LabError::Timeout {
                    what: "query".into(),
                    node: name.clone(),
                    port,
                    after: limit,
                    fix: "raise `.query_timeout(..)`".into(),
                }),
                Ok(Err(e)) => Err(client::query_error(&name, port, &query, &e)),
                Ok(Ok(outcomes)) => collect_outcomes(&name, port, &query, outcomes, ms),
            };
            let result = result.map_err(|e| self.with_storage_hint(e));
            let record = OpRecord {
                node: name,
                port,
                kind: oplog::op_kind(&query),
                statement: oplog::shorten(&query, oplog::RECORD_STATEMENT),
                statements: oplog::split_statements(&query).len().max(1),
                started_at_ms,
                ms,
                server_ms: None,
                rows: result.as_ref().map(|r| r.row_count() as u64).unwrap_or(0),
                ok: result.is_ok(),
                error: result.as_ref().err().map(short_error),
            };
            let line = record.line();
            if self.oplog.len() == OPLOG_CAPACITY {
                self.oplog.pop_front();
            }
            self.oplog.push_back(record);
            out.push((Some(line), result));
        }
        out
    }

    /// The query itself; returns the result and the client-side latency (query round trip only,
    /// not a reconnect, so timings compare like with like).
    async fn sql_on(
        &mut self,
        i: usize,
        query: &str,
        vars: Option<serde_json::Value>,
    ) -> (Result<QueryResult, LabError>, f64) {
        if !self.nodes[i].is_up() {
            let n = &self.nodes[i];
            return (
                Err(LabError::NodeDown {
                    node: n.name.clone(),
                    port: n.port,
                    state: n.state.to_string(),
                }),
                0.0,
            );
        }
        let (name, port) = (self.nodes[i].name.clone(), self.nodes[i].port);
        let limit = self.cfg.query_timeout;
        let db = match self.client(i).await {
            Ok(db) => db,
            Err(e) => return (Err(e), 0.0),
        };
        let (outcome, ms) = client::timed(tokio::time::timeout(
            limit,
            client::run_query(db, query, vars),
        ))
        .await;
        let result = match outcome {
            Err(_) => Err(LabError::Timeout {
                what: "query".into(),
                node: name.clone(),
                port,
                after: limit,
                fix: "the node may be paused or overloaded (see `cluster.status()`); raise `.query_timeout(..)` for slow queries".into(),
            }),
            Ok(Err(e)) => {
                if e.is_connection() {
                    // Reconnect on the next call rather than reuse a broken session.
                    self.clients[i] = None;
                }
                Err(client::query_error(&name, port, query, &e))
            }
            Ok(Ok(outcomes)) => collect_outcomes(&name, port, query, outcomes, ms),
        };
        (result, ms)
    }

    // ----- load ------------------------------------------------------------------------------

    /// Runs a workload: checks the nodes, fills the session pools, prepares the records, and
    /// samples every process while the clients run (see `workload` for the measuring rules).
    async fn workload(&mut self, spec: WorkloadSpec) -> Result<WorkloadReport, LabError> {
        spec.validate(self.nodes.len())?;
        for i in 0..self.nodes.len() {
            if !self.nodes[i].is_up() {
                let n = &self.nodes[i];
                return Err(LabError::NodeDown {
                    node: n.name.clone(),
                    port: n.port,
                    state: n.state.to_string(),
                });
            }
        }
        let setup = std::time::Instant::now();
        let sessions = spec.sessions();
        self.fill_load_pools(sessions).await?;
        if spec.prepare {
            self.prepare_records(&spec).await?;
        }
        let setup_ms = setup.elapsed().as_secs_f64() * 1000.0;
        let mut targets = self.processes();
        // The load generator shares the machine with the lab: its own cost is part of the picture.
        targets.push(("client".into(), std::process::id()));
        let sampler = crate::sampler::Sampler::start(targets, spec.sample_every);
        self.runs += 1;
        let nonce = crate::node::unix_ms() * 1000 + self.runs % 1000;
        let ctx = workload::RunContext {
            targets: self
                .nodes
                .iter()
                .zip(&self.load_pools)
                .map(|(n, pool)| workload::Target {
                    name: n.name.clone(),
                    sessions: &pool.sessions[..sessions],
                })
                .collect(),
            nonce,
        };
        let measured = workload::run(&spec, ctx).await;
        let resources = sampler.stop();
        Ok(WorkloadReport {
            label: spec.label(),
            storage: self.cfg.storage.label(),
            nodes: self.nodes.iter().map(|n| n.name.clone()).collect(),
            sessions_per_node: sessions,
            measured_s: measured.measured_s,
            setup_ms,
            rows: measured.rows,
            raw: measured.raw,
            histogram: measured.histogram,
            error_examples: measured.error_examples,
            samples: measured.samples,
            resources,
            spec,
        })
    }

    /// Makes sure every node has at least `want` load sessions, opening the missing ones
    /// concurrently (each is a WebSocket, a root sign-in and a `USE`).
    async fn fill_load_pools(&mut self, want: usize) -> Result<(), LabError> {
        self.load_pools
            .resize_with(self.nodes.len(), LoadPool::default);
        for i in 0..self.nodes.len() {
            let pid = self.nodes[i].pid();
            if self.load_pools[i].pid != pid {
                self.load_pools[i] = LoadPool {
                    pid,
                    sessions: Vec::new(),
                };
            }
            let missing = want.saturating_sub(self.load_pools[i].sessions.len());
            if missing == 0 {
                continue;
            }
            // The lab's own session created the namespace at start; concurrent DEFINEs from
            // many new sessions would only race each other.
            let spec = ConnectSpec {
                create_ns_db: false,
                ..self.connect_spec(i)
            };
            let opened =
                futures::future::join_all((0..missing).map(|_| client::connect(&spec))).await;
            for db in opened {
                self.load_pools[i].sessions.push(db?);
            }
        }
        Ok(())
    }

    /// Inserts the workload's records unless the same preparation already ran. Shared storage
    /// needs it once; isolated nodes each have their own data.
    async fn prepare_records(&mut self, spec: &WorkloadSpec) -> Result<(), LabError> {
        let pids: Vec<Option<u32>> = self.nodes.iter().map(Node::pid).collect();
        let key = (spec.table.clone(), spec.records, pids);
        if self.prepared.as_ref() == Some(&key) {
            return Ok(());
        }
        let on = if self.cfg.storage.is_shared() {
            1
        } else {
            self.nodes.len()
        };
        for i in 0..on {
            let db = &self.load_pools[i].sessions[0];
            workload::prepare(db, spec).await.map_err(|e| {
                client::query_error(
                    &self.nodes[i].name,
                    self.nodes[i].port,
                    &format!("preparing {} records in `{}`", spec.records, spec.table),
                    &e,
                )
            })?;
        }
        self.prepared = Some(key);
        Ok(())
    }

    /// Forgets node `i`'s load sessions (before it is stopped, killed or restarted).
    fn drop_load_pool(&mut self, i: usize) {
        if let Some(pool) = self.load_pools.get_mut(i) {
            *pool = LoadPool::default();
        }
    }

    /// `(name, pid)` of every running lab process: the nodes, then the storage node.
    fn processes(&mut self) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = Vec::new();
        for n in &mut self.nodes {
            if n.is_up()
                && let Some(pid) = n.pid()
            {
                out.push((n.name.clone(), pid));
            }
        }
        let storage_pid = self
            .storage
            .as_ref()
            .and_then(StorageTier::pid)
            .or(self.adopted_storage_pid);
        if let Some(pid) = storage_pid.filter(|p| procs::is_alive(*p)) {
            out.push(("storage".into(), pid));
        }
        out
    }

    /// HTTP GET on one node.
    async fn http(&mut self, node: NodeRef, path: &str) -> Result<(u16, String), LabError> {
        let i = self.resolve(&node)?;
        let n = &mut self.nodes[i];
        if !n.is_up() {
            return Err(LabError::NodeDown {
                node: n.name.clone(),
                port: n.port,
                state: n.state.to_string(),
            });
        }
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        client::http_get(n.addr(), &path, self.cfg.query_timeout)
            .await
            .map_err(|message| LabError::Connection {
                node: n.name.clone(),
                port: n.port,
                message,
            })
    }

    // ----- status ----------------------------------------------------------------------------

    /// Every node's status (the spec's Instance entity).
    pub(crate) async fn instances(&mut self) -> Vec<Instance> {
        let now = crate::node::unix_ms();
        let binary_version = self.binary.as_ref().map(|b| b.version.clone());
        let storage = self.cfg.storage.label();
        let mut out = Vec::with_capacity(self.nodes.len());
        for n in &mut self.nodes {
            let state = n.refresh().clone();
            let pid = n.pid();
            let up = matches!(state, NodeState::Running | NodeState::Paused);
            let version = if state == NodeState::Running {
                match client::http_get(n.addr(), "/version", Duration::from_secs(1)).await {
                    Ok((200, body)) => binary::parse_version_line(&body).or(binary_version.clone()),
                    _ => binary_version.clone(),
                }
            } else {
                binary_version.clone()
            };
            out.push(Instance {
                node: n.name.clone(),
                port: n.port,
                pid,
                state: state.to_string(),
                version,
                rss_mb: pid.and_then(metrics::rss_mb),
                uptime_s: if up {
                    n.started_unix_ms
                        .map(|s| now.saturating_sub(s) as f64 / 1000.0)
                } else {
                    None
                },
                // Shared nodes show where their storage is (tikv://127.0.0.1:PORT).
                storage: n
                    .path_arg
                    .clone()
                    .filter(|p| p.starts_with("tikv://"))
                    .unwrap_or_else(|| storage.clone()),
                ready_ms: n.ready_ms,
                ws_url: format!("ws://127.0.0.1:{}", n.port),
                http_url: format!("http://127.0.0.1:{}", n.port),
                data_mb: None,
            });
        }
        if let Some(s) = self.storage.as_mut().and_then(StorageTier::embedded) {
            let state = s.refresh().clone();
            let up = matches!(state, NodeState::Running | NodeState::Paused);
            let pid = s.pid();
            out.push(Instance {
                node: "storage".into(),
                port: s.addr.port(),
                pid,
                state: state.to_string(),
                version: Some(format!("storage-node {}", env!("CARGO_PKG_VERSION"))),
                rss_mb: pid.and_then(metrics::rss_mb),
                uptime_s: if up {
                    s.started_unix_ms
                        .map(|t| now.saturating_sub(t) as f64 / 1000.0)
                } else {
                    None
                },
                storage: "pd+tikv".into(),
                ready_ms: s.ready_ms,
                ws_url: String::new(),
                http_url: format!("grpc://{}", s.addr),
                data_mb: Some(s.data_bytes() as f64 / (1024.0 * 1024.0)),
            });
        }
        out
    }

    // ----- lifecycle -------------------------------------------------------------------------

    /// Stop, kill or restart one node; returns a log line.
    pub(crate) async fn node_action(
        &mut self,
        node: NodeRef,
        action: NodeAction,
    ) -> Result<String, LabError> {
        let i = self.resolve(&node)?;
        self.check_owner()?;
        let grace = self.cfg.stop_timeout;
        let line = match action {
            NodeAction::Stop => {
                // Close our sessions first, so the server has no client of ours to drain.
                self.clients[i] = None;
                self.drop_load_pool(i);
                let t = std::time::Instant::now();
                let how = self.nodes[i].stop(grace).await;
                format!(
                    "{} stopped ({}, {:.1} s)",
                    self.tag(i),
                    describe_stop(how),
                    t.elapsed().as_secs_f64()
                )
            }
            NodeAction::Kill => {
                self.clients[i] = None;
                self.drop_load_pool(i);
                let pid = self.nodes[i].pid();
                let how = self.nodes[i].kill().await;
                match (how, pid) {
                    (Stopped::AlreadyGone, _) | (_, None) => {
                        format!("{} was not running", self.tag(i))
                    }
                    (_, Some(pid)) => format!("{} killed with SIGKILL (pid {pid})", self.tag(i)),
                }
            }
            NodeAction::Restart => self.restart(i).await?,
            NodeAction::Pause => {
                self.nodes[i].signal(nix::sys::signal::Signal::SIGSTOP)?;
                format!(
                    "{} paused with SIGSTOP (it keeps its sockets but answers nothing)",
                    self.tag(i)
                )
            }
            NodeAction::Resume => {
                self.nodes[i].signal(nix::sys::signal::Signal::SIGCONT)?;
                format!("{} resumed with SIGCONT", self.tag(i))
            }
        };
        self.save_state()?;
        Ok(line)
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

    /// Adds "the storage node is down" to an error when it is: every query needs storage, and
    /// SurrealDB's own message (a timeout, a KV error) does not say so.
    fn with_storage_hint(&mut self, mut e: LabError) -> LabError {
        let state = match self.storage.as_mut().and_then(StorageTier::embedded) {
            Some(s) => s.refresh().clone(),
            None => return e,
        };
        if state == NodeState::Running {
            return e;
        }
        let hint = format!(
            "the storage node is {state}, and every query needs it: run `cluster.{}()`",
            if state == NodeState::Paused {
                "resume_storage"
            } else {
                "restart_storage"
            }
        );
        if let LabError::Query { fix, .. } | LabError::Timeout { fix, .. } = &mut e {
            *fix = hint;
        }
        e
    }

    /// Appends a fault call to the fault log.
    pub(crate) fn log_fault(
        &mut self,
        target: &str,
        action: &str,
        started: f64,
        result: &Result<String, LabError>,
    ) {
        let done = self.clock_ms();
        let outcome = match result {
            Ok(line) => Ok(line.as_str()),
            Err(e) => Err(e.to_string()),
        };
        self.faults.record(target, action, started, done, outcome);
    }

    /// The node's name if `r` resolves, else what the caller typed.
    pub(crate) fn target_name(&self, r: &NodeRef) -> String {
        match self.resolve(r) {
            Ok(i) => self.nodes[i].name.clone(),
            Err(_) => match r {
                NodeRef::Index(i) => i.to_string(),
                NodeRef::Name(n) => n.clone(),
            },
        }
    }

    /// Changes one link's settings. Returns the link's name and a log line.
    pub(crate) fn link_fault(
        &mut self,
        link: &Link,
        fault: LinkFault,
    ) -> Result<(String, String), LabError> {
        let i = self.resolve(link.node())?;
        if self.links.is_empty() {
            return Err(LabError::config(
                "fault_links",
                "this lab has no fault proxies, so its links cannot be broken",
                "start the lab with `.fault_links(true)` (off by default: the proxies live in this process)",
            ));
        }
        if let LinkFault::Drop { fraction } = fault
            && !(0.0..=1.0).contains(&fraction)
        {
            return Err(LabError::config(
                "drop_connections",
                format!("{fraction} is not a fraction"),
                "pass a value between 0.0 (drop none) and 1.0 (drop all new connections)",
            ));
        }
        let name = self.nodes[i].name.clone();
        let (proxy, link_name) = match link {
            Link::ClientToNode(_) => (
                self.links[i].client.as_ref(),
                links::client_link_name(&name),
            ),
            Link::NodeToStorage(_) => (
                self.links[i].storage.as_ref(),
                links::storage_link_name(&name),
            ),
        };
        let proxy = proxy.ok_or_else(|| {
            LabError::config(
                "fault_links",
                format!("{name} has no storage link: its storage is `{}`, inside the node", self.cfg.storage.label()),
                "node→storage links exist with shared storage: use StorageMode::Shared (the default)",
            )
        })?;
        proxy.apply(fault.apply_to(proxy.settings()));
        let line = format!("[{link_name}] {}", links::describe(&fault));
        Ok((link_name, line))
    }

    /// The state and counters of every link proxy.
    fn link_statuses(&self) -> Vec<LinkStatus> {
        let mut out = Vec::new();
        for (i, l) in self.links.iter().enumerate() {
            let name = &self.nodes[i].name;
            for (proxy, link) in [
                (&l.client, links::client_link_name(name)),
                (&l.storage, links::storage_link_name(name)),
            ] {
                if let Some(p) = proxy {
                    out.push(LinkStatus {
                        link,
                        proxy_port: p.listen_addr().port(),
                        upstream_port: p.upstream().port(),
                        settings: p.settings(),
                        stats: p.stats(),
                    });
                }
            }
        }
        out
    }

    /// The storage trace file, or why there is none.
    fn trace_path(&mut self) -> Result<PathBuf, LabError> {
        match self
            .storage
            .as_mut()
            .and_then(StorageTier::embedded)
            .and_then(|n| n.trace.clone())
        {
            Some(p) => Ok(p),
            None => Err(LabError::config(
                "storage_trace",
                "this lab has no storage trace",
                "start the lab with StorageMode::Shared and `.storage_trace(true)`",
            )),
        }
    }

    /// Trace rows since `mark`, each attributed to the node whose connection sent it.
    fn trace_since(&mut self, mark: u64) -> Result<Vec<crate::trace::TraceRow>, LabError> {
        let path = self.trace_path()?;
        let mut rows = crate::trace::read_since(&path, mark)
            .map_err(|e| LabError::io("reading", &path, &e, "check the lab directory"))?;
        let pids: Vec<(String, u32)> = self
            .nodes
            .iter()
            .filter_map(|n| n.pid().map(|p| (n.name.clone(), p)))
            .collect();
        crate::trace::attribute(&mut rows, &crate::trace::connection_owners(&pids));
        Ok(rows)
    }

    /// Stop, kill, restart, pause or resume the embedded storage node. The `surreal` nodes are
    /// left alone: they retry PD and TiKV and carry on once storage is back.
    pub(crate) async fn storage_action(&mut self, action: NodeAction) -> Result<String, LabError> {
        self.check_owner()?;
        let grace = self.cfg.stop_timeout;
        let timeout = self.cfg.start_timeout;
        let label = self.cfg.storage.label();
        let Some(node) = self.storage.as_mut().and_then(StorageTier::embedded) else {
            return Err(LabError::StorageUnavailable {
                mode: label,
                reason: "this lab does not run the embedded storage node".into(),
                fix: "storage faults need StorageMode::Shared (the default); with external TiKV, stop its processes yourself".into(),
            });
        };
        let tag = format!("[storage :{}]", node.addr.port());
        let line = match action {
            NodeAction::Stop => {
                let how = node.stop(grace).await;
                format!("{tag} stopped ({})", describe_stop(how))
            }
            NodeAction::Kill => {
                let pid = node.pid();
                node.kill().await;
                format!(
                    "{tag} killed with SIGKILL (pid {})",
                    pid.map(|p| p.to_string()).unwrap_or("-".into())
                )
            }
            NodeAction::Restart => {
                if node.is_up() {
                    node.stop(grace).await;
                }
                ports::wait_ports_free(node.addr.port(), 1, PORT_RELEASE_WAIT).await?;
                node.spawn()?;
                let took = node.wait_ready(timeout).await?;
                format!(
                    "{tag} restarted on the same data (pid {}) → ready in {:.0} ms",
                    node.pid().unwrap_or(0),
                    took.as_secs_f64() * 1000.0
                )
            }
            NodeAction::Pause => {
                node.signal(nix::sys::signal::Signal::SIGSTOP)?;
                format!("{tag} paused with SIGSTOP")
            }
            NodeAction::Resume => {
                node.signal(nix::sys::signal::Signal::SIGCONT)?;
                format!("{tag} resumed with SIGCONT")
            }
        };
        self.save_state()?;
        Ok(line)
    }

    /// Restart node `i` on the same port and data directory, then reconnect its session.
    async fn restart(&mut self, i: usize) -> Result<String, LabError> {
        self.clients[i] = None;
        self.drop_load_pool(i);
        if self.nodes[i].is_up() {
            self.nodes[i].stop(self.cfg.stop_timeout).await;
        }
        let bin = match &self.binary {
            Some(b) => b.path.clone(),
            None => {
                let b = binary::locate_surreal(self.cfg.surreal_bin.as_deref())?;
                let p = b.path.clone();
                self.binary = Some(b);
                p
            }
        };
        ports::wait_ports_free(self.nodes[i].port, 1, PORT_RELEASE_WAIT).await?;
        let path = match (&self.nodes[i].path_arg, &self.storage) {
            (Some(p), _) => p.clone(),
            (None, Some(tier)) => tier.node_path(&self.nodes[i].data_dir),
            (None, None) => {
                let plan = TierPlan {
                    lab_dir: &self.cfg.lab_dir,
                    storage_port: self.cfg.storage_port,
                    trace: self.cfg.storage_trace,
                    timeout: self.cfg.start_timeout,
                };
                let tier = StorageTier::start(&self.cfg.storage, &plan).await?;
                let path = tier.node_path(&self.nodes[i].data_dir);
                self.storage = Some(tier);
                path
            }
        };
        self.nodes[i].spawn(&bin, &path, &self.cfg.user, &self.cfg.pass)?;
        let ready = self.nodes[i].wait_ready(self.cfg.start_timeout).await?;
        if self.cfg.storage.is_shared() {
            self.learn_member_id(i).await;
        }
        self.connect(i).await?;
        // An in-memory node comes back empty: give it its schema again (idempotent elsewhere).
        if self.cfg.apply_schema && !self.cfg.storage.is_shared() {
            self.apply_schema(i).await?;
        }
        Ok(format!(
            "{} restarted (pid {}) → ready in {:.0} ms",
            self.tag(i),
            self.nodes[i].pid().unwrap_or(0),
            ready.as_secs_f64() * 1000.0
        ))
    }

    /// Stops every node concurrently (each with its own grace period), then the storage tier.
    async fn stop_all(&mut self) -> Vec<String> {
        let grace = self.cfg.stop_timeout;
        self.clients.iter_mut().for_each(|c| *c = None);
        self.load_pools.clear();
        let was_up: Vec<bool> = self.nodes.iter_mut().map(|n| n.is_up()).collect();
        let results = futures::future::join_all(self.nodes.iter_mut().map(|n| n.stop(grace))).await;
        let mut lines: Vec<String> = results
            .into_iter()
            .enumerate()
            .filter(|(k, _)| was_up[*k])
            .map(|(k, how)| format!("{} stopped ({})", self.tag(k), describe_stop(how)))
            .collect();
        if let Some(mut tier) = self.storage.take() {
            let was_up = tier.embedded().map(|n| n.is_up()).unwrap_or(false);
            tier.stop(grace).await;
            if let Some(node) = tier.embedded().filter(|_| was_up) {
                lines.push(format!("[storage :{}] stopped", node.addr.port()));
            }
        }
        if let Some(pid) = self.adopted_storage_pid.take() {
            procs::terminate_pid(pid, grace).await;
            lines.push(format!("[storage] stopped (pid {pid})"));
        }
        let _ = self.save_state();
        lines
    }

    /// Stops everything, ignoring errors (used on failure paths and on drop).
    pub(crate) async fn stop_everything(&mut self) {
        self.stop_all().await;
    }

    /// `cleanup()`: stop everything and delete the lab directory.
    async fn cleanup(&mut self) -> Result<(), LabError> {
        // Never delete a directory a newer start of this lab owns.
        self.check_owner()?;
        self.stop_all().await;
        let dir = &self.cfg.lab_dir;
        // Only ever delete a directory named after the lab (names are validated as plain words).
        if dir.file_name().is_some_and(|n| n == self.cfg.name.as_str()) && dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| {
                LabError::io(
                    "deleting",
                    dir,
                    &e,
                    "check permissions, then delete it by hand",
                )
            })?;
        }
        Ok(())
    }

    /// Leaves the processes running and forgets them (`detach`), recording them in `state.json`.
    fn detach(&mut self) {
        let _ = self.save_state();
        self.nodes.iter_mut().for_each(Node::forget);
        self.clients.iter_mut().for_each(|c| *c = None);
        self.load_pools.clear();
        if let Some(mut tier) = self.storage.take() {
            // Dropping the tier's `Child` does not kill it; its pid is in state.json.
            if let Some(node) = tier.embedded() {
                node.forget();
            }
            drop(tier);
        }
    }

    // ----- helpers ---------------------------------------------------------------------------

    /// Writes `state.json` from the current nodes.
    fn save_state(&mut self) -> Result<(), LabError> {
        let storage_pid = self
            .storage
            .as_ref()
            .and_then(StorageTier::pid)
            .or(self.adopted_storage_pid);
        let (storage_port, storage_started_unix_ms) =
            match self.storage.as_mut().and_then(StorageTier::embedded) {
                Some(node) => (Some(node.addr.port()), node.started_unix_ms),
                None => (None, None),
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
                    state: n.state.clone(),
                    path_arg: n.path_arg.clone(),
                    started_unix_ms: n.started_unix_ms,
                    ready_ms: n.ready_ms,
                    data_dir: n.data_dir.clone(),
                    log: n.log.clone(),
                    pidfile: n.pidfile.clone(),
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
            nodes,
            run_id: self.run_id,
        }
        .write(&self.cfg.lab_dir)
    }

    /// Resolves `node-b`, `b`, `B`, `1` or index 1 to a node index.
    pub(crate) fn resolve(&self, r: &NodeRef) -> Result<usize, LabError> {
        let found = match r {
            NodeRef::Index(i) => (*i < self.nodes.len()).then_some(*i),
            NodeRef::Name(s) => {
                let t = s.trim().to_ascii_lowercase();
                let t = t.strip_prefix("node-").unwrap_or(&t);
                if let Ok(i) = t.parse::<usize>() {
                    (i < self.nodes.len()).then_some(i)
                } else {
                    self.nodes
                        .iter()
                        .position(|n| n.name == format!("node-{t}"))
                }
            }
        };
        found.ok_or_else(|| LabError::UnknownNode {
            given: match r {
                NodeRef::Index(i) => i.to_string(),
                NodeRef::Name(s) => s.clone(),
            },
            known: self
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// `[node-a :8000]`, the prefix of every log line about a node.
    fn tag(&self, i: usize) -> String {
        format!("[{} :{}]", self.nodes[i].name, self.nodes[i].port)
    }

    /// Milliseconds since the lab started (fractional), the clock of `started_at_ms`.
    pub(crate) fn clock_ms(&self) -> f64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0);
        now - self.created_unix_ms as f64
    }
}

/// Turns per-statement outcomes into a `QueryResult`, or into the error that explains the
/// failure. In a failed transaction SurrealDB reports every statement as "not executed due to
/// a failed transaction" and only one with the cause (e.g. the COMMIT's conflict), so the
/// cause is preferred over the first error.
fn collect_outcomes(
    name: &str,
    port: u16,
    query: &str,
    outcomes: Vec<client::StatementOutcome>,
    ms: f64,
) -> Result<QueryResult, LabError> {
    let parts = oplog::split_statements(query);
    let matched = parts.len() == outcomes.len();
    let mut statements = Vec::with_capacity(outcomes.len());
    let mut errors = Vec::new();
    for (k, outcome) in outcomes.into_iter().enumerate() {
        let text = if matched {
            parts[k].clone()
        } else {
            oplog::collapse_ws(query)
        };
        match outcome {
            Ok((rows, server_ms)) => statements.push(StatementResult {
                statement: text,
                rows,
                server_ms,
            }),
            Err(e) => errors.push(client::query_error(name, port, &text, &e)),
        }
    }
    if errors.is_empty() {
        return Ok(QueryResult {
            node: name.to_string(),
            port,
            query: query.to_string(),
            statements,
            ms,
        });
    }
    let is_knock_on = |e: &LabError| {
        e.to_string()
            .contains("not executed due to a failed transaction")
    };
    let cause = errors.iter().position(|e| !is_knock_on(e)).unwrap_or(0);
    Err(errors.swap_remove(cause))
}

/// A port taken between our check and the node's bind (only retried with ephemeral ports).
fn is_port_race(e: &LabError) -> bool {
    match e {
        LabError::PortInUse { .. } => true,
        LabError::NodeExited { tail, .. } => tail.to_ascii_lowercase().contains("in use"),
        _ => false,
    }
}

/// The error text kept in the operation log: SurrealDB's message, or our first line.
fn short_error(e: &LabError) -> String {
    match e {
        LabError::Query { message, .. } => message.clone(),
        other => other.to_string().lines().next().unwrap_or("").to_string(),
    }
}

fn describe_stop(how: Stopped) -> &'static str {
    match how {
        Stopped::AlreadyGone => "was not running",
        Stopped::Graceful => "SIGTERM",
        Stopped::Killed => "SIGTERM ignored, SIGKILL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> LabConfig {
        LabConfig {
            name: "t".into(),
            lab_dir: dir.to_path_buf(),
            nodes: 2,
            base_port: 8000,
            ephemeral_ports: false,
            user: "root".into(),
            pass: "root".into(),
            namespace: "lab".into(),
            database: "main".into(),
            create_namespace: true,
            apply_schema: true,
            storage: StorageMode::default(),
            surreal_bin: None,
            start_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(10),
            query_timeout: Duration::from_secs(15),
            storage_port: 0,
            storage_trace: false,
            fault_links: false,
            membership_intervals: None,
            live_query_engine: None,
        }
    }

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
            nodes: vec![NodeRecord {
                name: node.name.clone(),
                port: node.port,
                pid: Some(1234),
                state: NodeState::Exited("code 1".into()),
                path_arg: Some("memory".into()),
                started_unix_ms: Some(7),
                ready_ms: Some(350.5),
                data_dir: node.data_dir.clone(),
                log: node.log.clone(),
                pidfile: node.pidfile.clone(),
            }],
            run_id: 7,
        };
        state.write(dir.path()).unwrap();
        assert_eq!(StateFile::read(dir.path()).unwrap(), state);
        assert!(!dir.path().join("state.json.tmp").exists());
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

    #[test]
    fn node_refs_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let mut lab = Lab::new(config(dir.path()));
        lab.nodes = (0..2)
            .map(|i| Node::new(i, 8000 + i as u16, dir.path()))
            .collect();
        for (r, want) in [
            (NodeRef::Index(1), 1),
            (NodeRef::Name("node-b".into()), 1),
            (NodeRef::Name("B".into()), 1),
            (NodeRef::Name("a".into()), 0),
            (NodeRef::Name("0".into()), 0),
        ] {
            assert_eq!(lab.resolve(&r).unwrap(), want, "{r:?}");
        }
        let e = lab
            .resolve(&NodeRef::Name("node-z".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("node-a, node-b"), "{e}");
        assert!(lab.resolve(&NodeRef::Index(2)).is_err());
    }
}
