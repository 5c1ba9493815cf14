//! PD's HTTP API as the lab uses it: `GET /pd/api/v1/regions` and `GET /pd/api/v1/stores`,
//! `POST /pd/api/v1/regions/split` (PD's own way to split regions at given keys) and
//! `POST /pd/api/v1/operators` (a leader transfer or a replica move), `GET /pd/api/v1/operators`
//! and `DELETE /pd/api/v1/store/{id}` (take a store out of the cluster), served on
//! PD's gRPC port as real PD serves them on its client port. The JSON has real PD's field names and shapes (`count`, `regions[].leader.store_id`,
//! keys in upper-case hex), so the lab's placement view reads a `tiup playground` PD and ours
//! through one code path.
//!
//! Everything here comes from PD's registry, i.e. from what the stores last reported in their
//! heartbeats: a view of the cluster as PD sees it, which is what an operator sees too.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use serde_json::{Value, json};

use crate::pd::cluster::{PdCluster, RegionInfo, StoreInfo};
use crate::proto::metapb;

/// How PD has a region split at raw keys: asks the region's leader, answers the regions the
/// range now consists of.
pub type Splitter = Arc<
    dyn Fn(
            RegionInfo,
            Vec<Vec<u8>>,
        ) -> futures::future::BoxFuture<'static, Result<Vec<metapb::Region>, String>>
        + Send
        + Sync,
>;

/// Splits through the leader store's `SplitRegion` RPC, as TiDB's `SPLIT TABLE` does.
pub fn grpc_splitter(cluster: Arc<PdCluster>) -> Splitter {
    use crate::proto::kvrpcpb;
    use crate::proto::tikvpb::tikv_client::TikvClient;
    Arc::new(move |info: RegionInfo, keys: Vec<Vec<u8>>| {
        let cluster = cluster.clone();
        Box::pin(async move {
            let leader = info
                .leader
                .ok_or_else(|| format!("region {} has no leader yet; retry", info.region.id))?;
            let store = cluster
                .store(leader.store_id)
                .ok_or_else(|| format!("store {} is not registered", leader.store_id))?;
            let mut client = TikvClient::connect(format!("http://{}", store.store.address))
                .await
                .map_err(|e| format!("cannot reach store {}: {e}", leader.store_id))?;
            let resp = client
                .split_region(kvrpcpb::SplitRegionRequest {
                    context: Some(kvrpcpb::Context {
                        region_id: info.region.id,
                        region_epoch: info.region.region_epoch,
                        peer: Some(leader),
                        ..Default::default()
                    }),
                    split_keys: keys,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("SplitRegion failed: {e}"))?
                .into_inner();
            match resp.region_error {
                Some(e) => Err(e.message),
                None => Ok(resp.regions),
            }
        })
    })
}

/// The HTTP routes, to be merged beside the gRPC services.
pub fn router(cluster: Arc<PdCluster>, splitter: Splitter) -> axum::Router {
    let for_stores = cluster.clone();
    let for_split = cluster.clone();
    let for_operators = cluster.clone();
    let for_listing = cluster.clone();
    let for_delete = cluster.clone();
    axum::Router::new()
        .route(
            "/pd/api/v1/operators",
            post(move |body: String| {
                let cluster = for_operators.clone();
                async move { operator(&cluster, &body) }
            })
            .get(move || {
                let body = operators_json(&for_listing);
                async move { json_response(body) }
            }),
        )
        .route(
            "/pd/api/v1/store/{id}",
            delete(move |axum::extract::Path(id): axum::extract::Path<u64>| {
                let cluster = for_delete.clone();
                async move {
                    match cluster.remove_store(id) {
                        Ok(msg) => json_response(json!(msg)).into_response(),
                        Err(msg) => (StatusCode::NOT_FOUND, msg).into_response(),
                    }
                }
            }),
        )
        .route(
            "/pd/api/v1/regions/split",
            post(move |body: String| {
                let (cluster, splitter) = (for_split.clone(), splitter.clone());
                async move { split(&cluster, &splitter, &body).await }
            }),
        )
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

/// `POST /pd/api/v1/regions/split` with `{"split_keys": ["<hex>", …]}`: keys in the form
/// `/pd/api/v1/regions` prints them (hex of the encoded key). Answers real PD's
/// `{"processed-percentage": 100, "regions-id": […]}`, or 400/500 with what to fix.
async fn split(cluster: &PdCluster, splitter: &Splitter, body: &str) -> axum::response::Response {
    let fail = |code: StatusCode, msg: String| (code, msg).into_response();
    let keys: Result<Vec<Vec<u8>>, String> = serde_json::from_str::<Value>(body)
        .map_err(|e| e.to_string())
        .and_then(|v| {
            v["split_keys"]
                .as_array()
                .ok_or_else(|| "no split_keys array".to_string())?
                .iter()
                .map(|k| {
                    let text = k.as_str().ok_or("a split key is not a string")?;
                    unhex(text).ok_or_else(|| format!("{text:?} is not hex"))
                })
                .collect()
        });
    let keys = match keys {
        Ok(k) if !k.is_empty() => k,
        Ok(_) => return fail(StatusCode::BAD_REQUEST, "split_keys is empty".into()),
        Err(e) => {
            return fail(
                StatusCode::BAD_REQUEST,
                format!(
                    "{e}; send {{\"split_keys\": [\"<hex>\"]}} with keys as /pd/api/v1/regions prints them"
                ),
            );
        }
    };
    let mut ids = Vec::new();
    for key in keys {
        let Some(raw) = crate::mvcc::keys::decode_bytes(&key).map(|(k, _)| k) else {
            return fail(
                StatusCode::BAD_REQUEST,
                format!(
                    "{} is not an encoded key (hex of the memcomparable form)",
                    hex(&key)
                ),
            );
        };
        let Some(info) = cluster.region_by_key(&key) else {
            return fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no region holds that key yet".into(),
            );
        };
        match splitter(info, vec![raw]).await {
            Ok(regions) => {
                ids.extend(regions.iter().map(|r| r.id));
                // PD knows the result at once, before the leaders' next heartbeats.
                cluster.report_split(regions);
            }
            Err(e) => return fail(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    json_response(json!({ "processed-percentage": 100, "regions-id": ids })).into_response()
}

/// The move operators under way, in real PD's `GET /pd/api/v1/operators` spirit: one entry
/// per region with the step it is at.
fn operators_json(cluster: &PdCluster) -> Value {
    let ops: Vec<Value> = cluster
        .operators()
        .into_iter()
        .map(|(region, from, to, step, why)| {
            json!({
                "region_id": region,
                "desc": "transfer-peer",
                "from_store_id": from,
                "to_store_id": to,
                "step": step,
                "why": why,
            })
        })
        .collect();
    Value::Array(ops)
}

/// `POST /pd/api/v1/operators`, real PD's request for an operator: `{"name":
/// "transfer-leader", "region_id": N, "to_store_id": M}` or `{"name": "transfer-peer",
/// "region_id": N, "from_store_id": A, "to_store_id": B}`. The region's leader carries out
/// each step at its heartbeats.
fn operator(cluster: &PdCluster, body: &str) -> axum::response::Response {
    let bad = |msg: String| (StatusCode::BAD_REQUEST, msg).into_response();
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return bad(format!("{e}; send JSON")),
    };
    if v["name"] == "transfer-peer" {
        let (Some(region), Some(from), Some(to)) = (
            v["region_id"].as_u64(),
            v["from_store_id"].as_u64(),
            v["to_store_id"].as_u64(),
        ) else {
            return bad(
                "transfer-peer needs region_id, from_store_id and to_store_id (numbers)".into(),
            );
        };
        return match cluster.transfer_peer(region, from, to) {
            Ok(()) => json_response(json!("The operator is created.")).into_response(),
            Err(e) => bad(e),
        };
    }
    if v["name"] != "transfer-leader" {
        return bad(format!(
            "operator {} is not supported; the lab's PD has \"transfer-leader\" and \"transfer-peer\"",
            v["name"]
        ));
    }
    let (Some(region), Some(store)) = (v["region_id"].as_u64(), v["to_store_id"].as_u64()) else {
        return bad("transfer-leader needs region_id and to_store_id (numbers)".into());
    };
    match cluster.transfer_leader(region, store) {
        Ok(()) => json_response(json!("The operator is created.")).into_response(),
        Err(e) => bad(e.to_string()),
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

pub(crate) fn json_response(body: Value) -> impl IntoResponse {
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
            // PD's names: "Up" while heartbeats arrive, "Disconnected" after a short silence;
            // "Offline" while its replicas move away, "Tombstone" once it holds none.
            "state_name": match metapb::StoreState::try_from(s.store.state) {
                Ok(metapb::StoreState::Offline) => "Offline",
                Ok(metapb::StoreState::Tombstone) => "Tombstone",
                _ if s.is_up() => "Up",
                _ => "Disconnected",
            },
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
            })
            .unwrap();
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
            pending_peers: Vec::new(),
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
