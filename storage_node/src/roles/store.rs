//! `storage-node store --pd ADDR`: one store of the replicated tier.
//!
//! A store holds a peer of each of its regions and serves TiKV's RPCs for the regions it
//! leads. It learns nothing by itself: PD tells clients where regions are, so a store's whole
//! conversation with PD is
//!
//! - **at start**: PD's cluster id (a data directory is tied to one cluster and store id for
//!   life), then `PutStore` with its address;
//! - **every second**: a store heartbeat (and `PutStore` again if PD forgot it, e.g. after a PD
//!   restart), and a look at the GC safe point;
//! - **region heartbeats**, streamed: each region's leader reports the moment it is elected
//!   and every second after — how clients find the new leader after a failover; PD answers
//!   on the same stream with operators (a leader transfer), which the store carries out;
//! - **a timestamp** after each election: the new leader syncs max_ts from PD's TSO before it
//!   takes writes (see [`crate::concurrency`]).
//!
//! The initial stores bootstrap the first region together, each computing the same peer list
//! from `--initial-stores` (see [`initial_peers`]), as etcd's `--initial-cluster` does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tonic::transport::Channel;

use crate::concurrency::TimestampOracle;
use crate::engine::{Engine, EngineError};
use crate::pd::cluster::RegionReport;
use crate::proto::metapb;
use crate::proto::pdpb::{self, pd_client::PdClient};
use crate::raftstore::RaftConfig;
use crate::raftstore::grpc::GrpcTransport;
use crate::raftstore::store::{PdLink, StoreSetup, first_region, initial_peers};
use crate::server::Serving;
use crate::server::kv::KvService;
use crate::storage::Storage;
use crate::txn_types::TimeStamp;
use crate::{StartError, bind, open_tracer};

/// How to run a store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Loopback address to serve TiKV on (PD advertises it to clients and other stores).
    pub addr: SocketAddr,
    /// Where this store's data and Raft log live.
    pub data_dir: PathBuf,
    /// PD's address (`host:port`).
    pub pd: String,
    /// This store's id, 1..=`initial_stores`.
    pub store_id: u64,
    /// How many stores bootstrap the first region together.
    pub initial_stores: u64,
    /// Append one JSON line per RPC to this file.
    pub trace: Option<PathBuf>,
    /// Raft timing.
    pub raft: RaftConfig,
}

/// Why a store could not join its cluster; each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// Store id 0.
    #[error(
        "--store-id must be 1 or more (1..={initial} are the initial stores; a higher id joins a running cluster)"
    )]
    ZeroId {
        /// `--initial-stores`.
        initial: u64,
    },
    /// A joining store (id above the initial ones) needs a cluster to join.
    #[error(
        "store {store_id} joins a running cluster, but PD at {pd} has no regions yet; start the initial stores 1..={initial} first"
    )]
    NothingToJoin {
        /// The id given.
        store_id: u64,
        /// `--initial-stores`.
        initial: u64,
        /// `--pd`.
        pd: String,
    },
    /// The data folder is empty but PD knows this store: it lost what it acknowledged.
    #[error(
        "store {store_id}'s data folder {dir} is empty, but PD knows store {store_id}: its replicas acknowledged writes this folder no longer holds, and Raft would count votes and log entries it forgot. A store that lost its data cannot rejoin under its old id: remove it and start a new store (`lab replace-store {store_id}` does both)"
    )]
    LostData {
        /// The store.
        store_id: u64,
        /// Its data folder.
        dir: String,
    },
    /// PD cannot be reached.
    #[error("cannot reach PD at {pd}: {why}; start it first (`storage-node pd`) or fix --pd")]
    NoPd {
        /// `--pd`.
        pd: String,
        /// What failed.
        why: String,
    },
}

/// A store that is serving.
pub struct StoreNode {
    /// The address it serves on.
    pub addr: SocketAddr,
    /// Its storage (tests inspect it).
    pub storage: Arc<Storage>,
    /// PD's cluster id.
    pub cluster_id: u64,
    serving: Serving,
    background: Vec<tokio::task::JoinHandle<()>>,
}

/// Connects to PD, retrying for a few seconds (PD may be starting beside us).
async fn connect_pd(pd: &str) -> Result<PdClient<Channel>, JoinError> {
    let no_pd = |why: String| JoinError::NoPd {
        pd: pd.to_string(),
        why,
    };
    let endpoint = Channel::from_shared(format!("http://{pd}"))
        .map_err(|e| no_pd(e.to_string()))?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(3));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match endpoint.connect().await {
            Ok(channel) => return Ok(PdClient::new(channel)),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(no_pd(e.to_string())),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn header(cluster_id: u64) -> Option<pdpb::RequestHeader> {
    Some(pdpb::RequestHeader {
        cluster_id,
        ..Default::default()
    })
}

/// A PD answer's header error, as text.
fn pd_error(h: &Option<pdpb::ResponseHeader>) -> Option<String> {
    h.as_ref()
        .and_then(|h| h.error.as_ref())
        .map(|e| e.message.clone())
}

impl StoreNode {
    /// Joins the cluster behind `config.pd`, opens the data directory, and starts serving.
    pub async fn start(config: StoreConfig) -> Result<StoreNode, StartError> {
        let fail = |e: String| StartError::Engine(EngineError::Redb(e));
        if config.store_id == 0 {
            return Err(fail(
                JoinError::ZeroId {
                    initial: config.initial_stores,
                }
                .to_string(),
            ));
        }
        // Stores 1..=initial bootstrap the first region together; a higher id joins a running
        // cluster with no replica, and PD moves replicas onto it.
        let joining = config.store_id > config.initial_stores;
        let (listener, addr) = bind(config.addr).await?;
        let mut pd = connect_pd(&config.pd)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let members = pd
            .get_members(pdpb::GetMembersRequest::default())
            .await
            .map_err(|e| {
                fail(format!(
                    "PD at {} did not answer GetMembers: {e}",
                    config.pd
                ))
            })?
            .into_inner();
        let cluster_id = members.header.map(|h| h.cluster_id).unwrap_or(0);
        let (engine, identity) = Engine::open(&config.data_dir)?;
        let fresh = engine.bound_store()?.is_none();
        if fresh && pd_knows_store(&mut pd, cluster_id, config.store_id).await {
            // PD learns of a store only after its data folder was tied to it: a folder that
            // was never tied, under an id PD knows, was deleted or replaced.
            return Err(fail(
                JoinError::LostData {
                    store_id: config.store_id,
                    dir: config.data_dir.display().to_string(),
                }
                .to_string(),
            ));
        }
        engine.bind_store(cluster_id, config.store_id)?;
        let store = metapb::Store {
            id: config.store_id,
            address: addr.to_string(),
            state: metapb::StoreState::Up as i32,
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        };
        put_store(&mut pd, cluster_id, &store)
            .await
            .map_err(|e| fail(format!("PD at {} refused this store: {e}", config.pd)))?;

        // The first region exists from now on, leader or not (every initial store sends the
        // same one; PD keeps the first). A joining store bootstraps nothing.
        let region = first_region(&initial_peers(config.initial_stores));
        if joining {
            if !pd_is_bootstrapped(&mut pd, cluster_id).await {
                return Err(fail(
                    JoinError::NothingToJoin {
                        store_id: config.store_id,
                        initial: config.initial_stores,
                        pd: config.pd.clone(),
                    }
                    .to_string(),
                ));
            }
        } else {
            let boot = pd
                .bootstrap(pdpb::BootstrapRequest {
                    header: header(cluster_id),
                    store: Some(store.clone()),
                    region: Some(region.clone()),
                })
                .await
                .map_err(|e| fail(format!("PD at {} did not answer Bootstrap: {e}", config.pd)))?
                .into_inner();
            if let Some(e) = boot.header.as_ref().and_then(|h| h.error.as_ref())
                && e.r#type != pdpb::ErrorType::AlreadyBootstrapped as i32
            {
                return Err(fail(format!(
                    "PD at {} refused Bootstrap: {}",
                    config.pd, e.message
                )));
            }
        }

        let runtime = tokio::runtime::Handle::current();
        let addresses: Arc<RwLock<HashMap<u64, String>>> = Arc::default();
        let resolve = {
            let addresses = addresses.clone();
            Arc::new(move |store_id: u64| {
                addresses
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&store_id)
                    .cloned()
            })
        };
        let (reports, reported) = tokio::sync::mpsc::unbounded_channel::<RegionReport>();
        let link = GrpcPd {
            reports,
            pd: pd.clone(),
            cluster_id,
            runtime: runtime.clone(),
        };
        let oracle = Arc::new(PdOracle {
            pd: pd.clone(),
            cluster_id,
            runtime: runtime.clone(),
        });
        let setup = StoreSetup {
            store_id: config.store_id,
            // Only a fresh initial store creates the first region; a store restarting finds
            // its regions in its data folder (even none, if PD moved them all away).
            bootstrap: if joining || !fresh {
                Vec::new()
            } else {
                vec![region]
            },
            transport: Box::new(GrpcTransport::new(runtime, resolve)),
            pd: Some(Box::new(link)),
        };
        let storage = Storage::open_store(engine, identity, oracle, config.raft.clone(), setup)?;
        let background = vec![
            tokio::spawn(store_heartbeats(
                pd.clone(),
                cluster_id,
                store,
                addresses,
                storage.clone(),
            )),
            tokio::spawn(region_heartbeats(pd, cluster_id, reported, storage.clone())),
        ];
        let tracer = open_tracer(&config.trace)?;
        let kv = KvService::new(storage.clone(), tracer);
        Ok(StoreNode {
            addr,
            storage,
            cluster_id,
            serving: Serving::spawn(None, Some(kv), listener),
            background,
        })
    }

    /// Stops serving and waits for in-flight RPCs to finish.
    pub async fn stop(self) {
        for task in &self.background {
            task.abort();
        }
        self.serving.stop().await
    }

    /// Waits until the server stops on its own (an error).
    pub async fn wait(&mut self) -> Result<(), String> {
        self.serving.wait().await
    }
}

/// Whether PD knows store `store_id` (it registered before).
async fn pd_knows_store(pd: &mut PdClient<Channel>, cluster_id: u64, store_id: u64) -> bool {
    pd.get_store(pdpb::GetStoreRequest {
        header: header(cluster_id),
        store_id,
    })
    .await
    .is_ok_and(|r| {
        let r = r.into_inner();
        pd_error(&r.header).is_none() && r.store.is_some()
    })
}

/// Whether PD's cluster has its first region.
async fn pd_is_bootstrapped(pd: &mut PdClient<Channel>, cluster_id: u64) -> bool {
    pd.is_bootstrapped(pdpb::IsBootstrappedRequest {
        header: header(cluster_id),
    })
    .await
    .is_ok_and(|r| r.into_inner().bootstrapped)
}

async fn put_store(
    pd: &mut PdClient<Channel>,
    cluster_id: u64,
    store: &metapb::Store,
) -> Result<(), String> {
    let resp = pd
        .put_store(pdpb::PutStoreRequest {
            header: header(cluster_id),
            store: Some(store.clone()),
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    match pd_error(&resp.header) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Every second: tell PD this store is alive (registering again if PD forgot it), learn the
/// other stores' addresses (for Raft messages), and collect garbage below a raised safe point.
async fn store_heartbeats(
    mut pd: PdClient<Channel>,
    cluster_id: u64,
    store: metapb::Store,
    addresses: Arc<RwLock<HashMap<u64, String>>>,
    storage: Arc<Storage>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let beat = pd
            .store_heartbeat(pdpb::StoreHeartbeatRequest {
                header: header(cluster_id),
                stats: Some(pdpb::StoreStats {
                    store_id: store.id,
                    region_count: storage.region_count() as u32,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
        match beat {
            Ok(resp) if pd_error(&resp.get_ref().header).is_some() => {
                // PD restarted and lost its registry: register again.
                if let Err(e) = put_store(&mut pd, cluster_id, &store).await {
                    tracing::warn!("PD refused this store: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("store heartbeat failed: {e}");
                continue;
            }
        }
        if let Ok(resp) = pd
            .get_all_stores(pdpb::GetAllStoresRequest {
                header: header(cluster_id),
                exclude_tombstone_stores: true,
            })
            .await
        {
            let found: HashMap<u64, String> = resp
                .into_inner()
                .stores
                .into_iter()
                .map(|s| (s.id, s.address))
                .collect();
            *addresses.write().unwrap_or_else(|p| p.into_inner()) = found;
        }
        if let Ok(resp) = pd
            .get_gc_safe_point(pdpb::GetGcSafePointRequest {
                header: header(cluster_id),
            })
            .await
        {
            let safe_point = TimeStamp::new(resp.into_inner().safe_point);
            if safe_point > storage.gc_safe_point()
                && let Err(e) = storage.update_gc_safe_point(safe_point).await
            {
                tracing::warn!("GC failed: {e}");
            }
        }
    }
}

/// Streams this store's region reports to PD, reopening the stream after an error (a report
/// lost meanwhile is repeated within a second by the leader's periodic heartbeat).
async fn region_heartbeats(
    pd: PdClient<Channel>,
    cluster_id: u64,
    reported: tokio::sync::mpsc::UnboundedReceiver<RegionReport>,
    storage: Arc<Storage>,
) {
    let reported = Arc::new(tokio::sync::Mutex::new(reported));
    loop {
        let feed = reported.clone();
        let requests = futures::stream::unfold(feed, move |feed| async move {
            let report = feed.lock().await.recv().await?;
            let req = pdpb::RegionHeartbeatRequest {
                header: header(cluster_id),
                region: Some(report.region),
                leader: Some(report.leader),
                term: report.term,
                approximate_keys: report.approximate_keys,
                approximate_size: report.approximate_size,
                pending_peers: report.pending_peers,
                ..Default::default()
            };
            Some((req, feed))
        });
        let mut client = pd.clone();
        match client.region_heartbeat(requests).await {
            Ok(resp) => {
                let mut answers = resp.into_inner();
                // PD answers only with operators: carry out each step (a leader transfer or
                // one membership change).
                while let Ok(Some(answer)) = answers.message().await {
                    if let Some(to) = answer.transfer_leader.and_then(|t| t.peer) {
                        storage.transfer_leader(answer.region_id, to.id);
                    }
                    if let Some(change) = answer.change_peer
                        && let Some(peer) = change.peer
                    {
                        use protobuf::ProtobufEnum as _;
                        // PD's enum is eraftpb's: AddNode 0, RemoveNode 1, AddLearnerNode 2.
                        match raft::eraftpb::ConfChangeType::from_i32(change.change_type) {
                            Some(kind) => storage.change_peer(answer.region_id, kind, peer),
                            None => tracing::warn!(
                                "PD asked for an unknown conf change {}",
                                change.change_type
                            ),
                        }
                    }
                }
            }
            Err(e) => tracing::debug!("region heartbeat stream failed: {e}"),
        }
        if reported.lock().await.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The store thread's link to PD over gRPC: heartbeats through the streaming task, split ids
/// by a blocking call (on the store thread, as for the TSO below), split reports in the
/// background.
struct GrpcPd {
    reports: tokio::sync::mpsc::UnboundedSender<RegionReport>,
    pd: PdClient<Channel>,
    cluster_id: u64,
    runtime: tokio::runtime::Handle,
}

impl PdLink for GrpcPd {
    fn report(&self, report: RegionReport) {
        let _ = self.reports.send(report);
    }

    fn ask_split(&self, region: &metapb::Region) -> Result<(u64, Vec<u64>), String> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err("AskBatchSplit was asked from inside the async runtime".into());
        }
        let mut pd = self.pd.clone();
        let request = pdpb::AskBatchSplitRequest {
            header: header(self.cluster_id),
            region: Some(region.clone()),
            split_count: 1,
        };
        self.runtime.block_on(async move {
            let ask = pd.ask_batch_split(request);
            let resp = tokio::time::timeout(Duration::from_secs(2), ask)
                .await
                .map_err(|_| "PD did not answer AskBatchSplit within 2 s".to_string())?
                .map_err(|e| format!("AskBatchSplit: {e}"))?
                .into_inner();
            if let Some(e) = pd_error(&resp.header) {
                return Err(format!("PD refused AskBatchSplit: {e}"));
            }
            let id = resp
                .ids
                .into_iter()
                .next()
                .ok_or("PD answered AskBatchSplit without ids")?;
            Ok((id.new_region_id, id.new_peer_ids))
        })
    }

    fn region_by_id(&self, region_id: u64) -> Option<metapb::Region> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return None;
        }
        let mut pd = self.pd.clone();
        let request = pdpb::GetRegionByIdRequest {
            header: header(self.cluster_id),
            region_id,
            ..Default::default()
        };
        self.runtime.block_on(async move {
            let ask = pd.get_region_by_id(request);
            tokio::time::timeout(Duration::from_secs(1), ask)
                .await
                .ok()?
                .ok()?
                .into_inner()
                .region
        })
    }

    fn report_split(&self, regions: Vec<metapb::Region>) {
        let mut pd = self.pd.clone();
        let request = pdpb::ReportBatchSplitRequest {
            header: header(self.cluster_id),
            regions,
        };
        self.runtime.spawn(async move {
            if let Err(e) = pd.report_batch_split(request).await {
                tracing::debug!("ReportBatchSplit failed: {e}");
            }
        });
    }
}

/// PD's TSO across the network, for the store thread (which is not async): one timestamp
/// per election, so a blocking call is fine there.
struct PdOracle {
    pd: PdClient<Channel>,
    cluster_id: u64,
    runtime: tokio::runtime::Handle,
}

impl TimestampOracle for PdOracle {
    fn next(&self) -> std::io::Result<TimeStamp> {
        if tokio::runtime::Handle::try_current().is_ok() {
            // Blocking inside the runtime would stall it; only the store thread may ask.
            return Err(std::io::Error::other(
                "PD's TSO was asked from inside the async runtime",
            ));
        }
        let mut pd = self.pd.clone();
        let request = pdpb::TsoRequest {
            header: header(self.cluster_id),
            count: 1,
            ..Default::default()
        };
        self.runtime.block_on(async move {
            let ask = async {
                let mut answers = pd
                    .tso(futures::stream::iter([request]))
                    .await
                    .map_err(std::io::Error::other)?
                    .into_inner();
                let answer = answers
                    .message()
                    .await
                    .map_err(std::io::Error::other)?
                    .and_then(|a| a.timestamp)
                    .ok_or_else(|| std::io::Error::other("PD's TSO answered nothing"))?;
                Ok(TimeStamp::compose(
                    answer.physical as u64,
                    answer.logical as u64,
                ))
            };
            tokio::time::timeout(Duration::from_secs(2), ask)
                .await
                .map_err(|_| std::io::Error::other("PD's TSO did not answer within 2 s"))?
        })
    }
}
