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
//! minutes later; with [`MembershipIntervals::fast`](crate::vocab::config::MembershipIntervals::fast) it is archived ~31 s after and removed a few
//! seconds later. A node stopped gracefully (SIGTERM) archives *itself* on the way out.
//!
//! Membership is bookkeeping, not routing: the survivors never wait for it. Any node can serve
//! any request because the data is in storage, so a client that fails over to another node is
//! served at once — which [`Cluster::recovery_drill`](crate::facade::Cluster::recovery_drill) measures.
//!
//! Node ids are random per start and never printed, so the lab learns each start's id by asking
//! `INFO FOR ROOT` right after the node becomes ready, before the next one starts.

use std::collections::HashMap;

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use surrealdb::Surreal;
use surrealdb::engine::remote::ws::Ws;
use surrealdb::opt::auth::Root;

use crate::infra::client::ConnectSpec;
use crate::vocab::error::LabError;
use crate::vocab::frames::frame;

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
        (crate::infra::process::unix_ms() as f64 - self.seen_unix_ms as f64).max(0.0) / 1000.0
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
pub fn members_frame(rows: &[Member]) -> Result<DataFrame, LabError> {
    frame(vec![
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
    ])
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
pub fn recovery_frame(rows: &[RecoveryRow]) -> Result<DataFrame, LabError> {
    frame(vec![
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
    ])
}

/// What [`Cluster::recovery_drill`](crate::facade::Cluster::recovery_drill) saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryReport {
    /// `INFO FOR ROOT` on the survivor before the kill.
    pub before: Vec<Member>,
    /// Right after the kill: the dead node is still ACTIVE (its heartbeat is merely old).
    pub after_kill: Vec<Member>,
    /// Once the dead node left ACTIVE: ARCHIVED, or already removed by the cleanup task that
    /// follows archiving (or when the limit passed, with the dead node still ACTIVE).
    pub after_archive: Vec<Member>,
    /// After the restart: a new id for the restarted node, the old one archived or gone.
    pub after_restart: Vec<Member>,
    /// The timings.
    pub recovery: Vec<RecoveryRow>,
}

impl RecoveryReport {
    /// The timings as a table: scenario, fault, observed_on, seconds, failed_attempts.
    pub fn timings_frame(&self) -> Result<DataFrame, LabError> {
        recovery_frame(&self.recovery)
    }

    /// The drill in sentences from its timings, answering notebook 05's question: which takes
    /// longer, a restarted node serving again or both nodes after a storage restart?
    pub fn explain(&self) -> String {
        let rows = |prefix: &str| -> Vec<&RecoveryRow> {
            self.recovery
                .iter()
                .filter(|r| r.scenario.starts_with(prefix))
                .collect()
        };
        let mut s = String::new();
        if let Some(r) = rows("survivor").first() {
            s.push_str(&format!(
                "After `{}`, {} served a write {:.3} s later: it shares nothing with the dead node. ",
                r.fault, r.observed_on, r.seconds
            ));
        }
        if let Some(r) = rows("membership archive").first() {
            s.push_str(&format!(
                "Its membership view stopped listing the dead node as ACTIVE {:.1} s after the \
                 kill: that is the heartbeat expiry, not anything watching the process. ",
                r.seconds
            ));
        }
        let restart = rows("restart recovery").first().map(|r| r.seconds);
        let storage = rows("storage restart");
        let slowest = storage
            .iter()
            .max_by(|a, b| a.seconds.total_cmp(&b.seconds));
        if let (Some(restart), Some(slowest)) = (restart, slowest) {
            let each: Vec<String> = storage
                .iter()
                .map(|r| {
                    format!(
                        "{} after {:.3} s ({} failed attempt(s))",
                        r.observed_on, r.seconds, r.failed_attempts
                    )
                })
                .collect();
            s.push_str(&format!(
                "\nAnswer: the restarted node served again {restart:.3} s after its restart; after \
                 the storage node restarted, the nodes served again {}, so {} took longer.",
                each.join(" and "),
                if slowest.seconds > restart {
                    "the storage restart"
                } else {
                    "the node restart"
                }
            ));
            let fastest = storage
                .iter()
                .map(|r| r.seconds)
                .fold(f64::INFINITY, f64::min);
            if storage.len() > 1 && slowest.seconds > 2.0 * fastest {
                s.push_str(&format!(
                    " The nodes differ although neither was restarted: each node's TiKV client \
                     finds out on its own that storage is back, retrying with back-off between \
                     attempts, so {} waited out a longer pause; its failed attempts are the \
                     drill's statements refused meanwhile. (The drill times the nodes one after \
                     the other, each from the restart call.)",
                    slowest.observed_on
                ));
            }
        }
        s
    }
}

/// Learns the member id of a node start right after it became ready: the ACTIVE member, not
/// in `known` yet, whose heartbeat is newer than `spawned_unix_ms`. Best effort: `None` only
/// means the membership table shows no lab node name for that id.
pub(crate) async fn learn_member_id(
    spec: &ConnectSpec,
    spawned_unix_ms: u64,
    known: &HashMap<String, String>,
) -> Option<String> {
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
    let members = tokio::time::timeout(spec.timeout, fetch).await.ok()??;
    let fresh: Vec<&Member> = members
        .iter()
        .filter(|m| {
            m.status == "ACTIVE"
                && !known.contains_key(&m.id)
                && m.seen_unix_ms + 2000 >= spawned_unix_ms
        })
        .collect();
    match fresh.as_slice() {
        [one] => Some(one.id.clone()),
        _ => None,
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
    fn the_recovery_sentence_answers_from_the_timings() {
        let row = |scenario: &str, on: &str, seconds: f64, failed: u32| RecoveryRow {
            scenario: scenario.into(),
            fault: "kill node-b".into(),
            observed_on: on.into(),
            seconds,
            failed_attempts: failed,
        };
        let report = RecoveryReport {
            before: vec![],
            after_kill: vec![],
            after_archive: vec![],
            after_restart: vec![],
            recovery: vec![
                row("survivor keeps serving", "node-a", 0.005, 0),
                row("membership archive", "node-a", 30.0, 0),
                row("restart recovery", "node-b", 0.226, 0),
                row("storage restart recovery", "node-a", 0.094, 0),
                row("storage restart recovery", "node-b", 0.81, 7),
            ],
        };
        let s = report.explain();
        assert!(s.contains("so the storage restart took longer"), "{s}");
        assert!(
            s.contains("node-b after 0.810 s (7 failed attempt(s))"),
            "{s}"
        );
        assert!(s.contains("so node-b waited out a longer pause"), "{s}");
        let mut even = report.clone();
        even.recovery[4].seconds = 0.1;
        let s = even.explain();
        assert!(
            s.contains("so the node restart took longer") && !s.contains("back-off"),
            "{s}"
        );
    }

    #[test]
    fn intervals_become_flags() {
        let f = crate::vocab::config::MembershipIntervals::fast().flags();
        assert_eq!(f[0], "--node-membership-refresh-interval");
        assert_eq!(f[1], "1000ms");
        assert_eq!(f.len(), 6);
    }
}
