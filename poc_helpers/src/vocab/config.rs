//! A lab's settings as plain data: [`LabConfig`] (every setting, fully resolved; saved in
//! `state.json`), the storage choice ([`StorageMode`], the lesson of the whole lab in one enum),
//! the node tuning choices ([`MembershipIntervals`], [`LiveQueryEngine`]) and the checks that
//! need no network: loopback-only addresses and a sane port plan.
//!
//! Where a storage mode puts the data (`surreal start … <path>`):
//!
//! | mode                      | `surreal start … <path>`         | do nodes see each other's data? |
//! |---------------------------|----------------------------------|---------------------------------|
//! | `Isolated(Memory)`        | `memory`                         | no: each node its own store     |
//! | `Isolated(SurrealKv)`     | `surrealkv://<node data dir>`    | no, but survives restarts       |
//! | `Shared`                  | `tikv://<embedded storage node>` | yes (the lab's own PD+TiKV)     |
//! | `ExternalTikv{..}`        | `tikv://<first PD endpoint>`     | yes (a real TiKV you run)       |
//! | `TiupPlayground`          | `tikv://<playground PD>`         | yes (real TiKV via tiup)        |
//!
//! The shared modes all go through the same TiKV client inside `surreal`, so the lab's embedded
//! storage node and a real TiKV cluster are interchangeable from the nodes' point of view. The
//! running thing behind a mode is `infra::storage::StorageTier`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::vocab::error::LabError;

/// The most stores a lab runs: enough for a majority of 3 to survive two failures in turn,
/// few enough for a laptop.
pub const MAX_STORES: usize = 5;

/// Refuses a store count the lab cannot run, naming the counts it can.
pub fn check_store_count(stores: usize) -> Result<(), LabError> {
    if (1..=MAX_STORES).contains(&stores) {
        return Ok(());
    }
    Err(LabError::InvalidConfig {
        setting: "stores".into(),
        reason: format!("{stores} stores"),
        fix: format!(
            "use 1 (PD and one store in one process) or 3 (every region on three stores, as TiKV \
             runs); the lab runs 1 to {MAX_STORES}"
        ),
    })
}

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
    /// Stores of the embedded tier: 1 = PD and one store in one process; 3 = PD plus three
    /// stores, every region replicated on all three with Raft.
    #[serde(default = "one_store")]
    pub stores: usize,
    /// Put a fault proxy on every client→node and node→storage link (see `links`).
    #[serde(default)]
    pub fault_links: bool,
    /// Shortened `--node-membership-*-interval` flags for every node (see `membership`).
    #[serde(default)]
    pub membership_intervals: Option<MembershipIntervals>,
    /// `SURREAL_LIVE_QUERY_ENGINE` for every node (see `live`); `None` = SurrealDB's default.
    #[serde(default)]
    pub live_query_engine: Option<LiveQueryEngine>,
    /// `--durable-sessions` for every node: HTTP RPC sessions kept in storage, so a session
    /// attached on one node continues on another (see `experiments::production::rolling`).
    #[serde(default)]
    pub durable_sessions: bool,
}

fn one_store() -> usize {
    1
}

/// The embedded engine of an isolated node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Engine {
    /// In memory: fastest, gone when the node stops.
    Memory,
    /// SurrealKV files in the node's data directory: survives restarts.
    SurrealKv,
}

/// Where the nodes keep their data. See the module docs for the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StorageMode {
    /// Each node has its own store: the "no sharing" contrast.
    Isolated(Engine),
    /// All nodes share the lab's embedded PD+TiKV storage node (started and stopped with the lab).
    Shared,
    /// All nodes share a TiKV cluster you already run; the lab only checks PD is reachable.
    ExternalTikv {
        /// PD client endpoints as `127.0.0.1:PORT` (loopback only).
        pd_endpoints: Vec<String>,
    },
    /// All nodes share a TiKV started by `tiup playground` (only when `tiup` is installed).
    TiupPlayground,
}

impl Default for StorageMode {
    /// Shared storage through the lab's embedded storage node: SurrealDB's distributed
    /// architecture, with nothing to install.
    fn default() -> Self {
        StorageMode::Shared
    }
}

impl StorageMode {
    /// A short label for tables and logs: `memory`, `surrealkv`, `shared`, `tikv://…`, `tiup`.
    pub fn label(&self) -> String {
        match self {
            StorageMode::Isolated(Engine::Memory) => "memory".into(),
            StorageMode::Isolated(Engine::SurrealKv) => "surrealkv".into(),
            StorageMode::Shared => "shared".into(),
            StorageMode::ExternalTikv { pd_endpoints } => {
                format!(
                    "tikv://{}",
                    pd_endpoints.first().map(String::as_str).unwrap_or("?")
                )
            }
            StorageMode::TiupPlayground => "tiup".into(),
        }
    }

    /// True when all nodes share one store. Shared nodes are started one after another, because
    /// concurrent first starts race to bootstrap the same cluster metadata and conflict.
    pub fn is_shared(&self) -> bool {
        !matches!(self, StorageMode::Isolated(_))
    }

    /// Parses the CLI's `--storage` value: `memory`, `surrealkv`, `shared`, `tikv://HOST:PORT[,HOST:PORT]`, `tiup`.
    pub fn parse(text: &str) -> Result<Self, LabError> {
        let t = text.trim();
        let mode = match t.to_ascii_lowercase().as_str() {
            "memory" | "mem" => StorageMode::Isolated(Engine::Memory),
            "surrealkv" | "skv" => StorageMode::Isolated(Engine::SurrealKv),
            "shared" => StorageMode::Shared,
            "tiup" | "tiup-playground" => StorageMode::TiupPlayground,
            lower if lower.starts_with("tikv://") => StorageMode::ExternalTikv {
                pd_endpoints: t["tikv://".len()..]
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect(),
            },
            _ => {
                return Err(LabError::config(
                    "storage",
                    format!("`{text}` is not a storage mode"),
                    "use one of: memory, surrealkv, shared, tikv://127.0.0.1:2379, tiup",
                ));
            }
        };
        mode.validate()?;
        Ok(mode)
    }

    /// Checks what can be checked without touching the network.
    pub fn validate(&self) -> Result<(), LabError> {
        if let StorageMode::ExternalTikv { pd_endpoints } = self {
            if pd_endpoints.is_empty() || pd_endpoints.iter().any(|e| e.is_empty()) {
                return Err(LabError::config(
                    "pd_endpoints",
                    "no PD endpoint given",
                    "pass at least one endpoint, e.g. ExternalTikv { pd_endpoints: vec![\"127.0.0.1:2379\".into()] }",
                ));
            }
            for e in pd_endpoints {
                validate_loopback_endpoint(e)?;
            }
        }
        Ok(())
    }
}

/// The three membership intervals of `surreal start` (defaults 3 s / 15 s / 300 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipIntervals {
    /// `--node-membership-refresh-interval`: how often a node writes its heartbeat.
    pub refresh: Duration,
    /// `--node-membership-check-interval`: how often a node looks for expired peers.
    pub check: Duration,
    /// `--node-membership-cleanup-interval`: how often archived nodes are removed.
    pub cleanup: Duration,
}

impl MembershipIntervals {
    /// Short intervals for demos: heartbeat and check every second, clean up every 10 s.
    pub fn fast() -> Self {
        MembershipIntervals {
            refresh: Duration::from_secs(1),
            check: Duration::from_secs(1),
            cleanup: Duration::from_secs(10),
        }
    }

    /// Intervals you choose, checked: each must be at least [`MIN_MEMBERSHIP_INTERVAL`] (a
    /// node's background tasks would otherwise spin), and the check may not run more often
    /// than the heartbeat (it would look at the same heartbeats twice). The error names the fix.
    pub fn new(refresh: Duration, check: Duration, cleanup: Duration) -> Result<Self, LabError> {
        let m = MembershipIntervals {
            refresh,
            check,
            cleanup,
        };
        m.validate()?;
        Ok(m)
    }

    /// Parses the CLI's `--membership REFRESH,CHECK,CLEANUP`, e.g. `1s,1s,10s` or `500ms,1s,5s`.
    pub fn parse(text: &str) -> Result<Self, LabError> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        let bad = |why: String| {
            LabError::config(
                "membership",
                why,
                "write three durations REFRESH,CHECK,CLEANUP such as `1s,1s,10s` (units: ms or s)",
            )
        };
        let [r, c, k] = parts.as_slice() else {
            return Err(bad(format!(
                "`{text}` is not three comma-separated durations"
            )));
        };
        let one =
            |p: &str| parse_duration(p).ok_or_else(|| bad(format!("`{p}` is not a duration")));
        MembershipIntervals::new(one(r)?, one(c)?, one(k)?)
    }

    /// Checks the rules of [`new`](Self::new) (also for intervals built as a struct literal).
    pub fn validate(&self) -> Result<(), LabError> {
        for (name, d) in [
            ("refresh", self.refresh),
            ("check", self.check),
            ("cleanup", self.cleanup),
        ] {
            if d < MIN_MEMBERSHIP_INTERVAL {
                return Err(LabError::config(
                    "membership_intervals",
                    format!(
                        "the {name} interval is {} ms, below the lab's minimum of {} ms",
                        d.as_millis(),
                        MIN_MEMBERSHIP_INTERVAL.as_millis()
                    ),
                    "use at least 100 ms for each interval, e.g. MembershipIntervals::fast() (1 s, 1 s, 10 s)",
                ));
            }
        }
        if self.check < self.refresh {
            return Err(LabError::config(
                "membership_intervals",
                format!(
                    "the check interval ({} ms) is shorter than the heartbeat refresh ({} ms)",
                    self.check.as_millis(),
                    self.refresh.as_millis()
                ),
                "make check at least as long as refresh: checking more often than nodes \
                 heartbeat finds nothing new",
            ));
        }
        Ok(())
    }

    /// The settings as one short label: `refresh 1 s · check 1 s · cleanup 10 s`.
    pub fn label(&self) -> String {
        let s = |d: Duration| {
            if d.as_millis().is_multiple_of(1000) {
                format!("{} s", d.as_secs())
            } else {
                format!("{} ms", d.as_millis())
            }
        };
        format!(
            "refresh {} · check {} · cleanup {}",
            s(self.refresh),
            s(self.check),
            s(self.cleanup)
        )
    }

    /// The `surreal start` flags.
    pub fn flags(&self) -> Vec<String> {
        let ms = |d: Duration| format!("{}ms", d.as_millis().max(1));
        vec![
            "--node-membership-refresh-interval".into(),
            ms(self.refresh),
            "--node-membership-check-interval".into(),
            ms(self.check),
            "--node-membership-cleanup-interval".into(),
            ms(self.cleanup),
        ]
    }
}

/// The shortest membership interval the lab passes to `surreal start`.
pub const MIN_MEMBERSHIP_INTERVAL: Duration = Duration::from_millis(100);

/// `250ms`, `1s`, `1.5s` or a bare number of seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    if let Some(ms) = t.strip_suffix("ms") {
        return ms.trim().parse::<u64>().ok().map(Duration::from_millis);
    }
    let secs = t.strip_suffix('s').unwrap_or(t).trim();
    secs.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// The environment variable `surreal` 3.3.5 reads to pick its live-query engine.
pub const ENGINE_ENV: &str = "SURREAL_LIVE_QUERY_ENGINE";

/// SurrealDB 3.3.5's two live-query engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LiveQueryEngine {
    /// The default: the writing node notifies only its own subscribers.
    Inline,
    /// Experimental: every node tails a live-event keyspace in storage and notifies its own
    /// subscribers of every node's changes.
    Router,
}

impl LiveQueryEngine {
    /// The env var's value.
    pub fn as_str(&self) -> &'static str {
        match self {
            LiveQueryEngine::Inline => "inline",
            LiveQueryEngine::Router => "router",
        }
    }
}

/// The only address the lab binds to. Loopback keeps the playground private to this machine.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The spec's ports: node-a on 8000, node-b on 8001.
pub const DEFAULT_BASE_PORT: u16 = 8000;

/// Ports below 1024 need root on Unix; the lab never asks for privileges.
pub const MIN_PORT: u16 = 1024;

/// Checks the port plan `base .. base + nodes` (node counts are checked by the builder).
pub fn validate_base_port(base: u16, nodes: usize) -> Result<(), LabError> {
    if base < MIN_PORT {
        return Err(LabError::config(
            "base_port",
            format!("{base} is below {MIN_PORT}; ports under 1024 need root privileges"),
            format!("use a port from {MIN_PORT} to 65535, e.g. the default {DEFAULT_BASE_PORT}"),
        ));
    }
    let last = base as u32 + nodes.saturating_sub(1) as u32;
    if last > u16::MAX as u32 {
        return Err(LabError::config(
            "base_port",
            format!(
                "{nodes} nodes starting at {base} would need port {last}, but ports end at 65535"
            ),
            format!(
                "use a base port of at most {}",
                u16::MAX as u32 + 1 - nodes as u32
            ),
        ));
    }
    Ok(())
}

/// Parses a bind address and refuses anything that is not loopback.
pub fn validate_bind(addr: &str) -> Result<Ipv4Addr, LabError> {
    let trimmed = addr.trim();
    let ip = if trimmed.eq_ignore_ascii_case("localhost") {
        Some(LOOPBACK)
    } else {
        trimmed.parse::<Ipv4Addr>().ok()
    };
    match ip {
        Some(ip) if ip == LOOPBACK => Ok(ip),
        Some(ip) if ip.is_loopback() => Err(LabError::config(
            "bind",
            format!(
                "{ip} is loopback but not 127.0.0.1; the lab's clients and state file assume 127.0.0.1"
            ),
            "leave the bind address at its default (127.0.0.1)",
        )),
        _ => Err(LabError::config(
            "bind",
            format!("`{addr}` is not a loopback address; the lab only listens on this machine"),
            "leave the bind address at its default (127.0.0.1)",
        )),
    }
}

/// Checks that `host:port` names a loopback endpoint (used for PD endpoints of external TiKV).
pub fn validate_loopback_endpoint(endpoint: &str) -> Result<SocketAddr, LabError> {
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(|| {
        LabError::config(
            "pd_endpoints",
            format!("`{endpoint}` is not host:port"),
            "write PD endpoints as 127.0.0.1:2379",
        )
    })?;
    let port: u16 = port.parse().map_err(|_| {
        LabError::config(
            "pd_endpoints",
            format!("`{endpoint}` has no valid port"),
            "write PD endpoints as 127.0.0.1:2379",
        )
    })?;
    let ip = validate_bind(host).map_err(|_| {
        LabError::config(
            "pd_endpoints",
            format!("`{endpoint}` is not on loopback; the lab only talks to this machine"),
            "run PD/TiKV locally and use 127.0.0.1:PORT",
        )
    })?;
    Ok(SocketAddr::from((ip, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_counts_outside_one_to_five_are_refused_with_the_fix() {
        for bad in [0, MAX_STORES + 1] {
            let e = check_store_count(bad).unwrap_err().to_string();
            assert!(e.contains("use 1") && e.contains("or 3"), "{e}");
        }
        assert!(check_store_count(3).is_ok());
    }

    #[test]
    fn membership_intervals_refuse_tiny_or_inverted_values_naming_the_fix() {
        let ms = Duration::from_millis;
        assert!(MembershipIntervals::new(ms(1000), ms(1000), ms(10_000)).is_ok());
        let zero = MembershipIntervals::new(ms(0), ms(1000), ms(1000))
            .unwrap_err()
            .to_string();
        assert!(
            zero.contains("refresh") && zero.contains("Fix: use at least 100 ms"),
            "{zero}"
        );
        let inverted = MembershipIntervals::new(ms(2000), ms(1000), ms(5000))
            .unwrap_err()
            .to_string();
        assert!(
            inverted.contains("shorter than the heartbeat") && inverted.contains("Fix:"),
            "{inverted}"
        );
        let parsed = MembershipIntervals::parse("500ms, 1s, 4").unwrap();
        assert_eq!(
            (parsed.refresh, parsed.check, parsed.cleanup),
            (ms(500), ms(1000), ms(4000))
        );
        let e = MembershipIntervals::parse("1s,1s").unwrap_err().to_string();
        assert!(e.contains("REFRESH,CHECK,CLEANUP"), "{e}");
        assert!(
            MembershipIntervals::parse("1s,x,1s")
                .unwrap_err()
                .to_string()
                .contains("`x`")
        );
        assert_eq!(
            MembershipIntervals::fast().label(),
            "refresh 1 s · check 1 s · cleanup 10 s"
        );
    }

    #[test]
    fn base_port_rules() {
        assert!(validate_base_port(8000, 2).is_ok());
        assert!(validate_base_port(65535, 1).is_ok());
        let low = validate_base_port(80, 2).unwrap_err().to_string();
        assert!(low.contains("below 1024") && low.contains("Fix:"), "{low}");
        let over = validate_base_port(65535, 2).unwrap_err().to_string();
        assert!(
            over.contains("65536") && over.contains("at most 65534"),
            "{over}"
        );
    }

    #[test]
    fn only_loopback_binds() {
        assert_eq!(validate_bind("127.0.0.1").unwrap(), LOOPBACK);
        assert_eq!(validate_bind("localhost").unwrap(), LOOPBACK);
        assert!(
            validate_bind("0.0.0.0")
                .unwrap_err()
                .to_string()
                .contains("not a loopback")
        );
        assert!(validate_bind("192.168.1.5").is_err());
        assert!(validate_bind("127.0.0.2").is_err());
    }

    #[test]
    fn pd_endpoints_must_be_loopback_host_port() {
        assert_eq!(
            validate_loopback_endpoint("127.0.0.1:2379").unwrap().port(),
            2379
        );
        assert!(validate_loopback_endpoint("10.0.0.1:2379").is_err());
        assert!(validate_loopback_endpoint("127.0.0.1").is_err());
        assert!(validate_loopback_endpoint("127.0.0.1:x").is_err());
    }
}
