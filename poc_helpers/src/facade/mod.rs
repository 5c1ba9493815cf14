//! `Cluster`: the synchronous facade over one lab, and `ClusterBuilder`, which configures it.
//!
//! ```no_run
//! use poc_helpers::prelude::*;
//!
//! let cluster = Cluster::builder().nodes(2).ephemeral_ports().start().expect("lab starts");
//! cluster.sql("a", "CREATE user SET name = 'Ada', email = 'ada@example.com'").unwrap();
//! let found = cluster.sql("b", "SELECT * FROM user").unwrap(); // isolated: node-b sees nothing
//! assert_eq!(found.row_count(), 0);
//! println!("{}", cluster.status().unwrap());
//! cluster.cleanup().unwrap();
//! ```
//!
//! Every method sends one command to the lab's actor thread and waits for its reply (see
//! `actor::thread` for why). Methods print their log line (`[node-b :8001] SELECT … → 3 rows,
//! 1.2 ms`) unless `set_echo(false)`.
//!
//! The methods are split by concern: [`builder`] (settings and `start`), this file (the handle:
//! attach, echo, stop, clean up, detach), `queries`, `faults`, `load`, `experiments` and
//! `membership`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::actor::command::Command;
use crate::actor::lab::{Lab, StateFile};
use crate::actor::thread::Actor;
use crate::vocab::config::LabConfig;
use crate::vocab::error::LabError;

pub mod builder;
mod exercises;
mod experiments;
mod faults;
mod load;
mod membership;
mod partitions;
mod production;
mod production_ops;
mod queries;
mod replication;
mod storage_drills;
pub use replication::WhereIs;

pub use builder::{
    ClusterBuilder, DEFAULT_NODES, DEFAULT_QUERY_TIMEOUT, DEFAULT_START_TIMEOUT,
    DEFAULT_STOP_TIMEOUT, ENV_BASE_PORT, ENV_LAB_DIR, MAX_NODES, default_lab_root,
};

/// How long `Drop`/`start` wait for the actor to stop all nodes before giving up on it.
pub(crate) fn shutdown_wait(cfg: &LabConfig) -> Duration {
    // Nodes stop concurrently; allow the grace period, the SIGKILL wait and some slack.
    cfg.stop_timeout + Duration::from_secs(15)
}

/// Where a node can be reached.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    /// Node name.
    pub node: String,
    /// WebSocket URL for SDKs, e.g. `ws://127.0.0.1:8000`.
    pub ws: String,
    /// HTTP URL, e.g. `http://127.0.0.1:8000` (`/health`, `/version`, `/sql`, …).
    pub http: String,
}

/// A running lab. Dropping it stops the nodes it started (see [`Cluster::detach`] and
/// [`Cluster::attach`] for the exceptions).
pub struct Cluster {
    pub(crate) actor: Actor,
    cfg: LabConfig,
    echo: AtomicBool,
    stop_on_drop: AtomicBool,
    finished: AtomicBool,
    start_lines: Vec<String>,
    /// How many nodes the lab has now: `cfg.nodes` at start, then moved by `add_node` and
    /// `remove_node` (nodes are added and removed at the end, so names stay a, b, c …).
    node_count: AtomicUsize,
    /// Shared with the actor: set to make a long-running command (a bank run) finish early.
    cancel: Arc<AtomicBool>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.cfg.name)
            .field("lab_dir", &self.cfg.lab_dir)
            .finish()
    }
}

impl Cluster {
    /// A builder with the spec's defaults.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    fn new(actor: Actor, cfg: LabConfig, echo: bool, stop_on_drop: bool) -> Self {
        Cluster {
            actor,
            node_count: AtomicUsize::new(cfg.nodes),
            cfg,
            echo: AtomicBool::new(echo),
            stop_on_drop: AtomicBool::new(stop_on_drop),
            finished: AtomicBool::new(false),
            start_lines: Vec::new(),
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The lines `start` printed (one per node with its pid and start time, plus any reaping).
    pub fn start_report(&self) -> &[String] {
        &self.start_lines
    }

    /// Attaches to a running lab by name (under the default lab root) or by directory.
    ///
    /// Used by the CLI: `lab up` starts and detaches, later `lab status`/`lab sql` attach. An
    /// attached handle does **not** stop the nodes when dropped; call `stop_all()` or `cleanup()`.
    pub fn attach(name_or_dir: &str) -> Result<Cluster, LabError> {
        let as_path = Path::new(name_or_dir);
        let dir =
            if as_path.join(crate::actor::lab::STATE_FILE).is_file() || name_or_dir.contains('/') {
                as_path.to_path_buf()
            } else {
                default_lab_root().join(name_or_dir)
            };
        Self::attach_dir(&dir)
    }

    /// Attaches to the lab in `dir` (which holds `state.json`).
    pub fn attach_dir(dir: &Path) -> Result<Cluster, LabError> {
        let state = StateFile::read(dir)?;
        let mut cfg = state.config.clone();
        cfg.lab_dir = dir.to_path_buf();
        let mut state = state;
        state.config = cfg.clone();
        let lab = Lab::from_state(state);
        let cancel = lab.cancel_flag();
        let actor = Actor::spawn(lab)?;
        let mut cluster = Cluster::new(actor, cfg, true, false);
        cluster.cancel = cancel;
        Ok(cluster)
    }

    /// The lab's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The lab directory (data, logs, pidfiles, state.json).
    pub fn lab_dir(&self) -> &Path {
        &self.cfg.lab_dir
    }

    /// The resolved settings (ports are final after `start`). `nodes` is the count the lab
    /// started with; [`node_names`](Self::node_names) follows `add_node` and `remove_node`.
    pub fn config(&self) -> &LabConfig {
        &self.cfg
    }

    /// Node names: `node-a`, `node-b`, … (including nodes added since the start).
    pub fn node_names(&self) -> Vec<String> {
        (0..self.node_count.load(Ordering::Relaxed))
            .map(crate::vocab::nodes::node_name)
            .collect()
    }

    /// Turns the printed log lines on or off (load tests turn them off; records are kept).
    pub fn set_echo(&self, on: bool) {
        self.echo.store(on, Ordering::Relaxed);
    }

    /// Runs `f` with log lines off (probe loops would print one per attempt).
    pub(crate) fn quietly<T>(&self, f: impl FnOnce() -> T) -> T {
        let was = self.echo.swap(false, Ordering::Relaxed);
        let out = f();
        self.echo.store(was, Ordering::Relaxed);
        out
    }

    pub(crate) fn say(&self, line: &str) {
        if self.echo.load(Ordering::Relaxed) {
            println!("{line}");
        }
    }

    /// Stops every node (concurrently) and any storage the lab started. A bank run going on in
    /// another thread is told to finish first (it reports itself as interrupted).
    pub fn stop_all(&self) -> Result<(), LabError> {
        self.cancel.store(true, Ordering::Relaxed);
        let lines = self.actor.call(|reply| Command::StopAll { reply })??;
        lines.iter().for_each(|l| self.say(l));
        Ok(())
    }

    /// Stops everything and deletes the lab directory (data, logs, pidfiles, state.json).
    pub fn cleanup(mut self) -> Result<(), LabError> {
        self.cancel.store(true, Ordering::Relaxed);
        let result = self.actor.call(|reply| Command::Cleanup { reply })?;
        self.finish(false);
        if result.is_ok() {
            self.say(&format!(
                "[{}] cleaned up: all nodes stopped, {} deleted",
                self.cfg.name,
                self.cfg.lab_dir.display()
            ));
        }
        result
    }

    /// Lets go of the lab, leaving its processes running (for `lab up`); `state.json` and the
    /// pidfiles describe them for a later [`Cluster::attach`].
    pub fn detach(mut self) {
        if self.cfg.fault_links {
            // The link proxies live in this process: the nodes' storage addresses point at them.
            eprintln!(
                "poc_helpers: lab `{}` runs with .fault_links(true); its proxies end with this process, \
                 and the nodes then lose their storage. Start it without fault links to detach it.",
                self.cfg.name
            );
        }
        self.finish(false);
    }

    /// Ends the actor once: with `stop_nodes`, nodes are stopped first.
    fn finish(&mut self, stop_nodes: bool) {
        if self.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        let replied =
            self.actor
                .call_timeout(shutdown_wait(&self.cfg), |reply| Command::Shutdown {
                    stop_nodes,
                    reply,
                });
        // Join only when the actor answered: a hung actor must not hang the notebook or CLI.
        if replied.is_ok() {
            self.actor.join();
        }
    }
}

impl Drop for Cluster {
    /// Stops the nodes this handle started (not those of an attached lab) and ends the actor.
    fn drop(&mut self) {
        let stop = self.stop_on_drop.load(Ordering::SeqCst);
        self.finish(stop);
    }
}
