//! Three more storage-tier drills, as the facade offers them: the majority-loss drill (two of
//! three stores killed under a steady writer, one restarted), the store-replacement drill (a
//! store's machine lost under a steady writer, a new store rebuilt in its place) and the replica
//! write cost (one write repeated on a one-store lab and on a three-replica lab, interleaved,
//! plus the three-replica write's waterfall). Each is a timed sequence of ordinary facade calls made on
//! the caller's thread, like the store-failover drill beside it in `replication.rs`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::Cluster;
use crate::experiments::majority_loss::{MajorityLoss, error_gist};
use crate::experiments::replica_cost::{ReplicaCost, WriteSample};
use crate::experiments::store_failover::FailoverWrite;
use crate::experiments::store_replacement::StoreReplacement;
use crate::infra::placement::Placement;
use crate::vocab::error::LabError;
use crate::vocab::nodes::NodeRef;

/// How long the drill writes before the kills (the healthy baseline).
const BASELINE: Duration = Duration::from_secs(1);
/// How long it keeps trying to write while two stores are down: long enough for a few failed
/// writes whatever each failure costs, short enough for a notebook.
const DOWN_FOR: Duration = Duration::from_secs(4);
/// How long it keeps writing after the first acknowledged write that follows the restart.
const AFTER_RESUME: Duration = Duration::from_secs(1);
/// Give up on writes resuming after this long.
const RESUME_LIMIT: Duration = Duration::from_secs(20);
/// Pause between the drill's writes: a steady trickle, not a load test.
const GAP: Duration = Duration::from_millis(20);
/// How long PD may take to show a leader or a rejoined store (heartbeats are per second).
const PD_LIMIT: Duration = Duration::from_secs(15);
/// Most writes a replica-cost sample may take (each is a full round trip).
const MAX_WRITES: usize = 2000;

/// How long the replacement drill waits for every region to have three voters again.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// The sentence of a failed start that says why the store was refused (the store's own
/// error, found in the log tail the lab's error carries), else the error's first line.
fn refusal(error: &str, store: u64) -> String {
    let needle = format!("store {store}");
    error
        .lines()
        .map(|l| l.trim())
        .find(|l| l.contains(&needle) && (l.contains("tombstone") || l.contains("lost")))
        .map(|l| {
            // From the store's own words on (the log line's prefix is noise here).
            let at = l.find(&needle).unwrap_or(0);
            l[at..].to_string()
        })
        .unwrap_or_else(|| error.lines().next().unwrap_or_default().to_string())
}

/// The most replicas any region has, as PD's map shows.
fn replicas(p: &Placement) -> usize {
    p.regions.iter().map(|r| r.stores.len()).max().unwrap_or(0)
}

impl Cluster {
    /// The `n` of every record of a drill's `table`, read back through `node`.
    pub(super) fn stored_numbers(
        &self,
        node: &NodeRef,
        table: &str,
    ) -> Result<BTreeSet<u64>, LabError> {
        Ok(self
            .quietly(|| self.sql(node.clone(), &format!("SELECT VALUE n FROM {table}")))?
            .rows()
            .iter()
            .filter_map(|v| v.as_u64())
            .collect())
    }

    /// The acknowledged records of a drill's `table` that a read-back through `node` does not
    /// find (`table:n`): what the drill lost, which must be nothing.
    pub(super) fn missing(
        &self,
        node: &NodeRef,
        table: &str,
        acked: &BTreeSet<u64>,
    ) -> Result<Vec<String>, LabError> {
        let stored = self.stored_numbers(node, table)?;
        Ok(acked
            .difference(&stored)
            .map(|n| format!("{table}:{n}"))
            .collect())
    }

    /// The error for a drill that needs three stores on a lab that has fewer.
    fn needs_three_stores(&self, have: usize, what: &str) -> LabError {
        LabError::InvalidConfig {
            setting: "stores".into(),
            reason: format!("the storage tier has {have} store(s); {what}"),
            fix: "start the lab with `.stores(3)` (CLI: `lab up --stores 3`)".into(),
        }
    }

    /// The majority-loss drill (a `.stores(3)` lab): writes a record through `node` every
    /// ~20 ms; after 1 s kills the store that leads the region and one other (two of three, the
    /// majority); keeps trying to write for 4 s; restarts one of the two and keeps writing until
    /// writes have been acknowledged again for 1 s (at most 20 s); reads every record back;
    /// restarts the other store and waits until PD sees it. See [`MajorityLoss`].
    pub fn majority_loss(&self, node: impl Into<NodeRef>) -> Result<MajorityLoss, LabError> {
        let node = node.into();
        let (before, led) = self.placement_until(PD_LIMIT, |p| p.busiest_leader().is_some());
        if before.stores.len() != 3 {
            return Err(self.needs_three_stores(
                before.stores.len(),
                "the drill kills two of three, a majority",
            ));
        }
        let leader = match (led, before.busiest_leader()) {
            (true, Some(l)) => l,
            _ => {
                return Err(LabError::StorageUnavailable {
                    mode: "shared".into(),
                    reason: "PD names no leader for the region".into(),
                    fix: "check `cluster.stores()`: every store must be Up before the drill".into(),
                });
            }
        };
        // The leader and the next store id: which follower dies with it does not matter.
        let mut others: Vec<u64> = before
            .stores
            .iter()
            .map(|s| s.id)
            .filter(|id| *id != leader)
            .collect();
        others.sort_unstable();
        let (other, survivor) = (others[0], others[1]);
        // A fresh, defined table: a rerun starts from nothing, and no write pays for creating it.
        self.quietly(|| {
            self.sql(
                node.clone(),
                "REMOVE TABLE IF EXISTS majority; DEFINE TABLE majority SCHEMALESS",
            )
        })?;

        let t0 = Instant::now();
        let mut writes: Vec<FailoverWrite> = Vec::new();
        let mut acked = BTreeSet::new();
        let mut failed = BTreeSet::new();
        let mut write = |i: u64, writes: &mut Vec<FailoverWrite>| {
            let at_s = t0.elapsed().as_secs_f64();
            let t = Instant::now();
            let r = self
                .quietly(|| self.sql(node.clone(), &format!("CREATE majority:{i} SET n = {i}")));
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if r.is_ok() {
                acked.insert(i);
            } else {
                failed.insert(i);
            }
            writes.push(FailoverWrite {
                at_s,
                ms,
                ok: r.is_ok(),
                error: r.err().map(|e| error_gist(&e)),
            });
        };
        let mut i = 0;
        while t0.elapsed() < BASELINE {
            write(i, &mut writes);
            i += 1;
            std::thread::sleep(GAP);
        }
        self.kill_store(leader)?;
        self.kill_store(other)?;
        let kill_at = t0.elapsed();
        while t0.elapsed() - kill_at < DOWN_FOR {
            write(i, &mut writes);
            i += 1;
            std::thread::sleep(GAP);
        }
        // Restart the follower, not the old leader: the two live stores must elect a leader.
        self.restart_store(other)?;
        let restart_at = t0.elapsed();
        let mut resumed: Option<Instant> = None;
        loop {
            write(i, &mut writes);
            i += 1;
            if resumed.is_none() && writes.last().is_some_and(|w| w.ok) {
                resumed = Some(Instant::now());
            }
            let done = resumed.is_some_and(|r| r.elapsed() >= AFTER_RESUME);
            if done || t0.elapsed() - restart_at >= RESUME_LIMIT {
                break;
            }
            std::thread::sleep(GAP);
        }

        let stored = self.stored_numbers(&node, "majority")?;
        let name = |n: &u64| format!("majority:{n}");
        let lost = acked.difference(&stored).map(name).collect();
        let failed_but_stored = failed.intersection(&stored).map(name).collect();

        let t = Instant::now();
        self.restart_store(leader)?;
        // Rejoined: PD heard from the restarted process (a heartbeat younger than the restart).
        let (_, rejoined) = self.placement_until(PD_LIMIT, |p| {
            p.stores.iter().any(|s| {
                s.id == leader
                    && s.state == "Up"
                    && s.heartbeat_ago_ms
                        .is_none_or(|ms| (ms as f64) < t.elapsed().as_secs_f64() * 1000.0)
            })
        });
        Ok(MajorityLoss {
            killed: [leader, other],
            survivor,
            restarted: other,
            replicas: replicas(&before),
            kill_at_s: kill_at.as_secs_f64(),
            restart_at_s: restart_at.as_secs_f64(),
            writes,
            lost,
            failed_but_stored,
            rejoin_s: rejoined.then(|| t.elapsed().as_secs_f64()),
        })
    }

    /// The store-replacement drill (a `.stores(3)` lab): writes a record through `node` every
    /// ~20 ms; after 1 s kills a store that leads no region (this drill is about the lost
    /// replica; section 9's drill is about the lost leader) and deletes its data folder; writes
    /// on for 1 s; replaces it (`replace_store`: PD removes it, a new store joins) and writes on
    /// until every region has three voters again, plus 1 s (at most 60 s); reads every record
    /// back; then tries to restart the lost store under its old id, which must be refused. See
    /// [`StoreReplacement`].
    pub fn store_replacement(
        &self,
        node: impl Into<NodeRef>,
    ) -> Result<StoreReplacement, LabError> {
        let node = node.into();
        let (before, ok) = self.placement_until(PD_LIMIT, |p| {
            p.busiest_leader().is_some() && p.is_settled(3)
        });
        let up: Vec<&crate::infra::placement::Store> =
            before.stores.iter().filter(|s| s.state == "Up").collect();
        if up.len() < 3 {
            return Err(self.needs_three_stores(
                up.len(),
                "the drill loses one of three and rebuilds its replicas on a new store",
            ));
        }
        if !ok {
            return Err(LabError::StorageUnavailable {
                mode: "shared".into(),
                reason: "PD's map does not show every region with a leader and three replicas".into(),
                fix: "check `cluster.placement()`: restart any store that is down, then run the drill again".into(),
            });
        }
        let lost_store = up
            .iter()
            .min_by_key(|s| (s.leader_count, std::cmp::Reverse(s.id)))
            .map(|s| s.id)
            .expect("three stores are up");
        self.quietly(|| {
            self.sql(
                node.clone(),
                "REMOVE TABLE IF EXISTS replaced; DEFINE TABLE replaced SCHEMALESS",
            )
        })?;

        let t0 = Instant::now();
        let mut writes: Vec<FailoverWrite> = Vec::new();
        let mut acked = BTreeSet::new();
        let mut i: u64 = 0;
        let mut write = |writes: &mut Vec<FailoverWrite>| {
            let at_s = t0.elapsed().as_secs_f64();
            let t = Instant::now();
            let r = self
                .quietly(|| self.sql(node.clone(), &format!("CREATE replaced:{i} SET n = {i}")));
            if r.is_ok() {
                acked.insert(i);
            }
            writes.push(FailoverWrite {
                at_s,
                ms: t.elapsed().as_secs_f64() * 1000.0,
                ok: r.is_ok(),
                error: r.err().map(|e| error_gist(&e)),
            });
            i += 1;
        };
        while t0.elapsed() < BASELINE {
            write(&mut writes);
            std::thread::sleep(GAP);
        }
        self.kill_store(lost_store)?;
        let lost_at = t0.elapsed();
        while t0.elapsed() - lost_at < BASELINE {
            write(&mut writes);
            std::thread::sleep(GAP);
        }
        let new_store = self.replace_store(lost_store)?;
        let replace_at = t0.elapsed();
        let mut settled: Option<Duration> = None;
        let mut after = before.clone();
        let mut n = 0u32;
        loop {
            write(&mut writes);
            n += 1;
            if settled.is_none()
                && n.is_multiple_of(5)
                && let Ok(p) = self.placement()
            {
                let done =
                    p.is_settled(3) && p.regions.iter().all(|r| !r.stores.contains(&lost_store));
                after = p;
                if done {
                    settled = Some(t0.elapsed() - replace_at);
                }
            }
            let since = t0.elapsed() - replace_at;
            if settled.is_some_and(|s| since >= s + BASELINE) || since >= SETTLE_LIMIT {
                break;
            }
            std::thread::sleep(GAP);
        }
        // PD marks the lost store a tombstone once nothing is left on it; take the map again.
        if settled.is_some() {
            let (p, _) =
                self.placement_until(PD_LIMIT, |p| p.store_state(lost_store) == Some("Tombstone"));
            after = p;
        }

        let lost = self.missing(&node, "replaced", &acked)?;

        // The lost store under its old id, with its empty folder: must be refused.
        let old_id_refused = match self.quietly(|| self.restart_store(lost_store)) {
            Ok(()) => {
                let _ = self.quietly(|| self.kill_store(lost_store));
                None
            }
            Err(e) => Some(refusal(&e.to_string(), lost_store)),
        };
        Ok(StoreReplacement {
            lost_store,
            new_store,
            before,
            after,
            lost_at_s: lost_at.as_secs_f64(),
            replace_at_s: replace_at.as_secs_f64(),
            settled_s: settled.map(|d| d.as_secs_f64()),
            writes,
            lost,
            old_id_refused,
        })
    }

    /// What replication costs a write: the same one-record `UPSERT` through `node`, `n` times
    /// on this lab and `n` times on `replicated` (a `.stores(3).storage_trace(true)` lab),
    /// interleaved so both see the same machine at the same moments; then one more write on
    /// each with its waterfall (where that lab traces), whose Raft steps explain the
    /// difference. This lab must have fewer replicas than `replicated`. See [`ReplicaCost`].
    pub fn replica_write_cost(
        &self,
        replicated: &Cluster,
        node: impl Into<NodeRef>,
        n: usize,
    ) -> Result<ReplicaCost, LabError> {
        let node = node.into();
        if !(1..=MAX_WRITES).contains(&n) {
            return Err(LabError::config(
                "n",
                format!("{n} writes per lab"),
                format!("ask for 1 to {MAX_WRITES} writes (50–100 give a steady p50 and p99)"),
            ));
        }
        if !replicated.config().storage_trace {
            return Err(LabError::config(
                "storage_trace",
                "the replicated lab records no storage trace, so its write's Raft steps cannot be shown",
                "start it with `.stores(3).storage_trace(true)`",
            ));
        }
        let one_map = self
            .placement_until(PD_LIMIT, |p| p.busiest_leader().is_some())
            .0;
        let many_map = replicated
            .placement_until(PD_LIMIT, |p| p.busiest_leader().is_some())
            .0;
        let (one_r, many_r) = (replicas(&one_map), replicas(&many_map));
        if many_r < 3 {
            return Err(self.needs_three_stores(
                many_map.stores.len(),
                "the replicated side needs three replicas",
            ));
        }
        if one_r >= many_r {
            return Err(LabError::config(
                "replicated",
                format!("this lab has {one_r} replicas per region, the other {many_r}"),
                "call it on the one-store lab and pass the `.stores(3)` lab: `one.replica_write_cost(&three, \"a\", 100)`",
            ));
        }
        let setup = "REMOVE TABLE IF EXISTS repl_cost; DEFINE TABLE repl_cost SCHEMALESS; UPSERT repl_cost:1 SET n = 0";
        for lab in [self, replicated] {
            lab.quietly(|| lab.sql(node.clone(), setup))?;
            // One untimed write each: the first statement on a fresh table warms caches.
            lab.quietly(|| lab.sql(node.clone(), "UPSERT repl_cost:1 SET n = 0"))?;
        }
        let mut one_ms = Vec::with_capacity(n);
        let mut many_ms = Vec::with_capacity(n);
        let timed = |lab: &Cluster, i: usize| -> Result<f64, LabError> {
            let t = Instant::now();
            lab.quietly(|| lab.sql(node.clone(), &format!("UPSERT repl_cost:1 SET n = {i}")))?;
            Ok(t.elapsed().as_secs_f64() * 1000.0)
        };
        for i in 1..=n {
            one_ms.push(timed(self, i)?);
            many_ms.push(timed(replicated, i)?);
        }
        let waterfall = |lab: &Cluster| -> Result<_, LabError> {
            if lab.config().storage_trace {
                let w = lab
                    .quietly(|| lab.sql_waterfall(node.clone(), "UPSERT repl_cost:1 SET n = -1"))?;
                Ok(Some(w))
            } else {
                Ok(None)
            }
        };
        Ok(ReplicaCost {
            one: WriteSample {
                lab: self.config().name.clone(),
                replicas: one_r,
                ms: one_ms,
                waterfall: waterfall(self)?,
            },
            many: WriteSample {
                lab: replicated.config().name.clone(),
                replicas: many_r,
                ms: many_ms,
                waterfall: waterfall(replicated)?,
            },
        })
    }
}
