//! Membership and recovery: which `surreal` nodes the cluster believes are alive, how a dead
//! one is noticed and archived, how long the survivor takes to keep serving and how long a
//! restarted node (or storage node) takes to serve again.
//!
//! # How SurrealDB 3.3.5 keeps track of its nodes
//!
//! There is no coordinator. Each node writes a **heartbeat** record for itself into the shared
//! storage every `--node-membership-refresh-interval` (default 3 s). Every
//! `--node-membership-check-interval` (default 15 s) each node scans those records and marks as
//! **ARCHIVED** every node whose heartbeat is older than **30 s** — a constant in
//! `Datastore::expire_nodes` (`surrealdb-core` `kvs/ds.rs`), not a flag. Every
//! `--node-membership-cleanup-interval` (default 300 s) archived nodes are removed, with the live
//! queries they owned. `INFO FOR ROOT` lists the records:
//! `NODE u'<uuid>' SEEN <unix ms> ACTIVE|ARCHIVED`.
//!
//! So with the defaults a crashed node is archived 30–45 s after its last heartbeat and removed
//! minutes later; with [`MembershipIntervals::fast`] it is archived ~31 s after and removed a few
//! seconds later. A node stopped gracefully (SIGTERM) archives *itself* on the way out.
//!
//! Membership is bookkeeping, not routing: the survivors never wait for it. Any node can serve
//! any request because the data is in storage, so a client that fails over to another node is
//! served at once — which [`Cluster::recovery_drill`] measures.
//!
//! Node ids are random per start and never printed, so the lab learns each start's id by asking
//! `INFO FOR ROOT` right after the node becomes ready, before the next one starts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use surrealdb::Surreal;
use surrealdb::engine::remote::ws::Ws;
use surrealdb::opt::auth::Root;

use crate::cluster::Cluster;
use crate::error::LabError;
use crate::lab::Lab;
use crate::runtime::{Command, NodeRef};

/// The three membership intervals of `surreal start` (defaults 3 s / 15 s / 300 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipIntervals {
    /// `--node-membership-refresh-interval`: how often a node writes its heartbeat.
    pub refresh: Duration,
    /// `--node-membership-check-interval`: how often a node looks for expired peers.
    pub check: Duration,
    /// `--node-membership-cleanup-interval`: how often archived nodes are removed.
    pub cleanup: Duration,
}

impl MembershipIntervals {
    /// Short intervals for demos: heartbeat and check every second, clean up every 10 s.
    pub fn fast() -> Self {
        MembershipIntervals {
            refresh: Duration::from_secs(1),
            check: Duration::from_secs(1),
            cleanup: Duration::from_secs(10),
        }
    }

    /// The `surreal start` flags.
    pub(crate) fn flags(&self) -> Vec<String> {
        let ms = |d: Duration| format!("{}ms", d.as_millis().max(1));
        vec![
            "--node-membership-refresh-interval".into(),
            ms(self.refresh),
            "--node-membership-check-interval".into(),
            ms(self.check),
            "--node-membership-cleanup-interval".into(),
            ms(self.cleanup),
        ]
    }
}

/// One entry of `INFO FOR ROOT`'s node list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// SurrealDB's node id (a UUID, new at every start).
    pub id: String,
    /// The lab node it belongs to, when the lab saw it start (`node-a`), else `None`.
    pub lab_node: Option<String>,
    /// `ACTIVE` or `ARCHIVED`.
    pub status: String,
    /// Its last heartbeat, Unix ms.
    pub seen_unix_ms: u64,
}

impl Member {
    /// Seconds since the last heartbeat.
    pub fn seen_ago_s(&self) -> f64 {
        (crate::node::unix_ms() as f64 - self.seen_unix_ms as f64).max(0.0) / 1000.0
    }
}

/// Parses `INFO FOR ROOT`'s `nodes` object: `{id: "NODE u'<id>' SEEN <ms> ACTIVE"}`.
pub(crate) fn parse_members(info: &serde_json::Value) -> Vec<Member> {
    let Some(map) = info.get("nodes").and_then(|n| n.as_object()) else {
        return Vec::new();
    };
    let mut out: Vec<Member> = map
        .iter()
        .map(|(id, v)| {
            let text = v.as_str().unwrap_or("");
            let words: Vec<&str> = text.split_whitespace().collect();
            let seen = words
                .iter()
                .position(|w| *w == "SEEN")
                .and_then(|k| words.get(k + 1))
                .and_then(|w| w.parse().ok())
                .unwrap_or(0);
            Member {
                id: id.clone(),
                lab_node: None,
                status: words.last().unwrap_or(&"").to_string(),
                seen_unix_ms: seen,
            }
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Members as a table: id, lab_node, status, seen_ago_s.
pub fn members_frame(rows: &[Member]) -> PolarsResult<DataFrame> {
    DataFrame::new(
        rows.len(),
        vec![
            Column::new(
                "id".into(),
                rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "lab_node".into(),
                rows.iter().map(|r| r.lab_node.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "status".into(),
                rows.iter().map(|r| r.status.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "seen_ago_s".into(),
                rows.iter()
                    .map(|r| (r.seen_ago_s() * 10.0).round() / 10.0)
                    .collect::<Vec<_>>(),
            ),
        ],
    )
}

/// One measured recovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryRow {
    /// What was measured, e.g. `survivor keeps serving`.
    pub scenario: String,
    /// The fault, e.g. `kill node-a`.
    pub fault: String,
    /// The node whose answers were timed.
    pub observed_on: String,
    /// Seconds from the reference moment (see `scenario`) to the first success.
    pub seconds: f64,
    /// Failed attempts before that.
    pub failed_attempts: u32,
}

/// Recovery rows as a table: scenario, fault, observed_on, seconds, failed_attempts.
pub fn recovery_frame(rows: &[RecoveryRow]) -> PolarsResult<DataFrame> {
    DataFrame::new(
        rows.len(),
        vec![
            Column::new(
                "scenario".into(),
                rows.iter().map(|r| r.scenario.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "fault".into(),
                rows.iter().map(|r| r.fault.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "observed_on".into(),
                rows.iter()
                    .map(|r| r.observed_on.clone())
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "seconds".into(),
                rows.iter()
                    .map(|r| (r.seconds * 1000.0).round() / 1000.0)
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "failed_attempts".into(),
                rows.iter().map(|r| r.failed_attempts).collect::<Vec<_>>(),
            ),
        ],
    )
}

/// What [`Cluster::recovery_drill`] saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryDrill {
    /// `INFO FOR ROOT` on the survivor before the kill.
    pub before: Vec<Member>,
    /// Right after the kill: the dead node is still ACTIVE (its heartbeat is merely old).
    pub after_kill: Vec<Member>,
    /// Once the dead node was archived (or the limit passed).
    pub after_archive: Vec<Member>,
    /// After the restart: a new id for the restarted node, the old one archived or gone.
    pub after_restart: Vec<Member>,
    /// The timings.
    pub recovery: Vec<RecoveryRow>,
}

impl RecoveryDrill {
    /// The timings as a table.
    pub fn frame(&self) -> PolarsResult<DataFrame> {
        recovery_frame(&self.recovery)
    }
}

impl Cluster {
    /// `INFO FOR ROOT`'s node list as `observer` sees it, each id labelled with the lab node
    /// it belongs to where the lab saw that start.
    pub fn members(&self, observer: impl Into<NodeRef>) -> Result<Vec<Member>, LabError> {
        let info = self.quietly(|| self.sql(observer, "INFO FOR ROOT"))?;
        let ids = self.actor.call(|reply| Command::MemberIds { reply })?;
        let mut members = parse_members(info.first().unwrap_or(&serde_json::Value::Null));
        for m in &mut members {
            m.lab_node = ids.get(&m.id).cloned();
        }
        Ok(members)
    }

    /// [`members`](Self::members) as a table: id, lab_node, status, seen_ago_s.
    pub fn membership(&self, observer: impl Into<NodeRef>) -> Result<DataFrame, LabError> {
        members_frame(&self.members(observer)?).map_err(frame_err)
    }

    /// Retries `query` on `node` until it succeeds or `limit` passes; returns the seconds it
    /// took and the failed attempts. Quiet (no log line per attempt).
    pub fn time_until_served(
        &self,
        node: impl Into<NodeRef>,
        query: &str,
        limit: Duration,
    ) -> Result<(f64, u32), LabError> {
        let node = node.into();
        let t = Instant::now();
        let mut failed = 0;
        loop {
            match self.quietly(|| self.sql(node.clone(), query)) {
                Ok(_) => return Ok((t.elapsed().as_secs_f64(), failed)),
                Err(e) if t.elapsed() >= limit => return Err(e),
                Err(_) => {
                    failed += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// The membership and recovery drill (shared storage, ≥ 2 nodes):
    ///
    /// 1. kill `victim`; time the survivor's first successful write after the kill
    ///    (*survivor keeps serving*);
    /// 2. poll the survivor's `INFO FOR ROOT` until the victim's entry is ARCHIVED (at most
    ///    `archive_limit`; ~31 s with [`MembershipIntervals::fast`]) (*membership archive*);
    /// 3. restart the victim; time from the restart call to its first successful query
    ///    (*restart recovery*);
    /// 4. kill and restart the storage node; time from the restart call to each node's first
    ///    successful query, with no node restarted (*storage restart recovery*).
    pub fn recovery_drill(
        &self,
        victim: impl Into<NodeRef>,
        survivor: impl Into<NodeRef>,
        archive_limit: Duration,
    ) -> Result<RecoveryDrill, LabError> {
        let victim = victim.into();
        let survivor = survivor.into();
        let vname = self.endpoint(victim.clone())?.node;
        let sname = self.endpoint(survivor.clone())?.node;
        let write = "UPSERT drill:probe SET n += 1";
        let limit = Duration::from_secs(120);
        self.quietly(|| self.sql(survivor.clone(), write))?;
        let before = self.members(survivor.clone())?;
        let victim_ids: Vec<String> = before
            .iter()
            .filter(|m| m.lab_node.as_deref() == Some(vname.as_str()) && m.status == "ACTIVE")
            .map(|m| m.id.clone())
            .collect();
        let mut recovery = Vec::new();

        self.kill_node(victim.clone())?;
        let killed_at = Instant::now();
        let (s, failed) = self.time_until_served(survivor.clone(), write, limit)?;
        recovery.push(RecoveryRow {
            scenario: "survivor keeps serving (kill → first write OK)".into(),
            fault: format!("kill {vname}"),
            observed_on: sname.clone(),
            seconds: s,
            failed_attempts: failed,
        });
        let after_kill = self.members(survivor.clone())?;

        let mut after_archive = after_kill.clone();
        let mut archived_after = None;
        while killed_at.elapsed() < archive_limit {
            after_archive = self.members(survivor.clone())?;
            let still_active = after_archive
                .iter()
                .any(|m| victim_ids.contains(&m.id) && m.status == "ACTIVE");
            if !still_active {
                archived_after = Some(killed_at.elapsed().as_secs_f64());
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if let Some(s) = archived_after {
            recovery.push(RecoveryRow {
                scenario: "membership archive (kill → ARCHIVED in INFO FOR ROOT)".into(),
                fault: format!("kill {vname}"),
                observed_on: sname.clone(),
                seconds: s,
                failed_attempts: 0,
            });
        }

        let t = Instant::now();
        self.restart_node(victim.clone())?;
        let (_, failed) = self.time_until_served(victim.clone(), write, limit)?;
        recovery.push(RecoveryRow {
            scenario: "restart recovery (restart call → first write OK)".into(),
            fault: format!("restart {vname}"),
            observed_on: vname.clone(),
            seconds: t.elapsed().as_secs_f64(),
            failed_attempts: failed,
        });
        let after_restart = self.members(survivor.clone())?;

        self.kill_storage()?;
        let t = Instant::now();
        self.restart_storage()?;
        for name in self.node_names() {
            let (_, failed) = self.time_until_served(name.as_str(), write, limit)?;
            recovery.push(RecoveryRow {
                scenario: "storage restart recovery (restart call → first write OK)".into(),
                fault: "kill + restart storage".into(),
                observed_on: name,
                seconds: t.elapsed().as_secs_f64(),
                failed_attempts: failed,
            });
        }
        Ok(RecoveryDrill {
            before,
            after_kill,
            after_archive,
            after_restart,
            recovery,
        })
    }
}

fn frame_err(e: PolarsError) -> LabError {
    LabError::ActorGone {
        reason: format!("building a DataFrame failed: {e}"),
    }
}

impl Lab {
    /// Learns node `i`'s member id right after it became ready: the ACTIVE member, not known
    /// yet, whose heartbeat is newer than this start. Best effort: a failure only means the
    /// membership table shows no lab node name for that id.
    pub(crate) async fn learn_member_id(&mut self, i: usize) {
        let spec = self.connect_spec(i);
        let spawned = self.node_started_unix_ms(i).unwrap_or(0);
        let fetch = async {
            let db = Surreal::new::<Ws>(format!("127.0.0.1:{}", spec.port))
                .await
                .ok()?;
            db.signin(Root {
                username: spec.user.clone(),
                password: spec.pass.clone(),
            })
            .await
            .ok()?;
            let v: surrealdb::types::Value = db.query("INFO FOR ROOT").await.ok()?.take(0).ok()?;
            Some(parse_members(&v.into_json_value()))
        };
        let Ok(Some(members)) = tokio::time::timeout(spec.timeout, fetch).await else {
            return;
        };
        let known: HashMap<&String, ()> = self.member_ids.keys().map(|k| (k, ())).collect();
        let fresh: Vec<&Member> = members
            .iter()
            .filter(|m| {
                m.status == "ACTIVE"
                    && !known.contains_key(&m.id)
                    && m.seen_unix_ms + 2000 >= spawned
            })
            .collect();
        if let [one] = fresh.as_slice() {
            self.member_ids.insert(one.id.clone(), spec.node.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_for_root_node_lists_are_parsed() {
        let info = serde_json::json!({"nodes": {
            "0c81": "NODE u'0c81' SEEN 1795645358456 ACTIVE",
            "af96": "NODE u'af96' SEEN 1795645356596 ARCHIVED",
        }});
        let m = parse_members(&info);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].status, "ACTIVE");
        assert_eq!(m[1].seen_unix_ms, 1795645356596);
        assert_eq!(members_frame(&m).unwrap().height(), 2);
        assert!(parse_members(&serde_json::json!({})).is_empty());
    }

    #[test]
    fn intervals_become_flags() {
        let f = MembershipIntervals::fast().flags();
        assert_eq!(f[0], "--node-membership-refresh-interval");
        assert_eq!(f[1], "1000ms");
        assert_eq!(f.len(), 6);
    }
}
