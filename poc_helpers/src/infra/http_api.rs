//! SurrealDB's HTTP API from plain threads: `/sql`, JSON-RPC on `/rpc` (with client-attached
//! sessions, the kind `--durable-sessions` keeps in storage), `/health` and `/ready`, `/export`
//! and `/import`, and a [`FailoverClient`] that moves to the next node when one stops answering.
//!
//! Why blocking `ureq` on ordinary threads instead of the SDK on the actor: the callers here
//! (a rolling restart's clients, a health prober, a writer during an export) must keep running
//! *while* the actor is busy stopping and starting nodes, and an HTTP request carries no
//! connection state that a restart could leave behind — each call is independent, which is
//! what a client behind a load balancer sees too.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::vocab::error::LabError;

/// Credentials, namespace and database for every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAuth {
    /// Root user.
    pub user: String,
    /// Root password.
    pub pass: String,
    /// Namespace (`Surreal-NS`).
    pub ns: String,
    /// Database (`Surreal-DB`).
    pub db: String,
    /// A token from `/signin`: sent as `Bearer` instead of Basic authentication, which makes
    /// the node verify the password hash on every request (tens of ms on a small machine).
    pub token: Option<String>,
}

impl HttpAuth {
    /// The same credentials with a token from `POST /signin` on `base` (a root token is valid on
    /// every node of the cluster: the key that signs it is in the shared storage); unchanged
    /// (Basic authentication) when the sign-in fails.
    pub fn signed_in(mut self, agent: &ureq::Agent, base: &str) -> HttpAuth {
        let body = json!({ "user": self.user, "pass": self.pass }).to_string();
        let token = agent
            .post(&format!("{base}/signin"))
            .header("Accept", "application/json")
            .send(body.as_str())
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["token"].as_str().map(str::to_string));
        self.token = token;
        self
    }
}

/// Why one HTTP call failed, in the three kinds a client must tell apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No answer: connection refused or reset, a timeout. Another node may answer.
    Transport(String),
    /// An HTTP error status (503 while a node starts or stops, 401, …).
    Status(u16, String),
    /// The statement itself failed (SurrealDB's message), e.g. a conflict or an `ASSERT`.
    Statement(String),
}

impl CallError {
    /// True when running the same request again (on this node or another) can succeed: no
    /// answer, a 5xx, or SurrealDB's retryable transaction conflict.
    pub fn retryable(&self) -> bool {
        match self {
            CallError::Transport(_) => true,
            CallError::Status(code, _) => *code >= 500,
            CallError::Statement(m) => m.to_ascii_lowercase().contains("conflict"),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Transport(m) => write!(f, "no answer: {m}"),
            CallError::Status(c, m) => write!(f, "HTTP {c}: {m}"),
            CallError::Statement(m) => f.write_str(m),
        }
    }
}

/// An agent for loopback calls: no proxy from the environment, error statuses as answers.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

/// The `Authorization` header: the token when there is one, else Basic.
fn basic(auth: &HttpAuth) -> String {
    match &auth.token {
        Some(t) => format!("Bearer {t}"),
        None => format!("Basic {}", base64(&format!("{}:{}", auth.user, auth.pass))),
    }
}

/// Standard base64 (RFC 4648) of `s`: only the Basic authorization header needs it.
fn base64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, c)| n | (*c as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// POSTs `body` to `base + path` with the lab's headers; `(status, body)`.
fn post(
    agent: &ureq::Agent,
    url: &str,
    auth: &HttpAuth,
    content_type: &str,
    body: &str,
) -> Result<(u16, String), CallError> {
    let r = agent
        .post(url)
        .header("Authorization", &basic(auth))
        .header("Surreal-NS", &auth.ns)
        .header("Surreal-DB", &auth.db)
        .header("Accept", "application/json")
        .header("Content-Type", content_type)
        .send(body)
        .map_err(|e| CallError::Transport(e.to_string()))?;
    status_and_text(r)
}

/// A response's status and whole body (up to 1 GiB: an export can be large).
fn status_and_text(mut r: ureq::http::Response<ureq::Body>) -> Result<(u16, String), CallError> {
    let status = r.status().as_u16();
    let text = r
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .map_err(|e| CallError::Transport(e.to_string()))?;
    Ok((status, text))
}

/// Runs `query` through `POST /sql`: the result of every statement, or the first failure.
pub fn sql(
    agent: &ureq::Agent,
    base: &str,
    auth: &HttpAuth,
    query: &str,
) -> Result<Vec<Value>, CallError> {
    let (status, text) = post(agent, &format!("{base}/sql"), auth, "text/plain", query)?;
    if status != 200 {
        return Err(CallError::Status(status, text));
    }
    let parsed: Value =
        serde_json::from_str(&text).map_err(|e| CallError::Transport(format!("{e}: {text}")))?;
    let mut out = Vec::new();
    for st in parsed.as_array().cloned().unwrap_or_default() {
        if st["status"] != "OK" {
            return Err(CallError::Statement(
                st["result"]
                    .as_str()
                    .unwrap_or("statement failed")
                    .to_string(),
            ));
        }
        out.push(st["result"].clone());
    }
    Ok(out)
}

/// One JSON-RPC call on `POST /rpc`, in the session `session` when given (a client-attached
/// session: `attach` creates it; with `--durable-sessions` it lives in storage).
pub fn rpc(
    agent: &ureq::Agent,
    base: &str,
    auth: &HttpAuth,
    session: Option<&str>,
    method: &str,
    params: Value,
) -> Result<Value, CallError> {
    let mut req = json!({ "id": 1, "method": method, "params": params });
    if let Some(s) = session {
        req["session"] = json!(s);
    }
    let (status, text) = post(
        agent,
        &format!("{base}/rpc"),
        auth,
        "application/json",
        &req.to_string(),
    )?;
    if status >= 500 {
        return Err(CallError::Status(status, text));
    }
    let v: Value = serde_json::from_str(&text)
        .map_err(|_| CallError::Status(status, text.chars().take(200).collect()))?;
    if let Some(e) = v.get("error") {
        let msg = e["message"].as_str().unwrap_or("RPC error").to_string();
        return Err(CallError::Statement(msg));
    }
    Ok(v["result"].clone())
}

/// The status of `GET base + path` (`/health`, `/ready`), or `None` when nothing answered.
pub fn probe(agent: &ureq::Agent, base: &str, path: &str) -> Option<u16> {
    agent
        .get(&format!("{base}{path}"))
        .call()
        .ok()
        .map(|r| r.status().as_u16())
}

/// `GET /export`: the database as a SurrealQL script, read in one snapshot (SurrealDB 3.3.5
/// runs the whole export in one read transaction, `Datastore::export_with_config`).
pub fn export(agent: &ureq::Agent, base: &str, auth: &HttpAuth) -> Result<String, CallError> {
    let r = agent
        .get(&format!("{base}/export"))
        .header("Authorization", &basic(auth))
        .header("Surreal-NS", &auth.ns)
        .header("Surreal-DB", &auth.db)
        .header("Accept", "application/octet-stream")
        .call()
        .map_err(|e| CallError::Transport(e.to_string()))?;
    let (status, text) = status_and_text(r)?;
    if status != 200 {
        return Err(CallError::Status(status, text));
    }
    Ok(text)
}

/// `POST /import`: runs a SurrealQL script (an export) on one node.
pub fn import(
    agent: &ureq::Agent,
    base: &str,
    auth: &HttpAuth,
    script: &str,
) -> Result<(), CallError> {
    let (status, text) = post(agent, &format!("{base}/import"), auth, "text/plain", script)?;
    if status != 200 {
        return Err(CallError::Status(status, text.chars().take(500).collect()));
    }
    if let Ok(Value::Array(sts)) = serde_json::from_str::<Value>(&text)
        && let Some(bad) = sts.iter().find(|s| s["status"] == "ERR")
    {
        return Err(CallError::Statement(bad["result"].to_string()));
    }
    Ok(())
}

/// A random version-4 UUID, the id of a client-attached RPC session.
pub fn new_session_id() -> String {
    let mut b: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The base URL of a node at `addr`.
pub fn base_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// What a [`FailoverClient`] call returns: the rows, the node that served them, and how many
/// attempts it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    /// The node that answered (`node-b`).
    pub node: String,
    /// Attempts, 1 when the first node answered.
    pub attempts: u32,
    /// Every statement's result.
    pub results: Vec<Value>,
}

/// A client that knows every node and moves on when one does not answer: the retry loop a
/// production client (or its load balancer) needs for a rolling restart.
///
/// It sticks to one node while that node answers, and on a retryable failure
/// ([`CallError::retryable`]: no answer, a 5xx, a transaction conflict) tries the next node,
/// with a short pause, up to `attempts` times. A failure that cannot be retried (a bad
/// statement, an `ASSERT`) comes back at once.
///
/// ```no_run
/// use poc_helpers::infra::http_api::{FailoverClient, HttpAuth};
/// let auth = HttpAuth { user: "root".into(), pass: "root".into(), ns: "lab".into(), db: "main".into(), token: None };
/// let mut client = FailoverClient::new(
///     vec![("node-a".into(), "http://127.0.0.1:8000".into()), ("node-b".into(), "http://127.0.0.1:8001".into())],
///     auth,
/// ).unwrap().attempts(8).unwrap();
/// let served = client.sql("UPSERT counter:1 SET n += 1").unwrap();
/// println!("served by {} after {} attempt(s)", served.node, served.attempts);
/// ```
#[derive(Debug, Clone)]
pub struct FailoverClient {
    nodes: Vec<(String, String)>,
    auth: HttpAuth,
    current: usize,
    attempts: u32,
    pause: Duration,
    agent: ureq::Agent,
}

impl FailoverClient {
    /// A client over `nodes` (`(name, base URL)`), starting with the first; 8 attempts, 50 ms
    /// apart, and a 5 s limit per request.
    pub fn new(nodes: Vec<(String, String)>, auth: HttpAuth) -> Result<Self, LabError> {
        if nodes.is_empty() {
            return Err(LabError::config(
                "failover nodes",
                "a failover client needs at least one node",
                "pass every node of the lab, e.g. cluster.failover_client() builds the list for you",
            ));
        }
        Ok(FailoverClient {
            nodes,
            auth,
            current: 0,
            attempts: 8,
            pause: Duration::from_millis(50),
            agent: agent(Duration::from_secs(5)),
        })
    }

    /// How many attempts one call may make across the nodes (at least 1).
    pub fn attempts(mut self, n: u32) -> Result<Self, LabError> {
        if n == 0 {
            return Err(LabError::config(
                "attempts",
                "0 attempts would never send the request",
                "use .attempts(n) with n ≥ 1; a rolling restart of N nodes needs about 2 × N",
            ));
        }
        self.attempts = n;
        Ok(self)
    }

    /// The pause before each retry (at most 5 s).
    pub fn pause(mut self, d: Duration) -> Result<Self, LabError> {
        if d > Duration::from_secs(5) {
            return Err(LabError::config(
                "pause",
                format!(
                    "a {} ms pause between retries stalls every caller",
                    d.as_millis()
                ),
                "use a pause of at most 5 s; 50 ms (the default) is enough for a node restart",
            ));
        }
        self.pause = d;
        Ok(self)
    }

    /// The node the next call goes to first.
    pub fn current_node(&self) -> &str {
        &self.nodes[self.current].0
    }

    /// Runs `query`, moving to the next node on each retryable failure.
    pub fn sql(&mut self, query: &str) -> Result<Served, CallError> {
        let mut last = CallError::Transport("no attempt made".into());
        for attempt in 1..=self.attempts {
            let (name, base) = self.nodes[self.current].clone();
            match sql(&self.agent, &base, &self.auth, query) {
                Ok(results) => {
                    return Ok(Served {
                        node: name,
                        attempts: attempt,
                        results,
                    });
                }
                Err(e) if e.retryable() => {
                    last = e;
                    self.current = (self.current + 1) % self.nodes.len();
                    std::thread::sleep(self.pause);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }
}

/// Milliseconds since `t0` as f64.
pub fn ms_since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        assert_eq!(base64("root:root"), "cm9vdDpyb290");
        assert_eq!(base64("a"), "YQ==");
        assert_eq!(base64("ab"), "YWI=");
    }

    #[test]
    fn only_unanswered_5xx_and_conflicts_are_retried() {
        assert!(CallError::Transport("refused".into()).retryable());
        assert!(CallError::Status(503, String::new()).retryable());
        assert!(!CallError::Status(401, String::new()).retryable());
        assert!(CallError::Statement("Transaction conflict: …".into()).retryable());
        assert!(!CallError::Statement("Found -1 for field `v`".into()).retryable());
    }

    #[test]
    fn failover_client_refuses_no_nodes_and_zero_attempts_naming_the_fix() {
        let auth = HttpAuth {
            user: "root".into(),
            pass: "root".into(),
            ns: "lab".into(),
            db: "main".into(),
            token: None,
        };
        assert!(basic(&auth).starts_with("Basic "));
        assert_eq!(
            basic(&HttpAuth {
                token: Some("t".into()),
                ..auth.clone()
            }),
            "Bearer t"
        );
        let e = FailoverClient::new(vec![], auth.clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least one node") && e.contains("Fix:"), "{e}");
        let one = vec![("node-a".to_string(), "http://127.0.0.1:9".to_string())];
        let c = FailoverClient::new(one, auth).unwrap();
        let e = c.clone().attempts(0).unwrap_err().to_string();
        assert!(e.contains("Fix: use .attempts(n) with n ≥ 1"), "{e}");
        assert!(c.pause(Duration::from_secs(60)).is_err());
    }

    #[test]
    fn session_ids_are_version_4_uuids() {
        let id = new_session_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, new_session_id());
    }
}
