//! The PD (placement driver) service: cluster membership, timestamps and region routing.
//!
//! PD answers from [`PdCluster`], the registry the stores keep current with their heartbeats:
//! `GetRegion(key)` returns the region holding the key and the leader it last reported, and
//! `GetStore` where that store listens. It runs in its own process (`storage-node pd`) in
//! front of separate store processes, or inside the one-process node together with its one
//! store. Three rules keep the TiKV client happy: every response carries a header with the
//! **persisted** cluster id; GetMembers names a leader; and the addresses PD advertises for
//! itself, and for a store in the same process, are the ones the client dialed (see
//! [`DialedAuthority`]).

use std::sync::Arc;

use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::pd::cluster::{PdCluster, RegionInfo, RegionReport};
use crate::pd::operator::Instruction;
use crate::pd::tso::Tso;
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

/// Who keeps the GC safe point.
pub enum GcKeeper {
    /// The store in this process: it persists the safe point and collects at once.
    LocalStore(Arc<Storage>),
    /// PD alone: it persists the safe point in its data directory; stores poll it.
    Pd(crate::pd::gc::SafePointFile),
}

/// The PD service.
pub struct PdService {
    cluster: Arc<PdCluster>,
    tso: Arc<Tso>,
    gc: GcKeeper,
    /// Advertised when a request carries no authority (never seen in practice).
    listen_addr: String,
    /// Timestamp requests are traced (`PdTso`): every transaction starts with one, and a
    /// latency waterfall of a statement would be missing its first step without it.
    tracer: Arc<Tracer>,
    /// How a split asked through the HTTP API reaches the region's leader.
    splitter: super::pd_http::Splitter,
}

impl PdService {
    /// A PD service over `cluster` and `tso`, listening on `listen_addr`.
    pub fn new(
        cluster: Arc<PdCluster>,
        tso: Arc<Tso>,
        gc: GcKeeper,
        listen_addr: String,
        tracer: Arc<Tracer>,
    ) -> Self {
        PdService {
            splitter: super::pd_http::grpc_splitter(cluster.clone()),
            cluster,
            tso,
            gc,
            listen_addr,
            tracer,
        }
    }

    /// Splits through `splitter` instead of the leader store's `SplitRegion` RPC (the
    /// one-process node has no store address to dial: it splits its own storage).
    pub fn with_splitter(mut self, splitter: super::pd_http::Splitter) -> Self {
        self.splitter = splitter;
        self
    }

    /// How the HTTP API's split reaches the leader.
    pub fn splitter(&self) -> super::pd_http::Splitter {
        self.splitter.clone()
    }

    /// PD's registry (the HTTP pages read it).
    pub fn cluster(&self) -> Arc<PdCluster> {
        self.cluster.clone()
    }

    fn header(&self) -> Option<pdpb::ResponseHeader> {
        Some(pdpb::ResponseHeader {
            cluster_id: self.cluster.cluster_id(),
            error: None,
        })
    }

    /// A header reporting an error (the client fails the call and reconnects).
    fn error_header(&self, message: String) -> Option<pdpb::ResponseHeader> {
        self.typed_error_header(pdpb::ErrorType::Unknown, message)
    }

    fn typed_error_header(
        &self,
        kind: pdpb::ErrorType,
        message: String,
    ) -> Option<pdpb::ResponseHeader> {
        Some(pdpb::ResponseHeader {
            cluster_id: self.cluster.cluster_id(),
            error: Some(pdpb::Error {
                r#type: kind as i32,
                message,
            }),
        })
    }

    /// Rejects requests meant for another cluster (e.g. a data directory was swapped under a
    /// running SurrealDB, or a store was started against the wrong PD): mixing two clusters'
    /// timestamps would break every guarantee.
    fn check_cluster(&self, header: &Option<pdpb::RequestHeader>) -> Result<(), String> {
        match header {
            Some(h) if h.cluster_id != 0 && h.cluster_id != self.cluster.cluster_id() => {
                Err(format!(
                    "request for cluster {} reached cluster {}; restart the SurrealDB node (or store) so it reconnects to the right PD",
                    h.cluster_id,
                    self.cluster.cluster_id()
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

    /// A store as clients should see it: a store in this process registered no address of its
    /// own and is reached at whatever address the client dialed.
    fn store_for_client(&self, mut store: metapb::Store, dialed: &str) -> metapb::Store {
        if store.address.is_empty() {
            store.address = dialed.to_string();
        }
        store
    }

    fn region_response(&self, info: Option<RegionInfo>) -> pdpb::GetRegionResponse {
        match info {
            Some(info) => pdpb::GetRegionResponse {
                header: self.header(),
                region: Some(info.region),
                // None until a leader reported: the client backs off and asks again.
                leader: info.leader,
                ..Default::default()
            },
            // No store has reported a region for this key yet (the tier is starting). An
            // error makes the client reconnect and ask again. An empty answer would not be
            // safe: with one, the TiKV client acknowledged a commit in 26 ms that no store had
            // seen (measured while the first election was still under way).
            None => pdpb::GetRegionResponse {
                header: self.typed_error_header(
                    pdpb::ErrorType::NotBootstrapped,
                    "no region covers this key yet: the stores have not reported a leader (starting up?)".into(),
                ),
                ..Default::default()
            },
        }
    }
}

/// The one region of the one-process node: every key, one peer, on its store.
pub fn the_region() -> (metapb::Region, metapb::Peer) {
    let peer = metapb::Peer {
        id: PEER_ID,
        store_id: STORE_ID,
        ..Default::default()
    };
    let region = crate::raftstore::store::first_region(&[(PEER_ID, STORE_ID)]);
    (region, peer)
}

/// A region heartbeat as PD's registry takes it.
pub fn report_from_heartbeat(req: pdpb::RegionHeartbeatRequest) -> Option<RegionReport> {
    Some(RegionReport {
        region: req.region?,
        leader: req.leader?,
        term: req.term,
        approximate_keys: req.approximate_keys,
        approximate_size: req.approximate_size,
        pending_peers: req.pending_peers,
    })
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
        let tso = self.tso.clone();
        let cluster_id = self.cluster.cluster_id();
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
            let last = tso.allocate(u64::from(req.count));
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

    async fn bootstrap(
        &self,
        request: Request<pdpb::BootstrapRequest>,
    ) -> Result<Response<pdpb::BootstrapResponse>, Status> {
        let req = request.into_inner();
        if let Err(msg) = self.check_cluster(&req.header) {
            return Ok(Response::new(pdpb::BootstrapResponse {
                header: self.typed_error_header(pdpb::ErrorType::InvalidValue, msg),
                ..Default::default()
            }));
        }
        let Some(region) = req.region else {
            return Err(Status::invalid_argument("Bootstrap needs the first region"));
        };
        if let Some(store) = req.store
            && let Err(msg) = self.cluster.put_store(store)
        {
            return Ok(Response::new(pdpb::BootstrapResponse {
                header: self.typed_error_header(pdpb::ErrorType::InvalidValue, msg),
                ..Default::default()
            }));
        }
        let header = if self.cluster.bootstrap(region) {
            self.header()
        } else {
            self.typed_error_header(
                pdpb::ErrorType::AlreadyBootstrapped,
                "the cluster is already bootstrapped".into(),
            )
        };
        Ok(Response::new(pdpb::BootstrapResponse {
            header,
            ..Default::default()
        }))
    }

    async fn is_bootstrapped(
        &self,
        _request: Request<pdpb::IsBootstrappedRequest>,
    ) -> Result<Response<pdpb::IsBootstrappedResponse>, Status> {
        Ok(Response::new(pdpb::IsBootstrappedResponse {
            header: self.header(),
            bootstrapped: self.cluster.is_bootstrapped(),
        }))
    }

    async fn ask_batch_split(
        &self,
        request: Request<pdpb::AskBatchSplitRequest>,
    ) -> Result<Response<pdpb::AskBatchSplitResponse>, Status> {
        let req = request.into_inner();
        if let Err(msg) = self.check_cluster(&req.header) {
            return Ok(Response::new(pdpb::AskBatchSplitResponse {
                header: self.error_header(msg),
                ..Default::default()
            }));
        }
        let Some(region) = req.region else {
            return Err(Status::invalid_argument("AskBatchSplit needs the region"));
        };
        let mut ids = Vec::new();
        for _ in 0..req.split_count.max(1) {
            let (new_region_id, new_peer_ids) = self
                .cluster
                .ask_split(&region)
                .map_err(|e| Status::unavailable(format!("id allocator: {e}")))?;
            ids.push(pdpb::SplitId {
                new_region_id,
                new_peer_ids,
            });
        }
        Ok(Response::new(pdpb::AskBatchSplitResponse {
            header: self.header(),
            ids,
        }))
    }

    async fn report_batch_split(
        &self,
        request: Request<pdpb::ReportBatchSplitRequest>,
    ) -> Result<Response<pdpb::ReportBatchSplitResponse>, Status> {
        let req = request.into_inner();
        if let Err(msg) = self.check_cluster(&req.header) {
            return Ok(Response::new(pdpb::ReportBatchSplitResponse {
                header: self.error_header(msg),
            }));
        }
        self.cluster.report_split(req.regions);
        Ok(Response::new(pdpb::ReportBatchSplitResponse {
            header: self.header(),
        }))
    }

    async fn alloc_id(
        &self,
        request: Request<pdpb::AllocIdRequest>,
    ) -> Result<Response<pdpb::AllocIdResponse>, Status> {
        let req = request.into_inner();
        if let Err(msg) = self.check_cluster(&req.header) {
            return Ok(Response::new(pdpb::AllocIdResponse {
                header: self.error_header(msg),
                ..Default::default()
            }));
        }
        let id = self
            .cluster
            .alloc_id()
            .map_err(|e| Status::unavailable(format!("id allocator: {e}")))?;
        Ok(Response::new(pdpb::AllocIdResponse {
            header: self.header(),
            id,
        }))
    }

    async fn put_store(
        &self,
        request: Request<pdpb::PutStoreRequest>,
    ) -> Result<Response<pdpb::PutStoreResponse>, Status> {
        let req = request.into_inner();
        if let Err(msg) = self.check_cluster(&req.header) {
            return Ok(Response::new(pdpb::PutStoreResponse {
                header: self.typed_error_header(pdpb::ErrorType::InvalidValue, msg),
                ..Default::default()
            }));
        }
        let Some(store) = req.store.filter(|s| s.id != 0) else {
            return Err(Status::invalid_argument(
                "PutStore needs a store with an id",
            ));
        };
        tracing::info!(store = store.id, address = %store.address, "store registered");
        if let Err(msg) = self.cluster.put_store(store) {
            return Ok(Response::new(pdpb::PutStoreResponse {
                header: self.typed_error_header(pdpb::ErrorType::InvalidValue, msg),
                ..Default::default()
            }));
        }
        Ok(Response::new(pdpb::PutStoreResponse {
            header: self.header(),
            ..Default::default()
        }))
    }

    async fn store_heartbeat(
        &self,
        request: Request<pdpb::StoreHeartbeatRequest>,
    ) -> Result<Response<pdpb::StoreHeartbeatResponse>, Status> {
        let req = request.into_inner();
        if let Err(msg) = self.check_cluster(&req.header) {
            return Ok(Response::new(pdpb::StoreHeartbeatResponse {
                header: self.typed_error_header(pdpb::ErrorType::InvalidValue, msg),
                ..Default::default()
            }));
        }
        let store_id = req.stats.map(|s| s.store_id).unwrap_or(0);
        if !self.cluster.store_heartbeat(store_id) {
            return Ok(Response::new(pdpb::StoreHeartbeatResponse {
                header: self.typed_error_header(
                    pdpb::ErrorType::StoreTombstone,
                    format!("store {store_id} is not registered; it must PutStore first"),
                ),
                ..Default::default()
            }));
        }
        Ok(Response::new(pdpb::StoreHeartbeatResponse {
            header: self.header(),
            ..Default::default()
        }))
    }

    async fn region_heartbeat(
        &self,
        request: Request<Streaming<pdpb::RegionHeartbeatRequest>>,
    ) -> Result<Response<tonic::codegen::BoxStream<pdpb::RegionHeartbeatResponse>>, Status> {
        let cluster = self.cluster.clone();
        let requests = request.into_inner();
        // Each leader's reports update the registry; PD answers only when it has an operator
        // for the region (a leader transfer), which the leader carries out.
        let header = self.header();
        let responses = requests.filter_map(move |req| {
            let cluster = cluster.clone();
            let header = header.clone();
            async move {
                let req = match req {
                    Ok(r) => r,
                    Err(e) => return Some(Err(e)),
                };
                let Some(report) = report_from_heartbeat(req) else {
                    tracing::warn!("region heartbeat without a region or leader");
                    return None;
                };
                tracing::debug!(
                    region = report.region.id,
                    leader_store = report.leader.store_id,
                    term = report.term,
                    "region heartbeat"
                );
                let (region_id, epoch, leader) =
                    (report.region.id, report.region.region_epoch, report.leader);
                if let Err(e) = cluster.region_heartbeat(report) {
                    tracing::debug!("{e}");
                    return None;
                }
                let mut answer = pdpb::RegionHeartbeatResponse {
                    header,
                    region_id,
                    region_epoch: epoch,
                    target_peer: Some(leader),
                    ..Default::default()
                };
                match cluster.next_operation(region_id)? {
                    Instruction::TransferLeader(to) => {
                        answer.transfer_leader = Some(pdpb::TransferLeader {
                            peer: Some(to),
                            peers: Vec::new(),
                        })
                    }
                    Instruction::ChangePeer(kind, peer) => {
                        answer.change_peer = Some(pdpb::ChangePeer {
                            peer: Some(peer),
                            change_type: kind as i32,
                        })
                    }
                }
                Some(Ok(answer))
            }
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
        let info = self.cluster.region_by_key(&req.region_key);
        Ok(Response::new(self.region_response(info)))
    }

    async fn get_region_by_id(
        &self,
        request: Request<pdpb::GetRegionByIdRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let req = request.into_inner();
        match self.cluster.region_by_id(req.region_id) {
            Some(info) => Ok(Response::new(self.region_response(Some(info)))),
            None => Ok(Response::new(pdpb::GetRegionResponse {
                header: self.typed_error_header(
                    pdpb::ErrorType::RegionNotFound,
                    format!("region {} not found", req.region_id),
                ),
                ..Default::default()
            })),
        }
    }

    async fn scan_regions(
        &self,
        request: Request<pdpb::ScanRegionsRequest>,
    ) -> Result<Response<pdpb::ScanRegionsResponse>, Status> {
        let req = request.into_inner();
        let limit = if req.limit <= 0 {
            usize::MAX
        } else {
            req.limit as usize
        };
        let regions: Vec<RegionInfo> = self
            .cluster
            .regions()
            .into_iter()
            .filter(|r| {
                (r.region.end_key.is_empty() || r.region.end_key > req.start_key)
                    && (req.end_key.is_empty() || r.region.start_key < req.end_key)
            })
            .take(limit)
            .collect();
        Ok(Response::new(pdpb::ScanRegionsResponse {
            header: self.header(),
            region_metas: regions.iter().map(|r| r.region.clone()).collect(),
            leaders: regions
                .iter()
                .map(|r| r.leader.unwrap_or_default())
                .collect(),
            regions: regions
                .into_iter()
                .map(|r| pdpb::Region {
                    region: Some(r.region),
                    leader: r.leader,
                    ..Default::default()
                })
                .collect(),
        }))
    }

    async fn get_store(
        &self,
        request: Request<pdpb::GetStoreRequest>,
    ) -> Result<Response<pdpb::GetStoreResponse>, Status> {
        let dialed = self.advertised(&request);
        let req = request.into_inner();
        match self.cluster.store(req.store_id) {
            Some(info) => Ok(Response::new(pdpb::GetStoreResponse {
                header: self.header(),
                store: Some(self.store_for_client(info.store, &dialed)),
                ..Default::default()
            })),
            None => Ok(Response::new(pdpb::GetStoreResponse {
                header: self.error_header(format!("store {} not found", req.store_id)),
                ..Default::default()
            })),
        }
    }

    async fn get_all_stores(
        &self,
        request: Request<pdpb::GetAllStoresRequest>,
    ) -> Result<Response<pdpb::GetAllStoresResponse>, Status> {
        let dialed = self.advertised(&request);
        let request_exclude_tombstones = request.get_ref().exclude_tombstone_stores;
        let exclude_tombstones = request_exclude_tombstones;
        let stores = self
            .cluster
            .stores()
            .into_iter()
            .filter(|info| {
                !(exclude_tombstones && info.store.state == metapb::StoreState::Tombstone as i32)
            })
            .map(|info| self.store_for_client(info.store, &dialed))
            .collect();
        Ok(Response::new(pdpb::GetAllStoresResponse {
            header: self.header(),
            stores,
        }))
    }

    async fn get_gc_safe_point(
        &self,
        _request: Request<pdpb::GetGcSafePointRequest>,
    ) -> Result<Response<pdpb::GetGcSafePointResponse>, Status> {
        let safe_point = match &self.gc {
            GcKeeper::LocalStore(storage) => storage.gc_safe_point(),
            GcKeeper::Pd(file) => file.get(),
        };
        Ok(Response::new(pdpb::GetGcSafePointResponse {
            header: self.header(),
            safe_point: safe_point.into_inner(),
        }))
    }

    async fn update_gc_safe_point(
        &self,
        request: Request<pdpb::UpdateGcSafePointRequest>,
    ) -> Result<Response<pdpb::UpdateGcSafePointResponse>, Status> {
        let req = request.into_inner();
        let requested = TimeStamp::new(req.safe_point);
        let current = match &self.gc {
            GcKeeper::LocalStore(storage) => {
                // In TiKV the GC workers notice the new safe point later; here the store in
                // this process collects right away but in the background, so the caller is
                // not held up by a large keyspace.
                let storage = storage.clone();
                let current = storage.gc_safe_point().max(requested);
                tokio::spawn(async move {
                    match storage.update_gc_safe_point(requested).await {
                        Ok(sp) => tracing::info!(safe_point = %sp, "GC safe point updated"),
                        Err(e) => tracing::warn!("GC failed: {e}"),
                    }
                });
                current
            }
            // Stores poll the safe point with their heartbeats and collect on the regions
            // they lead.
            GcKeeper::Pd(file) => file
                .raise(requested)
                .map_err(|e| Status::unavailable(format!("cannot persist the safe point: {e}")))?,
        };
        Ok(Response::new(pdpb::UpdateGcSafePointResponse {
            header: self.header(),
            new_safe_point: current.into_inner(),
        }))
    }
}
