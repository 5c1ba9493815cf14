//! Notebook 06's two operations drills as `Cluster` methods: a rolling restart under three
//! clients, and an export through one node while another writes, restored into a fresh lab.
//! Clients and the writer are plain HTTP threads (see `infra::http_api`), so they keep going
//! while the actor restarts nodes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Cluster;
use super::production::{SessionState, open_session};
use crate::experiments::production::backup::BackupReport;
use crate::experiments::production::fnv1a;
use crate::experiments::production::rolling::{RollingRun, Sample};
use crate::infra::http_api::{self, CallError, FailoverClient, HttpAuth};
use crate::vocab::error::LabError;
use crate::vocab::nodes::NodeRef;

/// Retries a session request may make across the nodes (a restart takes a second or two).
const SESSION_ATTEMPTS: u32 = 60;

impl Cluster {
    /// The lab's database as a SurrealQL script, exported through `node` (`GET /export`, what
    /// `surreal export` calls): one read transaction, so a consistent snapshot.
    pub fn export_sql(&self, node: impl Into<NodeRef>) -> Result<String, LabError> {
        let ep = self.endpoint(node.into())?;
        let agent = http_api::agent(Duration::from_secs(600));
        let auth = self.http_auth().signed_in(&agent, &ep.http);
        http_api::export(&agent, &ep.http, &auth)
            .map_err(|e| transfer_error("the export", &ep.node, e))
    }

    /// Runs a SurrealQL script (an export) on `node` through `POST /import`; an empty script
    /// is refused, since it would restore nothing.
    pub fn import_sql(&self, node: impl Into<NodeRef>, script: &str) -> Result<(), LabError> {
        check_script(script)?;
        let ep = self.endpoint(node.into())?;
        let agent = http_api::agent(Duration::from_secs(3600));
        let auth = self.http_auth().signed_in(&agent, &ep.http);
        http_api::import(&agent, &ep.http, &auth, script)
            .map_err(|e| transfer_error("the import", &ep.node, e))
    }

    /// A rolling restart under load: each node is restarted in turn (SIGTERM, start, wait until
    /// ready, 1.5 s to settle) while three clients each send a request every `interval`: a
    /// naive client pinned to node-a, a [`FailoverClient`], and a client in one HTTP RPC
    /// session that fails over too. Start the lab with `.durable_sessions(true)` to keep the
    /// session across nodes.
    pub fn rolling_restart(&self, interval: Duration) -> Result<RollingRun, LabError> {
        if interval.is_zero() || interval > Duration::from_secs(1) {
            return Err(LabError::config(
                "interval",
                format!("{} ms between requests", interval.as_millis()),
                "use an interval between 1 ms and 1 s; 20 ms gives a steady, light load",
            ));
        }
        let bases = self.http_bases()?;
        if bases.len() < 2 {
            return Err(LabError::config(
                "nodes",
                "a rolling restart needs two nodes, so one serves while the other restarts",
                "start the lab with .nodes(2) (the default)",
            ));
        }
        // A token instead of Basic authentication: the node would verify the password hash on
        // every request, and the clients would measure that instead of the restart.
        let auth = self
            .http_auth()
            .signed_in(&http_api::agent(Duration::from_secs(5)), &bases[0].1);
        let tag = format!("{:05x}", fastrand::u32(..0xfffff));
        let stop = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let spawn =
            |f: Box<dyn FnOnce() -> (Vec<Sample>, usize, usize) + Send>| std::thread::spawn(f);

        let naive = {
            let (stop, auth, (name, base)) = (stop.clone(), auth.clone(), bases[0].clone());
            let q = format!("UPSERT roll_{tag}:naive SET n += 1");
            spawn(Box::new(move || {
                let agent = http_api::agent(Duration::from_secs(5));
                let mut out = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (t_s, sent) = (t0.elapsed().as_secs_f64(), Instant::now());
                    let r = http_api::sql(&agent, &base, &auth, &q);
                    out.push(sample("naive", t_s, sent, &name, r.err()));
                    std::thread::sleep(interval);
                }
                (out, 0, 0)
            }))
        };
        let failover = {
            let stop = stop.clone();
            let client =
                FailoverClient::new(bases.clone(), auth.clone())?.attempts(SESSION_ATTEMPTS)?;
            let q = format!("UPSERT roll_{tag}:failover SET n += 1");
            spawn(Box::new(move || {
                let mut client = client;
                let mut out = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (t_s, sent) = (t0.elapsed().as_secs_f64(), Instant::now());
                    let node = client.current_node().to_string();
                    match client.sql(&q) {
                        Ok(s) => out.push(sample("failover", t_s, sent, &s.node, None)),
                        Err(e) => out.push(sample("failover", t_s, sent, &node, Some(e))),
                    }
                    std::thread::sleep(interval);
                }
                (out, 0, 0)
            }))
        };
        let session = {
            let (stop, auth, bases) = (stop.clone(), auth.clone(), bases.clone());
            let q = format!("UPSERT roll_{tag}:session SET n += 1; RETURN $marker;");
            spawn(Box::new(move || {
                session_client(&bases, &auth, &q, interval, t0, &stop)
            }))
        };

        let restarts = (|| {
            let mut windows = Vec::new();
            std::thread::sleep(Duration::from_millis(1500));
            for (name, _) in &bases {
                let w0 = t0.elapsed().as_secs_f64();
                self.restart_node(name.as_str())?;
                windows.push((format!("restart {name}"), w0, t0.elapsed().as_secs_f64()));
                std::thread::sleep(Duration::from_millis(1500));
            }
            Ok::<_, LabError>(windows)
        })();
        stop.store(true, Ordering::Relaxed);
        let mut samples = Vec::new();
        let (mut kept, mut lost) = (0, 0);
        for h in [naive, failover, session] {
            let (s, k, l) = h.join().unwrap_or_default();
            samples.extend(s);
            kept += k;
            lost += l;
        }
        Ok(RollingRun {
            durable_sessions: self.config().durable_sessions,
            samples,
            windows: restarts?,
            session_kept: kept,
            session_lost: lost,
        })
    }

    /// Export and restore: seeds `seed` records into a fresh table through `writer`, keeps
    /// writing one record at a time there, exports the database through `exporter`
    /// (`GET /export`), imports the script into `target` (a fresh lab: `.schema(false)`), and
    /// compares the restored records with the source's by keys and checksum.
    pub fn backup_drill(
        &self,
        exporter: impl Into<NodeRef>,
        writer: impl Into<NodeRef>,
        target: &Cluster,
        seed: usize,
    ) -> Result<BackupReport, LabError> {
        super::production::check_count("seed", seed, 1_000_000)?;
        let exporter = self.endpoint(exporter.into())?;
        let writer = self.endpoint(writer.into())?;
        let into = target.http_bases()?.remove(0).1;
        let agent = http_api::agent(Duration::from_secs(300));
        let auth = self.http_auth().signed_in(&agent, &writer.http);
        let target_auth = target.http_auth().signed_in(&agent, &into);
        let table = format!("backup_{:05x}", fastrand::u32(..0xfffff));
        let failed = |what: &str, e: CallError| {
            LabError::config(
                "backup",
                format!("{what} failed: {e}"),
                "check the node is running (cluster.status()) and see its log under the lab directory",
            )
        };
        let seed_q = format!(
            "FOR $i IN 0..{seed} {{ CREATE type::record('{table}', $i) SET n = $i, via = 'seed' }};"
        );
        http_api::sql(&agent, &writer.http, &auth, &seed_q).map_err(|e| failed("seeding", e))?;
        let seeded =
            count(&agent, &writer.http, &auth, &table).map_err(|e| failed("counting", e))?;

        let stop = Arc::new(AtomicBool::new(false));
        let acks = {
            let (stop, auth, base, table) = (
                stop.clone(),
                auth.clone(),
                writer.http.clone(),
                table.clone(),
            );
            std::thread::spawn(move || {
                let agent = http_api::agent(Duration::from_secs(10));
                let mut acks = Vec::new();
                let mut k = seeded;
                while !stop.load(Ordering::Relaxed) {
                    let q =
                        format!("CREATE type::record('{table}', {k}) SET n = {k}, via = 'writer'");
                    if http_api::sql(&agent, &base, &auth, &q).is_ok() {
                        acks.push(Instant::now());
                        k += 1;
                    }
                }
                acks
            })
        };
        std::thread::sleep(Duration::from_millis(400));
        let sent = Instant::now();
        let script = http_api::export(&agent, &exporter.http, &auth);
        let export_s = sent.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        let acks = acks.join().unwrap_or_default();
        let script = script.map_err(|e| failed("the export", e))?;
        let acked_before_export = seeded + acks.iter().filter(|t| **t < sent).count() as u64;

        let started = Instant::now();
        http_api::import(&agent, &into, &target_auth, &script)
            .map_err(|e| failed("the import", e))?;
        let import_s = started.elapsed().as_secs_f64();

        let rows_q = format!("SELECT record::id(id) AS k, n, via FROM {table} ORDER BY k");
        let restored = rows(&agent, &into, &target_auth, &rows_q)
            .map_err(|e| failed("reading the restore", e))?;
        let source = rows(&agent, &writer.http, &auth, &rows_q)
            .map_err(|e| failed("reading the source", e))?;
        let restored_keys: Vec<u64> = restored.iter().filter_map(|r| r["k"].as_u64()).collect();
        let source_same: Vec<String> = source
            .iter()
            .filter(|r| {
                r["k"]
                    .as_u64()
                    .is_some_and(|k| restored_keys.binary_search(&k).is_ok())
            })
            .map(Value::to_string)
            .collect();
        Ok(BackupReport {
            exporter: exporter.node,
            writer: writer.node,
            seeded,
            acked_before_export,
            acked_total: seeded + acks.len() as u64,
            export_bytes: script.len() as u64,
            export_s,
            import_s,
            source_checksum: fnv1a(source_same),
            restored_checksum: fnv1a(restored.iter().map(Value::to_string)),
            restored_keys,
        })
    }
}

/// Refuses an empty import script, naming the fix.
fn check_script(script: &str) -> Result<(), LabError> {
    if script.trim().is_empty() {
        return Err(LabError::config(
            "import",
            "the script is empty, so the import would restore nothing",
            "pass the text of an export, e.g. cluster.export_sql(\"b\") or a .surql file's contents",
        ));
    }
    Ok(())
}

/// A failed export or import, naming the node and what to check.
fn transfer_error(what: &str, node: &str, e: CallError) -> LabError {
    LabError::config(
        "export/import",
        format!("{what} through {node} failed: {e}"),
        "check the node is running (cluster.status()) and, for an import, that the script is a SurrealQL export",
    )
}

/// One client request as a sample.
fn sample(client: &str, t_s: f64, sent: Instant, node: &str, err: Option<CallError>) -> Sample {
    Sample {
        client: client.into(),
        t_s,
        ms: sent.elapsed().as_secs_f64() * 1000.0,
        ok: err.is_none(),
        node: node.into(),
        error: err.map(|e| e.to_string()),
    }
}

/// The rows of a one-statement query's result.
fn rows(
    agent: &ureq::Agent,
    base: &str,
    auth: &HttpAuth,
    q: &str,
) -> Result<Vec<Value>, CallError> {
    let r = http_api::sql(agent, base, auth, q)?;
    Ok(r.last()
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

/// Records in `table`.
fn count(agent: &ureq::Agent, base: &str, auth: &HttpAuth, table: &str) -> Result<u64, CallError> {
    let r = rows(
        agent,
        base,
        auth,
        &format!("SELECT count() AS c FROM {table} GROUP ALL"),
    )?;
    Ok(r.first().and_then(|v| v["c"].as_u64()).unwrap_or(0))
}

/// The session client of a rolling restart: one client-attached HTTP RPC session, a write and
/// a read of the session's variable per request, failing over to the next node when one does
/// not answer. Returns its samples, the moves that kept the session, and the times it was lost.
fn session_client(
    bases: &[(String, String)],
    auth: &HttpAuth,
    q: &str,
    interval: Duration,
    t0: Instant,
    stop: &AtomicBool,
) -> (Vec<Sample>, usize, usize) {
    let agent = http_api::agent(Duration::from_secs(5));
    let s = SessionState {
        id: http_api::new_session_id(),
        marker: format!("m-{:08x}", fastrand::u32(..)),
    };
    let mut out = Vec::new();
    let (mut current, mut last_ok) = (0usize, None::<usize>);
    let (mut kept, mut lost) = (0, 0);
    let mut opened = open_session(&agent, &bases[0].1, auth, &s).is_ok();
    while !stop.load(Ordering::Relaxed) {
        let (t_s, sent) = (t0.elapsed().as_secs_f64(), Instant::now());
        let mut err = None;
        let mut reopened = false;
        for _ in 0..SESSION_ATTEMPTS {
            let base = &bases[current].1;
            if !opened {
                opened = open_session(&agent, base, auth, &s).is_ok();
                if !opened {
                    current = (current + 1) % bases.len();
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
            match http_api::rpc(&agent, base, auth, Some(&s.id), "query", json!([q])) {
                Ok(v)
                    if v.as_array().and_then(|a| a.last()).map(|l| &l["result"])
                        == Some(&json!(s.marker)) =>
                {
                    if last_ok.is_some_and(|n| n != current) && !reopened {
                        kept += 1;
                    }
                    last_ok = Some(current);
                    err = None;
                    break;
                }
                Err(e) if e.retryable() => {
                    err = Some(e);
                    current = (current + 1) % bases.len();
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => {
                    // The node answered but does not know the session (or lost its variable).
                    err = Some(other.err().unwrap_or(CallError::Statement(
                        "the session's $marker was gone".into(),
                    )));
                    lost += 1;
                    reopened = true;
                    opened = false;
                }
            }
        }
        out.push(sample("session", t_s, sent, &bases[current].0, err));
        std::thread::sleep(interval);
    }
    (out, kept, lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_import_script_is_refused_naming_the_fix() {
        let e = check_script(" \n").unwrap_err().to_string();
        assert!(
            e.contains("empty") && e.contains("Fix: pass the text of an export"),
            "{e}"
        );
        assert!(check_script("OPTION IMPORT;").is_ok());
    }
}
