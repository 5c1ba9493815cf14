//! `storage-node`: the lab's shared storage tier (PD + TiKV protocols on one port).
//!
//! ```text
//! storage-node --data-dir target/lab/lab/storage --addr 127.0.0.1:2379
//! surreal start tikv://127.0.0.1:2379        # any number of times, on other ports
//! ```
//!
//! Prints one `ready` line on stdout once it accepts connections (the lab waits for it) and
//! exits cleanly on SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use storage_node::{Config, Node};

/// A single-process PD + TiKV storage node for the SurrealDB lab.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Loopback address serving both the PD and the TiKV gRPC services.
    #[arg(long, default_value = "127.0.0.1:2379", env = "STORAGE_NODE_ADDR")]
    addr: SocketAddr,
    /// Directory for the data file, the timestamp limit and the cluster identity.
    #[arg(long, env = "STORAGE_NODE_DATA_DIR")]
    data_dir: PathBuf,
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
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .init();
    let threads = match args.threads {
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
    runtime.block_on(async move {
        let config = Config {
            addr: args.addr,
            data_dir: args.data_dir.clone(),
            trace: args.trace,
        };
        let mut node = match Node::start(config).await {
            Ok(node) => node,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        // The line the lab waits for; keep its shape stable.
        println!(
            "storage-node ready on {} (cluster id {}, data {})",
            node.addr,
            node.storage.cluster_id(),
            args.data_dir.display()
        );
        tracing::info!(addr = %node.addr, "serving PD and TiKV");
        tokio::select! {
            r = node.wait() => {
                if let Err(e) = r {
                    eprintln!("error: server stopped: {e}");
                    return ExitCode::FAILURE;
                }
                ExitCode::SUCCESS
            }
            _ = shutdown_signal() => {
                tracing::info!("shutting down");
                node.stop().await;
                ExitCode::SUCCESS
            }
        }
    })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
