//! LIVE SELECT across nodes.

use serde::{Deserialize, Serialize};

/// The environment variable `surreal` 3.3.5 reads to pick its live-query engine
/// (`ConfigMap::from_env` turns `SURREAL_LIVE_QUERY_ENGINE` into the datastore's
/// `live_query_engine` key; see `surrealdb-core` `kvs/ds/config.rs`).
pub const ENGINE_ENV: &str = "SURREAL_LIVE_QUERY_ENGINE";

/// SurrealDB 3.3.5's two live-query engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LiveQueryEngine {
    /// The default: the writing node matches the change against *its own* subscribers inside
    /// the write transaction, and notifies only them.
    Inline,
    /// Experimental: the writer stores the change in a live-event keyspace in storage, and a
    /// router task on every node tails it and notifies that node's subscribers.
    Router,
}

impl LiveQueryEngine {
    /// The env var's value.
    pub fn as_str(&self) -> &'static str {
        match self {
            LiveQueryEngine::Inline => "inline",
            LiveQueryEngine::Router => "router",
        }
    }
}
