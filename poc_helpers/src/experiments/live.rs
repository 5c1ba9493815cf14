//! LIVE SELECT across nodes: what a subscriber on node A hears about a change written on
//! node B — and the setting that changes the answer.
//!
//! # What the lab measured (SurrealDB 3.3.5, two nodes on shared storage)
//!
//! A `LIVE SELECT` is registered in storage (so every node can see that it exists), but
//! notifications are produced by whichever **engine** the nodes run:
//!
//! * **`inline`** (the default). The *writing* node matches each change against the live
//!   queries inside its own write transaction and pushes notifications onto its own in-process
//!   channel, which only reaches clients connected to that same node. A change written on
//!   node B is **not** delivered to a `LIVE SELECT` on node A — silently: no error, no
//!   notification. Changes written on node A are delivered.
//! * **`router`** (experimental, `SURREAL_LIVE_QUERY_ENGINE=router`, read from the environment
//!   by `ConfigMap::from_env` into the datastore's `live_query_engine`; see `surrealdb-core`
//!   `kvs/ds/config.rs` and `lq/router.rs`). The writer only appends the before/after values to
//!   a live-event keyspace in storage; a router task on **every** node tails that keyspace
//!   (every 100 ms) and delivers to its own subscribers. A change written on node B **is**
//!   delivered to node A's `LIVE SELECT`. Both nodes must run the router engine: a writer on
//!   the inline engine never records the event.
//!
//! Choose the engine per lab with `.live_query_engine(LiveQueryEngine::Router)` and compare with
//! [`Cluster::live_watch`](crate::facade::Cluster::live_watch).
//!
//! # Why a helper
//!
//! The SDK's live stream is an async stream bound to the connection's runtime, which notebooks
//! cannot hold across cells (see `runtime`). So the whole experiment runs inside the lab's actor
//! — subscribe, run the writes, wait, unsubscribe — and returns the notifications as plain data.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::experiments::harness::Harness;
use crate::infra::client;
use crate::vocab::config::LiveQueryEngine;
use crate::vocab::error::LabError;
use crate::vocab::frames::frame;
use crate::vocab::nodes::NodeRef;

/// One notification received by the subscriber.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveNotification {
    /// `Create`, `Update`, `Delete` or `Killed`.
    pub action: String,
    /// The record id, e.g. `feed:b1`.
    pub record: Option<String>,
    /// The record after the change (before it, for a delete).
    pub data: serde_json::Value,
    /// When it arrived (lab clock, ms).
    pub received_at_ms: f64,
}

/// One write the experiment ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveWrite {
    /// The node that ran it.
    pub node: String,
    /// The statement.
    pub query: String,
    /// When it ran (lab clock, ms).
    pub at_ms: f64,
    /// Whether it succeeded.
    pub ok: bool,
}

/// What [`Cluster::live_watch`](crate::facade::Cluster::live_watch) saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveReport {
    /// The node the LIVE SELECT was registered on.
    pub listen_on: String,
    /// The engine the lab's nodes were started with (`None` = SurrealDB's default, inline).
    pub engine: Option<LiveQueryEngine>,
    /// The writes, in order.
    pub writes: Vec<LiveWrite>,
    /// The notifications, in arrival order.
    pub notifications: Vec<LiveNotification>,
}

impl LiveReport {
    /// True if a notification about `record` arrived.
    pub fn notified(&self, record: &str) -> bool {
        self.notifications
            .iter()
            .any(|n| n.record.as_deref() == Some(record))
    }

    /// One row per write: node, query, delivered (did a notification for its record arrive?),
    /// latency_ms (write → notification).
    pub fn notifications_frame(&self) -> Result<DataFrame, LabError> {
        let rows: Vec<(String, String, bool, Option<f64>)> = self
            .writes
            .iter()
            .map(|w| {
                let hit = self.notifications.iter().find(|n| {
                    n.record.as_deref().is_some_and(|r| w.query.contains(r))
                        && n.received_at_ms >= w.at_ms
                });
                (
                    w.node.clone(),
                    w.query.clone(),
                    hit.is_some(),
                    hit.map(|n| ((n.received_at_ms - w.at_ms) * 10.0).round() / 10.0),
                )
            })
            .collect();
        frame(vec![
            Column::new(
                "node".into(),
                rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "query".into(),
                rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "delivered".into(),
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            ),
            Column::new(
                "latency_ms".into(),
                rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            ),
        ])
    }
}

/// How long [`Cluster::live_watch`](crate::facade::Cluster::live_watch) waits after subscribing before it writes, with the router
/// engine (see the comment at its use). Generous on purpose: a loaded CI machine is slow.
pub const ROUTER_DISCOVERY_WAIT: Duration = Duration::from_millis(1500);

/// The LIVE SELECT watch (see `Cluster::live_watch`), run inside the actor: returns the
/// writes' log lines and the report.
pub(crate) async fn watch(
    h: &mut impl Harness,
    listen: NodeRef,
    table: String,
    writes: Vec<(NodeRef, String)>,
    wait: Duration,
) -> (Vec<String>, Result<LiveReport, LabError>) {
    let mut lines = Vec::new();
    let result = watch_inner(h, listen, table, writes, wait, &mut lines).await;
    (lines, result)
}

async fn watch_inner(
    h: &mut impl Harness,
    listen: NodeRef,
    table: String,
    writes: Vec<(NodeRef, String)>,
    wait: Duration,
    lines: &mut Vec<String>,
) -> Result<LiveReport, LabError> {
    let i = h.resolve(&listen)?;
    let (line, r) = h
        .sql(
            NodeRef::Index(i),
            format!("DEFINE TABLE IF NOT EXISTS {table} SCHEMALESS"),
        )
        .await;
    lines.extend(line);
    r?;
    let spec = h.connect_spec(i);
    // A session of its own, so the subscription ends when it is dropped.
    let db = client::connect(&spec).await?;
    let statement = format!("LIVE SELECT * FROM {table}");
    let sdk_err = |e: surrealdb::Error| client::query_error(&spec.node, spec.port, &statement, &e);
    let mut response = db.query(&statement).await.map_err(sdk_err)?;
    let mut stream = response
        .stream::<surrealdb::Notification<surrealdb::types::Value>>(0)
        .map_err(sdk_err)?;
    let got: Arc<Mutex<Vec<LiveNotification>>> = Arc::default();
    let created = h.created_unix_ms();
    let sink = got.clone();
    let listener = tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            let Ok(n) = item else { continue };
            let data = n.data.into_json_value();
            let record = data.get("id").and_then(|v| v.as_str()).map(str::to_string);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64() * 1000.0)
                .unwrap_or(0.0);
            sink.lock().unwrap().push(LiveNotification {
                action: format!("{:?}", n.action),
                record,
                data,
                received_at_ms: now - created as f64,
            });
        }
    });
    // The router engine's other nodes learn of a new subscription through storage, not at
    // once: a write on node-b within a few ms of the LIVE SELECT on node-a was seen to go
    // unrelayed. Waiting a moment measures relaying, not that discovery race.
    if h.config().live_query_engine == Some(LiveQueryEngine::Router) {
        tokio::time::sleep(ROUTER_DISCOVERY_WAIT).await;
    }
    let mut done = Vec::new();
    for (node, query) in writes {
        let at_ms = h.clock_ms();
        let name = h.node_name(&node);
        let (line, r) = h.sql(node, query.clone()).await;
        lines.extend(line);
        done.push(LiveWrite {
            node: name,
            query,
            at_ms,
            ok: r.is_ok(),
        });
    }
    tokio::time::sleep(wait).await;
    listener.abort();
    drop(db);
    let notifications = std::mem::take(&mut *got.lock().unwrap());
    Ok(LiveReport {
        listen_on: spec.node.clone(),
        engine: h.config().live_query_engine,
        writes: done,
        notifications,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_matches_notifications_to_writes() {
        let r = LiveReport {
            listen_on: "node-a".into(),
            engine: None,
            writes: vec![
                LiveWrite {
                    node: "node-a".into(),
                    query: "CREATE feed:a1".into(),
                    at_ms: 10.0,
                    ok: true,
                },
                LiveWrite {
                    node: "node-b".into(),
                    query: "CREATE feed:b1".into(),
                    at_ms: 20.0,
                    ok: true,
                },
            ],
            notifications: vec![LiveNotification {
                action: "Create".into(),
                record: Some("feed:a1".into()),
                data: serde_json::json!({"id": "feed:a1"}),
                received_at_ms: 12.5,
            }],
        };
        assert!(r.notified("feed:a1") && !r.notified("feed:b1"));
        let df = r.notifications_frame().unwrap();
        let delivered: Vec<Option<bool>> = df
            .column("delivered")
            .unwrap()
            .bool()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(delivered, [Some(true), Some(false)]);
        assert_eq!(LiveQueryEngine::Router.as_str(), "router");
    }
}
