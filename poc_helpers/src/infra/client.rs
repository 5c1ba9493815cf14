//! Talking to nodes: one official-SDK WebSocket connection per node, query results as plain JSON,
//! SurrealDB errors mapped to [`LabError`] with advice, and a tiny HTTP GET for `/health` & co.
//!
//! Why the official SDK (`surrealdb` 3.3.5, `Surreal<Client>` over `Ws`) rather than raw HTTP:
//! it is what an application would use, so the lab shows real client behaviour (sessions, auth,
//! reconnects, typed errors). Results are converted to `serde_json::Value` right away because
//! notebooks can name `serde_json` (re-exported by this crate) but not the SDK's own value type.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use surrealdb::Surreal;
use surrealdb::engine::remote::ws::{Client, Ws};
use surrealdb::opt::auth::Root;
use surrealdb::types::{NotFoundError, SurrealValue};

use crate::vocab::error::LabError;

/// A connected, signed-in SDK handle for one node, with namespace and database selected.
pub(crate) type Db = Surreal<Client>;

/// Everything needed to open a session on one node. Owned, so load workers can keep a copy and
/// reconnect by themselves.
#[derive(Debug, Clone)]
pub(crate) struct ConnectSpec {
    pub node: String,
    /// The node's own port (named in errors).
    pub port: u16,
    /// The port to dial: the node's, or its client-link proxy's (`.fault_links(true)`).
    pub dial_port: u16,
    pub user: String,
    pub pass: String,
    pub namespace: String,
    pub database: String,
    /// Run `DEFINE NAMESPACE/DATABASE IF NOT EXISTS` before selecting them.
    pub create_ns_db: bool,
    pub timeout: Duration,
}

/// Opens a WebSocket session: connect, sign in as root, (create and) select namespace/database.
pub(crate) async fn connect(spec: &ConnectSpec) -> Result<Db, LabError> {
    let conn_err = |message: String| LabError::Connection {
        node: spec.node.to_string(),
        port: spec.port,
        message,
    };
    let within = |what: &str| LabError::Timeout {
        what: what.to_string(),
        node: spec.node.to_string(),
        port: spec.port,
        after: spec.timeout,
        fix: "check `cluster.status()`: the node may be paused or overloaded".into(),
    };
    let db = tokio::time::timeout(
        spec.timeout,
        Surreal::new::<Ws>(format!("127.0.0.1:{}", spec.dial_port)),
    )
    .await
    .map_err(|_| within("connecting"))?
    .map_err(|e| conn_err(e.to_string()))?;
    let signin = db.signin(Root {
        username: spec.user.to_string(),
        password: spec.pass.to_string(),
    });
    match tokio::time::timeout(spec.timeout, signin)
        .await
        .map_err(|_| within("signing in"))?
    {
        Ok(_) => {}
        Err(e) if e.is_not_allowed() => {
            return Err(LabError::Auth {
                node: spec.node.to_string(),
                port: spec.port,
                user: spec.user.to_string(),
                message: e.message().to_string(),
            });
        }
        Err(e) => return Err(conn_err(e.to_string())),
    }
    let setup = async {
        if spec.create_ns_db {
            // Root sessions may define namespaces; the database is defined inside the namespace.
            db.query(format!("DEFINE NAMESPACE IF NOT EXISTS {}", spec.namespace))
                .await?
                .check()?;
            db.use_ns(&spec.namespace).await?;
            db.query(format!("DEFINE DATABASE IF NOT EXISTS {}", spec.database))
                .await?
                .check()?;
        } else {
            // SurrealDB 3.3.5's `use` creates a missing namespace/database for sessions allowed to
            // (root is). "Do not create" therefore has to look first: INFO lists what exists.
            if !info_keys(&db, "INFO FOR ROOT", "namespaces")
                .await?
                .contains(&spec.namespace.to_string())
            {
                return Err(surrealdb::Error::not_found(
                    format!("The namespace '{}' does not exist", spec.namespace),
                    NotFoundError::Namespace {
                        name: spec.namespace.to_string(),
                    },
                ));
            }
            db.use_ns(&spec.namespace).await?;
            if !info_keys(&db, "INFO FOR NS", "databases")
                .await?
                .contains(&spec.database.to_string())
            {
                return Err(surrealdb::Error::not_found(
                    format!("The database '{}' does not exist", spec.database),
                    NotFoundError::Database {
                        name: spec.database.to_string(),
                    },
                ));
            }
        }
        db.use_ns(&spec.namespace).use_db(&spec.database).await?;
        Ok::<(), surrealdb::Error>(())
    };
    match tokio::time::timeout(spec.timeout, setup)
        .await
        .map_err(|_| within("selecting namespace"))?
    {
        Ok(()) => Ok(db),
        Err(e) => Err(query_error(
            &spec.node,
            spec.port,
            &format!("USE NS {} DB {}", spec.namespace, spec.database),
            &e,
        )),
    }
}

/// The keys of one field of an `INFO FOR …` result, e.g. the namespace names of `INFO FOR ROOT`.
async fn info_keys(db: &Db, info: &str, field: &str) -> Result<Vec<String>, surrealdb::Error> {
    let value: surrealdb::types::Value = db.query(info).await?.check()?.take(0)?;
    Ok(match value.into_json_value().get(field) {
        Some(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    })
}

/// One statement's outcome straight from the SDK.
pub(crate) type StatementOutcome = Result<(Vec<serde_json::Value>, Option<f64>), surrealdb::Error>;

/// Runs a query and returns each statement's rows or error.
///
/// The outer `Err` is a failure of the whole request (a parse error, a broken connection); the
/// inner ones are per statement — SurrealDB runs the other statements of a query even when one
/// of them fails (unless they are inside `BEGIN … COMMIT`).
pub(crate) async fn run_query(
    db: &Db,
    query: &str,
    vars: Option<serde_json::Value>,
) -> Result<Vec<StatementOutcome>, surrealdb::Error> {
    let mut q = db.query(query);
    if let Some(vars) = vars {
        q = q.bind(vars);
    }
    let mut response = q.with_stats().await?;
    let n = response.num_statements();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let Some((stats, result)) = response.take::<surrealdb::types::Value>(i) else {
            continue;
        };
        let server_ms = stats.execution_time.map(|d| d.as_secs_f64() * 1000.0);
        out.push(result.map(|v| (value_rows(v.into_json_value()), server_ms)));
    }
    Ok(out)
}

/// A statement's value as rows: an array's elements, nothing for NONE/NULL, else the value itself.
pub(crate) fn value_rows(v: serde_json::Value) -> Vec<serde_json::Value> {
    match v {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// Turns an SDK error into [`LabError::Query`], keeping SurrealDB's kind, detail and wire code and
/// adding advice for the kinds a learner meets.
pub(crate) fn query_error(
    node: &str,
    port: u16,
    statement: &str,
    err: &surrealdb::Error,
) -> LabError {
    // A broken or refused WebSocket is not SurrealDB rejecting the statement: say so, and
    // whether it ran is unknown (see `bank` for why that matters).
    if err.is_connection() {
        return LabError::Connection {
            node: node.to_string(),
            port,
            message: err.message().to_string(),
        };
    }
    // The error's public accessors give kind and message; its SurrealValue form also carries the
    // wire `code` and the detail's own `kind` (e.g. TransactionConflict), which we keep.
    let wire = err.clone().into_value().into_json_value();
    let code = wire.get("code").and_then(|c| c.as_i64()).unwrap_or(-32000);
    let detail = wire
        .get("details")
        .and_then(|d| d.get("kind").or(Some(d)))
        .and_then(|k| k.as_str())
        .map(str::to_string);
    let kind = err.kind_str().to_string();
    let message = err.message().to_string();
    let fix = advice(&kind, detail.as_deref(), &message);
    LabError::Query {
        node: node.to_string(),
        port,
        statement: crate::vocab::oplog::shorten(statement, crate::vocab::oplog::SHORT_STATEMENT),
        message,
        kind,
        detail,
        code,
        fix,
    }
}

/// Advice for an error kind (see `LabError::Query`). Kept next to the mapping so new kinds get
/// advice where they get recognised.
fn advice(kind: &str, detail: Option<&str>, message: &str) -> String {
    let m = message.to_ascii_lowercase();
    match (kind, detail) {
        ("Validation", Some("Parse")) => {
            "check the SurrealQL syntax near the position the message points at \
             (reference: https://surrealdb.com/docs/surrealql)"
                .into()
        }
        ("NotFound", Some("Namespace")) => {
            "create the namespace (`DEFINE NAMESPACE name`), or let the lab create it: keep \
             `.create_namespace(true)` (the default) and set `.namespace(..)`"
                .into()
        }
        ("NotFound", Some("Database")) => {
            "create the database (`DEFINE DATABASE name` inside the namespace), or let the lab \
             create it: keep `.create_namespace(true)` (the default) and set `.database(..)`"
                .into()
        }
        ("NotFound", Some("Table")) => "create the table first (`DEFINE TABLE name` or `CREATE name …`)".into(),
        ("NotAllowed", _) => {
            "check the credentials (`.credentials(user, pass)` on the builder) and the user's permissions".into()
        }
        ("Query", Some("TransactionConflict")) => {
            "another transaction changed the same data first; running the statement again is safe \
             (see `LabError::is_transaction_conflict`)"
                .into()
        }
        ("Query", Some("TimedOut")) => "the statement hit its TIMEOUT; raise it or narrow the query".into(),
        ("Validation", Some("NamespaceEmpty" | "DatabaseEmpty")) => {
            "select a namespace and database: the lab does so on connect, but a `USE` statement or \
             `.create_namespace(false)` may have left none"
                .into()
        }
        ("AlreadyExists", _) => "a record with that id exists already: use UPSERT/UPDATE or another id".into(),
        ("Thrown", _) => "the query THREW this error on purpose (a THROW statement or an ASSERT)".into(),
        _ if m.contains("parse error") => {
            "check the SurrealQL syntax near the position the message points at \
             (reference: https://surrealdb.com/docs/surrealql)"
                .into()
        }
        _ if m.contains("already contains") => {
            "a UNIQUE index rejected a duplicate value: use a different value or update the existing record".into()
        }
        // 3.3.5 words a failed field ASSERT as "… must conform to: string::is_email($value)".
        _ if m.contains("expected")
            || m.contains("coerce")
            || m.contains("assert")
            || m.contains("must conform to") =>
        {
            "the value does not match the table's schema (schema/entities.surql): fix the value's type or format".into()
        }
        _ => "read SurrealDB's message above (SurrealQL reference: https://surrealdb.com/docs/surrealql)".into(),
    }
}

/// One HTTP GET to a loopback address: `(status, body)`, or the transport error as text.
///
/// A blocking `ureq` call on tokio's blocking pool: these are rare, tiny requests (`/health`,
/// `/version`, `/metrics`), and `ureq` without TLS is far lighter to compile than an async HTTP
/// stack — every notebook kernel compiles this crate's dependencies.
pub(crate) async fn http_get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    http_call(addr, path, None, timeout).await
}

/// One HTTP POST of a JSON body to a loopback address (PD's split and operator APIs), as
/// [`http_get`] does a GET.
pub(crate) async fn http_post(
    addr: SocketAddr,
    path: &str,
    body: String,
    timeout: Duration,
) -> Result<(u16, String), String> {
    http_call(addr, path, Some(body), timeout).await
}

/// HTTP DELETE on `addr`; `(status, body)` (PD's `DELETE /pd/api/v1/store/{id}`).
pub(crate) async fn http_delete(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    http_call(addr, path, Some(DELETE.into()), timeout).await
}

/// The body marker that makes [`http_call`] send a DELETE instead of a POST.
const DELETE: &str = "\u{0}DELETE";

/// A GET (no body), a JSON POST, or a DELETE.
async fn http_call(
    addr: SocketAddr,
    path: &str,
    body: Option<String>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // A 503 from /ready (or a 400 naming the fix) is an answer, not a failure.
            .http_status_as_error(false)
            // Loopback must never go through an HTTP proxy from the environment.
            .proxy(None)
            .build();
        let agent: ureq::Agent = config.into();
        let sent = match body {
            None => agent.get(&url).call(),
            Some(body) if body == DELETE => agent.delete(&url).call(),
            Some(body) => agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body),
        };
        let mut response = sent.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Ok((status, body))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Measures an async operation's wall time in ms.
pub(crate) async fn timed<F: std::future::Future>(f: F) -> (F::Output, f64) {
    let t = Instant::now();
    let out = f.await;
    (out, t.elapsed().as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_from_values() {
        assert_eq!(value_rows(serde_json::json!([1, 2])).len(), 2);
        assert_eq!(value_rows(serde_json::Value::Null).len(), 0);
        assert_eq!(value_rows(serde_json::json!({"a": 1})).len(), 1);
    }

    #[test]
    fn sdk_errors_keep_kind_detail_and_code() {
        let conflict = surrealdb::Error::query(
            "Transaction conflict".into(),
            surrealdb::types::QueryError::TransactionConflict,
        );
        let e = query_error("node-a", 8000, "UPDATE x SET a = 1", &conflict);
        assert!(e.is_transaction_conflict(), "{e:?}");
        match &e {
            LabError::Query {
                kind, detail, code, ..
            } => {
                assert_eq!(kind, "Query");
                assert_eq!(detail.as_deref(), Some("TransactionConflict"));
                assert_eq!(*code, crate::vocab::error::TRANSACTION_CONFLICT_CODE);
            }
            _ => unreachable!(),
        }
        assert!(e.to_string().contains("safe"), "{e}");

        let parse = surrealdb::Error::validation(
            "Parse error: Unexpected token".into(),
            surrealdb::types::ValidationError::Parse,
        );
        let e = query_error("node-a", 8000, "SELEC", &parse).to_string();
        assert!(e.contains("check the SurrealQL syntax"), "{e}");
    }

    #[test]
    fn a_failed_field_assert_points_at_the_schema() {
        let m = "Found 'not-an-email' for field `email`, with record `user:x`, but field must conform to: string::is_email($value)";
        assert!(
            advice("Query", None, m).contains("schema"),
            "{}",
            advice("Query", None, m)
        );
    }
}
