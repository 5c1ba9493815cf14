//! Queries and what they leave behind: SurrealQL on one node (or several at once), HTTP,
//! node status, the operation log as timings, and the storage trace.

use polars::prelude::DataFrame;

use super::{Cluster, Endpoint};
use crate::actor::command::Command;
use crate::infra::metrics::{self, Instance};
use crate::infra::trace::TraceRow;
use crate::vocab::error::LabError;
use crate::vocab::nodes::NodeRef;
use crate::vocab::oplog::OpRecord;
use crate::vocab::query::QueryResult;

/// A query's result and its client-side round trip in ms.
pub(crate) type TimedResult = (Result<QueryResult, LabError>, f64);

impl Cluster {
    /// Every node's status as structs (the spec's Instance entity).
    pub fn instances(&self) -> Result<Vec<Instance>, LabError> {
        self.actor.call(|reply| Command::Instances { reply })?
    }

    /// Status table: node, port, pid, state, version, rss_mb, uptime_s, storage, ready_ms,
    /// data_mb; one row per node, then the `storage` row in every state of the storage
    /// (`stopped` after `stop_all()`, `external` for `StorageMode::ExternalTikv`, none for
    /// isolated nodes). `.show()` (from the prelude) renders it as HTML in a notebook.
    pub fn status(&self) -> Result<DataFrame, LabError> {
        let rows = self.instances()?;
        metrics::instances_frame(&rows)
    }

    /// Runs SurrealQL on one node: `cluster.sql("b", "SELECT * FROM user")`, or by index
    /// `cluster.sql(1, …)`. Prints and records one log line. A statement error is `Err`.
    pub fn sql(&self, node: impl Into<NodeRef>, query: &str) -> Result<QueryResult, LabError> {
        self.sql_inner(node.into(), query, None)
    }

    /// Like [`Cluster::sql`] with bound parameters: `$name` in the query takes `vars["name"]`.
    /// `vars` must be a JSON object, e.g. `serde_json::json!({"name": "Ada"})`.
    pub fn sql_bind(
        &self,
        node: impl Into<NodeRef>,
        query: &str,
        vars: serde_json::Value,
    ) -> Result<QueryResult, LabError> {
        self.sql_inner(node.into(), query, Some(vars))
    }

    fn sql_inner(
        &self,
        node: NodeRef,
        query: &str,
        vars: Option<serde_json::Value>,
    ) -> Result<QueryResult, LabError> {
        let (line, result) = self.actor.call(|reply| Command::Sql {
            node,
            query: query.to_string(),
            vars,
            reply,
        })?;
        if let Some(line) = line {
            self.say(&line);
        }
        result
    }

    /// HTTP GET on a node: `cluster.http("a", "/health")` → `(200, "")`.
    pub fn http(&self, node: impl Into<NodeRef>, path: &str) -> Result<(u16, String), LabError> {
        let node = node.into();
        self.actor.call(|reply| Command::Http {
            node,
            path: path.to_string(),
            reply,
        })?
    }

    /// WebSocket and HTTP URLs of a node.
    pub fn endpoint(&self, node: impl Into<NodeRef>) -> Result<Endpoint, LabError> {
        let node = node.into();
        let all = self.instances()?;
        let i = match &node {
            NodeRef::Index(i) => all.get(*i).map(|_| *i),
            NodeRef::Name(n) => {
                let t = n.trim().to_ascii_lowercase();
                let t = t.strip_prefix("node-").unwrap_or(&t).to_string();
                all.iter()
                    .position(|x| x.node == format!("node-{t}"))
                    .or_else(|| t.parse().ok().filter(|i| *i < all.len()))
            }
        };
        let inst = i.map(|i| &all[i]).ok_or_else(|| LabError::UnknownNode {
            given: format!("{node:?}"),
            known: self.node_names().join(", "),
        })?;
        Ok(Endpoint {
            node: inst.node.clone(),
            ws: inst.ws_url.clone(),
            http: inst.http_url.clone(),
        })
    }

    /// The operation log as records.
    pub fn op_log(&self) -> Result<Vec<OpRecord>, LabError> {
        self.actor.call(|reply| Command::OpLog { reply })
    }

    /// Timings table, one row per operation: node, port, kind, statement, started_at_ms (ms since
    /// the lab started), ms, server_ms, rows, ok, error.
    pub fn timings(&self) -> Result<DataFrame, LabError> {
        let ops = self.op_log()?;
        metrics::timings_frame(&ops)
    }

    /// Empties the operation log.
    pub fn clear_timings(&self) -> Result<(), LabError> {
        self.actor.call(|reply| Command::ClearOpLog { reply })
    }

    /// Runs the queries at the same moment, each on its node (e.g. the same transaction from
    /// node-a and node-b), and returns each outcome in order. One of two transactions that
    /// write the same record gets SurrealDB's retryable conflict
    /// ([`LabError::is_transaction_conflict`]).
    pub fn race<N: Into<NodeRef>>(
        &self,
        queries: Vec<(N, &str)>,
    ) -> Result<Vec<Result<QueryResult, LabError>>, LabError> {
        Ok(self
            .race_timed(queries)?
            .into_iter()
            .map(|(r, _)| r)
            .collect())
    }

    /// [`race`](Self::race), with each query's client-side round trip in ms: a refused
    /// transaction took time too (its reads, its wait, its commit attempt).
    pub(crate) fn race_timed<N: Into<NodeRef>>(
        &self,
        queries: Vec<(N, &str)>,
    ) -> Result<Vec<TimedResult>, LabError> {
        let queries = queries
            .into_iter()
            .map(|(n, q)| (n.into(), q.to_string()))
            .collect();
        let outcomes = self.actor.call(|reply| Command::Race { queries, reply })?;
        Ok(outcomes
            .into_iter()
            .map(|(line, result, ms)| {
                if let Some(line) = line {
                    self.say(&line);
                }
                (result, ms)
            })
            .collect())
    }

    /// A mark in the storage trace (needs `.storage_trace(true)`); pass it to
    /// [`storage_trace_since`](Self::storage_trace_since).
    pub fn storage_trace_mark(&self) -> Result<u64, LabError> {
        self.actor.call(|reply| Command::TraceMark { reply })?
    }

    /// Every storage RPC since `mark` (node, rpc, start_ts, keys, …) as a table.
    pub fn storage_trace_since(&self, mark: u64) -> Result<DataFrame, LabError> {
        let rows = self
            .actor
            .call(|reply| Command::TraceSince { mark, reply })??;
        crate::infra::trace::trace_frame(&rows)
    }

    /// [`storage_trace_since`](Self::storage_trace_since) as [`TraceRow`]s, to compute with
    /// (e.g. `NodeJoin::from_trace` around an `add_node`).
    pub fn storage_trace_rows_since(&self, mark: u64) -> Result<Vec<TraceRow>, LabError> {
        self.actor
            .call(|reply| Command::TraceSince { mark, reply })?
    }

    /// Runs `query` on `node` and returns its latency waterfall: every storage RPC it caused
    /// (kind, decoded key, start offset, service time) and the time spent outside storage (see
    /// [`Waterfall`](crate::experiments::waterfall::Waterfall)). Needs `.storage_trace(true)`
    /// for the storage steps; on isolated storage it shows the client's and SurrealDB's times.
    pub fn sql_waterfall(
        &self,
        node: impl Into<NodeRef>,
        query: &str,
    ) -> Result<crate::experiments::waterfall::Waterfall, LabError> {
        let node = node.into();
        let (line, result) = self.actor.call(|reply| Command::Waterfall {
            node,
            query: query.to_string(),
            reply,
        })?;
        if let Some(line) = line {
            self.say(&line);
        }
        result
    }

    /// Runs `query` on `node` and returns what it did in the storage tier: every PD/TiKV
    /// request it caused, with the keys touched. Needs `.storage_trace(true)`.
    pub fn sql_traced(
        &self,
        node: impl Into<NodeRef>,
        query: &str,
    ) -> Result<(QueryResult, DataFrame), LabError> {
        let (result, rows) = self.sql_traced_rows(node, query)?;
        Ok((result, crate::infra::trace::trace_frame(&rows)?))
    }

    /// [`sql_traced`](Self::sql_traced) with the requests as [`TraceRow`]s, to compute with:
    /// `Handoff::new(&write_rows, &read_rows)` puts one node's write beside another's read.
    pub fn sql_traced_rows(
        &self,
        node: impl Into<NodeRef>,
        query: &str,
    ) -> Result<(QueryResult, Vec<TraceRow>), LabError> {
        let mark = self.storage_trace_mark()?;
        let result = self.sql(node, query)?;
        Ok((result, self.storage_trace_rows_since(mark)?))
    }
}
