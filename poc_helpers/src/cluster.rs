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
//! `runtime` for why). Methods print their log line (`[node-b :8001] SELECT … → 3 rows, 1.2 ms`)
//! unless `set_echo(false)`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use polars::prelude::DataFrame;

use crate::binary;
use crate::client::QueryResult;
use crate::error::LabError;
use crate::faults::FaultRecord;
use crate::lab::{Lab, LabConfig, StateFile};
use crate::links::{Link, LinkFault, LinkStatus};
use crate::metrics::{self, Instance};
use crate::oplog::OpRecord;
use crate::ports;
use crate::runtime::{Actor, Command, NodeAction, NodeRef};
use crate::storage::StorageMode;
#[cfg(doc)]
use crate::workload::SWEEP_LEVELS;
use crate::workload::{SweepReport, WorkloadReport, WorkloadSpec};

/// The spec's two nodes.
pub const DEFAULT_NODES: usize = 2;
/// At most 9 nodes, named node-a … node-i: more would not fit a 2-core laptop anyway.
pub const MAX_NODES: usize = 9;
/// Spec PR-001: each instance must start in under 30 s.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace period between SIGTERM and SIGKILL. SurrealDB on TiKV can need 20–30 s to exit when
/// its storage is gone; 10 s keeps demos snappy and still lets a healthy node flush and exit.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit for one query or connection attempt: long enough for real work on a small machine,
/// short enough that a paused node does not freeze a notebook for long.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(15);
/// Env var for the base port (a number, or `ephemeral`).
pub const ENV_BASE_PORT: &str = "LAB_BASE_PORT";
/// Env var for the lab root directory.
pub const ENV_LAB_DIR: &str = "LAB_DIR";

/// The default lab root, `<workspace>/target/lab` (or `$LAB_DIR`). `target/` is git-ignored, so
/// data, logs and pidfiles never end up in a commit.
pub fn default_lab_root() -> PathBuf {
    match std::env::var_os(ENV_LAB_DIR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => binary::workspace_root().join("target").join("lab"),
    }
}

/// Configures and starts a lab. Every setting has a default matching the spec (2 nodes on 8000
/// and 8001, root/root, namespace `lab`, database `main`).
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    nodes: usize,
    base_port: Option<u16>,
    ephemeral: bool,
    bind: String,
    user: String,
    pass: String,
    namespace: String,
    database: String,
    create_namespace: bool,
    apply_schema: bool,
    name: String,
    lab_root: Option<PathBuf>,
    storage: StorageMode,
    surreal_bin: Option<PathBuf>,
    start_timeout: Duration,
    stop_timeout: Duration,
    query_timeout: Duration,
    storage_port: u16,
    storage_trace: bool,
    fault_links: bool,
    membership_intervals: Option<crate::membership::MembershipIntervals>,
    live_query_engine: Option<crate::live::LiveQueryEngine>,
    echo: bool,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            nodes: DEFAULT_NODES,
            base_port: None,
            ephemeral: false,
            bind: "127.0.0.1".into(),
            user: "root".into(),
            pass: "root".into(),
            namespace: "lab".into(),
            database: "main".into(),
            create_namespace: true,
            apply_schema: true,
            name: "lab".into(),
            lab_root: None,
            storage: StorageMode::default(),
            surreal_bin: None,
            start_timeout: DEFAULT_START_TIMEOUT,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            storage_port: 0,
            storage_trace: false,
            fault_links: false,
            membership_intervals: None,
            live_query_engine: None,
            echo: true,
        }
    }
}

impl ClusterBuilder {
    /// Number of nodes, 1–9 (default 2).
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }
    /// Port of the embedded storage node in shared mode (default 2379, PD's usual port; a free
    /// one with ephemeral ports).
    pub fn storage_port(mut self, port: u16) -> Self {
        self.storage_port = port;
        self
    }
    /// Record every PD/TiKV request the nodes send to the embedded storage node (one JSON line
    /// each), for [`Cluster::sql_traced`] and [`Cluster::storage_trace_since`]. Off by default: it costs a write per request.
    pub fn storage_trace(mut self, on: bool) -> Self {
        self.storage_trace = on;
        self
    }
    /// Port of node-a; node-b gets the next one, and so on (default 8000, or `$LAB_BASE_PORT`).
    pub fn base_port(mut self, port: u16) -> Self {
        self.base_port = Some(port);
        self.ephemeral = false;
        self
    }
    /// Pick a free block of ports at start (also chosen by `LAB_BASE_PORT=ephemeral`), so tests
    /// and headless runs never collide with a lab on 8000/8001.
    pub fn ephemeral_ports(mut self) -> Self {
        self.ephemeral = true;
        self
    }
    /// Bind address; only `127.0.0.1`/`localhost` are accepted (checked at `start`).
    pub fn bind(mut self, addr: &str) -> Self {
        self.bind = addr.to_string();
        self
    }
    /// Root credentials (default root/root).
    pub fn credentials(mut self, user: &str, pass: &str) -> Self {
        self.user = user.to_string();
        self.pass = pass.to_string();
        self
    }
    /// Namespace the clients use (default `lab`).
    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = ns.to_string();
        self
    }
    /// Database the clients use (default `main`).
    pub fn database(mut self, db: &str) -> Self {
        self.database = db.to_string();
        self
    }
    /// Create namespace and database when missing (default true).
    pub fn create_namespace(mut self, yes: bool) -> Self {
        self.create_namespace = yes;
        self
    }
    /// Apply `schema/entities.surql` (User, Post) at start (default true).
    pub fn schema(mut self, yes: bool) -> Self {
        self.apply_schema = yes;
        self
    }
    /// Lab name: the lab directory is `<lab root>/<name>` (default `lab`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }
    /// Lab root directory (default `<workspace>/target/lab`, or `$LAB_DIR`).
    pub fn lab_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.lab_root = Some(dir.into());
        self
    }
    /// Storage mode (default `StorageMode::Shared`: all nodes over the embedded storage node).
    pub fn storage(mut self, mode: StorageMode) -> Self {
        self.storage = mode;
        self
    }
    /// Use this `surreal` binary instead of searching (like `SURREAL_BIN`, but per lab).
    pub fn surreal_bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.surreal_bin = Some(path.into());
        self
    }
    /// Limit for each node to become ready (default 30 s).
    pub fn start_timeout(mut self, t: Duration) -> Self {
        self.start_timeout = t;
        self
    }
    /// Grace period between SIGTERM and SIGKILL (default 10 s).
    pub fn stop_timeout(mut self, t: Duration) -> Self {
        self.stop_timeout = t;
        self
    }
    /// Limit for each query (default 15 s).
    pub fn query_timeout(mut self, t: Duration) -> Self {
        self.query_timeout = t;
        self
    }
    /// Put a fault proxy on every client→node and node→storage link, so
    /// [`Cluster::cut_link`] & co. can break them (default off: see `links`).
    pub fn fault_links(mut self, on: bool) -> Self {
        self.fault_links = on;
        self
    }
    /// Shorten the nodes' membership intervals (heartbeat, expiry check, cleanup), so a dead
    /// node is archived within seconds of the 30 s heartbeat expiry instead of minutes later.
    /// [`MembershipIntervals::fast`](crate::membership::MembershipIntervals::fast) suits demos.
    pub fn membership_intervals(mut self, m: crate::membership::MembershipIntervals) -> Self {
        self.membership_intervals = Some(m);
        self
    }
    /// Choose SurrealDB's live-query engine for every node (see `live`): `Router` is the
    /// experimental one that delivers a change written on node B to a LIVE SELECT on node A.
    pub fn live_query_engine(mut self, engine: crate::live::LiveQueryEngine) -> Self {
        self.live_query_engine = Some(engine);
        self
    }
    /// Print log lines (default true).
    pub fn echo(mut self, on: bool) -> Self {
        self.echo = on;
        self
    }

    /// Checks every setting and resolves defaults into a [`LabConfig`]; no side effects.
    pub fn config(&self) -> Result<LabConfig, LabError> {
        if !(1..=MAX_NODES).contains(&self.nodes) {
            return Err(LabError::config(
                "nodes",
                format!(
                    "{} nodes requested; the lab runs 1 to {MAX_NODES} (node-a … node-i)",
                    self.nodes
                ),
                format!("use .nodes(n) with n between 1 and {MAX_NODES}"),
            ));
        }
        ports::validate_bind(&self.bind)?;
        for (setting, value) in [
            ("name", &self.name),
            ("namespace", &self.namespace),
            ("database", &self.database),
        ] {
            check_word(setting, value)?;
        }
        if self.user.is_empty() || self.pass.is_empty() {
            return Err(LabError::config(
                "credentials",
                "user and password must not be empty",
                "use .credentials(\"root\", \"root\")",
            ));
        }
        self.storage.validate()?;
        let (base_port, ephemeral) = match (self.base_port, self.ephemeral) {
            (_, true) => (ports::DEFAULT_BASE_PORT, true),
            (Some(p), false) => (p, false),
            (None, false) => match std::env::var(ENV_BASE_PORT)
                .ok()
                .filter(|v| !v.trim().is_empty())
            {
                Some(v) if v.trim().eq_ignore_ascii_case("ephemeral") => {
                    (ports::DEFAULT_BASE_PORT, true)
                }
                Some(v) => {
                    let p = v.trim().parse::<u16>().map_err(|_| {
                        LabError::config(
                            "base_port",
                            format!(
                                "{ENV_BASE_PORT}=`{v}` is neither a port number nor `ephemeral`"
                            ),
                            format!("set {ENV_BASE_PORT} to e.g. 8000 or `ephemeral`, or unset it"),
                        )
                    })?;
                    (p, false)
                }
                None => (ports::DEFAULT_BASE_PORT, false),
            },
        };
        if !ephemeral {
            ports::validate_base_port(base_port, self.nodes)?;
        }
        let root = self.lab_root.clone().unwrap_or_else(default_lab_root);
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()
                .map(|d| d.join(&root))
                .unwrap_or(root)
        };
        Ok(LabConfig {
            name: self.name.clone(),
            lab_dir: root.join(&self.name),
            nodes: self.nodes,
            base_port,
            ephemeral_ports: ephemeral,
            user: self.user.clone(),
            pass: self.pass.clone(),
            namespace: self.namespace.clone(),
            database: self.database.clone(),
            create_namespace: self.create_namespace,
            apply_schema: self.apply_schema,
            storage: self.storage.clone(),
            surreal_bin: self.surreal_bin.clone(),
            start_timeout: self.start_timeout,
            stop_timeout: self.stop_timeout,
            query_timeout: self.query_timeout,
            storage_port: self.storage_port,
            storage_trace: self.storage_trace,
            fault_links: self.fault_links,
            membership_intervals: self.membership_intervals,
            live_query_engine: self.live_query_engine,
        })
    }

    /// Starts the lab and returns its handle. On any error nothing is left running.
    pub fn start(self) -> Result<Cluster, LabError> {
        let cfg = self.config()?;
        let lab = Lab::new(cfg.clone());
        let cancel = lab.cancel_flag();
        let mut actor = Actor::spawn(lab)?;
        match actor.call(|reply| Command::Start { reply }) {
            Ok(Ok((lines, final_cfg))) => {
                if self.echo {
                    lines.iter().for_each(|l| println!("{l}"));
                }
                let mut cluster = Cluster::new(actor, final_cfg, self.echo, true);
                cluster.cancel = cancel;
                cluster.start_lines = lines;
                Ok(cluster)
            }
            Ok(Err(e)) | Err(e) => {
                let _ = actor.call_timeout(shutdown_wait(&cfg), |reply| Command::Shutdown {
                    stop_nodes: true,
                    reply,
                });
                actor.join();
                Err(e)
            }
        }
    }
}

/// Lab, namespace and database names are plain words, so they are safe in paths and SurrealQL.
fn check_word(setting: &str, value: &str) -> Result<(), LabError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || (c == '-' && setting == "name"));
    if ok {
        Ok(())
    } else {
        Err(LabError::config(
            setting,
            format!("`{value}` is not a plain name"),
            "use letters, digits and `_` (and `-` in lab names), at most 64 characters",
        ))
    }
}

/// How long `Drop`/`start` wait for the actor to stop all nodes before giving up on it.
fn shutdown_wait(cfg: &LabConfig) -> Duration {
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
        let dir = if as_path.join(crate::lab::STATE_FILE).is_file() || name_or_dir.contains('/') {
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

    /// The resolved settings (ports are final after `start`).
    pub fn config(&self) -> &LabConfig {
        &self.cfg
    }

    /// Node names: `node-a`, `node-b`, …
    pub fn node_names(&self) -> Vec<String> {
        (0..self.cfg.nodes).map(crate::node::node_name).collect()
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

    /// Every node's status as structs (the spec's Instance entity).
    pub fn instances(&self) -> Result<Vec<Instance>, LabError> {
        self.actor.call(|reply| Command::Instances { reply })?
    }

    /// Status table: node, port, pid, state, version, rss_mb, uptime_s, storage, ready_ms.
    /// `.show()` (from the prelude) renders it as HTML in a notebook.
    pub fn status(&self) -> Result<DataFrame, LabError> {
        let rows = self.instances()?;
        metrics::instances_frame(&rows).map_err(polars_error)
    }

    /// Runs SurrealQL on one node: `cluster.sql("b", "SELECT * FROM user")`, or by index
    /// `cluster.sql(1, …)`. Prints and records one log line. A statement error is `Err`.
    pub fn sql(&self, node: impl Into<NodeRef>, query: &str) -> Result<QueryResult, LabError> {
        self.sql_inner(node.into(), query, None)
    }

    /// Like [`Cluster::sql`] with bound parameters: `$name` in the query takes `vars["name"]`.
    /// `vars` must be a JSON object, e.g. `serde_json::json!({"name": "Ada"})`.
    pub fn sql_bind(
        &self,
        node: impl Into<NodeRef>,
        query: &str,
        vars: serde_json::Value,
    ) -> Result<QueryResult, LabError> {
        self.sql_inner(node.into(), query, Some(vars))
    }

    fn sql_inner(
        &self,
        node: NodeRef,
        query: &str,
        vars: Option<serde_json::Value>,
    ) -> Result<QueryResult, LabError> {
        let (line, result) = self.actor.call(|reply| Command::Sql {
            node,
            query: query.to_string(),
            vars,
            reply,
        })?;
        if let Some(line) = line {
            self.say(&line);
        }
        result
    }

    /// HTTP GET on a node: `cluster.http("a", "/health")` → `(200, "")`.
    pub fn http(&self, node: impl Into<NodeRef>, path: &str) -> Result<(u16, String), LabError> {
        let node = node.into();
        self.actor.call(|reply| Command::Http {
            node,
            path: path.to_string(),
            reply,
        })?
    }

    /// WebSocket and HTTP URLs of a node.
    pub fn endpoint(&self, node: impl Into<NodeRef>) -> Result<Endpoint, LabError> {
        let node = node.into();
        let all = self.instances()?;
        let i = match &node {
            NodeRef::Index(i) => all.get(*i).map(|_| *i),
            NodeRef::Name(n) => {
                let t = n.trim().to_ascii_lowercase();
                let t = t.strip_prefix("node-").unwrap_or(&t).to_string();
                all.iter()
                    .position(|x| x.node == format!("node-{t}"))
                    .or_else(|| t.parse().ok().filter(|i| *i < all.len()))
            }
        };
        let inst = i.map(|i| &all[i]).ok_or_else(|| LabError::UnknownNode {
            given: format!("{node:?}"),
            known: self.node_names().join(", "),
        })?;
        Ok(Endpoint {
            node: inst.node.clone(),
            ws: inst.ws_url.clone(),
            http: inst.http_url.clone(),
        })
    }

    /// The operation log as records.
    pub fn op_log(&self) -> Result<Vec<OpRecord>, LabError> {
        self.actor.call(|reply| Command::OpLog { reply })
    }

    /// Timings table, one row per operation: node, port, kind, statement, started_at_ms (ms since
    /// the lab started), ms, server_ms, rows, ok, error.
    pub fn timings(&self) -> Result<DataFrame, LabError> {
        let ops = self.op_log()?;
        metrics::timings_frame(&ops).map_err(polars_error)
    }

    /// Empties the operation log.
    pub fn clear_timings(&self) -> Result<(), LabError> {
        self.actor.call(|reply| Command::ClearOpLog { reply })
    }

    fn node_action(&self, node: NodeRef, action: NodeAction) -> Result<(), LabError> {
        let line = self.actor.call(|reply| Command::Node {
            node,
            action,
            reply,
        })??;
        self.say(&line);
        Ok(())
    }

    /// Graceful stop: SIGTERM, then SIGKILL after the stop timeout.
    pub fn stop_node(&self, node: impl Into<NodeRef>) -> Result<(), LabError> {
        self.node_action(node.into(), NodeAction::Stop)
    }

    /// SIGKILL, like a crash.
    pub fn kill_node(&self, node: impl Into<NodeRef>) -> Result<(), LabError> {
        self.node_action(node.into(), NodeAction::Kill)
    }

    /// Start the node again (same port, same data directory), wait until ready, reconnect.
    pub fn restart_node(&self, node: impl Into<NodeRef>) -> Result<(), LabError> {
        self.node_action(node.into(), NodeAction::Restart)
    }

    /// SIGSTOP: the node keeps its process and sockets but answers nothing (a hung machine).
    pub fn pause_node(&self, node: impl Into<NodeRef>) -> Result<(), LabError> {
        self.node_action(node.into(), NodeAction::Pause)
    }

    /// SIGCONT: a paused node carries on where it stopped.
    pub fn resume_node(&self, node: impl Into<NodeRef>) -> Result<(), LabError> {
        self.node_action(node.into(), NodeAction::Resume)
    }

    /// Runs the queries at the same moment, each on its node (e.g. the same transaction from
    /// node-a and node-b), and returns each outcome in order. One of two transactions that
    /// write the same record gets SurrealDB's retryable conflict
    /// ([`LabError::is_transaction_conflict`]).
    pub fn race<N: Into<NodeRef>>(
        &self,
        queries: Vec<(N, &str)>,
    ) -> Result<Vec<Result<QueryResult, LabError>>, LabError> {
        let queries = queries
            .into_iter()
            .map(|(n, q)| (n.into(), q.to_string()))
            .collect();
        let outcomes = self.actor.call(|reply| Command::Race { queries, reply })?;
        Ok(outcomes
            .into_iter()
            .map(|(line, result)| {
                if let Some(line) = line {
                    self.say(&line);
                }
                result
            })
            .collect())
    }

    /// Runs a load workload and returns what it measured (see [`crate::workload`]):
    ///
    /// ```no_run
    /// # use poc_helpers::prelude::*;
    /// # let cluster = Cluster::builder().start().unwrap();
    /// let report = cluster
    ///     .run_workload(WorkloadSpec::read_after_write().concurrency(100))
    ///     .unwrap();
    /// report.summary().show();
    /// ```
    ///
    /// The run blocks this thread for `warmup + duration` (plus a one-time set-up: opening the
    /// session pools and inserting the records). Prints the report's headline unless
    /// `set_echo(false)`. Individual operations are not added to the operation log.
    pub fn run_workload(&self, spec: WorkloadSpec) -> Result<WorkloadReport, LabError> {
        let report = self
            .actor
            .call(|reply| Command::Workload { spec, reply })??;
        self.say(&format!("[load] {}", report.headline()));
        Ok(report)
    }

    /// The same workload at each concurrency level in turn (e.g. [`SWEEP_LEVELS`]: 1 → 200
    /// clients), for percentile and throughput charts against concurrency.
    pub fn run_sweep(&self, spec: WorkloadSpec, levels: &[usize]) -> Result<SweepReport, LabError> {
        let mut runs = Vec::with_capacity(levels.len());
        for (k, level) in levels.iter().enumerate() {
            // The records only need preparing once.
            let spec = spec
                .clone()
                .concurrency(*level)
                .prepare(spec.prepare && k == 0);
            runs.push(self.run_workload(spec)?);
        }
        Ok(SweepReport { runs })
    }

    /// `(name, pid)` of every running lab process: `node-a`, …, then `storage` (shared mode).
    pub fn processes(&self) -> Result<Vec<(String, u32)>, LabError> {
        self.actor.call(|reply| Command::Processes { reply })
    }

    /// Samples the RSS and CPU of every lab process every `every` for `duration` (blocking),
    /// e.g. while the lab idles: t_ms, process, pid, rss_mb, cpu_pct. Workload reports carry the
    /// same table for their run ([`WorkloadReport::resources`]).
    pub fn sample_resources(
        &self,
        duration: Duration,
        every: Duration,
    ) -> Result<DataFrame, LabError> {
        let rows = crate::sampler::sample_for(self.processes()?, duration, every);
        crate::sampler::resources_frame(&rows).map_err(polars_error)
    }

    /// A mark in the storage trace (needs `.storage_trace(true)`); pass it to
    /// [`storage_trace_since`](Self::storage_trace_since).
    pub fn storage_trace_mark(&self) -> Result<u64, LabError> {
        self.actor.call(|reply| Command::TraceMark { reply })?
    }

    /// Every storage RPC since `mark` (node, rpc, start_ts, keys, …) as a table.
    pub fn storage_trace_since(&self, mark: u64) -> Result<DataFrame, LabError> {
        let rows = self
            .actor
            .call(|reply| Command::TraceSince { mark, reply })??;
        crate::trace::frame(&rows).map_err(polars_error)
    }

    /// Runs `query` on `node` and returns what it did in the storage tier: every PD/TiKV
    /// request it caused, with the keys touched. Needs `.storage_trace(true)`.
    pub fn sql_traced(
        &self,
        node: impl Into<NodeRef>,
        query: &str,
    ) -> Result<(QueryResult, DataFrame), LabError> {
        let mark = self.storage_trace_mark()?;
        let result = self.sql(node, query)?;
        Ok((result, self.storage_trace_since(mark)?))
    }

    fn storage_action(&self, action: NodeAction) -> Result<(), LabError> {
        let line = self
            .actor
            .call(|reply| Command::Storage { action, reply })??;
        self.say(&line);
        Ok(())
    }

    /// Graceful stop of the embedded storage node (shared mode). The query nodes stay up and
    /// keep retrying; queries fail until storage is back.
    pub fn stop_storage(&self) -> Result<(), LabError> {
        self.storage_action(NodeAction::Stop)
    }

    /// SIGKILL the embedded storage node: a crash of the whole storage tier.
    pub fn kill_storage(&self) -> Result<(), LabError> {
        self.storage_action(NodeAction::Kill)
    }

    /// Start the embedded storage node again on the same port and data; the query nodes
    /// reconnect by themselves.
    pub fn restart_storage(&self) -> Result<(), LabError> {
        self.storage_action(NodeAction::Restart)
    }

    /// SIGSTOP the embedded storage node (a hung storage tier).
    pub fn pause_storage(&self) -> Result<(), LabError> {
        self.storage_action(NodeAction::Pause)
    }

    /// SIGCONT the embedded storage node.
    pub fn resume_storage(&self) -> Result<(), LabError> {
        self.storage_action(NodeAction::Resume)
    }

    // ----- network faults (needs `.fault_links(true)`) ----------------------------------------

    fn link_fault(&self, link: Link, fault: LinkFault) -> Result<(), LabError> {
        let line = self
            .actor
            .call(|reply| Command::LinkFault { link, fault, reply })??;
        self.say(&line);
        Ok(())
    }

    /// Cuts a link: its open connections are reset and new ones refused until
    /// [`heal_link`](Self::heal_link). `cluster.cut_link(Link::to_storage("a"))` partitions
    /// node-a from the data while it keeps running.
    pub fn cut_link(&self, link: Link) -> Result<(), LabError> {
        self.link_fault(link, LinkFault::Cut)
    }

    /// Heals a link: no cut, no latency, no dropped connections.
    pub fn heal_link(&self, link: Link) -> Result<(), LabError> {
        self.link_fault(link, LinkFault::Heal)
    }

    /// Delays every chunk on the link by `latency ± jitter`, each way (zero removes it).
    pub fn add_latency(
        &self,
        link: Link,
        latency: Duration,
        jitter: Duration,
    ) -> Result<(), LabError> {
        self.link_fault(link, LinkFault::Latency { latency, jitter })
    }

    /// Resets `fraction` (0.0–1.0) of the link's *new* connections on accept.
    pub fn drop_connections(&self, link: Link, fraction: f64) -> Result<(), LabError> {
        self.link_fault(link, LinkFault::Drop { fraction })
    }

    /// Every link proxy as structs (settings and counters).
    pub fn link_statuses(&self) -> Result<Vec<LinkStatus>, LabError> {
        self.actor.call(|reply| Command::Links { reply })
    }

    /// Every link: link, proxy_port, upstream_port, cut, latency_ms, jitter_ms, drop_fraction,
    /// and counters (accepted, refused, dropped, reset, upstream_failed, kb_up, kb_down).
    pub fn links(&self) -> Result<DataFrame, LabError> {
        crate::links::links_frame(&self.link_statuses()?).map_err(polars_error)
    }

    /// Every fault call so far, as records (see `faults`).
    pub fn fault_records(&self) -> Result<Vec<FaultRecord>, LabError> {
        self.actor.call(|reply| Command::Faults { reply })
    }

    /// The fault log: target, action, started_at_ms, ended_at_ms, call_ms, ok, detail — on the
    /// clock of [`timings`](Self::timings), so charts can shade each fault's window.
    pub fn faults(&self) -> Result<DataFrame, LabError> {
        crate::faults::faults_frame(&self.fault_records()?).map_err(polars_error)
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

fn polars_error(e: polars::prelude::PolarsError) -> LabError {
    LabError::ActorGone {
        reason: format!("building a DataFrame failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec() {
        let cfg = Cluster::builder()
            .base_port(8000)
            .lab_root("labs-root")
            .config()
            .unwrap();
        assert_eq!(cfg.nodes, 2);
        assert_eq!(cfg.base_port, 8000);
        assert_eq!((cfg.user.as_str(), cfg.pass.as_str()), ("root", "root"));
        assert_eq!(
            (cfg.namespace.as_str(), cfg.database.as_str()),
            ("lab", "main")
        );
        // A relative root is made absolute, so later `cd`s (a kernel's) cannot move the lab.
        assert!(cfg.lab_dir.is_absolute(), "{:?}", cfg.lab_dir);
        assert!(cfg.lab_dir.ends_with("labs-root/lab"), "{:?}", cfg.lab_dir);
        assert_eq!(cfg.storage, StorageMode::default());
    }

    #[test]
    fn bad_settings_are_refused_with_a_fix() {
        let e = Cluster::builder()
            .nodes(0)
            .config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("between 1 and 9"), "{e}");
        let e = Cluster::builder()
            .nodes(100)
            .config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("between 1 and 9"), "{e}");
        let e = Cluster::builder()
            .base_port(80)
            .config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("below 1024"), "{e}");
        let e = Cluster::builder()
            .base_port(65535)
            .nodes(2)
            .config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("65536"), "{e}");
        let e = Cluster::builder()
            .bind("0.0.0.0")
            .config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("loopback"), "{e}");
        let e = Cluster::builder()
            .namespace("a b")
            .config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("plain name"), "{e}");
        let e = Cluster::builder()
            .name("../x")
            .config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("plain name"), "{e}");
    }

    #[test]
    fn a_cluster_can_be_shared_between_threads() {
        // Load generators and tests hand one `Cluster` to several threads.
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Cluster>();
    }

    #[test]
    fn ephemeral_ports_skip_base_port_validation() {
        let cfg = Cluster::builder().ephemeral_ports().config().unwrap();
        assert!(cfg.ephemeral_ports);
    }
}
