//! A store's machine is lost (process and data folder) under a steady writer, and the store is
//! replaced. The claim (TiKV's, and the lab's tier's): a store that lost its data may not rejoin
//! under its old id — Raft would count votes and log entries it forgot — so PD **removes** it
//! and a **new store** joins; PD rebuilds each lost replica there (a learner copied by
//! snapshot, promoted to voter, the dead store's replica removed). Two of three replicas stay a
//! majority throughout, so writes go on, and nothing acknowledged is lost.
//!
//! [`StoreReplacement`] is the evidence: every write around the loss and the replacement, PD's
//! map before and after, how long the regions took to have three replicas again, and what
//! restarting the lost store under its old id answered. Its sentences are computed from those
//! numbers (`Cluster::store_replacement` runs the drill).

use crate::experiments::store_failover::{FailoverWrite, distinct_errors, writes_timeline};
use crate::infra::placement::Placement;
use crate::present::charts::Chart;
use crate::vocab::error::LabError;

/// What happened when a store's machine was lost and the store replaced.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreReplacement {
    /// The store whose process and data folder were lost.
    pub lost_store: u64,
    /// The store that joined in its place.
    pub new_store: u64,
    /// PD's map before the loss.
    pub before: Placement,
    /// PD's map once every region had three replicas again (or when the drill gave up).
    pub after: Placement,
    /// When the store was killed, seconds from the drill's start.
    pub lost_at_s: f64,
    /// When the replacement was asked for (old store removed, new store started).
    pub replace_at_s: f64,
    /// Seconds from the replacement until every region had three voters on up stores again;
    /// `None` if that did not happen within the drill's limit.
    pub settled_s: Option<f64>,
    /// Every write, in order.
    pub writes: Vec<FailoverWrite>,
    /// Acknowledged writes missing when read back (must be none).
    pub lost: Vec<String>,
    /// What restarting the lost store under its old id (with its empty data folder) answered:
    /// the refusal's words, or `None` if it started (which it must not).
    pub old_id_refused: Option<String>,
}

impl StoreReplacement {
    /// Regions that had a replica on the lost store before.
    pub fn replicas_to_rebuild(&self) -> usize {
        self.before
            .regions
            .iter()
            .filter(|r| r.stores.contains(&self.lost_store))
            .count()
    }

    /// Regions with a replica on the new store afterwards.
    pub fn replicas_on_new_store(&self) -> usize {
        self.after
            .regions
            .iter()
            .filter(|r| r.stores.contains(&self.new_store))
            .count()
    }

    /// The lost store's state in PD's map afterwards (`Tombstone` once nothing is left on it).
    pub fn lost_store_state(&self) -> String {
        self.after
            .store_state(self.lost_store)
            .unwrap_or("unknown")
            .to_string()
    }

    /// Acknowledged writes.
    pub fn acknowledged(&self) -> usize {
        self.writes.iter().filter(|w| w.ok).count()
    }

    /// Writes that failed (from the loss on; before it the tier was healthy).
    pub fn failed(&self) -> usize {
        self.writes.iter().filter(|w| !w.ok).count()
    }

    /// The slowest write from the loss on, ms.
    pub fn slowest_after_loss_ms(&self) -> f64 {
        self.writes
            .iter()
            .filter(|w| w.at_s >= self.lost_at_s)
            .map(|w| w.ms)
            .fold(0.0, f64::max)
    }

    /// The slowest write before the loss, ms.
    pub fn slowest_before_ms(&self) -> f64 {
        self.writes
            .iter()
            .filter(|w| w.at_s < self.lost_at_s)
            .map(|w| w.ms)
            .fold(0.0, f64::max)
    }

    /// The claim: every region has three replicas again, none on the lost store, which PD
    /// marked a tombstone; the new store holds each rebuilt replica; the old id was refused;
    /// nothing acknowledged was lost.
    pub fn claim_holds(&self) -> bool {
        self.settled_s.is_some()
            && self
                .after
                .regions
                .iter()
                .all(|r| !r.stores.contains(&self.lost_store) && r.stores.len() == 3)
            && self.lost_store_state() == "Tombstone"
            && self.replicas_on_new_store() >= self.replicas_to_rebuild()
            && self.old_id_refused.is_some()
            && self.lost.is_empty()
    }

    /// What this run showed, in sentences computed from it.
    pub fn explain(&self) -> String {
        let mut out = vec![format!(
            "Store {} held {} of the {} region replica(s) when its process was killed and its data folder deleted, {:.1} s into the run.",
            self.lost_store,
            self.replicas_to_rebuild(),
            self.before.regions.len(),
            self.lost_at_s
        )];
        out.push(match self.settled_s {
            Some(s) => format!(
                "PD removed store {} and store {} joined {:.1} s into the run; {s:.1} s later every region had three voters again. Store {} now holds {} replica(s), each copied by snapshot as a learner and then promoted; store {} is {}.",
                self.lost_store,
                self.new_store,
                self.replace_at_s,
                self.new_store,
                self.replicas_on_new_store(),
                self.lost_store,
                self.lost_store_state()
            ),
            None => format!(
                "PD removed store {} and store {} joined {:.1} s into the run, but the regions did not have three voters again within the drill's limit.",
                self.lost_store, self.new_store, self.replace_at_s
            ),
        });
        let failed = self.failed();
        out.push(if failed == 0 {
            format!(
                "All {} writes were acknowledged: two replicas of three are a majority, so the region kept committing while one was lost and while its replacement was copied. The slowest write after the loss took {:.0} ms (before it: {:.0} ms).",
                self.writes.len(),
                self.slowest_after_loss_ms(),
                self.slowest_before_ms()
            )
        } else {
            format!(
                "{failed} of {} writes failed: {}",
                self.writes.len(),
                distinct_errors(self.writes.iter()).join(" | ")
            )
        });
        out.push(if self.lost.is_empty() {
            format!(
                "All {} acknowledged writes were read back.",
                self.acknowledged()
            )
        } else {
            format!(
                "{} acknowledged write(s) were LOST: {:?}.",
                self.lost.len(),
                self.lost
            )
        });
        out.push(match &self.old_id_refused {
            Some(why) => format!(
                "Restarting store {} under its old id with its empty folder was refused: {why}",
                self.lost_store
            ),
            None => format!(
                "Store {} restarted under its old id with an empty folder: it should have been refused.",
                self.lost_store
            ),
        });
        out.join("\n")
    }

    /// The writes over time, with the window from the loss until the regions settled shaded.
    pub fn chart(&self) -> Result<Chart, LabError> {
        let end = self
            .settled_s
            .map(|s| self.replace_at_s + s)
            .unwrap_or_else(|| self.writes.last().map_or(self.replace_at_s, |w| w.at_s));
        writes_timeline(
            "Writes while a store is lost and replaced",
            &self.writes,
            (
                format!(
                    "store {} lost → store {} rebuilt",
                    self.lost_store, self.new_store
                ),
                self.lost_at_s,
                end.max(self.lost_at_s + 0.05),
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::placement::{Region, Store};

    fn region(id: u64, stores: Vec<u64>) -> Region {
        Region {
            id,
            start_key: String::new(),
            end_key: String::new(),
            leader_store: stores.first().copied(),
            stores,
            learners: vec![],
            approximate_keys: 0,
            approximate_mib: 1,
            epoch: (1, 1),
        }
    }

    fn store(id: u64, state: &str) -> Store {
        Store {
            id,
            address: String::new(),
            state: state.into(),
            leader_count: 0,
            region_count: 0,
            heartbeat_ago_ms: None,
        }
    }

    fn write(at_s: f64, ok: bool) -> FailoverWrite {
        FailoverWrite {
            at_s,
            ms: 3.0,
            ok,
            error: (!ok).then(|| "region unavailable".into()),
        }
    }

    fn run(after_stores: Vec<u64>, lost_state: &str) -> StoreReplacement {
        StoreReplacement {
            lost_store: 3,
            new_store: 4,
            before: Placement {
                regions: vec![region(2, vec![1, 2, 3])],
                stores: vec![store(1, "Up"), store(2, "Up"), store(3, "Up")],
            },
            after: Placement {
                regions: vec![region(2, after_stores)],
                stores: vec![
                    store(1, "Up"),
                    store(2, "Up"),
                    store(3, lost_state),
                    store(4, "Up"),
                ],
            },
            lost_at_s: 1.0,
            replace_at_s: 2.0,
            settled_s: Some(1.5),
            writes: vec![write(0.5, true), write(1.5, true), write(3.0, true)],
            lost: vec![],
            old_id_refused: Some("store 3 was removed from this cluster (tombstone)".into()),
        }
    }

    #[test]
    fn the_claim_needs_the_replica_rebuilt_on_the_new_store_and_the_old_one_a_tombstone() {
        let good = run(vec![1, 2, 4], "Tombstone");
        assert!(good.claim_holds(), "{}", good.explain());
        assert!(
            good.explain().contains("Store 4 now holds 1 replica"),
            "{}",
            good.explain()
        );
        assert!(!run(vec![1, 2, 3], "Offline").claim_holds());
        assert!(!run(vec![1, 2, 4], "Offline").claim_holds());
        let mut lost = run(vec![1, 2, 4], "Tombstone");
        lost.lost = vec!["replaced:7".into()];
        assert!(!lost.claim_holds());
        let mut let_in = run(vec![1, 2, 4], "Tombstone");
        let_in.old_id_refused = None;
        assert!(
            !let_in.claim_holds(),
            "an old id that rejoins with no data breaks the claim"
        );
    }
}
