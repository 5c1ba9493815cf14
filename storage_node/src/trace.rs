//! The operation trace: one JSON line per RPC, so the lab can show which storage keys a
//! SurrealQL statement touched and which SurrealDB node sent the request.
//!
//! Off by default (it costs a write per RPC). Each line carries the peer address of the gRPC
//! connection; the lab maps that back to a `surreal` process by the socket's owner.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::mvcc::reader::printable;

/// At most this many keys are listed per line; `n_keys` always has the full count.
const MAX_KEYS_PER_LINE: usize = 32;

/// One traced RPC.
#[derive(Serialize)]
pub struct TraceLine<'a> {
    /// Wall-clock time (ms since the Unix epoch) when the RPC arrived.
    pub at_ms: u64,
    /// The same instant in µs: RPCs of one statement are a few hundred µs apart, so a latency
    /// waterfall needs this resolution (the lab compares it with its client's own clock).
    pub at_us: u64,
    /// The client's address (`ip:port` of its connection).
    pub peer: String,
    /// The RPC name, e.g. `KvPrewrite`.
    pub rpc: &'a str,
    /// The transaction's start ts (0 if the RPC has none).
    pub start_ts: u64,
    /// How many keys the request named.
    pub n_keys: usize,
    /// The first keys, escaped to printable ASCII.
    pub keys: Vec<String>,
    /// Whether the RPC succeeded.
    pub ok: bool,
    /// The error, if any (e.g. a write conflict).
    pub error: Option<String>,
    /// Time spent serving it, in microseconds.
    pub us: u64,
    /// For a write that went through Raft: where its time went inside the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raft: Option<crate::raftstore::RaftSteps>,
}

/// How an RPC ended: its error, if any, and for a replicated write its Raft steps.
#[derive(Default)]
pub struct Served {
    /// The error, if any.
    pub error: Option<String>,
    /// Where a write's time went in Raft.
    pub raft: Option<crate::raftstore::RaftSteps>,
}

impl Served {
    /// An RPC that ended with `error` (or succeeded, for `None`) without Raft steps.
    pub fn with_error(error: Option<String>) -> Served {
        Served { error, raft: None }
    }
}

/// Writes trace lines to a file, or does nothing when tracing is off.
pub struct Tracer {
    out: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
}

impl Tracer {
    /// A tracer that records nothing.
    pub fn off() -> Tracer {
        Tracer { out: None }
    }

    /// A tracer appending to `path`.
    pub fn to_file(path: &Path) -> std::io::Result<Tracer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Tracer {
            out: Some(Mutex::new(std::io::BufWriter::new(file))),
        })
    }

    /// Whether lines are being written (callers skip building them otherwise).
    pub fn enabled(&self) -> bool {
        self.out.is_some()
    }

    /// Starts timing an RPC: its monotonic start, and its wall-clock arrival in µs.
    pub fn start(&self) -> Option<(Instant, u64)> {
        self.enabled().then(|| (Instant::now(), now_us()))
    }

    /// Records a finished RPC.
    pub fn record(
        &self,
        started: Option<(Instant, u64)>,
        peer: Option<SocketAddr>,
        rpc: &str,
        start_ts: u64,
        keys: &[&[u8]],
        served: Served,
    ) {
        let Served { error, raft } = served;
        let (Some(out), Some((t0, at_us))) = (&self.out, started) else {
            return;
        };
        let line = TraceLine {
            at_ms: at_us / 1000,
            at_us,
            peer: peer.map(|p| p.to_string()).unwrap_or_default(),
            rpc,
            start_ts,
            n_keys: keys.len(),
            keys: keys
                .iter()
                .take(MAX_KEYS_PER_LINE)
                .map(|k| printable(k))
                .collect(),
            ok: error.is_none(),
            error,
            us: t0.elapsed().as_micros() as u64,
            raft,
        };
        let mut out = out.lock().unwrap();
        if serde_json::to_writer(&mut *out, &line).is_ok() {
            // Flushed per line so a notebook reading the file sees it immediately.
            let _ = out.write_all(b"\n").and_then(|_| out.flush());
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
