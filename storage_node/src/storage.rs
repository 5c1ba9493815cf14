//! `Storage`: the transactional KV API the gRPC service calls (TiKV's `Storage`).
//!
//! Reads ask the region's Raft group for a read index (is this store still the leader, and is
//! everything committed before the read applied here?), wait for any in-flight commit they must
//! see (see [`crate::concurrency`]), then run on an engine snapshot, concurrently with
//! everything else. Writes are commands for the [`Scheduler`], which runs them on the region's
//! leader and replicates their writes through Raft (see [`crate::raftstore`]). The API speaks [`Key`] and
//! [`TimeStamp`]; `server::kv` converts the protobuf fields once on the way in.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::concurrency::{CommitTsSource, ConcurrencyManager, ReadSet, TimestampOracle};
use crate::engine::{Engine, EngineError, Identity, META_GC_SAFE_POINT};
use crate::lock_manager::LockManager;
use crate::mvcc::reader::{MvccReader, ScanArgs, ScanEntry};
use crate::pd::tso::Tso;
use crate::proto::kvrpcpb::LockInfo;
use crate::raftstore::store::{
    FIRST_PEER_ID, FIRST_REGION_ID as REGION_ID, STORE_ID, StoreSetup, first_region,
};
use crate::raftstore::transport::NoTransport;
use crate::raftstore::{RaftConfig, RaftStore};
use crate::txn::actions::acquire_pessimistic_lock::{AcquireArgs, LockedValues};
use crate::txn::actions::check_txn_status::CheckTxnStatusArgs;
use crate::txn::actions::prewrite::{PrewriteArgs, PrewriteOutcome};
use crate::txn::actions::{
    acquire_pessimistic_lock, check_txn_status, cleanup, commit, gc, heartbeat,
    pessimistic_rollback, prewrite, resolve_lock,
};
use crate::txn::scheduler::Scheduler;
use crate::txn::{TxnError, TxnStatus};
use crate::txn_types::{Key, TimeStamp};

/// A point read's answer: the value (None = absent) or the lock in the way.
pub type PointRead = Result<Option<Vec<u8>>, LockInfo>;

/// The node's storage: engine, commit registry and writer.
pub struct Storage {
    engine: Arc<Engine>,
    cm: Arc<ConcurrencyManager>,
    scheduler: Scheduler,
    raft: Arc<RaftStore>,
    lock_manager: Arc<LockManager>,
    identity: Identity,
    // A `TimeStamp` kept as its wire value: atomics need a primitive.
    gc_safe_point: AtomicU64,
}

impl Storage {
    /// Opens the data directory as a store alone with the default Raft timing.
    pub fn open(dir: &std::path::Path) -> Result<Arc<Storage>, EngineError> {
        Self::open_with(dir, RaftConfig::default())
    }

    /// Opens the data directory as a store alone (see [`Storage::open_alone`]).
    pub fn open_with(
        dir: &std::path::Path,
        raft_config: RaftConfig,
    ) -> Result<Arc<Storage>, EngineError> {
        Ok(Self::open_alone(dir, raft_config, None)?.0)
    }

    /// The one-process node's store: one region of one peer, timestamps from its own oracle
    /// (returned, for the PD service beside it). Waits until the store leads its region with
    /// the log replayed, so the first request is served at once.
    pub fn open_alone(
        dir: &std::path::Path,
        raft_config: RaftConfig,
        pd: Option<Box<dyn crate::raftstore::store::PdLink>>,
    ) -> Result<(Arc<Storage>, Arc<Tso>), EngineError> {
        let (engine, identity) = Engine::open(dir)?;
        let tso = Arc::new(
            Tso::open(dir).map_err(|e| EngineError::Redb(format!("timestamp oracle: {e}")))?,
        );
        let cm = Arc::new(ConcurrencyManager::new(tso.clone()));
        let setup = StoreSetup {
            store_id: STORE_ID,
            bootstrap: vec![first_region(&[(FIRST_PEER_ID, STORE_ID)])],
            transport: Box::new(NoTransport),
            pd,
        };
        let storage = Self::start(Arc::new(engine), identity, cm, raft_config, setup)?;
        if !storage.raft.wait_ready(REGION_ID, Duration::from_secs(30)) {
            return Err(EngineError::Redb(
                "the region did not elect a leader within 30 s (see the storage-node log)".into(),
            ));
        }
        Ok((storage, tso))
    }

    /// A store of a cluster whose PD runs elsewhere: commit timestamps come from max_ts, and
    /// `oracle` (PD's TSO, over the network) syncs max_ts when a peer here becomes leader.
    /// Returns at once: the regions' leaders may be on other stores.
    pub fn open_store(
        engine: Engine,
        identity: Identity,
        oracle: Arc<dyn TimestampOracle>,
        raft_config: RaftConfig,
        setup: StoreSetup,
    ) -> Result<Arc<Storage>, EngineError> {
        let cm = Arc::new(ConcurrencyManager::with_source(
            oracle,
            CommitTsSource::MaxTs,
        ));
        Self::start(Arc::new(engine), identity, cm, raft_config, setup)
    }

    fn start(
        engine: Arc<Engine>,
        identity: Identity,
        cm: Arc<ConcurrencyManager>,
        raft_config: RaftConfig,
        setup: StoreSetup,
    ) -> Result<Arc<Storage>, EngineError> {
        let lock_manager = Arc::new(LockManager::default());
        let raft = RaftStore::start_with(
            engine.clone(),
            cm.clone(),
            lock_manager.clone(),
            raft_config,
            setup,
        )?;
        let scheduler = Scheduler::new(raft.clone());
        Ok(Arc::new(Storage {
            engine,
            cm,
            scheduler,
            raft,
            lock_manager,
            gc_safe_point: AtomicU64::new(identity.gc_safe_point.into_inner()),
            identity,
        }))
    }

    /// The region of this store that holds `key`: requests are routed by their first key.
    fn region_of(&self, key: &Key) -> u64 {
        self.raft.region_of(key.as_raw())
    }

    /// The raw-key range `[start, end)` of region `region_id` on this store (empty end: no
    /// end), or of the whole key space if it holds no such region.
    fn raw_range(&self, region_id: u64) -> (Key, Key) {
        use crate::raftstore::split::raw_bound;
        self.raft
            .region(region_id)
            .map(|r| {
                (
                    Key::from(raw_bound(&r.start_key)),
                    Key::from(raw_bound(&r.end_key)),
                )
            })
            .unwrap_or_default()
    }

    /// Splits region `region_id` (led here; at `epoch` if given) at each raw key of `keys`, in
    /// order (TiKV's `SplitRegion`); returns the regions the range now consists of.
    pub async fn split(
        &self,
        region_id: u64,
        epoch: Option<crate::proto::metapb::RegionEpoch>,
        keys: &[Vec<u8>],
    ) -> Result<Vec<crate::proto::metapb::Region>, crate::raftstore::RegionError> {
        let mut sorted: Vec<&Vec<u8>> = keys.iter().collect();
        sorted.sort();
        sorted.dedup();
        // Right-derive: the parent keeps the part after each key, so split the parent again at
        // the next key up; every new region is a left part.
        let mut out = Vec::new();
        let mut epoch = epoch;
        let mut last = None;
        for key in sorted {
            let mut regions = self.raft.split(region_id, epoch, key).await?;
            let right = regions.pop();
            out.extend(regions);
            epoch = right.as_ref().and_then(|r| r.region_epoch);
            last = right;
        }
        out.extend(last);
        Ok(out)
    }

    /// PD's transfer-leader operator for `region_id`: hand leadership to peer `to_peer`.
    pub fn transfer_leader(&self, region_id: u64, to_peer: u64) {
        self.raft.transfer_leader(region_id, to_peer);
    }

    /// Asks this store's peer of `region_id`, if it leads, to make one membership change
    /// (a step of PD's operator).
    pub fn change_peer(
        &self,
        region_id: u64,
        change: raft::eraftpb::ConfChangeType,
        peer: crate::proto::metapb::Peer,
    ) {
        self.raft.change_peer(region_id, change, peer);
    }

    /// How many regions this store holds a peer of.
    pub fn region_count(&self) -> usize {
        self.raft.region_ids().len()
    }

    /// The state of this store's peer of `region_id`.
    pub fn peer_status(&self, region_id: u64) -> Option<crate::raftstore::store::PeerStatus> {
        self.raft.status(region_id)
    }

    /// The persisted cluster id.
    pub fn cluster_id(&self) -> u64 {
        self.identity.cluster_id
    }

    /// Checks a request's region context against the regions this store holds: `None` when
    /// it may proceed. Requests without a region id (store-level ones) always may.
    pub fn check_region(
        &self,
        ctx: Option<&crate::proto::kvrpcpb::Context>,
    ) -> Option<crate::raftstore::RegionError> {
        use crate::raftstore::RegionError;
        let ctx = ctx.filter(|c| c.region_id != 0)?;
        let Some(region) = self.raft.region(ctx.region_id) else {
            return Some(RegionError::RegionNotFound(ctx.region_id));
        };
        // Only the version (splits) matters to a data request, as in TiKV: a membership change
        // (conf_ver) does not move any key.
        match (&ctx.region_epoch, &region.region_epoch) {
            (Some(asked), Some(now)) if asked.version != now.version => {
                Some(RegionError::EpochNotMatch {
                    current: vec![region],
                })
            }
            _ => None,
        }
    }

    /// Which stores this one is cut off from (a partition inside the storage tier).
    pub fn net_filter(&self) -> &Arc<crate::raftstore::transport::NetFilter> {
        self.raft.net_filter()
    }

    /// Where other stores deliver Raft messages for this store's regions.
    pub fn raft_mailbox(&self) -> crate::raftstore::store::Mailbox {
        self.raft.mailbox()
    }

    /// The timestamp oracle this store syncs max_ts from (tests take timestamps from it).
    pub fn tso(&self) -> &dyn TimestampOracle {
        self.cm.tso()
    }

    /// The engine (for sizes and counts).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn read_err(e: impl std::fmt::Display) -> TxnError {
        TxnError::Engine(e.to_string())
    }

    /// KvGet.
    pub async fn get(
        &self,
        key: &Key,
        ts: TimeStamp,
        bypass: &[TimeStamp],
    ) -> Result<PointRead, TxnError> {
        self.raft.read_index(self.region_of(key)).await?;
        self.cm
            .wait_readable(ts, ReadSet::Keys(std::slice::from_ref(key)))
            .await;
        let snap = self.engine.snapshot().map_err(Self::read_err)?;
        Ok(MvccReader::new(&snap.lock, &snap.write).get(key, ts, bypass)?)
    }

    /// KvBatchGet: one answer per key, in order.
    pub async fn batch_get(
        &self,
        keys: &[Key],
        ts: TimeStamp,
        bypass: &[TimeStamp],
    ) -> Result<Vec<PointRead>, TxnError> {
        self.raft.read_index(self.first_region(keys)).await?;
        self.cm.wait_readable(ts, ReadSet::Keys(keys)).await;
        let snap = self.engine.snapshot().map_err(Self::read_err)?;
        let reader = MvccReader::new(&snap.lock, &snap.write);
        keys.iter()
            .map(|k| Ok(reader.get(k, ts, bypass)?))
            .collect()
    }

    /// KvScan over `[args.lower, args.upper)`.
    ///
    /// The range is cut to the region that serves it (the one holding `lower`, or for a
    /// reverse scan the key just below `upper`): this store may hold replicas of the next
    /// region too, but it serves them only if it leads them, through their own read index.
    pub async fn scan(&self, args: &ScanArgs) -> Result<Vec<ScanEntry>, TxnError> {
        let region_id = if args.reverse && !args.upper.is_empty() {
            self.raft.region_before(args.upper.as_raw())
        } else {
            self.region_of(&args.lower)
        };
        self.raft.read_index(region_id).await?;
        let (start, end) = self.raw_range(region_id);
        let mut args = args.clone();
        if args.lower < start {
            args.lower = start;
        }
        if !end.is_empty() && (args.upper.is_empty() || args.upper > end) {
            args.upper = end;
        }
        self.cm
            .wait_readable(args.ts, ReadSet::Range(&args.lower, &args.upper))
            .await;
        let snap = self.engine.snapshot().map_err(Self::read_err)?;
        Ok(MvccReader::new(&snap.lock, &snap.write).scan(&args)?)
    }

    /// KvScanLock.
    pub fn scan_locks(
        &self,
        lower: &Key,
        upper: &Key,
        max_ts: TimeStamp,
        limit: usize,
    ) -> Result<Vec<LockInfo>, TxnError> {
        // Lock scans (GC, lock cleanup) read at `max_ts` too.
        self.cm.update_max_ts(max_ts);
        let snap = self.engine.snapshot().map_err(Self::read_err)?;
        let locks =
            MvccReader::new(&snap.lock, &snap.write).scan_locks(lower, upper, max_ts, limit)?;
        Ok(locks.into_iter().map(|(k, l)| l.to_lock_info(&k)).collect())
    }

    /// KvPrewrite.
    pub async fn prewrite(&self, args: PrewriteArgs) -> Result<PrewriteOutcome, TxnError> {
        self.scheduler
            .run(
                self.first_region_of(args.mutations.iter().map(|m| &m.key), &args.primary),
                move |ctx| prewrite::prewrite(ctx, args),
            )
            .await
    }

    /// KvPessimisticLock. Another transaction's lock makes the request wait (up to `wait`,
    /// see [`crate::lock_manager`]) and try again each time a lock is released; at the
    /// deadline the last `KeyIsLocked` is the answer. `None` fails at once.
    pub async fn acquire_pessimistic_lock(
        &self,
        args: AcquireArgs,
        wait: Option<Duration>,
    ) -> Result<LockedValues, TxnError> {
        let args = Arc::new(args);
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        loop {
            // Subscribe first: a release between the attempt and the wait must wake us.
            let mut released = self.lock_manager.subscribe();
            let attempt = args.clone();
            let result = self
                .scheduler
                .run(
                    self.first_region_of(attempt.keys.iter().map(|k| &k.key), &attempt.primary),
                    move |ctx| acquire_pessimistic_lock::acquire_pessimistic_lock(ctx, &attempt),
                )
                .await;
            let Some(deadline) = deadline else {
                return result;
            };
            if !matches!(result, Err(TxnError::KeyIsLocked(_))) {
                return result;
            }
            match tokio::time::timeout_at(deadline, released.changed()).await {
                Ok(Ok(())) => continue,
                _ => return result,
            }
        }
    }

    /// KvPessimisticRollback: how many locks were removed.
    pub async fn pessimistic_rollback(
        &self,
        keys: Vec<Key>,
        start_ts: TimeStamp,
        for_update_ts: TimeStamp,
    ) -> Result<usize, TxnError> {
        self.scheduler
            .run(self.first_region(&keys), move |ctx| {
                pessimistic_rollback::pessimistic_rollback(ctx, &keys, start_ts, for_update_ts)
            })
            .await
    }

    /// KvCommit.
    pub async fn commit(
        &self,
        keys: Vec<Key>,
        start_ts: TimeStamp,
        commit_ts: TimeStamp,
    ) -> Result<(), TxnError> {
        self.scheduler
            .run(self.first_region(&keys), move |ctx| {
                commit::commit(ctx, &keys, start_ts, commit_ts)
            })
            .await
    }

    /// KvBatchRollback.
    pub async fn rollback(&self, keys: Vec<Key>, start_ts: TimeStamp) -> Result<(), TxnError> {
        self.scheduler
            .run(self.first_region(&keys), move |ctx| {
                cleanup::rollback(ctx, &keys, start_ts)
            })
            .await
    }

    /// KvCleanup: the commit ts, or zero when rolled back.
    pub async fn cleanup(
        &self,
        key: Key,
        start_ts: TimeStamp,
        current_ts: TimeStamp,
    ) -> Result<TimeStamp, TxnError> {
        self.scheduler
            .run(self.region_of(&key), move |ctx| {
                cleanup::cleanup(ctx, &key, start_ts, current_ts)
            })
            .await
    }

    /// KvCheckTxnStatus.
    pub async fn check_txn_status(&self, args: CheckTxnStatusArgs) -> Result<TxnStatus, TxnError> {
        self.scheduler
            .run(self.region_of(&args.primary), move |ctx| {
                check_txn_status::check_txn_status(ctx, &args)
            })
            .await
    }

    /// KvCheckSecondaryLocks.
    pub async fn check_secondary_locks(
        &self,
        keys: Vec<Key>,
        start_ts: TimeStamp,
    ) -> Result<(Vec<LockInfo>, TimeStamp), TxnError> {
        self.scheduler
            .run(self.first_region(&keys), move |ctx| {
                check_txn_status::check_secondary_locks(ctx, &keys, start_ts)
            })
            .await
    }

    /// KvResolveLock.
    pub async fn resolve_lock(
        &self,
        txn_status: HashMap<TimeStamp, TimeStamp>,
        keys: Vec<Key>,
    ) -> Result<usize, TxnError> {
        self.scheduler
            .run(self.first_region(&keys), move |ctx| {
                resolve_lock::resolve_lock(ctx, &txn_status, &keys)
            })
            .await
    }

    /// KvTxnHeartBeat.
    pub async fn heartbeat(
        &self,
        primary: Key,
        start_ts: TimeStamp,
        advise_ttl: u64,
    ) -> Result<u64, TxnError> {
        self.scheduler
            .run(self.region_of(&primary), move |ctx| {
                heartbeat::heartbeat(ctx, &primary, start_ts, advise_ttl)
            })
            .await
    }

    /// UnsafeDestroyRange: store-level, so every region led here destroys its share (the
    /// client sends it to every store; regions led elsewhere are their leaders' business).
    pub async fn destroy_range(&self, start: Key, end: Key) -> Result<usize, TxnError> {
        let mut removed = 0;
        for region_id in self.raft.region_ids() {
            // Each region deletes its own part of the range, through its own log.
            let (lo, hi) = self.raw_range(region_id);
            let from = start.clone().max(lo);
            let to = match (end.is_empty(), hi.is_empty()) {
                (true, _) => hi,
                (false, true) => end.clone(),
                (false, false) => end.clone().min(hi),
            };
            if !to.is_empty() && from >= to {
                continue;
            }
            let (start, end) = (from, to);
            match self
                .scheduler
                .run(region_id, move |ctx| gc::destroy_range(ctx, &start, &end))
                .await
            {
                Ok(n) => removed += n,
                Err(TxnError::Region(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// The current GC safe point.
    pub fn gc_safe_point(&self) -> TimeStamp {
        TimeStamp::new(self.gc_safe_point.load(Ordering::SeqCst))
    }

    /// Raises the GC safe point (never lowers it), persists it, and collects garbage below
    /// it on the regions led here; returns the safe point in force.
    pub async fn update_gc_safe_point(&self, requested: TimeStamp) -> Result<TimeStamp, TxnError> {
        let previous = TimeStamp::new(
            self.gc_safe_point
                .fetch_max(requested.into_inner(), Ordering::SeqCst),
        );
        let now = previous.max(requested);
        if now > previous {
            for region_id in self.raft.region_ids() {
                match self
                    .scheduler
                    .run(region_id, move |ctx| {
                        ctx.put_meta(META_GC_SAFE_POINT, &now.into_inner().to_be_bytes())
                    })
                    .await
                {
                    Ok(()) | Err(TxnError::Region(_)) => {}
                    Err(e) => return Err(e),
                }
                match self.run_gc(region_id, now).await {
                    Ok(_) | Err(TxnError::Region(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(now)
    }

    /// Collects garbage at or below `safe_point` in `region_id` (led here), in small batches.
    pub async fn run_gc(&self, region_id: u64, safe_point: TimeStamp) -> Result<usize, TxnError> {
        let (mut from, end) = self.raw_range(region_id);
        let mut removed = 0;
        loop {
            let start = std::mem::take(&mut from);
            let end = end.clone();
            let (next, n) = self
                .scheduler
                .run(region_id, move |ctx| {
                    gc::gc_batch(ctx, safe_point, &start, &end)
                })
                .await?;
            removed += n;
            match next {
                Some(k) => from = k,
                None => return Ok(removed),
            }
        }
    }

    /// The region of the first of `keys` (a request's keys all lie in one region).
    fn first_region(&self, keys: &[Key]) -> u64 {
        keys.first().map(|k| self.region_of(k)).unwrap_or(REGION_ID)
    }

    /// The region of the first of `keys`, or of `fallback` when there are none.
    fn first_region_of<'k>(&self, mut keys: impl Iterator<Item = &'k Key>, fallback: &Key) -> u64 {
        self.region_of(keys.next().unwrap_or(fallback))
    }
}
