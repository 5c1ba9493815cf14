//! Queries: one statement list on one node (recorded in the operation log), several at the
//! same moment on several nodes (races), and HTTP GETs.

use super::*;
use crate::infra::client;
use crate::infra::process::Managed as _;
use crate::infra::storage::StorageTier;
use crate::vocab::error::LabError;
use crate::vocab::nodes::{NodeRef, NodeState};
use crate::vocab::oplog::{self, OpRecord};
use crate::vocab::query::{QueryResult, StatementResult};

impl Lab {
    /// Runs a query on one node and records it in the operation log.
    pub(crate) async fn sql(
        &mut self,
        node: NodeRef,
        query: String,
        vars: Option<serde_json::Value>,
    ) -> (Option<String>, Result<QueryResult, LabError>) {
        let i = match self.resolve(&node) {
            Ok(i) => i,
            Err(e) => return (None, Err(e)),
        };
        if let Err(e) = self.check_owner() {
            return (None, Err(e));
        }
        let started_at_ms = self.clock_ms();
        let (result, ms) = self.sql_on(i, &query, vars).await;
        let result = result.map_err(|e| self.with_storage_hint(e));
        let node = &self.nodes[i];
        let (rows, server_ms, statements) = match &result {
            Ok(r) => (
                r.row_count() as u64,
                r.statements
                    .iter()
                    .map(|s| s.server_ms)
                    .sum::<Option<f64>>(),
                r.statements.len(),
            ),
            Err(_) => (0, None, oplog::split_statements(&query).len().max(1)),
        };
        let record = OpRecord {
            node: node.name.clone(),
            port: node.port,
            kind: oplog::op_kind(&query),
            statement: oplog::shorten(&query, oplog::RECORD_STATEMENT),
            statements,
            started_at_ms,
            ms,
            server_ms,
            rows,
            ok: result.is_ok(),
            error: result.as_ref().err().map(short_error),
        };
        let line = self.log_op(record);
        (Some(line), result)
    }

    /// Appends one operation to the log (dropping the oldest at [`OPLOG_CAPACITY`]) and returns
    /// its printed line.
    fn log_op(&mut self, record: OpRecord) -> String {
        let line = record.line();
        if self.oplog.len() == OPLOG_CAPACITY {
            self.oplog.pop_front();
        }
        self.oplog.push_back(record);
        line
    }

    /// Runs the queries concurrently (one per node session) and logs each like `sql` does.
    /// Commands are otherwise handled one at a time; this is how two nodes are made to
    /// compete for the same data at the same moment (conflict experiments).
    pub(crate) async fn race(
        &mut self,
        queries: Vec<(NodeRef, String)>,
    ) -> Vec<crate::actor::command::RaceResult> {
        let mut targets = Vec::with_capacity(queries.len());
        for (node, query) in queries {
            let i = match self.resolve(&node) {
                Ok(i) if self.nodes[i].is_up() => match self.client(i).await {
                    Ok(_) => Ok(i),
                    Err(e) => Err(e),
                },
                Ok(i) => Err(LabError::NodeDown {
                    node: self.nodes[i].name.clone(),
                    port: self.nodes[i].port,
                    state: self.nodes[i].state().to_string(),
                }),
                Err(e) => Err(e),
            };
            targets.push((i, query));
        }
        let started_at_ms = self.clock_ms();
        let limit = self.cfg.query_timeout;
        let runs = targets.iter().map(|(i, query)| {
            let db = i.as_ref().ok().and_then(|i| self.clients[*i].as_ref());
            async move {
                match db {
                    Some(db) => Some(
                        client::timed(tokio::time::timeout(
                            limit,
                            client::run_query(db, query, None),
                        ))
                        .await,
                    ),
                    None => None,
                }
            }
        });
        let outcomes = futures::future::join_all(runs).await;
        let mut out = Vec::with_capacity(outcomes.len());
        for ((i, query), outcome) in targets.into_iter().zip(outcomes) {
            let i = match i {
                Ok(i) => i,
                Err(e) => {
                    out.push((None, Err(e), 0.0));
                    continue;
                }
            };
            let (name, port) = (self.nodes[i].name.clone(), self.nodes[i].port);
            let (outcome, ms) = outcome.expect("a session exists for every resolved node");
            let result = match outcome {
                Err(_) => Err(LabError::Timeout {
                    what: "query".into(),
                    node: name.clone(),
                    port,
                    after: limit,
                    fix: "raise `.query_timeout(..)`".into(),
                }),
                Ok(Err(e)) => Err(client::query_error(&name, port, &query, &e)),
                Ok(Ok(outcomes)) => collect_outcomes(&name, port, &query, outcomes, ms),
            };
            let result = result.map_err(|e| self.with_storage_hint(e));
            let record = OpRecord {
                node: name,
                port,
                kind: oplog::op_kind(&query),
                statement: oplog::shorten(&query, oplog::RECORD_STATEMENT),
                statements: oplog::split_statements(&query).len().max(1),
                started_at_ms,
                ms,
                server_ms: None,
                rows: result.as_ref().map(|r| r.row_count() as u64).unwrap_or(0),
                ok: result.is_ok(),
                error: result.as_ref().err().map(short_error),
            };
            let line = self.log_op(record);
            out.push((Some(line), result, ms));
        }
        out
    }

    /// The query itself; returns the result and the client-side latency (query round trip only,
    /// not a reconnect, so timings compare like with like).
    pub(super) async fn sql_on(
        &mut self,
        i: usize,
        query: &str,
        vars: Option<serde_json::Value>,
    ) -> (Result<QueryResult, LabError>, f64) {
        if !self.nodes[i].is_up() {
            let n = &self.nodes[i];
            return (
                Err(LabError::NodeDown {
                    node: n.name.clone(),
                    port: n.port,
                    state: n.state().to_string(),
                }),
                0.0,
            );
        }
        let (name, port) = (self.nodes[i].name.clone(), self.nodes[i].port);
        let limit = self.cfg.query_timeout;
        let db = match self.client(i).await {
            Ok(db) => db,
            Err(e) => return (Err(e), 0.0),
        };
        let (outcome, ms) = client::timed(tokio::time::timeout(
            limit,
            client::run_query(db, query, vars),
        ))
        .await;
        let result = match outcome {
            Err(_) => Err(LabError::Timeout {
                what: "query".into(),
                node: name.clone(),
                port,
                after: limit,
                fix: "the node may be paused or overloaded (see `cluster.status()`); raise `.query_timeout(..)` for slow queries".into(),
            }),
            Ok(Err(e)) => {
                if e.is_connection() {
                    // Reconnect on the next call rather than reuse a broken session.
                    self.clients[i] = None;
                }
                Err(client::query_error(&name, port, query, &e))
            }
            Ok(Ok(outcomes)) => collect_outcomes(&name, port, query, outcomes, ms),
        };
        (result, ms)
    }

    /// HTTP GET on one node.
    pub(super) async fn http(
        &mut self,
        node: NodeRef,
        path: &str,
    ) -> Result<(u16, String), LabError> {
        let i = self.resolve(&node)?;
        let n = &mut self.nodes[i];
        if !n.is_up() {
            return Err(LabError::NodeDown {
                node: n.name.clone(),
                port: n.port,
                state: n.state().to_string(),
            });
        }
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        client::http_get(n.addr(), &path, self.cfg.query_timeout)
            .await
            .map_err(|message| LabError::Connection {
                node: n.name.clone(),
                port: n.port,
                message,
            })
    }

    /// Adds "the storage node is down" to an error when it is: every query needs storage, and
    /// SurrealDB's own message (a timeout, a KV error) does not say so.
    pub(super) fn with_storage_hint(&mut self, mut e: LabError) -> LabError {
        let state = match self.storage.as_mut().and_then(StorageTier::embedded) {
            Some(s) => s.refresh().clone(),
            None => return e,
        };
        if state == NodeState::Running {
            return e;
        }
        let hint = format!(
            "the storage node is {state}, and every query needs it: run `cluster.{}()`",
            if state == NodeState::Paused {
                "resume_storage"
            } else {
                "restart_storage"
            }
        );
        if let LabError::Query { fix, .. } | LabError::Timeout { fix, .. } = &mut e {
            *fix = hint;
        }
        e
    }
}

/// Turns per-statement outcomes into a `QueryResult`, or into the error that explains the
/// failure. In a failed transaction SurrealDB reports every statement as "not executed due to
/// a failed transaction" and only one with the cause (e.g. the COMMIT's conflict), so the
/// cause is preferred over the first error.
fn collect_outcomes(
    name: &str,
    port: u16,
    query: &str,
    outcomes: Vec<client::StatementOutcome>,
    ms: f64,
) -> Result<QueryResult, LabError> {
    let parts = oplog::split_statements(query);
    let matched = parts.len() == outcomes.len();
    let mut statements = Vec::with_capacity(outcomes.len());
    let mut errors = Vec::new();
    for (k, outcome) in outcomes.into_iter().enumerate() {
        let text = if matched {
            parts[k].clone()
        } else {
            oplog::collapse_ws(query)
        };
        match outcome {
            Ok((rows, server_ms)) => statements.push(StatementResult {
                statement: text,
                rows,
                server_ms,
            }),
            Err(e) => errors.push(client::query_error(name, port, &text, &e)),
        }
    }
    if errors.is_empty() {
        return Ok(QueryResult {
            node: name.to_string(),
            port,
            query: query.to_string(),
            statements,
            ms,
        });
    }
    let is_knock_on = |e: &LabError| {
        e.to_string()
            .contains("not executed due to a failed transaction")
    };
    let cause = errors.iter().position(|e| !is_knock_on(e)).unwrap_or(0);
    Err(errors.swap_remove(cause))
}

/// The error text kept in the operation log: SurrealDB's message, or our first line.
pub(super) fn short_error(e: &LabError) -> String {
    match e {
        LabError::Query { message, .. } => crate::vocab::error::brief(message),
        other => other.brief(),
    }
}
