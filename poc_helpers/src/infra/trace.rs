//! The storage operation trace: which storage keys a SurrealQL statement touched, and which
//! `surreal` node sent each request.
//!
//! With `.storage_trace(true)` the embedded storage node appends one JSON line per PD/TiKV
//! RPC to `<lab>/storage-trace.jsonl`, carrying the client's `ip:port`. A `surreal` node keeps
//! long-lived gRPC connections to storage, so the lab can tell whose connection a port is by
//! asking the kernel which process owns that socket (Linux: `/proc/net/tcp` inodes matched
//! against `/proc/<pid>/fd`).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::vocab::error::LabError;
use crate::vocab::frames::frame;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

/// One traced storage RPC (the fields `storage-node` writes, plus the node it came from).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceRow {
    /// Wall-clock ms since the Unix epoch.
    pub at_ms: u64,
    /// The same instant in µs (0 in traces from before µs were recorded; see [`TraceRow::at_us`]).
    #[serde(default)]
    pub at_us: u64,
    /// The client connection, `127.0.0.1:PORT`.
    pub peer: String,
    /// Which lab node owns that connection (`node-a`, …), or `?` when it cannot be told.
    #[serde(default)]
    pub node: String,
    /// `KvGet`, `KvScan`, `KvPrewrite`, `KvCommit`, …
    pub rpc: String,
    /// The transaction's start timestamp.
    pub start_ts: u64,
    /// Keys in the request.
    pub n_keys: usize,
    /// The first keys, printable.
    pub keys: Vec<String>,
    /// Whether the RPC succeeded.
    pub ok: bool,
    /// Its error (e.g. a write conflict).
    pub error: Option<String>,
    /// Time the storage node spent on it, in µs.
    pub us: u64,
    /// For a write the storage node replicated through Raft: where its time went there.
    /// (Absent for reads, and in traces of a storage node before Raft.)
    #[serde(default)]
    pub raft: Option<RaftSteps>,
}

/// A replicated write's steps inside the storage node, µs (the storage node's `RaftSteps`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftSteps {
    /// Waiting in its region's queue on the leader.
    pub queued_us: u64,
    /// Running its Percolator action on the leader.
    pub execute_us: u64,
    /// The leader's Raft log append and fsync.
    pub persist_us: u64,
    /// Waiting for a quorum of the region's replicas (zero with one replica).
    pub commit_us: u64,
    /// Applying it to the storage engine, then answering.
    pub apply_us: u64,
}

impl TraceRow {
    /// Arrival in µs since the Unix epoch (from `at_ms` for older trace lines).
    pub fn at_us(&self) -> u64 {
        if self.at_us > 0 {
            self.at_us
        } else {
            self.at_ms * 1000
        }
    }
}

impl TraceRow {
    /// Rows as the table [`trace_frame`] builds (what `sql_traced` returns).
    pub fn frame(rows: &[TraceRow]) -> Result<DataFrame, LabError> {
        trace_frame(rows)
    }
}

/// Current length of the trace file: a mark to read from later.
pub fn mark(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Trace lines written after `from` (a [`mark`]).
pub fn read_since(path: &Path, from: u64) -> std::io::Result<Vec<TraceRow>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(from))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Maps the local ports of TCP connections owned by `pids` to the given names.
#[cfg(target_os = "linux")]
pub fn connection_owners(pids: &[(String, u32)]) -> HashMap<u16, String> {
    let mut by_inode = HashMap::new();
    for (name, pid) in pids {
        let Ok(proc) = procfs::process::Process::new(*pid as i32) else {
            continue;
        };
        let Ok(fds) = proc.fd() else { continue };
        for fd in fds.flatten() {
            if let procfs::process::FDTarget::Socket(inode) = fd.target {
                by_inode.insert(inode, name.clone());
            }
        }
    }
    let mut owners = HashMap::new();
    for table in [procfs::net::tcp(), procfs::net::tcp6()]
        .into_iter()
        .flatten()
    {
        for entry in table {
            if let Some(name) = by_inode.get(&entry.inode) {
                owners.insert(entry.local_address.port(), name.clone());
            }
        }
    }
    owners
}

/// Elsewhere the trace keeps the raw peer address.
#[cfg(not(target_os = "linux"))]
pub fn connection_owners(_pids: &[(String, u32)]) -> HashMap<u16, String> {
    HashMap::new()
}

/// Fills in `node` from the connection owners.
pub fn attribute(rows: &mut [TraceRow], owners: &HashMap<u16, String>) {
    for r in rows {
        let port = r
            .peer
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok());
        r.node = port
            .and_then(|p| owners.get(&p).cloned())
            .unwrap_or_else(|| "?".into());
    }
}

/// The trace as a table: at_ms (relative to the first row), node, rpc, start_ts, n_keys,
/// keys (joined), ok, error, us.
pub fn trace_frame(rows: &[TraceRow]) -> Result<DataFrame, LabError> {
    let t0 = rows.first().map(|r| r.at_ms).unwrap_or(0);
    frame(vec![
        Column::new(
            "at_ms".into(),
            rows.iter()
                .map(|r| r.at_ms.saturating_sub(t0))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "node".into(),
            rows.iter().map(|r| r.node.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "rpc".into(),
            rows.iter().map(|r| r.rpc.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "start_ts".into(),
            // PD's RPCs (a timestamp request, a region lookup) belong to no transaction yet:
            // an empty cell, not a misleading 0.
            rows.iter()
                .map(|r| (r.start_ts != 0).then_some(r.start_ts))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "n_keys".into(),
            rows.iter().map(|r| r.n_keys as u64).collect::<Vec<_>>(),
        ),
        Column::new(
            "keys".into(),
            rows.iter().map(|r| r.keys.join(", ")).collect::<Vec<_>>(),
        ),
        Column::new("ok".into(), rows.iter().map(|r| r.ok).collect::<Vec<_>>()),
        Column::new(
            "error".into(),
            rows.iter().map(|r| r.error.clone()).collect::<Vec<_>>(),
        ),
        Column::new("us".into(), rows.iter().map(|r| r.us).collect::<Vec<_>>()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_after_a_mark_are_read_and_attributed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let line = |peer: &str, rpc: &str| {
            format!(
                r#"{{"at_ms":10,"peer":"{peer}","rpc":"{rpc}","start_ts":1,"n_keys":1,"keys":["/!k"],"ok":true,"error":null,"us":5}}"#
            )
        };
        std::fs::write(&path, line("127.0.0.1:5000", "KvGet") + "\n").unwrap();
        let m = mark(&path);
        std::fs::write(
            &path,
            [
                line("127.0.0.1:5000", "KvGet"),
                line("127.0.0.1:6000", "KvPrewrite"),
                String::new(),
            ]
            .join("\n"),
        )
        .unwrap();
        let mut rows = read_since(&path, m).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].rpc, "KvPrewrite");
        attribute(&mut rows, &HashMap::from([(6000, "node-b".to_string())]));
        assert_eq!(rows[0].node, "node-b");
        assert_eq!(trace_frame(&rows).unwrap().height(), 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn our_own_connection_is_attributed_to_us() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let local = client.local_addr().unwrap().port();
        let owners = connection_owners(&[("me".into(), std::process::id())]);
        assert_eq!(owners.get(&local).map(String::as_str), Some("me"));
    }
}
