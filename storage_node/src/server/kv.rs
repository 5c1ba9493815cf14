//! The TiKV gRPC service: decodes each RPC, calls [`Storage`], encodes the answer.
//!
//! Errors follow TiKV's conventions exactly, because SurrealDB's client depends on them:
//! key errors go in the response's `error`/`errors` field (per pair for scans and batch
//! gets), never as a gRPC status; a gRPC status means "the request did not reach storage"
//! and makes the client retry or reconnect.
//!
//! This is the one place protobuf's `Vec<u8>` keys and `u64` timestamps meet the typed
//! [`Key`] and [`TimeStamp`]: each handler converts its request's fields once on the way in
//! and the answer's once on the way out (the trace records the wire values).

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::mvcc::{ScanArgs, ScanEntry};
use crate::proto::kvrpcpb::prewrite_request::PessimisticAction;
use crate::proto::kvrpcpb::{self, KeyError, KvPair};
use crate::proto::tikvpb::tikv_server::Tikv;
use crate::raftstore::RegionError;
use crate::storage::Storage;
use crate::trace::Tracer;
use crate::txn::actions::check_txn_status::CheckTxnStatusArgs;
use crate::txn::actions::prewrite::{Mutation, PrewriteArgs};
use crate::txn::{TxnError, TxnStatus};
use crate::txn_types::{Key, TimeStamp, keys_from_raw};

/// The TiKV service of the node.
pub struct KvService {
    storage: Arc<Storage>,
    tracer: Arc<Tracer>,
}

impl KvService {
    /// The storage it serves.
    pub fn storage(&self) -> Arc<Storage> {
        self.storage.clone()
    }

    /// A service over `storage`, tracing through `tracer`.
    pub fn new(storage: Arc<Storage>, tracer: Arc<Tracer>) -> Self {
        KvService { storage, tracer }
    }
}

/// The start ts of transactions the client already resolved (reads may skip their locks).
fn bypass(ctx: &Option<kvrpcpb::Context>) -> Vec<TimeStamp> {
    ctx.as_ref()
        .map(|c| {
            c.resolved_locks
                .iter()
                .copied()
                .map(TimeStamp::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Responses that carry a `region_error`: every TiKV response does.
pub(crate) trait RegionErrorSlot {
    fn region_error_mut(&mut self) -> &mut Option<crate::proto::errorpb::Error>;
}

macro_rules! region_error_slot {
    ($($t:ident),*) => {$(
        impl RegionErrorSlot for kvrpcpb::$t {
            fn region_error_mut(&mut self) -> &mut Option<crate::proto::errorpb::Error> {
                &mut self.region_error
            }
        }
    )*};
}
region_error_slot!(
    BatchGetResponse,
    BatchRollbackResponse,
    CheckSecondaryLocksResponse,
    CheckTxnStatusResponse,
    CleanupResponse,
    CommitResponse,
    GcResponse,
    GetResponse,
    PessimisticLockResponse,
    PessimisticRollbackResponse,
    PrewriteResponse,
    ResolveLockResponse,
    ScanLockResponse,
    ScanResponse,
    TxnHeartBeatResponse,
    UnsafeDestroyRangeResponse
);

/// Requests that carry a region context (every region-level TiKV request; store-level ones
/// such as `UnsafeDestroyRange` and `Gc` answer none).
pub(crate) trait HasContext {
    fn context(&self) -> Option<&kvrpcpb::Context>;
}

macro_rules! has_context {
    ($($t:ident),*) => {$(
        impl HasContext for kvrpcpb::$t {
            fn context(&self) -> Option<&kvrpcpb::Context> {
                self.context.as_ref()
            }
        }
    )*};
}
has_context!(
    BatchGetRequest,
    BatchRollbackRequest,
    CheckSecondaryLocksRequest,
    CheckTxnStatusRequest,
    CleanupRequest,
    CommitRequest,
    GetRequest,
    PessimisticLockRequest,
    PessimisticRollbackRequest,
    PrewriteRequest,
    ResolveLockRequest,
    ScanLockRequest,
    ScanRequest,
    TxnHeartBeatRequest
);

impl HasContext for kvrpcpb::UnsafeDestroyRangeRequest {
    fn context(&self) -> Option<&kvrpcpb::Context> {
        None
    }
}

impl HasContext for kvrpcpb::GcRequest {
    fn context(&self) -> Option<&kvrpcpb::Context> {
        None
    }
}

/// A response carrying only `e` in its `region_error`.
pub(crate) fn region_error_response<R: Default + RegionErrorSlot>(e: &RegionError) -> R {
    let mut resp = R::default();
    *resp.region_error_mut() = Some(e.to_pb());
    resp
}

/// Puts a region error (not the leader, not committed in time …) in the response's
/// `region_error`, where the client looks for it to re-route and retry; returns whether `e`
/// was one. Everything else is a key error, in the field each response has for it.
pub(crate) fn region_error(resp: &mut impl RegionErrorSlot, e: &TxnError) -> bool {
    match e {
        TxnError::Region(r) => {
            *resp.region_error_mut() = Some(r.to_pb());
            true
        }
        _ => false,
    }
}

fn key_error(e: &TxnError) -> Option<KeyError> {
    Some(e.to_key_error())
}

fn err_text<T>(r: &Result<T, TxnError>) -> Option<String> {
    r.as_ref().err().map(|e| e.to_string())
}

/// Records one RPC in the trace (a no-op when tracing is off).
macro_rules! traced {
    ($self:ident, $req:ident, $rpc:literal, $start_ts:expr, $keys:expr, $body:expr) => {{
        let started = $self.tracer.start();
        let peer = $req.remote_addr();
        let $req = $req.into_inner();
        let keys: Vec<Vec<u8>> = if started.is_some() {
            $keys(&$req)
        } else {
            Vec::new()
        };
        let start_ts = $start_ts(&$req);
        let key_refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let (resp, served) = match $self.storage.check_region(HasContext::context(&$req)) {
            // Wrong region, stale epoch: TiKV answers before touching any data, and the client
            // refreshes its region cache from PD and retries.
            Some(e) => (
                region_error_response(&e),
                crate::trace::Served::with_error(Some(e.to_string())),
            ),
            None => {
                if started.is_some() {
                    // The scheduler leaves a write's Raft steps here, for the trace.
                    let steps = std::sync::Arc::new(std::sync::Mutex::new(None));
                    let (resp, error): (_, Option<String>) = crate::raftstore::RAFT_STEPS
                        .scope(steps.clone(), $body($req))
                        .await;
                    let raft = steps.lock().ok().and_then(|s| *s);
                    (resp, crate::trace::Served { error, raft })
                } else {
                    // Tracing off: nothing to collect.
                    let (resp, error): (_, Option<String>) = $body($req).await;
                    (resp, crate::trace::Served { error, raft: None })
                }
            }
        };
        $self
            .tracer
            .record(started, peer, $rpc, start_ts, &key_refs, served);
        Ok(Response::new(resp))
    }};
}

// After `traced!`, so the submodule can use it.
mod pessimistic;

#[tonic::async_trait]
impl Tikv for KvService {
    async fn raft(
        &self,
        request: Request<tonic::Streaming<crate::proto::raft_serverpb::RaftMessage>>,
    ) -> Result<Response<crate::proto::raft_serverpb::Done>, Status> {
        // Another store's peers talking to ours (see `raftstore::grpc`).
        let done =
            crate::raftstore::grpc::receive(request.into_inner(), self.storage.raft_mailbox())
                .await?;
        Ok(Response::new(done))
    }

    // `split_key`, `left` and `right` are deprecated in kvproto but still sent and read by
    // older clients, so both forms are served.
    #[allow(deprecated)]
    async fn split_region(
        &self,
        request: Request<kvrpcpb::SplitRegionRequest>,
    ) -> Result<Response<kvrpcpb::SplitRegionResponse>, Status> {
        let req = request.into_inner();
        let Some(ctx) = req.context.as_ref().filter(|c| c.region_id != 0) else {
            return Err(Status::invalid_argument(
                "SplitRegion needs the region in its context (region_id, region_epoch)",
            ));
        };
        let mut keys = req.split_keys.clone();
        if keys.is_empty() && !req.split_key.is_empty() {
            keys.push(req.split_key.clone());
        }
        if req.is_raw_kv {
            return Err(Status::invalid_argument(
                "raw-KV splits are not supported: the lab's regions hold transactional keys",
            ));
        }
        let mut resp = kvrpcpb::SplitRegionResponse::default();
        match self
            .storage
            .split(ctx.region_id, ctx.region_epoch, &keys)
            .await
        {
            Ok(regions) => {
                if let [left, right] = regions.as_slice() {
                    resp.left = Some(left.clone());
                    resp.right = Some(right.clone());
                }
                resp.regions = regions;
            }
            Err(e) => resp.region_error = Some(e.to_pb()),
        }
        Ok(Response::new(resp))
    }

    async fn kv_pessimistic_lock(
        &self,
        request: Request<kvrpcpb::PessimisticLockRequest>,
    ) -> Result<Response<kvrpcpb::PessimisticLockResponse>, Status> {
        pessimistic::lock(self, request).await
    }

    async fn kv_pessimistic_rollback(
        &self,
        request: Request<kvrpcpb::PessimisticRollbackRequest>,
    ) -> Result<Response<kvrpcpb::PessimisticRollbackResponse>, Status> {
        pessimistic::rollback(self, request).await
    }

    async fn kv_get(
        &self,
        request: Request<kvrpcpb::GetRequest>,
    ) -> Result<Response<kvrpcpb::GetResponse>, Status> {
        traced!(
            self,
            request,
            "KvGet",
            |r: &kvrpcpb::GetRequest| r.version,
            |r: &kvrpcpb::GetRequest| vec![r.key.clone()],
            |r: kvrpcpb::GetRequest| async move {
                let mut resp = kvrpcpb::GetResponse::default();
                let result = self
                    .storage
                    .get(
                        &Key::from(r.key),
                        TimeStamp::from(r.version),
                        &bypass(&r.context),
                    )
                    .await;
                let error = err_text(&result);
                match result {
                    Ok(Ok(Some(v))) => resp.value = v,
                    Ok(Ok(None)) => resp.not_found = true,
                    Ok(Err(lock)) => {
                        resp.error = Some(KeyError {
                            locked: Some(lock),
                            ..Default::default()
                        })
                    }
                    Err(e) if region_error(&mut resp, &e) => {}
                    Err(e) => resp.error = key_error(&e),
                }
                (resp, error)
            }
        )
    }

    async fn kv_batch_get(
        &self,
        request: Request<kvrpcpb::BatchGetRequest>,
    ) -> Result<Response<kvrpcpb::BatchGetResponse>, Status> {
        traced!(
            self,
            request,
            "KvBatchGet",
            |r: &kvrpcpb::BatchGetRequest| r.version,
            |r: &kvrpcpb::BatchGetRequest| r.keys.clone(),
            |r: kvrpcpb::BatchGetRequest| async move {
                let mut resp = kvrpcpb::BatchGetResponse::default();
                let keys = keys_from_raw(r.keys);
                let result = self
                    .storage
                    .batch_get(&keys, TimeStamp::from(r.version), &bypass(&r.context))
                    .await;
                let error = err_text(&result);
                match result {
                    Ok(answers) => {
                        // Found keys and locked keys only: an absent key is simply not listed.
                        for (key, answer) in keys.into_iter().map(Key::into_raw).zip(answers) {
                            match answer {
                                Ok(Some(value)) => resp.pairs.push(KvPair {
                                    key,
                                    value,
                                    error: None,
                                }),
                                Ok(None) => {}
                                Err(lock) => resp.pairs.push(KvPair {
                                    key,
                                    value: Vec::new(),
                                    error: Some(KeyError {
                                        locked: Some(lock),
                                        ..Default::default()
                                    }),
                                }),
                            }
                        }
                    }
                    Err(e) if region_error(&mut resp, &e) => {}
                    Err(e) => resp.error = key_error(&e),
                }
                (resp, error)
            }
        )
    }

    async fn kv_scan(
        &self,
        request: Request<kvrpcpb::ScanRequest>,
    ) -> Result<Response<kvrpcpb::ScanResponse>, Status> {
        traced!(
            self,
            request,
            "KvScan",
            |r: &kvrpcpb::ScanRequest| r.version,
            |r: &kvrpcpb::ScanRequest| vec![r.start_key.clone(), r.end_key.clone()],
            |r: kvrpcpb::ScanRequest| async move {
                let mut resp = kvrpcpb::ScanResponse::default();
                let bypass = bypass(&r.context);
                // Reverse scans name the upper bound first: [end_key, start_key).
                let (lower, upper) = if r.reverse {
                    (r.end_key, r.start_key)
                } else {
                    (r.start_key, r.end_key)
                };
                let args = ScanArgs {
                    lower: Key::from(lower),
                    upper: Key::from(upper),
                    ts: TimeStamp::from(r.version),
                    limit: r.limit as usize,
                    key_only: r.key_only,
                    reverse: r.reverse,
                    bypass,
                };
                let result = self.storage.scan(&args).await;
                let error = err_text(&result);
                match result {
                    Ok(entries) => {
                        for entry in entries {
                            resp.pairs.push(match entry {
                                ScanEntry::Pair(key, value) => KvPair {
                                    key: key.into_raw(),
                                    value,
                                    error: None,
                                },
                                ScanEntry::Locked(lock) => KvPair {
                                    key: lock.key.clone(),
                                    value: Vec::new(),
                                    error: Some(KeyError {
                                        locked: Some(lock),
                                        ..Default::default()
                                    }),
                                },
                            });
                        }
                    }
                    // The client only reads errors from pairs; an engine failure becomes one.
                    Err(e) if region_error(&mut resp, &e) => {}
                    Err(e) => resp.pairs.push(KvPair {
                        key: args.lower.into_raw(),
                        value: Vec::new(),
                        error: key_error(&e),
                    }),
                }
                (resp, error)
            }
        )
    }

    async fn kv_prewrite(
        &self,
        request: Request<kvrpcpb::PrewriteRequest>,
    ) -> Result<Response<kvrpcpb::PrewriteResponse>, Status> {
        traced!(
            self,
            request,
            "KvPrewrite",
            |r: &kvrpcpb::PrewriteRequest| r.start_version,
            |r: &kvrpcpb::PrewriteRequest| r.mutations.iter().map(|m| m.key.clone()).collect(),
            |r: kvrpcpb::PrewriteRequest| async move {
                // One action per mutation in pessimistic transactions; absent = no check.
                let actions = r.pessimistic_actions;
                let args = PrewriteArgs {
                    mutations: r
                        .mutations
                        .into_iter()
                        .enumerate()
                        .map(|(i, m)| Mutation {
                            op: kvrpcpb::Op::try_from(m.op).unwrap_or(kvrpcpb::Op::Put),
                            key: Key::from(m.key),
                            value: m.value,
                            pessimistic_action: actions
                                .get(i)
                                .and_then(|a| PessimisticAction::try_from(*a).ok())
                                .unwrap_or(PessimisticAction::SkipPessimisticCheck),
                        })
                        .collect(),
                    primary: Key::from(r.primary_lock),
                    start_ts: TimeStamp::from(r.start_version),
                    lock_ttl: r.lock_ttl,
                    txn_size: r.txn_size,
                    use_async_commit: r.use_async_commit,
                    secondaries: keys_from_raw(r.secondaries),
                    try_one_pc: r.try_one_pc,
                    for_update_ts: TimeStamp::from(r.for_update_ts),
                };
                let mut resp = kvrpcpb::PrewriteResponse::default();
                let result = self.storage.prewrite(args).await;
                let mut error = err_text(&result);
                match result {
                    Ok(outcome) if !outcome.locked.is_empty() => {
                        error = Some(outcome.locked[0].to_string());
                        resp.errors = outcome.locked.iter().map(TxnError::to_key_error).collect();
                    }
                    Ok(outcome) => {
                        resp.min_commit_ts = outcome.min_commit_ts.into_inner();
                        resp.one_pc_commit_ts = outcome.one_pc_commit_ts.into_inner();
                    }
                    Err(e) if region_error(&mut resp, &e) => {}
                    Err(e) => resp.errors = vec![e.to_key_error()],
                }
                (resp, error)
            }
        )
    }

    async fn kv_commit(
        &self,
        request: Request<kvrpcpb::CommitRequest>,
    ) -> Result<Response<kvrpcpb::CommitResponse>, Status> {
        traced!(
            self,
            request,
            "KvCommit",
            |r: &kvrpcpb::CommitRequest| r.start_version,
            |r: &kvrpcpb::CommitRequest| r.keys.clone(),
            |r: kvrpcpb::CommitRequest| async move {
                let mut resp = kvrpcpb::CommitResponse::default();
                let result = self
                    .storage
                    .commit(
                        keys_from_raw(r.keys),
                        TimeStamp::from(r.start_version),
                        TimeStamp::from(r.commit_version),
                    )
                    .await;
                let error = err_text(&result);
                match result {
                    Ok(()) => resp.commit_version = r.commit_version,
                    Err(e) if region_error(&mut resp, &e) => {}
                    Err(e) => resp.error = key_error(&e),
                }
                (resp, error)
            }
        )
    }

    async fn kv_batch_rollback(
        &self,
        request: Request<kvrpcpb::BatchRollbackRequest>,
    ) -> Result<Response<kvrpcpb::BatchRollbackResponse>, Status> {
        traced!(
            self,
            request,
            "KvBatchRollback",
            |r: &kvrpcpb::BatchRollbackRequest| r.start_version,
            |r: &kvrpcpb::BatchRollbackRequest| r.keys.clone(),
            |r: kvrpcpb::BatchRollbackRequest| async move {
                let mut resp = kvrpcpb::BatchRollbackResponse::default();
                let result = self
                    .storage
                    .rollback(keys_from_raw(r.keys), TimeStamp::from(r.start_version))
                    .await;
                let error = err_text(&result);
                if let Err(e) = result
                    && !region_error(&mut resp, &e)
                {
                    resp.error = key_error(&e);
                }
                (resp, error)
            }
        )
    }

    async fn kv_cleanup(
        &self,
        request: Request<kvrpcpb::CleanupRequest>,
    ) -> Result<Response<kvrpcpb::CleanupResponse>, Status> {
        traced!(
            self,
            request,
            "KvCleanup",
            |r: &kvrpcpb::CleanupRequest| r.start_version,
            |r: &kvrpcpb::CleanupRequest| vec![r.key.clone()],
            |r: kvrpcpb::CleanupRequest| async move {
                let mut resp = kvrpcpb::CleanupResponse::default();
                let result = self
                    .storage
                    .cleanup(
                        Key::from(r.key),
                        TimeStamp::from(r.start_version),
                        TimeStamp::from(r.current_ts),
                    )
                    .await;
                let error = err_text(&result);
                match result {
                    // TiKV reports "already committed" as a commit version, not as an error.
                    Ok(commit_ts) => resp.commit_version = commit_ts.into_inner(),
                    Err(e) if region_error(&mut resp, &e) => {}
                    Err(e) => resp.error = key_error(&e),
                }
                (resp, error)
            }
        )
    }

    async fn kv_check_txn_status(
        &self,
        request: Request<kvrpcpb::CheckTxnStatusRequest>,
    ) -> Result<Response<kvrpcpb::CheckTxnStatusResponse>, Status> {
        traced!(
            self,
            request,
            "KvCheckTxnStatus",
            |r: &kvrpcpb::CheckTxnStatusRequest| r.lock_ts,
            |r: &kvrpcpb::CheckTxnStatusRequest| vec![r.primary_key.clone()],
            |r: kvrpcpb::CheckTxnStatusRequest| async move {
                let args = CheckTxnStatusArgs {
                    primary: Key::from(r.primary_key),
                    lock_ts: TimeStamp::from(r.lock_ts),
                    caller_start_ts: TimeStamp::from(r.caller_start_ts),
                    current_ts: TimeStamp::from(r.current_ts),
                    rollback_if_not_exist: r.rollback_if_not_exist,
                    force_sync_commit: r.force_sync_commit,
                    resolving_pessimistic_lock: r.resolving_pessimistic_lock,
                };
                let mut resp = kvrpcpb::CheckTxnStatusResponse::default();
                let result = self.storage.check_txn_status(args).await;
                let error = err_text(&result);
                match result {
                    // Exactly one of: committed (ts, 0, None), rolled back (0, 0, None), locked (0, ttl, Some).
                    Ok(TxnStatus::Committed(ts)) => resp.commit_version = ts.into_inner(),
                    Ok(TxnStatus::RolledBack(action)) => resp.action = action as i32,
                    Ok(TxnStatus::Locked(info, action)) => {
                        resp.lock_ttl = info.lock_ttl.max(1);
                        resp.lock_info = Some(info);
                        resp.action = action as i32;
                    }
                    Err(e) if region_error(&mut resp, &e) => {}
                    Err(e) => resp.error = key_error(&e),
                }
                (resp, error)
            }
        )
    }

    async fn kv_check_secondary_locks(
        &self,
        request: Request<kvrpcpb::CheckSecondaryLocksRequest>,
    ) -> Result<Response<kvrpcpb::CheckSecondaryLocksResponse>, Status> {
        traced!(
            self,
            request,
            "KvCheckSecondaryLocks",
            |r: &kvrpcpb::CheckSecondaryLocksRequest| r.start_version,
            |r: &kvrpcpb::CheckSecondaryLocksRequest| r.keys.clone(),
            |r: kvrpcpb::CheckSecondaryLocksRequest| async move {
                let mut resp = kvrpcpb::CheckSecondaryLocksResponse::default();
                let result = self
                    .storage
                    .check_secondary_locks(keys_from_raw(r.keys), TimeStamp::from(r.start_version))
                    .await;
                let error = err_text(&result);
                match result {
                    Ok((locks, commit_ts)) => {
                        resp.locks = locks;
                        resp.commit_ts = commit_ts.into_inner();
                    }
                    Err(e) if region_error(&mut resp, &e) => {}
                    Err(e) => resp.error = key_error(&e),
                }
                (resp, error)
            }
        )
    }

    async fn kv_scan_lock(
        &self,
        request: Request<kvrpcpb::ScanLockRequest>,
    ) -> Result<Response<kvrpcpb::ScanLockResponse>, Status> {
        traced!(
            self,
            request,
            "KvScanLock",
            |r: &kvrpcpb::ScanLockRequest| r.max_version,
            |r: &kvrpcpb::ScanLockRequest| vec![r.start_key.clone(), r.end_key.clone()],
            |r: kvrpcpb::ScanLockRequest| async move {
                let mut resp = kvrpcpb::ScanLockResponse::default();
                let result = self.storage.scan_locks(
                    &Key::from(r.start_key),
                    &Key::from(r.end_key),
                    TimeStamp::from(r.max_version),
                    r.limit as usize,
                );
                let error = err_text(&result);
                match result {
                    Ok(locks) => resp.locks = locks,
                    Err(e) if region_error(&mut resp, &e) => {}
                    Err(e) => resp.error = key_error(&e),
                }
                (resp, error)
            }
        )
    }

    async fn kv_resolve_lock(
        &self,
        request: Request<kvrpcpb::ResolveLockRequest>,
    ) -> Result<Response<kvrpcpb::ResolveLockResponse>, Status> {
        traced!(
            self,
            request,
            "KvResolveLock",
            |r: &kvrpcpb::ResolveLockRequest| r.start_version,
            |r: &kvrpcpb::ResolveLockRequest| r.keys.clone(),
            |r: kvrpcpb::ResolveLockRequest| async move {
                let txn_status: HashMap<TimeStamp, TimeStamp> = if r.txn_infos.is_empty() {
                    HashMap::from([(
                        TimeStamp::from(r.start_version),
                        TimeStamp::from(r.commit_version),
                    )])
                } else {
                    r.txn_infos
                        .iter()
                        .map(|t| (TimeStamp::from(t.txn), TimeStamp::from(t.status)))
                        .collect()
                };
                let mut resp = kvrpcpb::ResolveLockResponse::default();
                let result = self
                    .storage
                    .resolve_lock(txn_status, keys_from_raw(r.keys))
                    .await;
                let error = err_text(&result);
                if let Err(e) = result
                    && !region_error(&mut resp, &e)
                {
                    resp.error = key_error(&e);
                }
                (resp, error)
            }
        )
    }

    async fn kv_txn_heart_beat(
        &self,
        request: Request<kvrpcpb::TxnHeartBeatRequest>,
    ) -> Result<Response<kvrpcpb::TxnHeartBeatResponse>, Status> {
        traced!(
            self,
            request,
            "KvTxnHeartBeat",
            |r: &kvrpcpb::TxnHeartBeatRequest| r.start_version,
            |r: &kvrpcpb::TxnHeartBeatRequest| vec![r.primary_lock.clone()],
            |r: kvrpcpb::TxnHeartBeatRequest| async move {
                let mut resp = kvrpcpb::TxnHeartBeatResponse::default();
                let result = self
                    .storage
                    .heartbeat(
                        Key::from(r.primary_lock),
                        TimeStamp::from(r.start_version),
                        r.advise_lock_ttl,
                    )
                    .await;
                let error = err_text(&result);
                match result {
                    Ok(ttl) => resp.lock_ttl = ttl,
                    Err(e) if region_error(&mut resp, &e) => {}
                    Err(e) => resp.error = key_error(&e),
                }
                (resp, error)
            }
        )
    }

    async fn kv_gc(
        &self,
        request: Request<kvrpcpb::GcRequest>,
    ) -> Result<Response<kvrpcpb::GcResponse>, Status> {
        traced!(
            self,
            request,
            "KvGC",
            |r: &kvrpcpb::GcRequest| r.safe_point,
            |_: &kvrpcpb::GcRequest| Vec::new(),
            |r: kvrpcpb::GcRequest| async move {
                let mut resp = kvrpcpb::GcResponse::default();
                let result = self
                    .storage
                    .update_gc_safe_point(TimeStamp::from(r.safe_point))
                    .await;
                let error = err_text(&result);
                if let Err(e) = result
                    && !region_error(&mut resp, &e)
                {
                    resp.error = key_error(&e);
                }
                (resp, error)
            }
        )
    }

    async fn unsafe_destroy_range(
        &self,
        request: Request<kvrpcpb::UnsafeDestroyRangeRequest>,
    ) -> Result<Response<kvrpcpb::UnsafeDestroyRangeResponse>, Status> {
        traced!(
            self,
            request,
            "UnsafeDestroyRange",
            |_: &kvrpcpb::UnsafeDestroyRangeRequest| 0,
            |r: &kvrpcpb::UnsafeDestroyRangeRequest| vec![r.start_key.clone(), r.end_key.clone()],
            |r: kvrpcpb::UnsafeDestroyRangeRequest| async move {
                let mut resp = kvrpcpb::UnsafeDestroyRangeResponse::default();
                let result = self
                    .storage
                    .destroy_range(Key::from(r.start_key), Key::from(r.end_key))
                    .await;
                let error = err_text(&result);
                if let Err(e) = result
                    && !region_error(&mut resp, &e)
                {
                    resp.error = e.to_string();
                }
                (resp, error)
            }
        )
    }
}
