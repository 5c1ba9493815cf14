//! A rolling restart (the shape of a version upgrade): every node restarts in turn while three
//! clients keep writing, each a request every few ms:
//!
//! - **naive**: one node (node-a), no retry — every request sent while its node is down fails;
//! - **failover**: every node, moves to the next on a retryable failure
//!   ([`FailoverClient`](crate::infra::http_api::FailoverClient));
//! - **session**: HTTP RPC in one client-attached session (`attach`, `signin`, `use`, a session
//!   variable), failing over like the failover client. Without `--durable-sessions` the session
//!   lives in one node's memory, so the next node does not know it; with it, the session is in
//!   storage and continues on any node.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::quantile;
use crate::present::charts::Chart;
use crate::present::timeline;
use crate::vocab::error::LabError;
use crate::vocab::frames::frame;

/// The three clients, in the order they are reported.
pub const CLIENTS: [&str; 3] = ["naive", "failover", "session"];

/// One request of one client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// `naive`, `failover` or `session`.
    pub client: String,
    /// Seconds since the run started, when the request was sent.
    pub t_s: f64,
    /// Round trip including retries, ms.
    pub ms: f64,
    /// Whether it succeeded in the end.
    pub ok: bool,
    /// The node that answered (or was last tried).
    pub node: String,
    /// The failure, when it failed.
    pub error: Option<String>,
}

/// One rolling restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollingRun {
    /// Whether the nodes ran with `--durable-sessions`.
    pub durable_sessions: bool,
    /// Every request of every client.
    pub samples: Vec<Sample>,
    /// `(label, start_s, end_s)` of each node's restart.
    pub windows: Vec<(String, f64, f64)>,
    /// Session requests served by another node than the one before, with the session intact.
    pub session_kept: usize,
    /// Times the session was gone on the node that answered and had to be attached again.
    pub session_lost: usize,
}

impl RollingRun {
    fn of(&self, client: &str) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.client == client)
    }
    /// Requests of `client`.
    pub fn requests(&self, client: &str) -> usize {
        self.of(client).count()
    }
    /// Failed requests of `client`.
    pub fn errors(&self, client: &str) -> usize {
        self.of(client).filter(|s| !s.ok).count()
    }
    /// Latency quantile of `client`'s successful requests, ms.
    pub fn latency(&self, client: &str, q: f64) -> f64 {
        let xs: Vec<f64> = self.of(client).filter(|s| s.ok).map(|s| s.ms).collect();
        quantile(&xs, q)
    }
    /// A short label: `with durable sessions` / `without durable sessions`.
    pub fn label(&self) -> &'static str {
        if self.durable_sessions {
            "with --durable-sessions"
        } else {
            "without --durable-sessions"
        }
    }

    /// One row per client: requests, errors, p50, p99 and max ms, sessions kept and lost.
    pub fn frame(&self) -> Result<DataFrame, LabError> {
        let r2 = |x: f64| (x * 100.0).round() / 100.0;
        frame(vec![
            Column::new("nodes".into(), CLIENTS.map(|_| self.label()).to_vec()),
            Column::new("client".into(), CLIENTS.to_vec()),
            Column::new(
                "requests".into(),
                CLIENTS.map(|c| self.requests(c) as u64).to_vec(),
            ),
            Column::new(
                "errors".into(),
                CLIENTS.map(|c| self.errors(c) as u64).to_vec(),
            ),
            Column::new(
                "p50_ms".into(),
                CLIENTS.map(|c| r2(self.latency(c, 0.5))).to_vec(),
            ),
            Column::new(
                "p99_ms".into(),
                CLIENTS.map(|c| r2(self.latency(c, 0.99))).to_vec(),
            ),
            Column::new(
                "max_ms".into(),
                CLIENTS.map(|c| r2(self.latency(c, 1.0))).to_vec(),
            ),
            Column::new(
                "sessions_kept".into(),
                CLIENTS
                    .map(|c| {
                        if c == "session" {
                            self.session_kept as i64
                        } else {
                            -1
                        }
                    })
                    .to_vec(),
            ),
            Column::new(
                "sessions_lost".into(),
                CLIENTS
                    .map(|c| {
                        if c == "session" {
                            self.session_lost as i64
                        } else {
                            -1
                        }
                    })
                    .to_vec(),
            ),
        ])
    }

    /// Latency of every client over time (failed requests drawn at 0), restarts shaded.
    pub fn chart(&self) -> Result<Chart, LabError> {
        let series: Vec<(String, Vec<(f64, f64)>)> = CLIENTS
            .iter()
            .map(|c| {
                (
                    format!("{c} client (ms; 0 = failed)"),
                    self.of(c)
                        .map(|s| (s.t_s, if s.ok { s.ms } else { 0.0 }))
                        .collect(),
                )
            })
            .collect();
        timeline::timeline(
            &format!("A rolling restart {}: latency per request", self.label()),
            "seconds",
            "round trip incl. retries (ms)",
            &series,
            &self.windows,
        )
    }

    /// The answer in sentences, from this run.
    pub fn explain(&self) -> String {
        format!(
            "{}: naive {} error(s) in {} requests; failover {} in {} (p99 {:.1} ms, max {:.1} ms); \
             session {} in {}, session kept across {} move(s) and lost {} time(s).",
            self.label(),
            self.errors("naive"),
            self.requests("naive"),
            self.errors("failover"),
            self.requests("failover"),
            self.latency("failover", 0.99),
            self.latency("failover", 1.0),
            self.errors("session"),
            self.requests("session"),
            self.session_kept,
            self.session_lost,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_latency_per_client() {
        let s = |client: &str, ok: bool, ms: f64| Sample {
            client: client.into(),
            t_s: 1.0,
            ms,
            ok,
            node: "node-a".into(),
            error: (!ok).then(|| "refused".to_string()),
        };
        let run = RollingRun {
            durable_sessions: true,
            samples: vec![
                s("naive", false, 1.0),
                s("naive", true, 2.0),
                s("failover", true, 9.0),
            ],
            windows: vec![("restart node-a".into(), 0.5, 1.5)],
            session_kept: 2,
            session_lost: 0,
        };
        assert_eq!((run.errors("naive"), run.errors("failover")), (1, 0));
        assert_eq!(run.latency("naive", 0.99), 2.0);
        assert_eq!(run.frame().unwrap().height(), 3);
        assert!(
            run.explain().contains("naive 1 error(s) in 2 requests"),
            "{}",
            run.explain()
        );
        assert!(run.chart().is_ok());
    }
}
