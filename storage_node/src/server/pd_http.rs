//! PD's HTTP API, the two read-only pages the lab shows: `GET /pd/api/v1/regions` and
//! `GET /pd/api/v1/stores`, served on PD's gRPC port as real PD serves them on its client
//! port. The JSON has real PD's field names and shapes (`count`, `regions[].leader.store_id`,
//! keys in upper-case hex), so the lab's placement view reads a `tiup playground` PD and ours
//! through one code path.
//!
//! Everything here comes from PD's registry, i.e. from what the stores last reported in their
//! heartbeats: a view of the cluster as PD sees it, which is what an operator sees too.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use crate::pd::cluster::{PdCluster, RegionInfo, StoreInfo};
use crate::proto::metapb;

/// The HTTP routes, to be merged beside the gRPC services.
pub fn router(cluster: Arc<PdCluster>) -> axum::Router {
    let for_stores = cluster.clone();
    axum::Router::new()
        .route(
            "/pd/api/v1/regions",
            get(move || {
                let body = regions_json(&cluster);
                async move { json_response(body) }
            }),
        )
        .route(
            "/pd/api/v1/stores",
            get(move || {
                let body = stores_json(&for_stores);
                async move { json_response(body) }
            }),
        )
}

fn json_response(body: Value) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

/// Keys as PD prints them: upper-case hex of the region's (encoded) key; "" is unbounded.
fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02X}")).collect()
}

fn peer_json(p: &metapb::Peer) -> Value {
    let learner = p.role == metapb::PeerRole::Learner as i32;
    json!({
        "id": p.id,
        "store_id": p.store_id,
        "role_name": if learner { "Learner" } else { "Voter" },
        "is_learner": learner,
    })
}

fn region_json(r: &RegionInfo) -> Value {
    let epoch = r.region.region_epoch.unwrap_or_default();
    let mut v = json!({
        "id": r.region.id,
        "start_key": hex(&r.region.start_key),
        "end_key": hex(&r.region.end_key),
        "epoch": { "conf_ver": epoch.conf_ver, "version": epoch.version },
        "peers": r.region.peers.iter().map(peer_json).collect::<Vec<_>>(),
        // Real PD reports the size in MiB, rounded up to at least 1.
        "approximate_size": r.approximate_size.div_ceil(1 << 20).max(1),
        "approximate_keys": r.approximate_keys,
    });
    // Real PD omits the leader while none is known (e.g. during an election).
    if let Some(leader) = &r.leader {
        v["leader"] = peer_json(leader);
    }
    v
}

/// `{"count": n, "regions": [...]}`, in key order.
pub fn regions_json(cluster: &PdCluster) -> Value {
    let regions: Vec<Value> = cluster.regions().iter().map(region_json).collect();
    json!({ "count": regions.len(), "regions": regions })
}

fn store_json(s: &StoreInfo, regions: &[RegionInfo]) -> Value {
    let id = s.store.id;
    let region_count = regions
        .iter()
        .filter(|r| r.region.peers.iter().any(|p| p.store_id == id))
        .count();
    let leader_count = regions
        .iter()
        .filter(|r| r.leader.as_ref().is_some_and(|l| l.store_id == id))
        .count();
    json!({
        "store": {
            "id": id,
            "address": s.store.address,
            "version": s.store.version,
            // PD's names: "Up" while heartbeats arrive, "Disconnected" after a short silence.
            "state_name": if s.is_up() { "Up" } else { "Disconnected" },
        },
        "status": {
            "leader_count": leader_count,
            "region_count": region_count,
            "last_heartbeat_ago_ms": s.last_heartbeat.elapsed().as_millis() as u64,
        },
    })
}

/// `{"count": n, "stores": [{"store": {...}, "status": {...}}]}`, by store id.
pub fn stores_json(cluster: &PdCluster) -> Value {
    let regions = cluster.regions();
    let stores: Vec<Value> = cluster
        .stores()
        .iter()
        .map(|s| store_json(s, &regions))
        .collect();
    json!({ "count": stores.len(), "stores": stores })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pd::cluster::RegionReport;

    fn peer(id: u64, store_id: u64) -> metapb::Peer {
        metapb::Peer {
            id,
            store_id,
            ..Default::default()
        }
    }

    #[test]
    fn regions_and_stores_use_pds_field_names_and_count_leaders_per_store() {
        let dir = tempfile::tempdir().unwrap();
        let pd = PdCluster::open(7, dir.path()).unwrap();
        for id in 1..=3 {
            pd.put_store(metapb::Store {
                id,
                address: format!("127.0.0.1:{}", 20160 + id),
                ..Default::default()
            });
        }
        let region = metapb::Region {
            id: 2,
            start_key: b"".to_vec(),
            end_key: vec![0x74, 0xFF],
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 3,
                version: 1,
            }),
            peers: vec![peer(11, 1), peer(12, 2), peer(13, 3)],
            ..Default::default()
        };
        pd.region_heartbeat(RegionReport {
            region,
            leader: peer(12, 2),
            term: 4,
            approximate_keys: 5,
            approximate_size: 100,
        })
        .unwrap();

        let regions = regions_json(&pd);
        assert_eq!(regions["count"], 1);
        let r = &regions["regions"][0];
        assert_eq!(r["end_key"], "74FF");
        assert_eq!(r["leader"]["store_id"], 2);
        assert_eq!(r["peers"].as_array().unwrap().len(), 3);
        assert_eq!(r["epoch"]["conf_ver"], 3);

        let stores = stores_json(&pd);
        assert_eq!(stores["count"], 3);
        let leaders: Vec<u64> = (0..3)
            .map(|i| {
                stores["stores"][i]["status"]["leader_count"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(leaders, [0, 1, 0], "store 2 leads the one region");
        assert_eq!(stores["stores"][0]["status"]["region_count"], 1);
    }
}
