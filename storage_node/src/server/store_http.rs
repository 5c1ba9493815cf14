//! A store's own HTTP page for the lab: a network partition inside the storage tier.
//!
//! `POST /lab/v1/partition` with `{"cut_from": [1, 3]}` cuts this store off from those stores
//! (an empty list heals it); `GET /lab/v1/partition` shows what is cut. Served on the store's
//! gRPC port, as PD's pages are on PD's. Real TiKV has no such page: a real partition is made
//! in the network (firewall rules, a chaos tool). The lab makes it inside the store, dropping
//! Raft messages to and from those stores (see [`crate::raftstore::transport::NetFilter`]), so
//! it needs no privileges and runs on any machine. Clients and PD still reach the store.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use super::pd_http::json_response;
use crate::storage::Storage;

/// The routes, merged beside the store's gRPC services.
pub fn router(storage: Arc<Storage>) -> axum::Router {
    let for_post = storage.clone();
    axum::Router::new().route(
        "/lab/v1/partition",
        get(move || {
            let cut = storage.net_filter().cut();
            async move { json_response(json!({ "cut_from": cut })) }
        })
        .post(move |body: String| {
            let storage = for_post.clone();
            async move { partition(&storage, &body) }
        }),
    )
}

fn partition(storage: &Storage, body: &str) -> axum::response::Response {
    let bad = |msg: String| (StatusCode::BAD_REQUEST, msg).into_response();
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return bad(format!("{e}; send JSON like {{\"cut_from\": [1, 3]}}")),
    };
    let Some(list) = v["cut_from"].as_array() else {
        return bad("send {\"cut_from\": [store ids]} (an empty list heals)".into());
    };
    let Some(ids) = list.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>() else {
        return bad("cut_from holds store ids: numbers such as 1 and 3".into());
    };
    storage.net_filter().set(ids.iter().copied());
    tracing::info!(cut_from = ?ids, "partition set: raft messages to and from these stores are dropped");
    json_response(json!({ "cut_from": storage.net_filter().cut() })).into_response()
}
