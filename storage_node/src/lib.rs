//! A single-process storage node that speaks the PD and TiKV gRPC protocols.
//!
//! SurrealDB runs distributed as stateless `surreal` query nodes over a shared transactional
//! key-value store, TiKV (PD servers for placement and timestamps + TiKV servers for data).
//! This crate is that store at teaching scale, faithful enough that the unmodified
//! `surreal start tikv://127.0.0.1:2379` works against it — so a laptop can run the real
//! distributed architecture without a TiKV cluster. It runs two ways:
//!
//! - **combined** (`storage-node --data-dir D`): PD and one store in one process, on one port;
//! - **as a cluster** (`storage-node pd …` plus `storage-node store --store-id N …` per store):
//!   PD is its own process, and the stores replicate every region with Raft and fail over
//!   when a leader's store dies. See [`roles`].
//!
//! Both run the same code path: a single store is a region group with one peer.
//!
//! # Layout
//!
//! The modules follow TiKV's layering, so each maps onto a chapter of TiKV's documentation:
//!
//! - [`roles`]: the processes — [`roles::pd`] (PD alone) and [`roles::store`] (a store that
//!   registers with PD, heartbeats, and talks Raft to its peers); [`Node`] is both in one.
//! - [`server`]: the gRPC front — [`server::pd`] (PD: members, TSO, ID allocation, the store and
//!   region registries fed by heartbeats, routing, GC safe point) and [`server::kv`] (TiKV: the
//!   transactional KV RPCs).
//! - [`pd`]: PD's state — [`pd::cluster`] (stores and regions as heartbeats report them),
//!   [`pd::tso`] (the timestamp oracle, persisted so timestamps never go backwards) and
//!   [`pd::gc`] (the cluster's GC safe point).
//! - [`storage`]: the transactional KV API the services call; reads check with Raft that this
//!   store may serve them, writes go to the scheduler.
//! - [`txn`]: Percolator's actions (prewrite with 1PC and async commit, commit, rollback,
//!   cleanup, check_txn_status, check_secondary_locks, resolve_lock, heartbeat, GC, and the
//!   pessimistic transactions' acquire_pessimistic_lock and pessimistic_rollback) and the
//!   [`txn::scheduler`] that runs them in batches on the region's leader (group commit).
//! - [`raftstore`]: every batch's writes are proposed to the region's Raft group (raft-rs,
//!   as in TiKV), made durable in its log, and applied once committed; reads are served by the
//!   leader under a lease that a ReadIndex renews, as TiKV's are.
//! - [`mvcc`]: versions, locks and write records — key encoding, records, the reader.
//! - [`txn_types`]: [`Key`] and [`TimeStamp`], the types every layer below `server` speaks.
//! - [`concurrency`]: keeps snapshots stable while commit timestamps become durable.
//! - [`lock_manager`]: lets pessimistic lock requests wait for a conflicting lock to go.
//! - [`engine`]: redb tables standing in for RocksDB's column families.
//! - [`trace`]: the optional one-line-per-RPC operation trace.

pub mod concurrency;
pub mod engine;
pub mod lock_manager;
pub mod mvcc;
pub mod pd;
pub mod proto;
pub mod raftstore;
pub mod roles;
pub mod server;
pub mod storage;
pub mod trace;
pub mod txn;
pub mod txn_types;

pub use txn_types::{Key, TimeStamp};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// How to run a node.
#[derive(Clone, Debug)]
pub struct Config {
    /// Loopback address to serve PD and TiKV on.
    pub addr: SocketAddr,
    /// Where the data, the TSO limit and the identity live.
    pub data_dir: PathBuf,
    /// Append one JSON line per RPC to this file.
    pub trace: Option<PathBuf>,
    /// When a region splits by itself.
    pub split: raftstore::split::SplitPolicy,
}

/// Why a node could not start; every message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Not a loopback address.
    #[error(
        "--addr {0} is not a loopback address; the storage node has no authentication, so it only listens on 127.0.0.1 / ::1"
    )]
    NotLoopback(SocketAddr),
    /// The port is taken.
    #[error(
        "port {port} on {ip} is already in use (another storage-node or PD?); stop that process or pass --addr {ip}:<free port>"
    )]
    PortInUse {
        /// The IP.
        ip: std::net::IpAddr,
        /// The port.
        port: u16,
    },
    /// Binding failed otherwise.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The data directory is unusable.
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    /// The trace file cannot be opened.
    #[error("cannot open trace file {0}: {1}")]
    Trace(PathBuf, std::io::Error),
}

/// Binds a loopback address, naming the fix when it is taken or not loopback.
pub async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), StartError> {
    if !addr.ip().is_loopback() {
        return Err(StartError::NotLoopback(addr));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => StartError::PortInUse {
                ip: addr.ip(),
                port: addr.port(),
            },
            _ => StartError::Bind(addr, e),
        })?;
    let bound = listener
        .local_addr()
        .map_err(|e| StartError::Bind(addr, e))?;
    Ok((listener, bound))
}

/// Opens the trace file, or a tracer that records nothing.
pub fn open_tracer(path: &Option<PathBuf>) -> Result<Arc<trace::Tracer>, StartError> {
    Ok(Arc::new(match path {
        Some(path) => {
            trace::Tracer::to_file(path).map_err(|e| StartError::Trace(path.clone(), e))?
        }
        None => trace::Tracer::off(),
    }))
}

/// What the one-process node's store tells the PD beside it (through a channel: the store
/// reports as soon as it leads, before that PD exists).
enum PdNote {
    Region(pd::cluster::RegionReport),
    Split(Vec<proto::metapb::Region>),
}

impl PdNote {
    fn take(self, cluster: &pd::cluster::PdCluster) {
        match self {
            PdNote::Region(r) => {
                if let Err(e) = cluster.region_heartbeat(r) {
                    tracing::debug!("{e}");
                }
            }
            PdNote::Split(regions) => cluster.report_split(regions),
        }
    }
}

/// The one-process node's link from its store to its PD.
struct LocalPd {
    notes: tokio::sync::mpsc::UnboundedSender<PdNote>,
    cluster: Arc<std::sync::OnceLock<Arc<pd::cluster::PdCluster>>>,
}

impl raftstore::store::PdLink for LocalPd {
    fn report(&self, report: pd::cluster::RegionReport) {
        let _ = self.notes.send(PdNote::Region(report));
    }

    fn ask_split(&self, region: &proto::metapb::Region) -> Result<(u64, Vec<u64>), String> {
        let cluster = self.cluster.get().ok_or("PD is still starting")?;
        cluster.ask_split(region).map_err(|e| format!("PD: {e}"))
    }

    fn report_split(&self, regions: Vec<proto::metapb::Region>) {
        let _ = self.notes.send(PdNote::Split(regions));
    }

    fn region_by_id(&self, region_id: u64) -> Option<proto::metapb::Region> {
        Some(self.cluster.get()?.region_by_id(region_id)?.region)
    }
}

/// A node that is listening (used by the binary and by in-process tests): PD and its one
/// store in one process, the lab's one-store tier.
pub struct Node {
    /// The address it serves on.
    pub addr: SocketAddr,
    /// Its storage (tests inspect it).
    pub storage: Arc<storage::Storage>,
    /// PD's registry (stores, regions, leaders).
    pub cluster: Arc<pd::cluster::PdCluster>,
    serving: server::Serving,
}

impl Node {
    /// Opens the data directory, binds the port and starts serving in the background.
    pub async fn start(config: Config) -> Result<Node, StartError> {
        // Bind first: a port conflict should not leave the data directory locked.
        let (listener, addr) = bind(config.addr).await?;
        // The store reports its region to PD the way a store process does, through a channel
        // (it reports as soon as it leads, before PD here exists).
        let (notes, mut noted) = tokio::sync::mpsc::unbounded_channel();
        let pd_here = Arc::new(std::sync::OnceLock::new());
        let link = LocalPd {
            notes,
            cluster: pd_here.clone(),
        };
        let raft = raftstore::RaftConfig {
            split: config.split,
            ..Default::default()
        };
        let (storage, tso) =
            storage::Storage::open_alone(&config.data_dir, raft, Some(Box::new(link)))?;
        let cluster = Arc::new(
            pd::cluster::PdCluster::open(storage.cluster_id(), &config.data_dir)
                .map_err(|e| StartError::Engine(engine::EngineError::Redb(format!("PD: {e}"))))?,
        );
        let _ = pd_here.set(cluster.clone());
        // The store is reached at whatever address a client dialed (no address of its own).
        // A fresh registry: nothing is a tombstone yet, so this cannot be refused.
        let _ = cluster.put_store(proto::metapb::Store {
            id: raftstore::store::STORE_ID,
            state: proto::metapb::StoreState::Up as i32,
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        });
        // The leader's first report is already queued: take it before the first request.
        while let Ok(note) = noted.try_recv() {
            note.take(&cluster);
        }
        let registry = cluster.clone();
        tokio::spawn(async move {
            while let Some(note) = noted.recv().await {
                registry.store_heartbeat(raftstore::store::STORE_ID);
                note.take(&registry);
            }
        });
        let tracer = open_tracer(&config.trace)?;
        let pd = server::pd::PdService::new(
            cluster.clone(),
            tso,
            server::pd::GcKeeper::LocalStore(storage.clone()),
            addr.to_string(),
            tracer.clone(),
        );
        // A split asked through PD's HTTP API goes straight to the store beside it.
        let local = storage.clone();
        let pd = pd.with_splitter(Arc::new(move |info: pd::cluster::RegionInfo, keys| {
            let storage = local.clone();
            Box::pin(async move {
                storage
                    .split(info.region.id, info.region.region_epoch, &keys)
                    .await
                    .map_err(|e| e.to_string())
            })
        }));
        let kv = server::kv::KvService::new(storage.clone(), tracer);
        Ok(Node {
            addr,
            storage,
            cluster,
            serving: server::Serving::spawn(Some(pd), Some(kv), listener),
        })
    }

    /// Stops serving and waits for in-flight RPCs to finish.
    pub async fn stop(self) {
        self.serving.stop().await
    }

    /// Waits until the server stops on its own (an error) — the binary's main loop.
    pub async fn wait(&mut self) -> Result<(), String> {
        self.serving.wait().await
    }
}
