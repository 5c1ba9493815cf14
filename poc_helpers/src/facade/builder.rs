//! `ClusterBuilder`: every setting of a lab with the spec's defaults, checked before anything
//! starts, and `start()`, which hands the resolved `LabConfig` to a new actor.

use std::path::PathBuf;
use std::time::Duration;

use super::{Cluster, shutdown_wait};
use crate::actor::command::Command;
use crate::actor::lab::Lab;
use crate::actor::thread::Actor;
use crate::infra::binary;
use crate::vocab::config::{
    self, LabConfig, LiveQueryEngine, MembershipIntervals, StorageMode, check_store_count,
    validate_base_port, validate_bind,
};
use crate::vocab::error::LabError;

/// The spec's two nodes.
pub const DEFAULT_NODES: usize = 2;
/// At most 9 nodes, named node-a … node-i: more would not fit a 2-core laptop anyway.
pub const MAX_NODES: usize = crate::vocab::nodes::MAX_NODES;
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
    stores: usize,
    fault_links: bool,
    membership_intervals: Option<MembershipIntervals>,
    live_query_engine: Option<LiveQueryEngine>,
    durable_sessions: bool,
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
            stores: 1,
            fault_links: false,
            membership_intervals: None,
            live_query_engine: None,
            durable_sessions: false,
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
    /// Stores of the embedded storage tier (shared mode): 1 (default) runs PD and one store in
    /// one process; 3 runs PD plus three stores that replicate every region with Raft, as TiKV
    /// does — kill one store and writes pause for an election instead of failing
    /// ([`Cluster::kill_store`]).
    pub fn stores(mut self, n: usize) -> Self {
        self.stores = n;
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
    /// [`MembershipIntervals::fast`](MembershipIntervals::fast) suits demos.
    pub fn membership_intervals(mut self, m: MembershipIntervals) -> Self {
        self.membership_intervals = Some(m);
        self
    }
    /// Choose SurrealDB's live-query engine for every node (see `live`): `Router` is the
    /// experimental one that delivers a change written on node B to a LIVE SELECT on node A.
    pub fn live_query_engine(mut self, engine: LiveQueryEngine) -> Self {
        self.live_query_engine = Some(engine);
        self
    }
    /// Start every node with `--durable-sessions` (SurrealDB 3.3.5): HTTP RPC sessions are kept
    /// in the shared storage, so a session attached on node-a continues on node-b, and survives
    /// a restart. Needs shared storage (checked at start). Default off, as in `surreal start`.
    pub fn durable_sessions(mut self, on: bool) -> Self {
        self.durable_sessions = on;
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
        validate_bind(&self.bind)?;
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
        check_store_count(self.stores)?;
        if self.stores > 1 && self.storage != StorageMode::Shared {
            return Err(LabError::config(
                "stores",
                format!(
                    "{} stores asked with storage {}: only the lab's own tier has stores to choose",
                    self.stores,
                    self.storage.label()
                ),
                "use .storage(StorageMode::Shared) (the default) with .stores(3), or drop .stores(..)",
            ));
        }
        if let Some(m) = &self.membership_intervals {
            m.validate()?;
        }
        if self.durable_sessions && !self.storage.is_shared() {
            return Err(LabError::config(
                "durable_sessions",
                format!(
                    "durable sessions asked with storage {}: each isolated node has its own \
                     store, so a session kept there cannot be resumed on another node",
                    self.storage.label()
                ),
                "use .storage(StorageMode::Shared) (the default) with .durable_sessions(true)",
            ));
        }
        let env = std::env::var(ENV_BASE_PORT).ok();
        let (base_port, ephemeral) = resolve_base_port(self.base_port, self.ephemeral, env)?;
        if !ephemeral {
            validate_base_port(base_port, self.nodes)?;
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
            stores: self.stores,
            fault_links: self.fault_links,
            membership_intervals: self.membership_intervals,
            live_query_engine: self.live_query_engine,
            durable_sessions: self.durable_sessions,
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

/// Node-a's port and whether ports are ephemeral: an explicit `.base_port()` or
/// `.ephemeral_ports()` wins, then `$LAB_BASE_PORT` (`env`, a number or `ephemeral`), then the
/// spec's 8000. A function of its inputs, so the default is tested without touching the
/// process environment (the test run itself sets `LAB_BASE_PORT=ephemeral`).
fn resolve_base_port(
    explicit: Option<u16>,
    ephemeral: bool,
    env: Option<String>,
) -> Result<(u16, bool), LabError> {
    Ok(match (explicit, ephemeral) {
        (_, true) => (config::DEFAULT_BASE_PORT, true),
        (Some(p), false) => (p, false),
        (None, false) => match env.filter(|v| !v.trim().is_empty()) {
            Some(v) if v.trim().eq_ignore_ascii_case("ephemeral") => {
                (config::DEFAULT_BASE_PORT, true)
            }
            Some(v) => {
                let p = v.trim().parse::<u16>().map_err(|_| {
                    LabError::config(
                        "base_port",
                        format!("{ENV_BASE_PORT}=`{v}` is neither a port number nor `ephemeral`"),
                        format!("set {ENV_BASE_PORT} to e.g. 8000 or `ephemeral`, or unset it"),
                    )
                })?;
                (p, false)
            }
            None => (config::DEFAULT_BASE_PORT, false),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_settings_node_a_is_on_8000_and_the_environment_can_move_it() {
        assert_eq!(resolve_base_port(None, false, None).unwrap(), (8000, false));
        assert_eq!(
            resolve_base_port(None, false, Some(" ".into())).unwrap(),
            (8000, false)
        );
        assert_eq!(
            resolve_base_port(None, false, Some("9100".into())).unwrap(),
            (9100, false)
        );
        assert!(
            resolve_base_port(None, false, Some("ephemeral".into()))
                .unwrap()
                .1
        );
        assert_eq!(
            resolve_base_port(Some(7000), false, Some("9100".into())).unwrap(),
            (7000, false)
        );
        let e = resolve_base_port(None, false, Some("eighty".into())).unwrap_err();
        assert!(e.to_string().contains("ephemeral"), "{e}");
    }

    #[test]
    fn node_flags_refuse_bad_input_naming_the_fix() {
        let e = Cluster::builder()
            .storage(StorageMode::Isolated(crate::vocab::config::Engine::Memory))
            .durable_sessions(true)
            .config()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("durable_sessions") && e.contains("Fix: use .storage(StorageMode::Shared)"),
            "{e}"
        );
        let bad = MembershipIntervals {
            refresh: Duration::from_millis(5),
            check: Duration::from_secs(1),
            cleanup: Duration::from_secs(1),
        };
        let e = Cluster::builder()
            .membership_intervals(bad)
            .config()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("refresh interval is 5 ms") && e.contains("Fix:"),
            "{e}"
        );
        let ok = Cluster::builder()
            .base_port(8000)
            .durable_sessions(true)
            .config()
            .unwrap();
        assert!(ok.durable_sessions);
    }

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
