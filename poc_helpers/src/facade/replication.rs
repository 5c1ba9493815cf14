//! The replicated storage tier, as the facade offers it: PD's map of regions and stores
//! (`placement`), and the store-failover drill, a timed sequence of ordinary facade calls
//! (write, kill the leader's store, keep writing, read back, restart) made on the caller's
//! thread, like the recovery drill.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use polars::prelude::DataFrame;

use super::Cluster;
use crate::actor::command::Command;
use crate::experiments::store_failover::{
    FailoverWrite, LEADER_SAMPLE_S, LeaderSample, StoreFailover,
};
use crate::infra::keyspace::{self, RecordName};
use crate::infra::placement::{Placement, Region};
use crate::present::charts::Chart;
use crate::present::placement_chart::{RegionColumn, placement_grid};
use crate::vocab::error::LabError;
use crate::vocab::nodes::NodeRef;

/// How long the drill writes before the kill (the healthy baseline).
const BASELINE: Duration = Duration::from_secs(1);
/// How long it keeps writing after the first acknowledged write that follows the kill.
const AFTER_RECOVERY: Duration = Duration::from_millis(1500);
/// Give up on writes resuming after this long (a lost majority never resumes).
const RESUME_LIMIT: Duration = Duration::from_secs(20);
/// Pause between the drill's writes: a steady trickle, not a load test.
const GAP: Duration = Duration::from_millis(20);
/// How long PD may take to show a new leader or a rejoined store (heartbeats are per second).
const PD_LIMIT: Duration = Duration::from_secs(15);

impl Cluster {
    /// Where the data lives, as PD sees it: the regions (key ranges), the stores holding a
    /// replica of each, and the store whose replica leads. Works for the embedded tier and a
    /// real TiKV alike (it reads PD's HTTP API); isolated nodes have no placement (an error).
    pub fn placement(&self) -> Result<Placement, LabError> {
        self.actor.call(|reply| Command::Placement { reply })?
    }

    /// [`Cluster::placement`]'s regions as a table: region, start_key, end_key, leader_store,
    /// stores, replicas.
    pub fn regions(&self) -> Result<DataFrame, LabError> {
        self.placement()?.regions_frame()
    }

    /// [`Cluster::placement`]'s stores as a table: store, address, state, leaders, regions.
    pub fn stores(&self) -> Result<DataFrame, LabError> {
        self.placement()?.stores_frame()
    }

    /// The ids SurrealDB gave the session's namespace and database (they start every key),
    /// and the tables the database defines, asked through the first node.
    fn keyspace_ids(&self) -> Result<(u32, u32, Vec<String>), LabError> {
        let node = self
            .node_names()
            .into_iter()
            .next()
            .unwrap_or_else(|| "node-a".into());
        let r = self.sql(
            node.as_str(),
            "RETURN [session::ns(), session::db()]; INFO FOR ROOT STRUCTURE; \
             INFO FOR NS STRUCTURE; INFO FOR DB STRUCTURE;",
        )?;
        let row = |i: usize| {
            r.statements
                .get(i)
                .and_then(|s| s.rows.first())
                .cloned()
                .unwrap_or_default()
        };
        // An array result comes back as one row per element: [namespace, database].
        let names: Vec<String> = r
            .statements
            .first()
            .map(|s| {
                s.rows
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let (ns, db) = match names.as_slice() {
            [ns, db] => (ns.as_str(), db.as_str()),
            _ => ("", ""),
        };
        let id_of = |list: &serde_json::Value, name: &str| {
            list.as_array()
                .and_then(|l| l.iter().find(|e| e["name"] == name))
                .and_then(|e| e["id"].as_u64())
                .map(|id| id as u32)
        };
        let missing = || {
            LabError::config(
                "namespace",
                format!("SurrealDB lists no id for namespace `{ns}` / database `{db}`"),
                "write something first (the lab defines them on its first query), then ask again",
            )
        };
        let ns_id = id_of(&row(1)["namespaces"], ns).ok_or_else(missing)?;
        let db_id = id_of(&row(2)["databases"], db).ok_or_else(missing)?;
        let tables = row(3)["tables"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Ok((ns_id, db_id, tables))
    }

    /// Where `record` (e.g. `"user:ada"`) physically lives: the key SurrealDB stores it under,
    /// the region whose range holds that key, the store whose replica leads it and the stores
    /// holding the other replicas. Works on the embedded tier and on real TiKV alike (PD's map).
    pub fn where_is(&self, record: &str) -> Result<WhereIs, LabError> {
        let name = RecordName::parse(record)?;
        let (ns_id, db_id, _) = self.keyspace_ids()?;
        let key = name.key(ns_id, db_id);
        let placement = self.placement()?;
        let region = placement
            .region_holding(&keyspace::encode_bytes(&key))
            .cloned()
            .ok_or_else(|| LabError::StorageUnavailable {
                mode: "shared".into(),
                reason: "PD has no region for that key yet".into(),
                fix: "wait a second for the stores' heartbeats and ask again".into(),
            })?;
        Ok(WhereIs {
            record: record.to_string(),
            key: key.escape_ascii().to_string(),
            regions: placement.regions.len(),
            region,
        })
    }

    /// Splits the storage tier's key space where `table`'s records begin, as TiDB's
    /// `SPLIT TABLE` does: afterwards the table's records start a region of their own (until
    /// the next boundary). Asks PD (`POST /pd/api/v1/regions/split`), then waits until PD shows
    /// the new region with a leader. Returns the map after the split.
    pub fn split_table(&self, table: &str) -> Result<Placement, LabError> {
        let (ns_id, db_id, tables) = self.keyspace_ids()?;
        if !tables.iter().any(|t| t == table) {
            return Err(LabError::config(
                "split_table",
                format!(
                    "the database has no table `{table}` (it has: {})",
                    tables.join(", ")
                ),
                format!(
                    "create a record in it first (`CREATE {table}:1`) or `DEFINE TABLE {table}`, or split one of those"
                ),
            ));
        }
        let key = keyspace::encode_bytes(&keyspace::table_prefix(ns_id, db_id, table));
        self.actor.call(|reply| Command::SplitAt {
            keys: vec![key.clone()],
            reply,
        })??;
        let hex = keyspace::hex(&key);
        // Done when the boundary is there and every region (the new one too) has a leader.
        let (after, ok) = self.placement_until(PD_LIMIT, |p| {
            p.regions.iter().any(|r| r.start_key == hex)
                && p.regions.iter().all(|r| r.leader_store.is_some())
        });
        if !ok {
            return Err(LabError::StorageUnavailable {
                mode: "shared".into(),
                reason: format!(
                    "PD did not show a region starting at table `{table}`, every region with a leader, within {} s",
                    PD_LIMIT.as_secs()
                ),
                fix: "check `cluster.status()`: every store row must be `running`".into(),
            });
        }
        Ok(after)
    }

    /// PD's map as a picture: stores × regions, a cell per replica, the leader's dark.
    pub fn placement_chart(&self) -> Result<Chart, LabError> {
        let p = self.placement()?;
        let mut stores: Vec<u64> = p.stores.iter().map(|s| s.id).collect();
        stores.extend(p.regions.iter().flat_map(|r| r.stores.iter().copied()));
        stores.sort_unstable();
        stores.dedup();
        let columns: Vec<RegionColumn> = p
            .regions
            .iter()
            .map(|r| RegionColumn {
                label: format!("region {}", r.id),
                stores: r.stores.clone(),
                leader: r.leader_store,
            })
            .collect();
        placement_grid(
            "Where the data lives: regions (columns) on stores (rows)",
            &stores,
            &columns,
        )
    }

    /// Moves region `region`'s leader to store `store` (PD's transfer-leader operator; CLI:
    /// `lab transfer-leader REGION STORE`) and waits until PD shows it there. A store without a
    /// replica of the region is refused, naming the stores that have one.
    pub fn transfer_leader(&self, region: u64, store: u64) -> Result<Placement, LabError> {
        self.actor.call(|reply| Command::TransferLeader {
            region,
            store,
            reply,
        })??;
        let (after, ok) = self.placement_until(PD_LIMIT, |p| {
            p.regions
                .iter()
                .any(|r| r.id == region && r.leader_store == Some(store))
        });
        if !ok {
            return Err(LabError::StorageUnavailable {
                mode: "shared".into(),
                reason: format!(
                    "region {region}'s leader did not move to store {store} within {} s",
                    PD_LIMIT.as_secs()
                ),
                fix: format!("check `cluster.status()`: store-{store} must be `running`"),
            });
        }
        Ok(after)
    }

    /// Starts one more store (`store-4` after three; CLI: `lab add-store`). It joins with no
    /// replica; PD's balance-region then moves replicas onto it, one region at a time, until
    /// no store holds two more than another. Returns the new store's id at once; watch the
    /// moves with [`Cluster::wait_settled`] and `cluster.placement_chart()`.
    pub fn add_store(&self) -> Result<u64, LabError> {
        let (id, _) = self.actor.call(|reply| Command::AddStore { reply })??;
        Ok(id)
    }

    /// Asks PD to remove store `id` (CLI: `lab remove-store ID`): PD's replica checker moves
    /// each of its replicas to a store that lacks one (learner → voter → old one removed),
    /// then marks it a tombstone. Returns PD's answer in words, which says when there is no
    /// store to move to (add one first).
    pub fn remove_store(&self, id: u64) -> Result<String, LabError> {
        self.actor
            .call(|reply| Command::RemoveStore { store: id, reply })?
    }

    /// Replaces store `id` whose machine is lost (CLI: `lab replace-store ID`): stops it if
    /// it runs, deletes its data folder, removes it in PD and starts a new store, which PD
    /// fills with the lost store's replicas. Returns the new store's id.
    pub fn replace_store(&self, id: u64) -> Result<u64, LabError> {
        let (new_id, _) = self
            .actor
            .call(|reply| Command::ReplaceStore { store: id, reply })??;
        Ok(new_id)
    }

    /// Waits (up to `limit`) until every region has three voters on up stores, no move is
    /// half done, and no up store holds two replicas more than another (PD's balance-region
    /// is done filling a new store); returns the map and how long it took, or an error naming
    /// what is still moving.
    pub fn wait_settled(&self, limit: Duration) -> Result<(Placement, Duration), LabError> {
        let start = Instant::now();
        let (p, ok) = self.placement_until(limit, |p| p.is_settled(3) && p.is_balanced());
        if !ok {
            let moving: Vec<String> = p
                .regions
                .iter()
                .filter(|r| !r.learners.is_empty() || r.stores.len() != 3)
                .map(|r| format!("region {} on stores {:?}", r.id, r.stores))
                .collect();
            return Err(LabError::StorageUnavailable {
                mode: "shared".into(),
                reason: format!(
                    "the replicas did not settle within {} s: {}",
                    limit.as_secs(),
                    if moving.is_empty() {
                        "a store holding replicas is not up".to_string()
                    } else {
                        moving.join("; ")
                    }
                ),
                fix: "check `cluster.status()` (every store that holds replicas must be running) and `cluster.placement()`".into(),
            });
        }
        Ok((p, start.elapsed()))
    }

    /// Polls PD until `ok` holds for its map; the last map and `false` after `limit`.
    pub(super) fn placement_until(
        &self,
        limit: Duration,
        ok: impl Fn(&Placement) -> bool,
    ) -> (Placement, bool) {
        let start = Instant::now();
        loop {
            match self.placement() {
                Ok(p) if ok(&p) => return (p, true),
                Ok(p) if start.elapsed() >= limit => return (p, false),
                Err(_) if start.elapsed() >= limit => {
                    return (
                        Placement {
                            regions: vec![],
                            stores: vec![],
                        },
                        false,
                    );
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The store-failover drill (a `.stores(3)` lab): writes a record through `node` every
    /// ~20 ms, kills the store that leads the region after 1 s, keeps writing until writes have
    /// been acknowledged again for 1.5 s (at most 20 s), asks PD for the new leader, reads every
    /// acknowledged record back, and restarts the killed store. See [`StoreFailover`].
    pub fn store_failover(&self, node: impl Into<NodeRef>) -> Result<StoreFailover, LabError> {
        self.leader_store_drill(node.into(), false)
    }

    /// The store-partition drill (a `.stores(3)` lab): the store-failover drill with the
    /// leader's store cut off from the other two (`partition_store`) instead of killed, then
    /// healed (`heal_store`). The cut-off store keeps running and stays reachable for clients
    /// and PD, but it is a minority of one: it commits nothing, its leadership passes to the
    /// other two, and once healed it catches up from their logs. See [`StoreFailover`].
    pub fn store_partition(&self, node: impl Into<NodeRef>) -> Result<StoreFailover, LabError> {
        self.leader_store_drill(node.into(), true)
    }

    /// Both drills: the leader's store killed, or (`partition`) cut off from the others.
    fn leader_store_drill(
        &self,
        node: NodeRef,
        partition: bool,
    ) -> Result<StoreFailover, LabError> {
        let (before, led) = self.placement_until(PD_LIMIT, |p| p.busiest_leader().is_some());
        if before.stores.len() < 3 {
            return Err(LabError::InvalidConfig {
                setting: "stores".into(),
                reason: format!(
                    "the storage tier has {} store(s); the drill kills one of three",
                    before.stores.len()
                ),
                fix: "start the lab with `.stores(3)` (CLI: `lab up --stores 3`)".into(),
            });
        }
        let killed_store = match (led, before.busiest_leader()) {
            (true, Some(l)) => l,
            _ => {
                return Err(LabError::StorageUnavailable {
                    mode: "shared".into(),
                    reason: "PD names no leader for the region".into(),
                    fix: "check `cluster.stores()`: at least two stores must be Up".into(),
                });
            }
        };
        let replicas = before
            .regions
            .iter()
            .map(|r| r.stores.len())
            .max()
            .unwrap_or(0);
        // A fresh, defined table: a rerun starts from nothing, and no write pays for creating it.
        self.quietly(|| {
            self.sql(
                node.clone(),
                "REMOVE TABLE IF EXISTS failover; DEFINE TABLE failover SCHEMALESS",
            )
        })?;

        let t0 = Instant::now();
        let mut writes = Vec::new();
        let mut acked = BTreeSet::new();
        // PD's map, sampled while the writes go on: who leads each region over time.
        let mut leaders = Vec::new();
        let mut sampled: Option<Instant> = None;
        let mut sample = |leaders: &mut Vec<LeaderSample>| {
            if sampled.is_some_and(|t| t.elapsed().as_secs_f64() < LEADER_SAMPLE_S) {
                return;
            }
            sampled = Some(Instant::now());
            let at_s = t0.elapsed().as_secs_f64();
            if let Ok(p) = self.placement() {
                leaders.extend(p.regions.iter().map(|r| LeaderSample {
                    at_s,
                    region: r.id,
                    leader: r.leader_store,
                }));
            }
        };
        let mut write = |i: u64, writes: &mut Vec<FailoverWrite>| {
            let at_s = t0.elapsed().as_secs_f64();
            let t = Instant::now();
            let r = self
                .quietly(|| self.sql(node.clone(), &format!("CREATE failover:{i} SET n = {i}")));
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if r.is_ok() {
                acked.insert(i);
            }
            writes.push(FailoverWrite {
                at_s,
                ms,
                ok: r.is_ok(),
                error: r
                    .err()
                    .map(|e| e.to_string().lines().next().unwrap_or("").to_string()),
            });
        };
        let mut i = 0;
        while t0.elapsed() < BASELINE {
            write(i, &mut writes);
            sample(&mut leaders);
            i += 1;
            std::thread::sleep(GAP);
        }
        if partition {
            self.partition_store(killed_store)?;
        } else {
            self.kill_store(killed_store)?;
        }
        let kill_at = t0.elapsed();
        let mut resumed: Option<Instant> = None;
        loop {
            write(i, &mut writes);
            sample(&mut leaders);
            i += 1;
            if resumed.is_none() && writes.last().is_some_and(|w| w.ok) {
                resumed = Some(Instant::now());
            }
            let done = resumed.is_some_and(|r| r.elapsed() >= AFTER_RECOVERY);
            if done || t0.elapsed() - kill_at >= RESUME_LIMIT {
                break;
            }
            std::thread::sleep(GAP);
        }
        let (after, elected) = self.placement_until(PD_LIMIT, |p| {
            p.busiest_leader().is_some_and(|l| l != killed_store)
        });
        let new_leader = if elected {
            after.busiest_leader()
        } else {
            None
        };

        let lost = self.missing(&node, "failover", &acked)?;

        let t = Instant::now();
        if partition {
            self.heal_store(killed_store)?;
        } else {
            self.restart_store(killed_store)?;
        }
        // Rejoined: PD heard from the restarted process (a heartbeat younger than the restart;
        // a real PD's page has no such age, and then `Up` alone counts). A cut-off store kept
        // its heartbeats to PD, so for it this is immediate.
        let (_, rejoined) = self.placement_until(PD_LIMIT, |p| {
            p.stores.iter().any(|s| {
                s.id == killed_store
                    && s.state == "Up"
                    && s.heartbeat_ago_ms
                        .is_none_or(|ms| (ms as f64) < t.elapsed().as_secs_f64() * 1000.0)
            })
        });
        Ok(StoreFailover {
            partitioned: partition,
            killed_store,
            new_leader,
            replicas,
            kill_at_s: kill_at.as_secs_f64(),
            writes,
            lost,
            rejoin_s: rejoined.then(|| t.elapsed().as_secs_f64()),
            leaders,
        })
    }
}

/// Where one record lives: what [`Cluster::where_is`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct WhereIs {
    /// The record asked about.
    pub record: String,
    /// The key SurrealDB stores it under (printable).
    pub key: String,
    /// The region holding that key.
    pub region: Region,
    /// How many regions the key space has now.
    pub regions: usize,
}

impl WhereIs {
    /// The store whose replica leads the region (serves its reads and writes).
    pub fn leader_store(&self) -> Option<u64> {
        self.region.leader_store
    }

    /// The stores holding the region's other replicas.
    pub fn followers(&self) -> Vec<u64> {
        self.region.followers()
    }

    /// One sentence, from the map PD gave.
    pub fn explain(&self) -> String {
        let r = &self.region;
        let leader = match r.leader_store {
            Some(s) => format!("store {s} leads it"),
            None => "it has no leader right now (an election is under way)".into(),
        };
        let followers = self.followers();
        let copies = match followers.len() {
            0 => "it has no other replica: losing that store loses the region".to_string(),
            n => format!(
                "store{} {} hold{} the other {n} replica{}",
                if n == 1 { "" } else { "s" },
                followers
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" and "),
                if n == 1 { "s" } else { "" },
                if n == 1 { "" } else { "s" },
            ),
        };
        format!(
            "`{}` is stored under key {} in region {} (one of {}), which runs from {} to {}; {leader}, and {copies}.",
            self.record,
            self.key,
            r.id,
            self.regions,
            r.start_meaning(),
            r.end_meaning(),
        )
    }
}
