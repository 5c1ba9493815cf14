//! Storage modes: where each `surreal` node keeps its data, and what that means for the lab.
//!
//! This is the lesson of the whole lab in one enum. A SurrealDB node is a *query* process; where
//! its data lives is the `<path>` argument of `surreal start`:
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
//! storage node and a real TiKV cluster are interchangeable from the nodes' point of view.
//!
//! [`StorageMode`] is the learner's choice (plain data, saved in `state.json`). `StorageTier` is
//! the running thing behind a shared mode (a tiup child process, an external PD address), owned
//! by the lab's actor thread.

use crate::infra::process::Managed as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::infra::embedded_tier::EmbeddedTier;
use crate::infra::ports;
use crate::vocab::config::{Engine, LOOPBACK, StorageMode, validate_loopback_endpoint};
use crate::vocab::error::LabError;

/// What starting a storage tier needs to know about the lab.
pub(crate) struct TierPlan<'a> {
    /// The lab directory (storage data, logs and pidfiles go inside it).
    pub lab_dir: &'a Path,
    /// Port for the embedded storage node (PD's port when there are several stores).
    pub storage_port: u16,
    /// How many stores the embedded tier runs (1 = one combined process).
    pub stores: usize,
    /// The stores' ports from an earlier start (empty: pick free ones).
    pub store_ports: &'a [u16],
    /// Turn on the storage node's operation trace.
    pub trace: bool,
    /// Limit for the storage to become ready.
    pub timeout: Duration,
}

/// How long to wait for a tiup playground's PD and TiKV. The first run downloads components,
/// which can take minutes.
const TIUP_READY_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a TCP connect to PD may take before we call it unreachable. Loopback answers in
/// microseconds; a second is generous.
const PD_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The running storage behind a mode, owned by the actor. Isolated modes have none.
#[derive(Debug)]
pub(crate) enum StorageTier {
    /// Each node owns its store; nothing to run.
    Isolated(Engine),
    /// An external PD the nodes connect to; the lab does not own it.
    External { pd: SocketAddr },
    /// The lab's own `storage-node` processes (PD and one store combined, or PD + N stores),
    /// started and stopped with the lab.
    Embedded(EmbeddedTier),
    /// A `tiup playground` child process, torn down with the lab.
    Tiup {
        child: std::process::Child,
        pd: SocketAddr,
        log: PathBuf,
    },
}

impl StorageTier {
    /// Prepares the storage for `mode`: checks reachability or starts the process behind it.
    pub(crate) async fn start(mode: &StorageMode, plan: &TierPlan<'_>) -> Result<Self, LabError> {
        mode.validate()?;
        let logs_dir = plan.lab_dir.join("logs");
        let logs_dir = logs_dir.as_path();
        match mode {
            StorageMode::Isolated(engine) => Ok(StorageTier::Isolated(*engine)),
            StorageMode::Shared => {
                let bin = crate::infra::binary::locate_workspace_binary(
                    "storage-node",
                    "STORAGE_NODE_BIN",
                    None,
                    None,
                )?;
                if !ports::is_port_free(plan.storage_port) {
                    return Err(LabError::PortInUse {
                        port: plan.storage_port,
                        holder: ports::port_holder(plan.storage_port),
                    });
                }
                let mut tier = EmbeddedTier::plan(
                    plan.lab_dir,
                    plan.storage_port,
                    plan.stores,
                    plan.store_ports,
                    plan.trace,
                    bin.path,
                )?;
                if let Err(e) = tier.start(plan.timeout).await {
                    tier.kill().await;
                    return Err(e);
                }
                Ok(StorageTier::Embedded(tier))
            }
            StorageMode::ExternalTikv { pd_endpoints } => {
                let pd = validate_loopback_endpoint(&pd_endpoints[0])?;
                if TcpStream::connect_timeout(&pd, PD_CONNECT_TIMEOUT).is_err() {
                    return Err(LabError::StorageUnavailable {
                        mode: mode.label(),
                        reason: format!("nothing answers at PD endpoint {pd}"),
                        fix: "start PD and TiKV first (e.g. `tiup playground --mode tikv-slim`), \
                              check the endpoint, or use StorageMode::Shared"
                            .into(),
                    });
                }
                Ok(StorageTier::External { pd })
            }
            StorageMode::TiupPlayground => start_tiup(logs_dir).await,
        }
    }

    /// The `<path>` argument of `surreal start` for a node whose data directory is `data_dir`.
    pub(crate) fn node_path(&self, data_dir: &Path) -> String {
        match self {
            StorageTier::Isolated(Engine::Memory) => "memory".into(),
            // An absolute path after `surrealkv://` gives `surrealkv:///abs/dir`, which surreal
            // reads as the absolute directory `/abs/dir`.
            StorageTier::Isolated(Engine::SurrealKv) => {
                format!("surrealkv://{}", data_dir.display())
            }
            StorageTier::External { pd } | StorageTier::Tiup { pd, .. } => format!("tikv://{pd}"),
            StorageTier::Embedded(tier) => format!("tikv://{}", tier.pd_addr()),
        }
    }

    /// PD's address, for the shared modes (PD's HTTP pages are on the same port).
    pub(crate) fn pd(&self) -> Option<SocketAddr> {
        match self {
            StorageTier::Isolated(_) => None,
            StorageTier::External { pd } | StorageTier::Tiup { pd, .. } => Some(*pd),
            StorageTier::Embedded(tier) => Some(tier.pd_addr()),
        }
    }

    /// The embedded storage processes, when this tier is the lab's own.
    pub(crate) fn embedded(&mut self) -> Option<&mut EmbeddedTier> {
        match self {
            StorageTier::Embedded(node) => Some(node),
            _ => None,
        }
    }

    /// Stops what the lab started (a tiup playground); external storage is left alone.
    pub(crate) async fn stop(&mut self, grace: Duration) {
        if let StorageTier::Embedded(tier) = self {
            tier.stop(grace).await;
        }
        if let StorageTier::Tiup { child, .. } = self {
            // tiup runs pd-server and tikv-server as its children in its process group, so the
            // whole group is signalled.
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                tokio::time::sleep(crate::infra::procs::POLL).await;
            }
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// The pid of a storage process the lab owns (for status tables), if any.
    pub(crate) fn pid(&self) -> Option<u32> {
        match self {
            StorageTier::Tiup { child, .. } => Some(child.id()),
            StorageTier::Embedded(tier) => tier.procs[0].pid(),
            _ => None,
        }
    }

    /// The log file of a storage process the lab owns, if any.
    #[allow(dead_code)] // used by status views of the shared tier
    pub(crate) fn log(&self) -> Option<&Path> {
        match self {
            StorageTier::Tiup { log, .. } => Some(log),
            StorageTier::Embedded(tier) => Some(tier.procs[0].log()),
            _ => None,
        }
    }
}

/// Starts `tiup playground` with just PD and TiKV and waits until PD reports a TiKV store up.
async fn start_tiup(logs_dir: &Path) -> Result<StorageTier, LabError> {
    let mode = StorageMode::TiupPlayground.label();
    let Some(tiup) = find_tiup() else {
        return Err(LabError::StorageUnavailable {
            mode,
            reason: "`tiup` is not on PATH".into(),
            fix: "install TiUP (see https://docs.pingcap.com/tidb/stable/tiup-overview) and run \
                  `tiup playground --mode tikv-slim` once, or use StorageMode::Shared (no install needed)"
                .into(),
        });
    };
    let pd_port = if ports::is_port_free(2379) {
        2379
    } else {
        ports::pick_ephemeral_block(1)?
    };
    let log = logs_dir.join("tiup-playground.log");
    let out = std::fs::File::create(&log).map_err(|e| {
        LabError::io(
            "creating",
            &log,
            &e,
            "check that the lab directory is writable",
        )
    })?;
    let err = out
        .try_clone()
        .map_err(|e| LabError::io("opening", &log, &e, "check the lab directory"))?;
    let mut cmd = std::process::Command::new(tiup);
    cmd.args([
        "playground",
        "--mode",
        "tikv-slim",
        "--without-monitor",
        "--host",
        "127.0.0.1",
    ])
    .args(["--pd.port", &pd_port.to_string()])
    .stdin(std::process::Stdio::null())
    .stdout(out)
    .stderr(err);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().map_err(|e| LabError::StorageUnavailable {
        mode: mode.clone(),
        reason: format!("starting `tiup playground` failed: {e}"),
        fix: "run `tiup playground --mode tikv-slim` by hand to see what is wrong".into(),
    })?;
    let pd = SocketAddr::from((LOOPBACK, pd_port));
    let mut tier = StorageTier::Tiup {
        child,
        pd,
        log: log.clone(),
    };
    let deadline = Instant::now() + TIUP_READY_TIMEOUT;
    loop {
        if pd_has_store_up(pd).await {
            return Ok(tier);
        }
        let exited = match &mut tier {
            StorageTier::Tiup { child, .. } => matches!(child.try_wait(), Ok(Some(_))),
            _ => false,
        };
        if exited || Instant::now() > deadline {
            tier.stop(Duration::from_secs(10)).await;
            return Err(LabError::StorageUnavailable {
                mode,
                reason: format!(
                    "tiup playground {} (log {}):\n{}",
                    if exited {
                        "exited early"
                    } else {
                        "did not bring up PD and TiKV in time"
                    },
                    log.display(),
                    crate::infra::process::log_tail(&log, crate::infra::process::LOG_TAIL_LINES)
                ),
                fix: "read the log above; run `tiup playground --mode tikv-slim` by hand once \
                      (its first run downloads components)"
                    .into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `tiup` on PATH, if installed.
fn find_tiup() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("tiup"))
        .find(|p| p.is_file())
}

/// True when PD's HTTP API lists at least one TiKV store in state `Up`.
async fn pd_has_store_up(pd: SocketAddr) -> bool {
    match crate::infra::client::http_get(pd, "/pd/api/v1/stores", Duration::from_secs(2)).await {
        Ok((200, body)) => {
            body.contains("\"state_name\": \"Up\"") || body.contains("\"state_name\":\"Up\"")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_cli_values() {
        assert_eq!(
            StorageMode::parse("memory").unwrap(),
            StorageMode::Isolated(Engine::Memory)
        );
        assert_eq!(
            StorageMode::parse("surrealkv").unwrap(),
            StorageMode::Isolated(Engine::SurrealKv)
        );
        assert_eq!(StorageMode::parse("shared").unwrap(), StorageMode::Shared);
        assert_eq!(
            StorageMode::parse("tiup").unwrap(),
            StorageMode::TiupPlayground
        );
        assert_eq!(
            StorageMode::parse("tikv://127.0.0.1:2379").unwrap(),
            StorageMode::ExternalTikv {
                pd_endpoints: vec!["127.0.0.1:2379".into()]
            }
        );
        assert!(
            StorageMode::parse("tikv://10.1.1.1:2379").is_err(),
            "non-loopback PD"
        );
        let e = StorageMode::parse("rocksdb").unwrap_err().to_string();
        assert!(e.contains("use one of"), "{e}");
    }

    #[test]
    fn node_paths() {
        let dir = Path::new("/lab/nodes/node-a/data");
        assert_eq!(
            StorageTier::Isolated(Engine::Memory).node_path(dir),
            "memory"
        );
        assert_eq!(
            StorageTier::Isolated(Engine::SurrealKv).node_path(dir),
            "surrealkv:///lab/nodes/node-a/data"
        );
        let pd: SocketAddr = "127.0.0.1:2379".parse().unwrap();
        assert_eq!(
            StorageTier::External { pd }.node_path(dir),
            "tikv://127.0.0.1:2379"
        );
    }

    #[tokio::test]
    async fn unreachable_pd_is_a_clear_error() {
        // Bind then drop to get a port that nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mode = StorageMode::ExternalTikv {
            pd_endpoints: vec![format!("127.0.0.1:{port}")],
        };
        let plan = TierPlan {
            lab_dir: Path::new("/tmp"),
            storage_port: 0,
            stores: 1,
            store_ports: &[],
            trace: false,
            timeout: Duration::from_secs(1),
        };
        let err = StorageTier::start(&mode, &plan)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nothing answers at PD") && err.contains("Fix:"),
            "{err}"
        );
    }
}
