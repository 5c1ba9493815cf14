//! The lab as the actor thread sees it: its configuration, its nodes and their SDK connections,
//! the shared storage tier, the operation log, the fault log and the `state.json` that lets
//! another process (the `lab` CLI) attach. `Lab::handle` interprets one `Command`.
//!
//! Everything here runs on the actor thread (see `actor::thread`), so nothing needs a lock: one
//! command at a time owns the whole lab. The `impl Lab` is split by concern:
//!
//! | file | what |
//! |---|---|
//! | this file | the state, the command dispatch, naming nodes, the clock |
//! | `start` | start (reap, ports, storage, nodes, proxies, schema), stop, clean up, detach |
//! | `scale` | adding a node to a running lab, removing the newest one |
//! | `query` | queries on one node, races on several, HTTP |
//! | `load` | the load generator's session pools, preparation, sampling |
//! | `status` | node and storage status, link counters, the storage trace |
//! | `faults` | the one fault path: `inject` (node, storage, link) and the fault log |
//! | `state_file` | `state.json`: writing it, attaching from it, noticing a takeover |
//! | `harness` | the `Harness` trait for experiments |

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::actor::command::Command;
use crate::experiments::{bank, conflicts, live};
use crate::infra::binary::LocatedBinary;
use crate::infra::client::Db;
use crate::infra::links::NodeLinks;
use crate::infra::node::Node;
use crate::infra::storage::StorageTier;
use crate::vocab::config::LabConfig;
use crate::vocab::error::LabError;
use crate::vocab::faults::{FaultLog, Link};
use crate::vocab::nodes::NodeRef;
use crate::vocab::oplog::OpRecord;

mod faults;
mod harness;
mod load;
mod query;
mod scale;
mod start;
pub mod state_file;
mod status;
mod stores;

pub use state_file::{NodeRecord, STATE_FILE, StateFile};

/// How many operations the log keeps. Old entries are dropped first, so a long notebook session
/// cannot grow memory without bound; load tests keep their own histograms.
const OPLOG_CAPACITY: usize = 100_000;

/// How long to wait for a stopped process's ports to be released before calling them busy.
const PORT_RELEASE_WAIT: Duration = Duration::from_secs(5);

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
    /// The process holding the lab (see [`StateFile::owner_pid`]): this one after a start,
    /// the file's after an attach, none after a detach.
    owner_pid: Option<u32>,
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
            created_unix_ms: crate::infra::process::unix_ms(),
            live: false,
            faults: FaultLog::default(),
            member_ids: HashMap::new(),
            run_id: fastrand::u64(1..),
            owner_pid: Some(std::process::id()),
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
        if self.cfg.durable_sessions {
            node.extra_args.push("--durable-sessions".into());
        }
        if let Some(engine) = self.cfg.live_query_engine {
            node.extra_env.push((
                crate::vocab::config::ENGINE_ENV.to_string(),
                engine.as_str().to_string(),
            ));
        }
        node
    }

    /// The embedded storage tier, when the lab runs one.
    pub(crate) fn embedded_storage(
        &mut self,
    ) -> Option<&mut crate::infra::embedded_tier::EmbeddedTier> {
        self.storage.as_mut().and_then(StorageTier::embedded)
    }

    /// The links whose proxies are not healthy (cut, slowed or dropping), to heal after a run.
    pub(crate) fn broken_links(&self) -> Vec<Link> {
        let mut out = Vec::new();
        for (l, node) in self.links.iter().zip(&self.nodes) {
            let broken = |p: &Option<crate::infra::proxy::Proxy>| {
                p.as_ref().is_some_and(|p| !p.settings().is_healthy())
            };
            if broken(&l.client) {
                out.push(Link::client_to(node.name.as_str()));
            }
            if broken(&l.storage) {
                out.push(Link::to_storage(node.name.as_str()));
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
            Command::AddNode { reply } => {
                let _ = reply.send(self.add_node().await);
            }
            Command::RemoveNode { node, reply } => {
                let _ = reply.send(self.remove_node(node).await);
            }
            Command::Instances { reply } => {
                let _ = reply.send(Ok(self.instances().await));
            }
            Command::Placement { reply } => {
                let _ = reply.send(self.placement().await);
            }
            Command::SplitAt { keys, reply } => {
                let _ = reply.send(self.split_at(&keys).await);
            }
            Command::TransferLeader {
                region,
                store,
                reply,
            } => {
                let _ = reply.send(self.transfer_leader(region, store).await);
            }
            Command::AddStore { reply } => {
                let _ = reply.send(self.add_store().await);
            }
            Command::RemoveStore { store, reply } => {
                let _ = reply.send(self.remove_store(store).await);
            }
            Command::ReplaceStore { store, reply } => {
                let _ = reply.send(self.replace_store(store).await);
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
            Command::Fault { fault, reply } => {
                let _ = reply.send(self.inject(&fault).await);
            }
            Command::Links { reply } => {
                let _ = reply.send(self.link_statuses());
            }
            Command::Contention { plan, reply } => {
                let _ = reply.send(conflicts::contention(plan, self).await);
            }
            Command::Bank { plan, reply } => {
                let _ = reply.send(bank::run::run(plan, self).await);
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
                let _ = reply.send(live::watch(self, listen, table, writes, wait).await);
            }
            Command::Drops { plan, reply } => {
                let _ = reply.send(crate::experiments::partitions::drops::run(plan, self).await);
            }
            Command::Faults { reply } => {
                let _ = reply.send(self.faults.records());
            }
            Command::Race { queries, reply } => {
                let _ = reply.send(self.race(queries).await);
            }
            Command::TraceMark { reply } => {
                let _ = reply.send(self.trace_path().map(|p| crate::infra::trace::mark(&p)));
            }
            Command::Waterfall { node, query, reply } => {
                let _ = reply.send(self.waterfall(node, query).await);
            }
            Command::TraceSince { mark, reply } => {
                let _ = reply.send(self.trace_since(mark));
            }
            Command::Workload { plan, reply } => {
                let _ = reply.send(self.workload(plan).await);
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
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::*;
    use crate::vocab::config::StorageMode;

    pub(crate) fn config(dir: &Path) -> LabConfig {
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
            stores: 1,
            storage_trace: false,
            fault_links: false,
            membership_intervals: None,
            live_query_engine: None,
            durable_sessions: false,
        }
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
