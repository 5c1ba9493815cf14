//! Notebook 06's experiments as `Cluster` methods: the questions SurrealDB's multi-node users
//! ask (see `experiments::production`). Each is a timed sequence of ordinary facade calls on the
//! caller's thread, plus plain HTTP clients on threads of their own where something must keep
//! going while the actor restarts nodes (a prober, a writer, three rolling-restart clients).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use polars::prelude::*;
use serde_json::{Value, json};

use super::Cluster;
use crate::experiments::production::define_race::{CatalogWrite, DefineRace, RaceRound};
use crate::experiments::production::feeds::{FeedReport, parse_changes};
use crate::experiments::production::life::{LifeRun, Probe};
use crate::experiments::production::schema_race::{SchemaAttempt, SchemaRace};
use crate::infra::http_api::{self, FailoverClient, HttpAuth};
use crate::vocab::error::LabError;
use crate::vocab::frames::frame;
use crate::vocab::key_meaning::decode_key;
use crate::vocab::nodes::NodeRef;

/// A short random suffix, so a re-run cell gets fresh tables.
fn nonce() -> String {
    format!("{:05x}", fastrand::u32(..0xfffff))
}

/// Refuses a count outside `1..=max`, naming the setting and the fix.
pub(crate) fn check_count(setting: &str, n: usize, max: usize) -> Result<(), LabError> {
    if (1..=max).contains(&n) {
        return Ok(());
    }
    Err(LabError::config(
        setting,
        format!("{n} is outside 1 to {max}"),
        format!("pass a {setting} between 1 and {max}; the notebook uses a few dozen"),
    ))
}

impl Cluster {
    /// The credentials, namespace and database of this lab, for the HTTP clients.
    pub fn http_auth(&self) -> HttpAuth {
        let c = self.config();
        HttpAuth {
            user: c.user.clone(),
            pass: c.pass.clone(),
            ns: c.namespace.clone(),
            db: c.database.clone(),
            token: None,
        }
    }

    /// `(node, base URL)` of every node, in order.
    pub fn http_bases(&self) -> Result<Vec<(String, String)>, LabError> {
        self.node_names()
            .into_iter()
            .map(|n| Ok((n.clone(), self.endpoint(n.as_str())?.http)))
            .collect()
    }

    /// A [`FailoverClient`] over every node of the lab, starting with node-a.
    pub fn failover_client(&self) -> Result<FailoverClient, LabError> {
        FailoverClient::new(self.http_bases()?, self.http_auth())
    }

    /// Every node's `/health` and `/ready` now, as a load balancer would poll them: node,
    /// health, ready (the HTTP status, or `null` when nothing answered).
    pub fn readiness(&self) -> Result<DataFrame, LabError> {
        let agent = http_api::agent(Duration::from_secs(2));
        let bases = self.http_bases()?;
        let rows: Vec<(String, Option<u16>, Option<u16>)> = bases
            .iter()
            .map(|(n, b)| {
                (
                    n.clone(),
                    http_api::probe(&agent, b, "/health"),
                    http_api::probe(&agent, b, "/ready"),
                )
            })
            .collect();
        frame(vec![
            Column::new(
                "node".into(),
                rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "health".into(),
                rows.iter().map(|r| r.1.map(u32::from)).collect::<Vec<_>>(),
            ),
            Column::new(
                "ready".into(),
                rows.iter().map(|r| r.2.map(u32::from)).collect::<Vec<_>>(),
            ),
        ])
    }

    /// The first two nodes' names, or an error naming the fix.
    fn two_nodes(&self) -> Result<(String, String), LabError> {
        let names = self.node_names();
        match names.as_slice() {
            [a, b, ..] => Ok((a.clone(), b.clone())),
            _ => Err(LabError::config(
                "nodes",
                "this experiment needs two nodes",
                "start the lab with .nodes(2) (the default) or add one with cluster.add_node()",
            )),
        }
    }

    /// Define before you write (issue 6136): `rounds` times, node-a and node-b `CREATE` a
    /// record at the same moment into a table nobody defined; then `rounds` times into a table
    /// defined first. With `.storage_trace(true)` the first round of each kind is traced, and
    /// the definition keys each transaction wrote are kept.
    pub fn define_race(&self, rounds: usize) -> Result<DefineRace, LabError> {
        check_count("rounds", rounds, 200)?;
        let (a, b) = self.two_nodes()?;
        let traced = self.config().storage_trace;
        let tag = nonce();
        let mut report = DefineRace {
            undefined: Vec::new(),
            defined: Vec::new(),
            catalog_undefined: Vec::new(),
            catalog_defined: Vec::new(),
        };
        for defined in [false, true] {
            for i in 0..rounds {
                let table = format!("race_{}{tag}_{i}", if defined { "d" } else { "u" });
                if defined {
                    self.quietly(|| {
                        self.sql(a.as_str(), &format!("DEFINE TABLE {table} SCHEMALESS"))
                    })?;
                }
                let qa = format!("CREATE {table} SET by = '{a}'");
                let qb = format!("CREATE {table} SET by = '{b}'");
                let mark = if traced && i == 0 {
                    Some(self.storage_trace_mark()?)
                } else {
                    None
                };
                let outcomes = self.quietly(|| {
                    self.race(vec![(a.as_str(), qa.as_str()), (b.as_str(), qb.as_str())])
                })?;
                let outcomes = [a.clone(), b.clone()]
                    .into_iter()
                    .zip(outcomes)
                    .map(|(n, r)| {
                        let err = r.err().map(|e| {
                            if e.is_transaction_conflict() {
                                format!("Transaction conflict: {}", e.brief())
                            } else {
                                e.brief()
                            }
                        });
                        (n, err)
                    })
                    .collect();
                report_rounds(&mut report, defined).push(RaceRound {
                    table: table.clone(),
                    defined,
                    outcomes,
                });
                if let Some(mark) = mark {
                    let writes = catalog_writes(&self.storage_trace_rows_since(mark)?, &table);
                    if defined {
                        report.catalog_defined = writes;
                    } else {
                        report.catalog_undefined = writes;
                    }
                }
            }
        }
        Ok(report)
    }

    /// Changefeeds instead of cross-node live queries: defines a table with `CHANGEFEED 1h`,
    /// writes `writes` records alternately through node-a and node-b, then reads
    /// `SHOW CHANGES FOR TABLE … SINCE` on every node, by versionstamp (0) and by a datetime
    /// taken before the first write.
    pub fn changefeed_compare(&self, writes: usize) -> Result<FeedReport, LabError> {
        check_count("writes", writes, 1000)?;
        let names = self.node_names();
        self.two_nodes()?;
        let table = format!("feed_{}", nonce());
        self.quietly(|| {
            self.sql(
                names[0].as_str(),
                &format!("DEFINE TABLE {table} CHANGEFEED 1h"),
            )
        })?;
        let now = self.quietly(|| self.sql(names[0].as_str(), "RETURN time::now()"))?;
        let since = now
            .first()
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut done = Vec::new();
        for k in 0..writes {
            let node = &names[k % 2];
            self.quietly(|| {
                self.sql(
                    node.as_str(),
                    &format!("CREATE {table}:{k} SET n = {k}, via = '{node}'"),
                )
            })?;
            done.push((node.clone(), format!("{table}:{k}")));
        }
        let mut by_vs = Vec::new();
        let mut by_time = Vec::new();
        for n in &names {
            let q = format!("SHOW CHANGES FOR TABLE {table} SINCE 0 LIMIT 10000");
            let r = self.quietly(|| self.sql(n.as_str(), &q))?;
            by_vs.push((n.clone(), parse_changes(r.rows())));
            let q = format!("SHOW CHANGES FOR TABLE {table} SINCE d'{since}' LIMIT 10000");
            let r = self.quietly(|| self.sql(n.as_str(), &q))?;
            by_time.push((n.clone(), parse_changes(r.rows())));
        }
        Ok(FeedReport {
            table,
            writes: done,
            by_versionstamp: by_vs,
            by_datetime: by_time,
        })
    }

    /// A node's life: stops `victim` with `signal` (`"SIGTERM"`: `stop_node`; `"SIGKILL"`:
    /// `kill_node`) while every node's `/health` and `/ready` are probed, polls `observer`'s
    /// `INFO FOR ROOT` until the victim is ARCHIVED and then gone (at most `limit`), and
    /// restarts it. Start the lab with `.membership_intervals(..)` to see the timings follow
    /// the settings.
    pub fn node_life(
        &self,
        victim: impl Into<NodeRef>,
        observer: impl Into<NodeRef>,
        signal: &str,
        limit: Duration,
    ) -> Result<LifeRun, LabError> {
        let hard = match signal {
            "SIGTERM" => false,
            "SIGKILL" => true,
            other => {
                return Err(LabError::config(
                    "signal",
                    format!("`{other}` is not a signal this experiment sends"),
                    "use \"SIGTERM\" (a clean stop) or \"SIGKILL\" (a crash)",
                ));
            }
        };
        let victim = self.endpoint(victim.into())?.node;
        let observer = self.endpoint(observer.into())?.node;
        if victim == observer {
            return Err(LabError::config(
                "observer",
                format!("{victim} cannot watch its own stop"),
                "pass another node as the observer, e.g. node_life(\"b\", \"a\", …)",
            ));
        }
        let (settings, cleanup_s) = match self.config().membership_intervals {
            Some(m) => (m.label(), m.cleanup.as_secs_f64()),
            None => (
                "defaults: refresh 3 s · check 15 s · cleanup 300 s".to_string(),
                300.0,
            ),
        };
        let bases: Vec<String> = self.http_bases()?.into_iter().map(|(_, b)| b).collect();
        let nodes = self.node_names();
        let stop = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let prober = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let agent = http_api::agent(Duration::from_millis(500));
                let mut out = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    for (i, b) in bases.iter().enumerate() {
                        let t_s = t0.elapsed().as_secs_f64();
                        let health = http_api::probe(&agent, b, "/health");
                        let ready = http_api::probe(&agent, b, "/ready");
                        out.push(Probe {
                            t_s,
                            node: i,
                            health,
                            ready,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(150));
                }
                out
            })
        };
        let run = (|| {
            std::thread::sleep(Duration::from_secs(1));
            let ids: Vec<String> = self
                .members(observer.as_str())?
                .into_iter()
                .filter(|m| m.lab_node.as_deref() == Some(victim.as_str()) && m.status == "ACTIVE")
                .map(|m| m.id)
                .collect();
            if ids.is_empty() {
                return Err(LabError::config(
                    "victim",
                    format!("{victim} is not ACTIVE in {observer}'s INFO FOR ROOT"),
                    format!("restart it first: cluster.restart_node(\"{victim}\")"),
                ));
            }
            let signalled_at_s = t0.elapsed().as_secs_f64();
            let signalled = Instant::now();
            if hard {
                self.kill_node(victim.as_str())?;
            } else {
                self.stop_node(victim.as_str())?;
            }
            let (mut archived_s, mut removed_s) = (None, None);
            while signalled.elapsed() < limit {
                let members = self.members(observer.as_str())?;
                let mine: Vec<_> = members.iter().filter(|m| ids.contains(&m.id)).collect();
                let t = signalled.elapsed().as_secs_f64();
                if archived_s.is_none() && mine.iter().any(|m| m.status == "ARCHIVED") {
                    archived_s = Some(t);
                }
                if mine.is_empty() {
                    removed_s = Some(t);
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let restarted_at_s = t0.elapsed().as_secs_f64();
            self.restart_node(victim.as_str())?;
            std::thread::sleep(Duration::from_secs(1));
            Ok((signalled_at_s, archived_s, removed_s, restarted_at_s))
        })();
        stop.store(true, Ordering::Relaxed);
        let probes = prober.join().unwrap_or_default();
        let (signalled_at_s, archived_s, removed_s, restarted_at_s) = run?;
        Ok(LifeRun {
            signal: signal.to_string(),
            victim,
            observer,
            settings,
            cleanup_s,
            signalled_at_s,
            archived_s,
            removed_s,
            restarted_at_s,
            nodes,
            probes,
        })
    }

    /// Schema changes propagate at once: `attempts` times, node-b writes a valid record into a
    /// fresh table, node-a defines `v` with `ASSERT $value > 0`, and node-b at once writes
    /// `v = -1`. Counts the violating writes node-b accepted.
    pub fn schema_race(&self, attempts: usize) -> Result<SchemaRace, LabError> {
        check_count("attempts", attempts, 500)?;
        let (a, b) = self.two_nodes()?;
        let tag = nonce();
        let mut out = Vec::new();
        for i in 0..attempts {
            let table = format!("schema_{tag}_{i}");
            self.quietly(|| self.sql(b.as_str(), &format!("CREATE {table}:ok SET v = 1")))?;
            self.quietly(|| {
                self.sql(
                    a.as_str(),
                    &format!("DEFINE FIELD v ON {table} TYPE int ASSERT $value > 0"),
                )
            })?;
            let acked = Instant::now();
            let r =
                self.quietly(|| self.sql(b.as_str(), &format!("CREATE {table}:bad SET v = -1")));
            let gap_ms = acked.elapsed().as_secs_f64() * 1000.0;
            out.push(SchemaAttempt {
                table,
                gap_ms,
                accepted: r.is_ok(),
                error: r.err().map(|e| e.brief()),
            });
        }
        Ok(SchemaRace {
            definer: a,
            writer: b,
            attempts: out,
        })
    }
}

/// The round list of one kind.
fn report_rounds(r: &mut DefineRace, defined: bool) -> &mut Vec<RaceRound> {
    if defined {
        &mut r.defined
    } else {
        &mut r.undefined
    }
}

/// The definition keys of `table` among the write RPCs of a trace.
fn catalog_writes(rows: &[crate::infra::trace::TraceRow], table: &str) -> Vec<CatalogWrite> {
    rows.iter()
        .filter(|r| {
            ["Prewrite", "Commit", "Lock"]
                .iter()
                .any(|k| r.rpc.contains(k))
        })
        .flat_map(|r| {
            r.keys.iter().filter_map(move |k| {
                let meaning = decode_key(k);
                let text = meaning.to_string();
                (meaning.is_definition() && text.contains(table)).then(|| CatalogWrite {
                    node: r.node.clone(),
                    rpc: r.rpc.clone(),
                    start_ts: r.start_ts,
                    key: text,
                    ok: r.ok,
                    error: r.error.clone(),
                })
            })
        })
        .collect()
}

/// A session client's state: its session id and the marker it stored in the session.
pub(crate) struct SessionState {
    pub id: String,
    pub marker: String,
}

/// Attaches `s` on `base`, signs in, picks namespace and database and stores the marker.
pub(crate) fn open_session(
    agent: &ureq::Agent,
    base: &str,
    auth: &HttpAuth,
    s: &SessionState,
) -> Result<(), http_api::CallError> {
    let sid = Some(s.id.as_str());
    http_api::rpc(agent, base, auth, sid, "attach", json!([]))?;
    http_api::rpc(
        agent,
        base,
        auth,
        sid,
        "signin",
        json!([{ "user": auth.user, "pass": auth.pass }]),
    )?;
    http_api::rpc(agent, base, auth, sid, "use", json!([auth.ns, auth.db]))?;
    http_api::rpc(agent, base, auth, sid, "set", json!(["marker", s.marker]))?;
    Ok(())
}
