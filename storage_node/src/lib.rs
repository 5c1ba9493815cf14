//! A single-process storage node that speaks the PD and TiKV gRPC protocols.
//!
//! SurrealDB runs distributed as stateless `surreal` query nodes over a shared transactional
//! key-value store, TiKV (PD servers for placement and timestamps + TiKV servers for data).
//! This crate is that store shrunk to one process, one port and one file, faithful enough
//! that the unmodified `surreal start tikv://127.0.0.1:2379` works against it — so a laptop
//! can run the real distributed architecture without a TiKV cluster. Writes go through a Raft
//! group as in TiKV; today that group has one peer (one store holding one region), and the
//! next steps add PD as its own process, more stores and region splits.
//!
//! # Layout
//!
//! The modules follow TiKV's layering, so each maps onto a chapter of TiKV's documentation:
//!
//! - [`server`]: the gRPC front — [`server::pd`] (PD: members, TSO, the one region and store)
//!   and [`server::kv`] (TiKV: the transactional KV RPCs), on one port.
//! - [`storage`]: the transactional KV API the services call; reads check with Raft that this
//!   store may serve them, writes go to the scheduler.
//! - [`txn`]: Percolator's actions (prewrite with 1PC and async commit, commit, rollback,
//!   cleanup, check_txn_status, check_secondary_locks, resolve_lock, heartbeat, GC, and the
//!   pessimistic transactions' acquire_pessimistic_lock and pessimistic_rollback) and the
//!   [`txn::scheduler`] that runs them in batches on the region's leader (group commit).
//! - [`raftstore`]: every batch's writes are proposed to the region's Raft group (raft-rs,
//!   as in TiKV), made durable in its log, and applied once committed; reads use ReadIndex.
//! - [`mvcc`]: versions, locks and write records — key encoding, records, the reader.
//! - [`txn_types`]: [`Key`] and [`TimeStamp`], the types every layer below `server` speaks.
//! - [`concurrency`]: keeps snapshots stable while commit timestamps become durable.
//! - [`lock_manager`]: lets pessimistic lock requests wait for a conflicting lock to go.
//! - [`pd::tso`]: the timestamp oracle, persisted so timestamps never go backwards.
//! - [`engine`]: redb tables standing in for RocksDB's column families.
//! - [`trace`]: the optional one-line-per-RPC operation trace.

pub mod concurrency;
pub mod engine;
pub mod lock_manager;
pub mod mvcc;
pub mod pd;
pub mod proto;
pub mod raftstore;
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

/// A node that is listening (used by the binary and by in-process tests).
pub struct Node {
    /// The address it serves on.
    pub addr: SocketAddr,
    /// Its storage (tests inspect it).
    pub storage: Arc<storage::Storage>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Node {
    /// Opens the data directory, binds the port and starts serving in the background.
    pub async fn start(config: Config) -> Result<Node, StartError> {
        if !config.addr.ip().is_loopback() {
            return Err(StartError::NotLoopback(config.addr));
        }
        // Bind first: a port conflict should not leave the data directory locked.
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AddrInUse => StartError::PortInUse {
                    ip: config.addr.ip(),
                    port: config.addr.port(),
                },
                _ => StartError::Bind(config.addr, e),
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Bind(config.addr, e))?;
        let storage = storage::Storage::open(&config.data_dir)?;
        let tracer = Arc::new(match &config.trace {
            Some(path) => {
                trace::Tracer::to_file(path).map_err(|e| StartError::Trace(path.clone(), e))?
            }
            None => trace::Tracer::off(),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(storage.clone(), tracer, listener, async {
            let _ = rx.await;
        }));
        Ok(Node {
            addr,
            storage,
            shutdown: Some(tx),
            task,
        })
    }

    /// Stops serving and waits for in-flight RPCs to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Waits until the server stops on its own (an error) — the binary's main loop.
    pub async fn wait(&mut self) -> Result<(), String> {
        match (&mut self.task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}
