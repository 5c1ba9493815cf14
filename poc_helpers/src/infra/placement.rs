//! Where the data physically lives: the regions and stores of the storage tier, read from PD's
//! HTTP API (`/pd/api/v1/regions` and `/pd/api/v1/stores`).
//!
//! Why PD and not the stores: in TiKV, PD is the one component that knows the whole map
//! (which key ranges exist, which stores hold a copy, which copy leads), because every leader
//! reports to it. An operator asks PD the same way (`pd-ctl region`, the dashboard). The lab's
//! embedded PD serves those pages in real PD's JSON shape, so this one reader works for the
//! embedded tier, an external TiKV and a `tiup playground` alike.

use std::net::SocketAddr;
use std::time::Duration;

use polars::prelude::{Column, DataFrame};
use serde_json::Value;

use crate::infra::{client, keyspace};
use crate::vocab::error::LabError;
use crate::vocab::frames::frame;

/// One region: a key range, the stores holding a copy, and the one whose copy leads.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    /// PD's region id.
    pub id: u64,
    /// First key, upper-case hex of the encoded key ("" = from the start).
    pub start_key: String,
    /// End key, exclusive ("" = to the end).
    pub end_key: String,
    /// The store whose peer leads (serves reads and writes); `None` during an election.
    pub leader_store: Option<u64>,
    /// Every store holding a replica, in peer order.
    pub stores: Vec<u64>,
    /// The stores among them whose replica is a learner (copying, not voting yet: a replica
    /// being moved onto that store).
    pub learners: Vec<u64>,
    /// Approximate keys (MVCC versions), as the leader last reported.
    pub approximate_keys: u64,
    /// Approximate size in MiB, as PD prints it (at least 1).
    pub approximate_mib: u64,
    /// The region epoch: `conf_ver` rises with each membership change, `version` with each
    /// split or merge. A client whose cached epoch is older gets `EpochNotMatch`.
    pub epoch: (u64, u64),
}

impl Region {
    /// Whether the region holds the key whose encoding (PD's form) is `encoded`.
    pub fn holds(&self, encoded: &[u8]) -> bool {
        let start = keyspace::unhex(&self.start_key).unwrap_or_default();
        let end = keyspace::unhex(&self.end_key).unwrap_or_default();
        start.as_slice() <= encoded && (end.is_empty() || encoded < end.as_slice())
    }

    /// The start boundary in words (`(start of the key space)`, `table user`, …).
    pub fn start_meaning(&self) -> String {
        bound_meaning(&self.start_key, "(start of the key space)")
    }

    /// The end boundary in words.
    pub fn end_meaning(&self) -> String {
        bound_meaning(&self.end_key, "(end of the key space)")
    }

    /// The stores holding a replica that does not lead.
    pub fn followers(&self) -> Vec<u64> {
        self.stores
            .iter()
            .copied()
            .filter(|s| Some(*s) != self.leader_store)
            .collect()
    }
}

/// A region boundary (hex of an encoded key) as SurrealDB's key layout names it.
pub fn bound_meaning(hex: &str, empty: &str) -> String {
    use crate::vocab::key_meaning::{KeyMeaning, decode_key};
    if hex.is_empty() {
        return empty.to_string();
    }
    let Some(raw) = keyspace::unhex(hex).and_then(|k| keyspace::decode_bytes(&k)) else {
        return format!("key {hex}");
    };
    match decode_key(&raw.escape_ascii().to_string()) {
        // A table's record prefix (`…*user\0*` with no id): where the table's records begin.
        KeyMeaning::Record { table, record } if record == format!("{table}:") => {
            format!("table `{table}` (its first record)")
        }
        meaning => meaning.to_string(),
    }
}

/// One store as PD sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Store {
    /// PD's store id (the lab's `store-N` is store N).
    pub id: u64,
    /// Where clients reach it ("" for the one-process node: it is reached at PD's address).
    pub address: String,
    /// `Up`, or `Disconnected` once its heartbeats stop.
    pub state: String,
    /// Regions whose leader is on this store.
    pub leader_count: u64,
    /// Regions with a replica on this store.
    pub region_count: u64,
    /// How long ago PD last heard from it, ms (the lab's PD only; real PD gives a timestamp).
    pub heartbeat_ago_ms: Option<u64>,
}

/// The storage tier's map, as PD reported it at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// Regions in key order.
    pub regions: Vec<Region>,
    /// Stores by id.
    pub stores: Vec<Store>,
}

impl Placement {
    /// The store leading the region that holds the most keys (with one region, the leader of
    /// everything): the store whose loss costs an election.
    pub fn busiest_leader(&self) -> Option<u64> {
        self.regions
            .iter()
            .max_by_key(|r| r.approximate_keys)
            .and_then(|r| r.leader_store)
    }

    /// The region holding the key whose encoding is `encoded`.
    pub fn region_holding(&self, encoded: &[u8]) -> Option<&Region> {
        self.regions.iter().find(|r| r.holds(encoded))
    }

    /// Regions: region, start and end (decoded: which table or record each boundary is),
    /// version (the epoch's split count), leader_store, stores ("1,2,3"), replicas, keys, MiB.
    pub fn regions_frame(&self) -> Result<DataFrame, LabError> {
        let r = &self.regions;
        frame(vec![
            Column::new("region".into(), r.iter().map(|r| r.id).collect::<Vec<_>>()),
            Column::new(
                "start".into(),
                r.iter().map(Region::start_meaning).collect::<Vec<_>>(),
            ),
            Column::new(
                "end".into(),
                r.iter().map(Region::end_meaning).collect::<Vec<_>>(),
            ),
            Column::new(
                "version".into(),
                r.iter().map(|r| r.epoch.1).collect::<Vec<_>>(),
            ),
            Column::new(
                "leader_store".into(),
                r.iter().map(|r| r.leader_store).collect::<Vec<_>>(),
            ),
            Column::new(
                "stores".into(),
                r.iter()
                    .map(|r| {
                        let ids: Vec<String> = r.stores.iter().map(u64::to_string).collect();
                        ids.join(",")
                    })
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "replicas".into(),
                r.iter().map(|r| r.stores.len() as u64).collect::<Vec<_>>(),
            ),
            Column::new(
                "keys".into(),
                r.iter().map(|r| r.approximate_keys).collect::<Vec<_>>(),
            ),
            Column::new(
                "MiB".into(),
                r.iter().map(|r| r.approximate_mib).collect::<Vec<_>>(),
            ),
        ])
    }

    /// Stores: store, address, state, leaders, regions.
    pub fn stores_frame(&self) -> Result<DataFrame, LabError> {
        let s = &self.stores;
        frame(vec![
            Column::new("store".into(), s.iter().map(|s| s.id).collect::<Vec<_>>()),
            Column::new(
                "address".into(),
                s.iter().map(|s| s.address.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "state".into(),
                s.iter().map(|s| s.state.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "leaders".into(),
                s.iter().map(|s| s.leader_count).collect::<Vec<_>>(),
            ),
            Column::new(
                "regions".into(),
                s.iter().map(|s| s.region_count).collect::<Vec<_>>(),
            ),
        ])
    }
}

fn u64_at(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_u64()
        .unwrap_or_default()
}

fn str_at(v: &Value, path: &[&str]) -> String {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Parses PD's two pages (real PD's field names; fields PD leaves out read as empty).
pub(crate) fn parse(regions: &Value, stores: &Value) -> Placement {
    let list = |v: &Value, field: &str| v[field].as_array().cloned().unwrap_or_default();
    let regions = list(regions, "regions")
        .iter()
        .map(|r| Region {
            id: u64_at(r, &["id"]),
            start_key: str_at(r, &["start_key"]),
            end_key: str_at(r, &["end_key"]),
            leader_store: r["leader"]["store_id"].as_u64(),
            stores: list(r, "peers")
                .iter()
                .map(|p| u64_at(p, &["store_id"]))
                .collect(),
            learners: list(r, "peers")
                .iter()
                .filter(|p| p["role_name"] == "Learner" || p["is_learner"] == true)
                .map(|p| u64_at(p, &["store_id"]))
                .collect(),
            approximate_keys: u64_at(r, &["approximate_keys"]),
            approximate_mib: u64_at(r, &["approximate_size"]),
            epoch: (
                u64_at(r, &["epoch", "conf_ver"]),
                u64_at(r, &["epoch", "version"]),
            ),
        })
        .collect();
    let stores = list(stores, "stores")
        .iter()
        .map(|s| Store {
            id: u64_at(s, &["store", "id"]),
            address: str_at(s, &["store", "address"]),
            state: str_at(s, &["store", "state_name"]),
            leader_count: u64_at(s, &["status", "leader_count"]),
            region_count: u64_at(s, &["status", "region_count"]),
            heartbeat_ago_ms: s["status"]["last_heartbeat_ago_ms"].as_u64(),
        })
        .collect();
    Placement { regions, stores }
}

/// Reads the map from the PD at `pd`.
pub(crate) async fn fetch(pd: SocketAddr, timeout: Duration) -> Result<Placement, LabError> {
    let page = |path: &'static str| async move {
        let unavailable = |reason: String| {
            LabError::StorageUnavailable {
            mode: "shared".into(),
            reason: format!("PD at {pd} did not answer GET {path}: {reason}"),
            fix: "check `cluster.status()`: the pd row must be `running` (restart the lab if it is not)".into(),
        }
        };
        let (status, body) = client::http_get(pd, path, timeout)
            .await
            .map_err(unavailable)?;
        if status != 200 {
            return Err(unavailable(format!("HTTP {status}: {body}")));
        }
        serde_json::from_str::<Value>(&body).map_err(|e| unavailable(e.to_string()))
    };
    Ok(parse(
        &page("/pd/api/v1/regions").await?,
        &page("/pd/api/v1/stores").await?,
    ))
}

/// Asks the PD at `pd` to split regions at the given encoded keys (real PD's
/// `POST /pd/api/v1/regions/split`); returns the ids of the regions that resulted.
pub(crate) async fn split(
    pd: SocketAddr,
    encoded_keys: &[Vec<u8>],
    timeout: Duration,
) -> Result<Vec<u64>, LabError> {
    let keys: Vec<String> = encoded_keys.iter().map(|k| keyspace::hex(k)).collect();
    let body = serde_json::json!({ "split_keys": keys }).to_string();
    let refused = |reason: String| LabError::StorageUnavailable {
        mode: "shared".into(),
        reason: format!("PD at {pd} did not split: {reason}"),
        fix: "check `cluster.regions()` for a region with a leader, then split again".into(),
    };
    let (status, body) = client::http_post(pd, "/pd/api/v1/regions/split", body, timeout)
        .await
        .map_err(refused)?;
    if status != 200 {
        return Err(refused(format!("HTTP {status}: {body}")));
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| refused(e.to_string()))?;
    Ok(v["regions-id"]
        .as_array()
        .map(|ids| ids.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default())
}

/// Asks the PD at `pd` to take store `store` out of the cluster (real PD's
/// `DELETE /pd/api/v1/store/{id}`): PD moves its replicas to other stores, then marks it a
/// tombstone. Returns PD's answer in words.
pub(crate) async fn remove_store(
    pd: SocketAddr,
    store: u64,
    timeout: Duration,
) -> Result<String, LabError> {
    let path = format!("/pd/api/v1/store/{store}");
    let (status, answer) = client::http_delete(pd, &path, timeout).await.map_err(|e| {
        LabError::StorageUnavailable {
            mode: "shared".into(),
            reason: format!("PD at {pd} did not answer DELETE {path}: {e}"),
            fix: "check `cluster.status()`: the pd row must be `running`".into(),
        }
    })?;
    let text = serde_json::from_str::<Value>(&answer)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| answer.trim().to_string());
    match status {
        200 => Ok(text),
        _ => Err(LabError::config(
            "remove_store",
            text,
            "see `cluster.placement()` for the stores there are",
        )),
    }
}

impl Placement {
    /// What keeps this map from serving every key, empty when nothing does: a region with no
    /// leader, or a key range no region covers. PD learns regions from their leaders'
    /// heartbeats, so a PD that just restarted knows some regions before others.
    pub fn not_serving(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .regions
            .iter()
            .filter(|r| r.leader_store.is_none())
            .map(|r| format!("region {} has no leader", r.id))
            .collect();
        let mut ranges: Vec<(&str, &str)> = self
            .regions
            .iter()
            .map(|r| (r.start_key.as_str(), r.end_key.as_str()))
            .collect();
        ranges.sort();
        // Walk the key space from its start: each region must begin where the last one ended.
        // (Upper-case hex of the encoded keys sorts as the keys do.)
        let mut covered_to = Some("");
        for (start, end) in ranges {
            match covered_to {
                Some(to) if start > to => {
                    out.push(format!("no region covers keys {to:?}..{start:?} (hex)"))
                }
                None => break,
                _ => {}
            }
            covered_to = if end.is_empty() {
                None
            } else {
                covered_to.map(|to| to.max(end))
            };
        }
        if let Some(to) = covered_to {
            out.push(format!(
                "no region covers keys from {to:?} (hex) to the end"
            ));
        }
        out
    }

    /// Whether every region has `replicas` voters on up stores and no move is half-done (no
    /// learner): what a replica move or a store removal ends with.
    pub fn is_settled(&self, replicas: usize) -> bool {
        self.regions.iter().all(|r| {
            r.learners.is_empty()
                && r.stores.len() == replicas
                && r.stores
                    .iter()
                    .all(|s| self.stores.iter().any(|x| x.id == *s && x.state == "Up"))
        })
    }

    /// Whether the replicas are spread as PD's balance-region leaves them: no up store holds
    /// two or more replicas more than another (a store that just joined is still filling).
    pub fn is_balanced(&self) -> bool {
        let counts: Vec<u64> = self
            .stores
            .iter()
            .filter(|s| s.state == "Up")
            .map(|s| {
                self.regions
                    .iter()
                    .filter(|r| r.stores.contains(&s.id))
                    .count() as u64
            })
            .collect();
        match (counts.iter().max(), counts.iter().min()) {
            (Some(max), Some(min)) => max - min < 2,
            _ => true,
        }
    }

    /// Store `id`'s state as PD names it (`Up`, `Disconnected`, `Offline`, `Tombstone`).
    pub fn store_state(&self, id: u64) -> Option<&str> {
        self.stores
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.state.as_str())
    }
}

/// Asks the PD at `pd` to move region `region`'s leader to store `store` (real PD's
/// `POST /pd/api/v1/operators`, `transfer-leader`).
pub(crate) async fn transfer_leader(
    pd: SocketAddr,
    region: u64,
    store: u64,
    timeout: Duration,
) -> Result<(), LabError> {
    let body = serde_json::json!({
        "name": "transfer-leader",
        "region_id": region,
        "to_store_id": store,
    })
    .to_string();
    let (status, answer) = client::http_post(pd, "/pd/api/v1/operators", body, timeout)
        .await
        .map_err(|e| LabError::StorageUnavailable {
            mode: "shared".into(),
            reason: format!("PD at {pd} did not answer: {e}"),
            fix: "check `cluster.status()`: the pd row must be `running`".into(),
        })?;
    match status {
        200 => Ok(()),
        // PD's own words name the fix (a store without a replica, an unknown region).
        400 => Err(LabError::config(
            "transfer_leader",
            answer.trim().to_string(),
            "see `cluster.regions()` for each region's stores",
        )),
        _ => Err(LabError::StorageUnavailable {
            mode: "shared".into(),
            reason: format!("PD answered HTTP {status}: {answer}"),
            fix: "check `cluster.status()`".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Trimmed from a real PD's answer (`tiup playground --kv 3`): the fields the lab reads.
    fn real_pd_pages() -> (Value, Value) {
        let regions = json!({"count": 2, "regions": [
            {"id": 2, "start_key": "", "end_key": "7480000000000000FF", "epoch": {"conf_ver": 5, "version": 2},
             "peers": [{"id": 3, "store_id": 1, "role_name": "Voter"}, {"id": 9, "store_id": 4, "role_name": "Voter"},
                       {"id": 10, "store_id": 5, "role_name": "Voter"}],
             "leader": {"id": 9, "store_id": 4, "role_name": "Voter"}, "approximate_size": 1, "approximate_keys": 12},
            {"id": 8, "start_key": "7480000000000000FF", "end_key": "", "epoch": {"conf_ver": 5, "version": 2},
             "peers": [{"id": 11, "store_id": 1}], "approximate_keys": 900}
        ]});
        let stores = json!({"count": 1, "stores": [
            {"store": {"id": 1, "address": "127.0.0.1:20160", "state_name": "Up"},
             "status": {"leader_count": 0, "region_count": 2}}
        ]});
        (regions, stores)
    }

    /// What keeps a map from serving every key: a leaderless region, a range PD has not
    /// heard of yet (it learns regions from heartbeats after a restart), none at all.
    #[test]
    fn a_map_serves_every_key_only_with_a_leader_per_region_and_no_gap() {
        let (regions, stores) = real_pd_pages();
        let mut p = parse(&regions, &stores);
        assert_eq!(p.not_serving(), ["region 8 has no leader"]);
        p.regions[1].leader_store = Some(1);
        assert!(p.not_serving().is_empty(), "{:?}", p.not_serving());
        let right = p.regions.remove(1);
        assert_eq!(
            p.not_serving(),
            ["no region covers keys from \"7480000000000000FF\" (hex) to the end"]
        );
        p.regions = vec![right];
        assert_eq!(
            p.not_serving(),
            ["no region covers keys \"\"..\"7480000000000000FF\" (hex)"]
        );
        p.regions.clear();
        assert_eq!(
            p.not_serving(),
            ["no region covers keys from \"\" (hex) to the end"]
        );
    }

    #[test]
    fn pds_pages_become_regions_and_stores() {
        let (regions, stores) = real_pd_pages();
        let p = parse(&regions, &stores);
        assert_eq!(p.regions.len(), 2);
        assert_eq!(p.regions[0].leader_store, Some(4));
        assert_eq!(p.regions[0].stores, [1, 4, 5]);
        assert_eq!(p.regions[1].leader_store, None, "no leader reported yet");
        assert_eq!(p.busiest_leader(), None, "the busiest region has no leader");
        assert_eq!(p.stores[0].address, "127.0.0.1:20160");
        let df = p.regions_frame().unwrap();
        assert_eq!(df.height(), 2);
        let names: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "region",
                "start",
                "end",
                "version",
                "leader_store",
                "stores",
                "replicas",
                "keys",
                "MiB"
            ]
        );
        assert_eq!(p.stores_frame().unwrap().height(), 1);
        assert_eq!(p.regions[0].epoch, (5, 2));
        assert_eq!(p.regions[0].followers(), [1, 5]);
    }

    #[test]
    fn region_bounds_read_as_tables_and_records() {
        let user = keyspace::encode_bytes(&keyspace::table_prefix(1, 0, "user"));
        let ada =
            keyspace::encode_bytes(&keyspace::RecordName::parse("user:ada").unwrap().key(1, 0));
        let region = Region {
            id: 1000,
            start_key: String::new(),
            end_key: keyspace::hex(&user),
            leader_store: Some(2),
            stores: vec![1, 2, 3],
            learners: vec![],
            approximate_keys: 0,
            approximate_mib: 1,
            epoch: (1, 2),
        };
        assert_eq!(region.start_meaning(), "(start of the key space)");
        assert_eq!(region.end_meaning(), "table `user` (its first record)");
        assert!(!region.holds(&ada), "user:ada is after the boundary");
        assert!(region.holds(&keyspace::encode_bytes(b"/!nslab\0")));
        let p = Placement {
            regions: vec![
                region.clone(),
                Region {
                    id: 2,
                    start_key: keyspace::hex(&user),
                    end_key: String::new(),
                    ..region
                },
            ],
            stores: vec![],
        };
        assert_eq!(p.region_holding(&ada).unwrap().id, 2);
    }
}
