//! The PD (placement driver) service: cluster membership, timestamps and region routing.
//!
//! A real PD is a Raft group of its own that tracks many TiKV stores and thousands of
//! regions. Our cluster is one store holding one region that covers every key, so PD's job
//! shrinks to: say who the leader is (us), hand out TSO timestamps, and answer "which region
//! and store hold key K" with that one region and store. Three rules keep the TiKV client
//! happy: every response carries a header with our **persisted** cluster id; GetMembers
//! names a leader; and the addresses we advertise are the ones the client dialed (see
//! [`DialedAuthority`]).

use std::sync::Arc;

use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::proto::metapb;
use crate::proto::pdpb::{self, pd_server::Pd};
use crate::server::DialedAuthority;
use crate::storage::Storage;
use crate::trace::{Served, Tracer};
use crate::txn_types::TimeStamp;

/// Our single store, its region and the region's peer (the leader): the raftstore's ids.
pub use crate::raftstore::store::{
    FIRST_PEER_ID as PEER_ID, FIRST_REGION_ID as REGION_ID, STORE_ID,
};
/// Our PD member id.
const MEMBER_ID: u64 = 4;

/// The PD service of the node.
pub struct PdService {
    storage: Arc<Storage>,
    /// Advertised when a request carries no authority (never seen in practice).
    listen_addr: String,
    /// Timestamp requests are traced (`PdTso`): every transaction starts with one, and a
    /// latency waterfall of a statement would be missing its first step without it.
    tracer: Arc<Tracer>,
}

impl PdService {
    /// A PD service for `storage`, listening on `listen_addr`, tracing through `tracer`.
    pub fn new(storage: Arc<Storage>, listen_addr: String, tracer: Arc<Tracer>) -> Self {
        PdService {
            storage,
            listen_addr,
            tracer,
        }
    }

    fn header(&self) -> Option<pdpb::ResponseHeader> {
        Some(pdpb::ResponseHeader {
            cluster_id: self.storage.cluster_id(),
            error: None,
        })
    }

    /// A header reporting an error (the client fails the call and reconnects).
    fn error_header(&self, message: String) -> Option<pdpb::ResponseHeader> {
        Some(pdpb::ResponseHeader {
            cluster_id: self.storage.cluster_id(),
            error: Some(pdpb::Error {
                r#type: pdpb::ErrorType::Unknown as i32,
                message,
            }),
        })
    }

    /// Rejects requests meant for another cluster (e.g. a data directory was swapped under a
    /// running SurrealDB): mixing two clusters' timestamps would break every guarantee.
    fn check_cluster(&self, header: &Option<pdpb::RequestHeader>) -> Result<(), String> {
        match header {
            Some(h) if h.cluster_id != 0 && h.cluster_id != self.storage.cluster_id() => {
                Err(format!(
                    "request for cluster {} reached cluster {}; restart the SurrealDB node so it reconnects",
                    h.cluster_id,
                    self.storage.cluster_id()
                ))
            }
            _ => Ok(()),
        }
    }

    fn advertised<T>(&self, request: &Request<T>) -> String {
        request
            .extensions()
            .get::<DialedAuthority>()
            .map(|a| a.0.clone())
            .unwrap_or_else(|| self.listen_addr.clone())
    }

    fn member(&self, addr: &str) -> pdpb::Member {
        pdpb::Member {
            name: "storage-node".into(),
            member_id: MEMBER_ID,
            peer_urls: vec![format!("http://{addr}")],
            client_urls: vec![format!("http://{addr}")],
            ..Default::default()
        }
    }

    fn store(&self, addr: &str) -> metapb::Store {
        metapb::Store {
            id: STORE_ID,
            address: addr.to_string(),
            state: metapb::StoreState::Up as i32,
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        }
    }
}

/// The one region: every key, one peer, on our store.
pub fn the_region() -> (metapb::Region, metapb::Peer) {
    let peer = metapb::Peer {
        id: PEER_ID,
        store_id: STORE_ID,
        ..Default::default()
    };
    let region = metapb::Region {
        id: REGION_ID,
        start_key: Vec::new(),
        end_key: Vec::new(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: vec![peer],
        ..Default::default()
    };
    (region, peer)
}

#[tonic::async_trait]
impl Pd for PdService {
    async fn get_members(
        &self,
        request: Request<pdpb::GetMembersRequest>,
    ) -> Result<Response<pdpb::GetMembersResponse>, Status> {
        let me = self.member(&self.advertised(&request));
        Ok(Response::new(pdpb::GetMembersResponse {
            header: self.header(),
            members: vec![me.clone()],
            leader: Some(me.clone()),
            etcd_leader: Some(me),
            ..Default::default()
        }))
    }

    async fn tso(
        &self,
        request: Request<Streaming<pdpb::TsoRequest>>,
    ) -> Result<Response<tonic::codegen::BoxStream<pdpb::TsoResponse>>, Status> {
        let storage = self.storage.clone();
        let cluster_id = storage.cluster_id();
        let tracer = self.tracer.clone();
        let peer = request.remote_addr();
        let requests = request.into_inner();
        let responses = requests.map(move |req| {
            let started = tracer.start();
            let req = req?;
            if let Some(h) = &req.header
                && h.cluster_id != 0
                && h.cluster_id != cluster_id
            {
                return Err(Status::failed_precondition(format!(
                    "TSO request for cluster {} reached cluster {cluster_id}",
                    h.cluster_id
                )));
            }
            // Batches are at most 64 (the client's MAX_BATCH_SIZE); refuse nonsense.
            if req.count == 0 || req.count > 1 << 16 {
                return Err(Status::invalid_argument(format!(
                    "TSO count {} out of range",
                    req.count
                )));
            }
            let last = storage.tso().allocate(u64::from(req.count));
            let error = last.as_ref().err().map(|e| e.to_string());
            tracer.record(started, peer, "PdTso", 0, &[], Served::with_error(error));
            let last = last.map_err(|e| Status::unavailable(format!("timestamp oracle: {e}")))?;
            Ok(pdpb::TsoResponse {
                header: Some(pdpb::ResponseHeader {
                    cluster_id,
                    error: None,
                }),
                count: req.count,
                timestamp: Some(pdpb::Timestamp {
                    physical: last.physical() as i64,
                    logical: last.logical() as i64,
                    suffix_bits: 0,
                }),
            })
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn get_region(
        &self,
        request: Request<pdpb::GetRegionRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let req = request.into_inner();
        if let Err(msg) = self.check_cluster(&req.header) {
            return Ok(Response::new(pdpb::GetRegionResponse {
                header: self.error_header(msg),
                ..Default::default()
            }));
        }
        let (region, leader) = the_region();
        Ok(Response::new(pdpb::GetRegionResponse {
            header: self.header(),
            region: Some(region),
            leader: Some(leader),
            ..Default::default()
        }))
    }

    async fn get_region_by_id(
        &self,
        request: Request<pdpb::GetRegionByIdRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let req = request.into_inner();
        if req.region_id != REGION_ID {
            return Ok(Response::new(pdpb::GetRegionResponse {
                header: self.error_header(format!("region {} not found", req.region_id)),
                ..Default::default()
            }));
        }
        let (region, leader) = the_region();
        Ok(Response::new(pdpb::GetRegionResponse {
            header: self.header(),
            region: Some(region),
            leader: Some(leader),
            ..Default::default()
        }))
    }

    async fn get_store(
        &self,
        request: Request<pdpb::GetStoreRequest>,
    ) -> Result<Response<pdpb::GetStoreResponse>, Status> {
        let addr = self.advertised(&request);
        let req = request.into_inner();
        if req.store_id != STORE_ID {
            return Ok(Response::new(pdpb::GetStoreResponse {
                header: self.error_header(format!("store {} not found", req.store_id)),
                ..Default::default()
            }));
        }
        Ok(Response::new(pdpb::GetStoreResponse {
            header: self.header(),
            store: Some(self.store(&addr)),
            ..Default::default()
        }))
    }

    async fn get_all_stores(
        &self,
        request: Request<pdpb::GetAllStoresRequest>,
    ) -> Result<Response<pdpb::GetAllStoresResponse>, Status> {
        let addr = self.advertised(&request);
        Ok(Response::new(pdpb::GetAllStoresResponse {
            header: self.header(),
            stores: vec![self.store(&addr)],
        }))
    }

    async fn get_gc_safe_point(
        &self,
        _request: Request<pdpb::GetGcSafePointRequest>,
    ) -> Result<Response<pdpb::GetGcSafePointResponse>, Status> {
        Ok(Response::new(pdpb::GetGcSafePointResponse {
            header: self.header(),
            safe_point: self.storage.gc_safe_point().into_inner(),
        }))
    }

    async fn update_gc_safe_point(
        &self,
        request: Request<pdpb::UpdateGcSafePointRequest>,
    ) -> Result<Response<pdpb::UpdateGcSafePointResponse>, Status> {
        let req = request.into_inner();
        // In TiKV the GC workers notice the new safe point later; here we collect right away
        // but in the background, so the caller is not held up by a large keyspace.
        let storage = self.storage.clone();
        let requested = TimeStamp::new(req.safe_point);
        let current = storage.gc_safe_point().max(requested);
        tokio::spawn(async move {
            match storage.update_gc_safe_point(requested).await {
                Ok(sp) => tracing::info!(safe_point = %sp, "GC safe point updated"),
                Err(e) => tracing::warn!("GC failed: {e}"),
            }
        });
        Ok(Response::new(pdpb::UpdateGcSafePointResponse {
            header: self.header(),
            new_safe_point: current.into_inner(),
        }))
    }
}
