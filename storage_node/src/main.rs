//! `storage-node`: the lab's shared storage tier, in one of three roles.
//!
//! ```text
//! # the one-process tier: PD and one store on one port
//! storage-node --data-dir target/lab/lab/storage --addr 127.0.0.1:2379
//!
//! # the replicated tier: PD, then three stores that bootstrap the first region together
//! storage-node pd    --data-dir lab/pd      --addr 127.0.0.1:2379
//! storage-node store --data-dir lab/store-1 --addr 127.0.0.1:20161 --pd 127.0.0.1:2379 --store-id 1 --initial-stores 3
//! storage-node store --data-dir lab/store-2 --addr 127.0.0.1:20162 --pd 127.0.0.1:2379 --store-id 2 --initial-stores 3
//! storage-node store --data-dir lab/store-3 --addr 127.0.0.1:20163 --pd 127.0.0.1:2379 --store-id 3 --initial-stores 3
//!
//! surreal start tikv://127.0.0.1:2379        # any number of times, on other ports
//! ```
//!
//! Prints one `ready` line on stdout once it accepts connections (the lab waits for it) and
//! exits cleanly on SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use storage_node::roles::pd::{PdConfig, PdNode};
use storage_node::roles::store::{StoreConfig, StoreNode};
use storage_node::{Config, Node};

/// The SurrealDB lab's storage tier: PD + TiKV protocols over a Raft-replicated store.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Args {
    /// Run as PD alone, or as one store of a replicated tier (default: PD and one store).
    #[command(subcommand)]
    role: Option<Role>,
    /// Loopback address serving both the PD and the TiKV gRPC services.
    #[arg(long, default_value = "127.0.0.1:2379", env = "STORAGE_NODE_ADDR")]
    addr: SocketAddr,
    /// Directory for the data file, the timestamp limit and the cluster identity.
    #[arg(long, env = "STORAGE_NODE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// Flags every role takes.
#[derive(clap::Args, Debug, Clone)]
struct Common {
    /// Append one JSON line per RPC (peer, RPC, start ts, keys) to this file.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, default_value = "info", env = "STORAGE_NODE_LOG")]
    log: String,
    /// Threads serving gRPC (the writer has its own thread). 0 = half the cores, 1 to 4: the
    /// storage node shares the machine with the `surreal` nodes and their clients, and on a
    /// 2-core laptop one serving thread gave ~10 % more throughput than two (fewer wake-ups
    /// across threads; each RPC is only ~15 µs of work).
    #[arg(long, default_value_t = 0, env = "STORAGE_NODE_THREADS")]
    threads: usize,
    /// A region splits at its middle key once it holds more write records (MVCC versions)
    /// than this. Small by default so a lab shows splits; TiKV's default is 960,000.
    #[arg(long, default_value_t = storage_node::raftstore::split::SplitPolicy::default().max_keys, value_parser = clap::value_parser!(u64).range(1..))]
    split_keys: u64,
    /// … or more bytes of write records than this (TiKV: 96 MiB).
    #[arg(long, default_value_t = storage_node::raftstore::split::SplitPolicy::default().max_bytes, value_parser = clap::value_parser!(u64).range(1..))]
    split_bytes: u64,
}

impl Common {
    fn split(&self) -> storage_node::raftstore::split::SplitPolicy {
        storage_node::raftstore::split::SplitPolicy {
            max_keys: self.split_keys,
            max_bytes: self.split_bytes,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Role {
    /// PD alone: timestamps, ids, the store and region registries, the GC safe point.
    Pd {
        /// Loopback address for PD (clients and stores dial it).
        #[arg(long, default_value = "127.0.0.1:2379")]
        addr: SocketAddr,
        /// Directory for the cluster id, the timestamp limit and the id allocator.
        #[arg(long)]
        data_dir: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// One store of a replicated tier: region peers, their Raft logs, the data.
    Store {
        /// Loopback address for the store's TiKV service (PD tells clients about it).
        #[arg(long)]
        addr: SocketAddr,
        /// Directory for the store's data and Raft log.
        #[arg(long)]
        data_dir: PathBuf,
        /// PD's address, host:port.
        #[arg(long)]
        pd: String,
        /// This store's id: 1..=--initial-stores.
        #[arg(long)]
        store_id: u64,
        /// How many stores bootstrap the first region together (each holds a replica).
        #[arg(long, default_value_t = 3)]
        initial_stores: u64,
        #[command(flatten)]
        common: Common,
    },
}

fn main() -> ExitCode {
    // `storage-node version` mirrors `surreal version`, so the lab finds and checks both
    // binaries the same way.
    if std::env::args().nth(1).as_deref() == Some("version") {
        println!(
            "{} for {} on {}",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH
        );
        return ExitCode::SUCCESS;
    }
    let args = Args::parse();
    let common = match &args.role {
        Some(Role::Pd { common, .. } | Role::Store { common, .. }) => common.clone(),
        None => args.common.clone(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&common.log))
        .with_writer(std::io::stderr)
        .init();
    let threads = match common.threads {
        0 => (std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            / 2)
        .clamp(1, 4),
        n => n,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args, common))
}

/// A started role: waits for a shutdown signal or a server failure.
enum Running {
    Both(Node),
    Pd(PdNode),
    Store(StoreNode),
}

impl Running {
    async fn wait(&mut self) -> Result<(), String> {
        match self {
            Running::Both(n) => n.wait().await,
            Running::Pd(n) => n.wait().await,
            Running::Store(n) => n.wait().await,
        }
    }

    async fn stop(self) {
        match self {
            Running::Both(n) => n.stop().await,
            Running::Pd(n) => n.stop().await,
            Running::Store(n) => n.stop().await,
        }
    }
}

async fn run(args: Args, common: Common) -> ExitCode {
    let started = match args.role {
        None => {
            let Some(data_dir) = args.data_dir else {
                eprintln!(
                    "error: --data-dir is required (where the data lives), e.g. --data-dir lab/storage"
                );
                return ExitCode::from(2);
            };
            Node::start(Config {
                addr: args.addr,
                data_dir: data_dir.clone(),
                split: common.split(),
                trace: common.trace,
            })
            .await
            .map(|node| {
                // The line the lab waits for; keep its shape stable.
                println!(
                    "storage-node ready on {} (cluster id {}, data {})",
                    node.addr,
                    node.storage.cluster_id(),
                    data_dir.display()
                );
                Running::Both(node)
            })
        }
        Some(Role::Pd { addr, data_dir, .. }) => PdNode::start(PdConfig {
            addr,
            data_dir: data_dir.clone(),
            trace: common.trace,
        })
        .await
        .map(|pd| {
            println!(
                "storage-node pd ready on {} (cluster id {}, data {})",
                pd.addr,
                pd.cluster_id(),
                data_dir.display()
            );
            Running::Pd(pd)
        }),
        Some(Role::Store {
            addr,
            data_dir,
            pd,
            store_id,
            initial_stores,
            ..
        }) => StoreNode::start(StoreConfig {
            addr,
            data_dir: data_dir.clone(),
            pd,
            store_id,
            initial_stores,
            raft: storage_node::raftstore::RaftConfig {
                split: common.split(),
                ..Default::default()
            },
            trace: common.trace,
        })
        .await
        .map(|store| {
            println!(
                "storage-node store {store_id} ready on {} (cluster id {}, data {})",
                store.addr,
                store.cluster_id,
                data_dir.display()
            );
            Running::Store(store)
        }),
    };
    let mut running = match started {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!("serving");
    tokio::select! {
        r = running.wait() => {
            if let Err(e) = r {
                eprintln!("error: server stopped: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            running.stop().await;
            ExitCode::SUCCESS
        }
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
