//! Measurements as polars DataFrames: the status of every node (the spec's *Instance* entity),
//! the operation log's timings, and process memory via `sysinfo`.
//!
//! The actor returns plain `Vec`s of the structs below; the DataFrames are built by the facade in
//! the caller's code (see `runtime` for why that matters in notebooks). Columns use only the
//! basic dtypes (string, u32, u64, f64, bool) so `polars` can stay at its minimal feature set.

use polars::prelude::{Column, DataFrame};
use serde::{Deserialize, Serialize};

use crate::vocab::error::LabError;
use crate::vocab::frames::frame;
use crate::vocab::nodes::NodeState;

/// One node as shown by `cluster.status()` — the spec's *Instance* entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// `node-a`, `node-b`, …
    pub node: String,
    /// Its 127.0.0.1 port (HTTP and WebSocket).
    pub port: u16,
    /// Process id while a process exists.
    pub pid: Option<u32>,
    /// Running, paused, stopped, killed, exited (with how), not started; shown as `running`, …
    /// External storage, which the lab does not own, is `external` (and has no pid).
    pub state: NodeState,
    /// SurrealDB version (from `GET /version` while running, else the binary's).
    pub version: Option<String>,
    /// Resident memory in MB (spec PR-004: under 200 MB).
    pub rss_mb: Option<f64>,
    /// Seconds since the current process was spawned.
    pub uptime_s: Option<f64>,
    /// Storage label, e.g. `memory`, `surrealkv`, `tikv://127.0.0.1:2379`.
    pub storage: String,
    /// Last start's time from spawn to ready, in ms (spec PR-001: under 30 s).
    pub ready_ms: Option<f64>,
    /// `ws://127.0.0.1:PORT` for SDKs.
    pub ws_url: String,
    /// `http://127.0.0.1:PORT` for HTTP tools.
    pub http_url: String,
    /// Data on disk in MB (the storage node's row; `None` for query nodes).
    #[serde(default)]
    pub data_mb: Option<f64>,
}

/// Resident memory of a process in MB (1 MB = 1,048,576 bytes), if it exists.
pub fn rss_mb(pid: u32) -> Option<f64> {
    crate::infra::procs::inspect(pid).map(|p| p.rss_bytes as f64 / (1024.0 * 1024.0))
}

/// Status table: node, port, pid, state, version, rss_mb, uptime_s, storage, ready_ms, data_mb
/// (the storage row is last; only the embedded storage node's has data_mb).
pub fn instances_frame(rows: &[Instance]) -> Result<DataFrame, LabError> {
    frame(vec![
        Column::new(
            "node".into(),
            rows.iter().map(|r| r.node.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "port".into(),
            rows.iter().map(|r| r.port as u32).collect::<Vec<_>>(),
        ),
        Column::new("pid".into(), rows.iter().map(|r| r.pid).collect::<Vec<_>>()),
        Column::new(
            "state".into(),
            rows.iter().map(|r| r.state.to_string()).collect::<Vec<_>>(),
        ),
        Column::new(
            "version".into(),
            rows.iter().map(|r| r.version.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "rss_mb".into(),
            rows.iter()
                .map(|r| r.rss_mb.map(round1))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "uptime_s".into(),
            rows.iter()
                .map(|r| r.uptime_s.map(round1))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "storage".into(),
            rows.iter().map(|r| r.storage.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "ready_ms".into(),
            rows.iter()
                .map(|r| r.ready_ms.map(round1))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "data_mb".into(),
            rows.iter()
                .map(|r| r.data_mb.map(round1))
                .collect::<Vec<_>>(),
        ),
    ])
}

/// Timings table, one row per operation: node, port, kind, statement, started_at_ms, ms,
/// server_ms, rows, ok, error.
pub fn timings_frame(ops: &[crate::vocab::oplog::OpRecord]) -> Result<DataFrame, LabError> {
    frame(vec![
        Column::new(
            "node".into(),
            ops.iter().map(|o| o.node.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "port".into(),
            ops.iter().map(|o| o.port as u32).collect::<Vec<_>>(),
        ),
        Column::new(
            "kind".into(),
            ops.iter().map(|o| o.kind.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "statement".into(),
            ops.iter().map(|o| o.statement.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "started_at_ms".into(),
            ops.iter().map(|o| o.started_at_ms).collect::<Vec<_>>(),
        ),
        Column::new("ms".into(), ops.iter().map(|o| o.ms).collect::<Vec<_>>()),
        Column::new(
            "server_ms".into(),
            ops.iter().map(|o| o.server_ms).collect::<Vec<_>>(),
        ),
        Column::new(
            "rows".into(),
            ops.iter().map(|o| o.rows).collect::<Vec<_>>(),
        ),
        Column::new("ok".into(), ops.iter().map(|o| o.ok).collect::<Vec<_>>()),
        Column::new(
            "error".into(),
            ops.iter().map(|o| o.error.clone()).collect::<Vec<_>>(),
        ),
    ])
}

/// One decimal is plenty for MB, seconds and start times, and keeps tables readable.
fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::oplog::OpRecord;

    #[test]
    fn frames_have_the_documented_columns() {
        let i = Instance {
            node: "node-a".into(),
            port: 8000,
            pid: Some(1),
            state: NodeState::Running,
            version: Some("3.3.5".into()),
            rss_mb: Some(61.234),
            uptime_s: None,
            storage: "memory".into(),
            ready_ms: Some(401.27),
            ws_url: "ws://127.0.0.1:8000".into(),
            http_url: "http://127.0.0.1:8000".into(),
            data_mb: None,
        };
        let df = instances_frame(&[i]).unwrap();
        let names: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "node", "port", "pid", "state", "version", "rss_mb", "uptime_s", "storage",
                "ready_ms", "data_mb"
            ]
        );
        assert_eq!(df.height(), 1);

        let op = OpRecord {
            node: "node-b".into(),
            port: 8001,
            kind: "SELECT".into(),
            statement: "SELECT 1".into(),
            statements: 1,
            started_at_ms: 1.0,
            ms: 0.5,
            server_ms: Some(0.1),
            rows: 1,
            ok: true,
            error: None,
        };
        let t = timings_frame(&[op.clone(), op]).unwrap();
        assert_eq!(t.height(), 2);
        assert_eq!(t.width(), 10);
        assert!(timings_frame(&[]).unwrap().height() == 0);
    }

    #[test]
    fn rss_of_this_process_is_positive() {
        assert!(rss_mb(std::process::id()).unwrap() > 0.0);
    }
}
