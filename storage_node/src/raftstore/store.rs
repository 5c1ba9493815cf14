//! The store thread: drives every region peer on this store through raft-rs's `Ready` loop.
//!
//! TiKV runs this as pools (raftstore threads handle Raft, apply threads apply, a write
//! thread batches log writes). At teaching scale one thread does it all, in this order, each
//! time a message arrives or a tick is due:
//!
//! 1. **Tick** the peers (elections, heartbeats) and answer whatever waited too long.
//! 2. **Execute** each leader's queued writes as one batch and **propose** its engine writes.
//! 3. **Ready:** append every peer's new log entries to the log file and make them durable
//!    with **one fdatasync** — the point where an entry counts as persisted here. The rare
//!    state changes (a new term or vote, a snapshot, a compaction point) go first, in one
//!    fsync'd engine commit, opened only for a ready that has one.
//! 4. **Advance** each peer: Raft now knows what is committed.
//! 5. **Apply** the committed entries to the engine in one commit *without* an fsync (a crash
//!    loses at most applies that the durable log replays on restart), then answer the
//!    writers and the reads waiting for that index.
//!
//! Callers talk to the thread through [`RaftStore`], a thin handle over a channel.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::MessageType;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType};
use raft::{CAMPAIGN_TRANSFER, RawNode, ReadOnlyOption};
use redb::{Durability, ReadableDatabase};

use super::command::{Cf, EngineTables, Op, WriteBatch};
use super::conf_change::{self, ChangeContext};
use super::log_file::RaftLogFile;
use super::peer::{ConfCallback, Peer, PendingConf, PendingSplit, ReadCallback, SplitCallback};
use super::peer_storage::{PeerStorage, PeerStorageError, RaftTables};
use super::split::{self, SPLIT_CONTEXT};
use super::transport::{Filtered, NetFilter, NoTransport, RaftMessage, Transport};
use super::{RaftConfig, RegionError};
use crate::concurrency::ConcurrencyManager;
use crate::engine::{Engine, EngineError, META_TABLE};
use crate::lock_manager::LockManager;
use crate::pd::cluster::RegionReport;
use crate::proto::metapb;
use crate::txn::TxnError;
use crate::txn::scheduler::{self, MAX_BATCH, Task};

/// This store's id (one store for now).
pub const STORE_ID: u64 = 1;
/// The first region's id: it covers every key.
pub const FIRST_REGION_ID: u64 = 2;
/// The first region's peer on this store.
pub const FIRST_PEER_ID: u64 = 3;

/// A replica more than this many entries behind the commit index is reported to PD as
/// pending (still catching up).
const PENDING_LAG: u64 = 16;

/// The Raft log's folder inside the data directory.
pub const LOG_DIR: &str = "raft-log";

/// The meta key holding region `region_id`'s applied index (written with every apply).
pub fn applied_key(region_id: u64) -> String {
    format!("raft_applied_index/{region_id}")
}

/// What the store thread asks of PD (PD in this process, or PD over gRPC).
pub trait PdLink: Send {
    /// A region heartbeat. Must not block: the store thread sends it between rounds.
    fn report(&self, report: RegionReport);
    /// A new region id and one new peer id per replica of `region`, for a split
    /// (`AskBatchSplit`). May block briefly: splits are rare.
    fn ask_split(&self, region: &metapb::Region) -> Result<(u64, Vec<u64>), String>;
    /// The regions a split produced (`ReportBatchSplit`). Must not block.
    fn report_split(&self, regions: Vec<metapb::Region>);
    /// Region `region_id` as PD knows it (`GetRegionByID`), for a peer that lost its leader
    /// to learn whether it was removed. May block briefly: it is asked rarely.
    fn region_by_id(&self, region_id: u64) -> Option<metapb::Region>;
}

/// What a store is and which regions it starts with.
pub struct StoreSetup {
    /// This store's id.
    pub store_id: u64,
    /// Regions to create on a fresh engine (every store of a region bootstraps it alike).
    pub bootstrap: Vec<metapb::Region>,
    /// The network to the other stores.
    pub transport: Box<dyn Transport>,
    /// Heartbeats to PD and ids for splits; none in tests that run without PD (their regions
    /// never split).
    pub pd: Option<Box<dyn PdLink>>,
}

/// The peer ids of the first region when `stores` stores bootstrap it together: store `k`
/// (1-based) holds peer `FIRST_PEER_ID + k - 1`. Fixed, so every initial store computes the
/// same region without asking anyone (etcd's and PD's `--initial-cluster` work the same way).
pub fn initial_peers(stores: u64) -> Vec<(u64, u64)> {
    (1..=stores).map(|k| (FIRST_PEER_ID + k - 1, k)).collect()
}

/// The first region, covering every key, with peers `(peer id, store id)`.
pub fn first_region(peers: &[(u64, u64)]) -> metapb::Region {
    metapb::Region {
        id: FIRST_REGION_ID,
        start_key: Vec::new(),
        end_key: Vec::new(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: peers
            .iter()
            .map(|&(id, store_id)| metapb::Peer {
                id,
                store_id,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// A peer's state as the store thread sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// This peer.
    pub peer_id: u64,
    /// The current term.
    pub term: u64,
    /// The leader this peer knows (0 = none).
    pub leader_id: u64,
    /// Whether this peer leads and may serve.
    pub is_ready_leader: bool,
    /// Last applied index.
    pub applied: u64,
    /// First index still in the log.
    pub first_index: u64,
    /// Last index in the log.
    pub last_index: u64,
}

/// Delivers Raft messages to a store's thread.
#[derive(Clone)]
pub struct Mailbox {
    tx: mpsc::Sender<StoreMsg>,
    filter: Arc<NetFilter>,
}

impl Mailbox {
    /// Hands `msg` to the store (dropped if the store stopped, or if it comes from a store this
    /// one is cut off from).
    pub fn deliver(&self, msg: RaftMessage) {
        if self.filter.blocks(msg.from.store_id) {
            return;
        }
        let _ = self.tx.send(StoreMsg::Raft(Box::new(msg)));
    }
}

enum StoreMsg {
    // Boxed: a Raft message is ten times the size of every other variant.
    Raft(Box<RaftMessage>),
    Status {
        region_id: u64,
        done: mpsc::Sender<Option<PeerStatus>>,
    },
    Write {
        region_id: u64,
        task: Task,
    },
    ReadIndex {
        region_id: u64,
        done: ReadCallback,
    },
    WhenReady {
        region_id: u64,
        done: mpsc::Sender<()>,
    },
    Split {
        region_id: u64,
        epoch: Option<metapb::RegionEpoch>,
        key: Vec<u8>,
        done: SplitCallback,
    },
    TransferLeader {
        region_id: u64,
        to_peer: u64,
    },
    ChangePeer {
        region_id: u64,
        change: ConfChangeType,
        peer: metapb::Peer,
        done: Option<ConfCallback>,
    },
    Stop,
}

/// Handle to the store thread.
pub struct RaftStore {
    tx: mpsc::Sender<StoreMsg>,
    /// The regions this store holds (range, epoch, peers), for request checks; the store
    /// thread keeps it current.
    regions: Arc<RwLock<BTreeMap<u64, metapb::Region>>>,
    /// Which stores this one is cut off from (a partition a person set).
    filter: Arc<NetFilter>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl RaftStore {
    /// A store alone, holding the first region (every key) as its only peer: the lab's
    /// one-store tier. A group of one elects itself at once.
    pub fn start(
        engine: Arc<Engine>,
        cm: Arc<ConcurrencyManager>,
        lock_manager: Arc<LockManager>,
        config: RaftConfig,
    ) -> Result<Arc<RaftStore>, EngineError> {
        let setup = StoreSetup {
            store_id: STORE_ID,
            bootstrap: vec![first_region(&[(FIRST_PEER_ID, STORE_ID)])],
            transport: Box::new(NoTransport),
            pd: None,
        };
        Self::start_with(engine, cm, lock_manager, config, setup)
    }

    /// Loads this store's regions (or, on a fresh engine, bootstraps `setup.bootstrap`) and
    /// starts the store thread.
    pub fn start_with(
        engine: Arc<Engine>,
        cm: Arc<ConcurrencyManager>,
        lock_manager: Arc<LockManager>,
        config: RaftConfig,
        setup: StoreSetup,
    ) -> Result<Arc<RaftStore>, EngineError> {
        let err = |e: PeerStorageError| EngineError::Redb(e.to_string());
        let log_dir = engine.dir().join(LOG_DIR);
        let (log, mut recovered) = RaftLogFile::open(&log_dir, config.log_segment_bytes)
            .map_err(|e| EngineError::Redb(format!("raft log {}: {e}", log_dir.display())))?;
        let mut peers = BTreeMap::new();
        let tombstones = PeerStorage::tombstones(&engine).map_err(err)?;
        // Every region this store already holds (splits made more than it was bootstrapped
        // with); a fresh engine starts with the bootstrap regions.
        let mut storages = Vec::new();
        for region_id in PeerStorage::persisted_regions(&engine).map_err(err)? {
            match PeerStorage::load(&engine, region_id, &mut recovered).map_err(err)? {
                Some(s) => storages.push(s),
                None => tracing::warn!(region = region_id, "region record without Raft state"),
            }
        }
        // Started on data from before: its peers may have acknowledged a leader's lease.
        let no_votes_until =
            (!storages.is_empty()).then(|| Instant::now() + config.election_timeout());
        if storages.is_empty() {
            for region in setup.bootstrap {
                let s = PeerStorage::bootstrap(region, engine.clone());
                let txn = engine.db().begin_write()?;
                {
                    let mut t = RaftTables::open(&txn)?;
                    s.persist_all(&mut t).map_err(err)?;
                }
                txn.commit()?;
                storages.push(s);
            }
        }
        for mut storage in storages {
            let region_id = storage.region_id();
            let applied = read_applied(&engine, region_id)?;
            storage.raise_commit(applied);
            let applied_term = raft::Storage::term(&storage, applied).unwrap_or(0);
            storage.set_applied(applied, applied_term);
            let peer = open_peer(storage, setup.store_id, &config, applied)?;
            peers.insert(region_id, peer);
        }
        let regions = Arc::new(RwLock::new(
            peers
                .iter()
                .filter(|(_, p)| p.is_initialized())
                .map(|(id, p)| (*id, p.raw.store().region().clone()))
                .collect(),
        ));
        let (tx, rx) = mpsc::channel();
        let filter = Arc::new(NetFilter::default());
        let mut thread = StoreThread {
            regions: regions.clone(),
            engine,
            cm,
            lock_manager,
            config,
            store_id: setup.store_id,
            peers,
            rx,
            log,
            last_durable: Instant::now(),
            transport: Box::new(Filtered {
                inner: setup.transport,
                filter: filter.clone(),
            }),
            pd: setup.pd,
            seen_peers: Default::default(),
            tombstones,
            last_heard: Default::default(),
            ticks: 0,
            waiting_ready: Vec::new(),
            no_votes_until,
        };
        let handle = std::thread::Builder::new()
            .name("raftstore".into())
            .spawn(move || thread.run())
            .map_err(|e| EngineError::Redb(format!("cannot start the raftstore thread: {e}")))?;
        Ok(Arc::new(RaftStore {
            tx,
            regions,
            filter,
            thread: Mutex::new(Some(handle)),
        }))
    }

    /// Region `region_id` as this store holds it (range, epoch, peers).
    pub fn region(&self, region_id: u64) -> Option<metapb::Region> {
        self.regions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&region_id)
            .cloned()
    }

    /// The region of this store whose range holds the raw user key `key` (regions are ranges
    /// of encoded keys); the first region when none does, so a request for a key this store
    /// does not hold is answered by that region's checks.
    pub fn region_of(&self, key: &[u8]) -> u64 {
        let encoded = crate::mvcc::keys::encode_bytes(key);
        let regions = self.regions.read().unwrap_or_else(|p| p.into_inner());
        regions
            .values()
            .find(|r| split::contains(r, &encoded))
            .or_else(|| regions.values().next())
            .map(|r| r.id)
            .unwrap_or(FIRST_REGION_ID)
    }

    /// Asks this store's peer of `region_id`, if it leads, to hand leadership to peer
    /// `to_peer` (PD's transfer-leader operator). Raft does it once that peer's log is up to
    /// date; nothing happens if this peer does not lead.
    pub fn transfer_leader(&self, region_id: u64, to_peer: u64) {
        let _ = self
            .tx
            .send(StoreMsg::TransferLeader { region_id, to_peer });
    }

    /// Asks this store's peer of `region_id`, if it leads, to make one membership change
    /// (PD's `ChangePeer` operator step); nothing happens if it does not lead.
    pub fn change_peer(&self, region_id: u64, change: ConfChangeType, peer: metapb::Peer) {
        let _ = self.tx.send(StoreMsg::ChangePeer {
            region_id,
            change,
            peer,
            done: None,
        });
    }

    /// Makes one membership change of `region_id` (which must lead here) and answers with the
    /// region as it is once the change applied here.
    pub async fn change_peer_and_wait(
        &self,
        region_id: u64,
        change: ConfChangeType,
        peer: metapb::Peer,
    ) -> Result<metapb::Region, RegionError> {
        let (done, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(StoreMsg::ChangePeer {
                region_id,
                change,
                peer,
                done: Some(done),
            })
            .map_err(|_| RegionError::RegionNotFound(region_id))?;
        rx.await.unwrap_or(Err(RegionError::StaleCommand))
    }

    /// The region of this store holding the keys just below the raw key `upper` (where a
    /// reverse scan that stops before `upper` starts).
    pub fn region_before(&self, upper: &[u8]) -> u64 {
        let encoded = crate::mvcc::keys::encode_bytes(upper);
        let regions = self.regions.read().unwrap_or_else(|p| p.into_inner());
        regions
            .values()
            .find(|r| {
                r.start_key.as_slice() < encoded.as_slice()
                    && (r.end_key.is_empty() || encoded.as_slice() <= r.end_key.as_slice())
            })
            .or_else(|| regions.values().next())
            .map(|r| r.id)
            .unwrap_or(FIRST_REGION_ID)
    }

    /// Splits `region_id` (which must lead here, at `epoch` if given) at the raw user key
    /// `key`; answers with the two regions once the split is applied here.
    pub async fn split(
        &self,
        region_id: u64,
        epoch: Option<metapb::RegionEpoch>,
        key: &[u8],
    ) -> Result<Vec<metapb::Region>, RegionError> {
        let (done, rx) = tokio::sync::oneshot::channel();
        let key = crate::mvcc::keys::encode_bytes(key);
        self.tx
            .send(StoreMsg::Split {
                region_id,
                epoch,
                key,
                done,
            })
            .map_err(|_| RegionError::RegionNotFound(region_id))?;
        rx.await.unwrap_or(Err(RegionError::StaleCommand))
    }

    /// Every region this store holds a peer of.
    pub fn region_ids(&self) -> Vec<u64> {
        self.regions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// Where other stores deliver this store's Raft messages.
    pub fn mailbox(&self) -> Mailbox {
        Mailbox {
            tx: self.tx.clone(),
            filter: self.filter.clone(),
        }
    }

    /// The partition filter of this store (see [`NetFilter`]).
    pub fn net_filter(&self) -> &Arc<NetFilter> {
        &self.filter
    }

    /// The state of this store's peer of `region_id`, if it has one.
    pub fn status(&self, region_id: u64) -> Option<PeerStatus> {
        let (done, rx) = mpsc::channel();
        self.tx.send(StoreMsg::Status { region_id, done }).ok()?;
        rx.recv_timeout(Duration::from_secs(5)).ok().flatten()
    }

    /// Queues a write task for `region_id`'s leader.
    pub fn write(&self, region_id: u64, task: Task) -> Result<(), TxnError> {
        self.tx
            .send(StoreMsg::Write { region_id, task })
            .map_err(|_| TxnError::Engine("the store is stopping".into()))
    }

    /// Waits until a read of `region_id` may be served from this store's engine: this peer is
    /// the leader, a quorum confirmed it, and everything committed before the read is applied.
    pub async fn read_index(&self, region_id: u64) -> Result<(), TxnError> {
        let (done, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(StoreMsg::ReadIndex { region_id, done })
            .map_err(|_| TxnError::Engine("the store is stopping".into()))?;
        match rx.await {
            Ok(r) => r.map_err(TxnError::from),
            Err(_) => Err(TxnError::Engine("the store is stopping".into())),
        }
    }

    /// Blocks until `region_id` has a ready leader here (its log replayed), or `timeout`.
    pub fn wait_ready(&self, region_id: u64, timeout: Duration) -> bool {
        let (done, rx) = mpsc::channel();
        if self
            .tx
            .send(StoreMsg::WhenReady { region_id, done })
            .is_err()
        {
            return false;
        }
        rx.recv_timeout(timeout).is_ok()
    }
}

impl Drop for RaftStore {
    fn drop(&mut self) {
        let _ = self.tx.send(StoreMsg::Stop);
        if let Some(h) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = h.join();
        }
    }
}

/// Starts the Raft node of this store's peer of `storage`'s region. A group of one elects
/// itself at once.
fn open_peer(
    storage: PeerStorage,
    store_id: u64,
    config: &RaftConfig,
    applied: u64,
) -> Result<Peer, EngineError> {
    let region_id = storage.region_id();
    let Some(me) = storage
        .region()
        .peers
        .iter()
        .find(|p| p.store_id == store_id)
        .map(|p| p.id)
    else {
        return Err(EngineError::Redb(format!(
            "region {region_id} has no peer on store {store_id}"
        )));
    };
    let raft_config = raft_config(me, config, applied);
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let single = storage.voters() == [me];
    let mut raw = RawNode::new(&raft_config, storage, &logger)
        .map_err(|e| EngineError::Redb(format!("raft: {e}")))?;
    if single {
        raw.campaign()
            .map_err(|e| EngineError::Redb(format!("raft campaign: {e}")))?;
    }
    Ok(Peer::new(me, raw, applied, config.lease_span()))
}

/// raft-rs's settings for peer `id` whose engine state stands at `applied`.
fn raft_config(id: u64, config: &RaftConfig, applied: u64) -> raft::Config {
    raft::Config {
        id,
        election_tick: config.election_ticks,
        heartbeat_tick: config.heartbeat_ticks,
        applied,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        // A leader that loses touch with a quorum steps down, and a peer that hears from a
        // leader ignores vote requests meanwhile; pre-vote keeps a partitioned peer from
        // disrupting the group when it returns.
        check_quorum: config.check_quorum,
        pre_vote: true,
        read_only_option: ReadOnlyOption::Safe,
        ..Default::default()
    }
}

fn read_applied(engine: &Engine, region_id: u64) -> Result<u64, EngineError> {
    let txn = engine.db().begin_read()?;
    let meta = txn.open_table(META_TABLE)?;
    Ok(meta
        .get(applied_key(region_id).as_str())?
        .and_then(|v| v.value().try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0))
}

struct StoreThread {
    /// The regions as [`RaftStore`] shows them to request checks.
    regions: Arc<RwLock<BTreeMap<u64, metapb::Region>>>,
    engine: Arc<Engine>,
    cm: Arc<ConcurrencyManager>,
    lock_manager: Arc<LockManager>,
    config: RaftConfig,
    store_id: u64,
    peers: BTreeMap<u64, Peer>,
    rx: mpsc::Receiver<StoreMsg>,
    /// Every region's Raft entries on this store.
    log: RaftLogFile,
    /// When applies were last made durable (see [`StoreThread::apply`]).
    last_durable: Instant,
    transport: Box<dyn Transport>,
    pd: Option<Box<dyn PdLink>>,
    /// Every peer of another store that sent this store a message (how an empty peer, which
    /// knows no members yet, addresses its leader).
    seen_peers: std::collections::HashMap<u64, metapb::Peer>,
    /// Peers this store destroyed (region → highest such peer id): their late messages are
    /// ignored rather than creating them again.
    tombstones: std::collections::HashMap<u64, u64>,
    /// When each other store last sent this one a Raft message (a leader transfers only to a
    /// store it heard from lately).
    last_heard: std::collections::HashMap<u64, Instant>,
    /// Ticks since start (paces the region heartbeats).
    ticks: usize,
    waiting_ready: Vec<(u64, mpsc::Sender<()>)>,
    /// Until when this store grants no vote: an election timeout after a start on existing
    /// data. A restarted peer forgot that it heard from a leader lately, so it would vote at
    /// once, and a leader still holding a lease counted with its old acknowledgement could then
    /// meet a second leader (tikv#15035, fixed in TiKV the same way). A fresh store has nothing
    /// to forget. A leadership transfer's campaign is let through: it ignores leases anyway.
    no_votes_until: Option<Instant>,
}

impl StoreThread {
    /// Whether to drop this message: a vote request (or pre-vote) other than a leadership
    /// transfer's, while [`StoreThread::no_votes_until`] holds.
    fn refuses_vote(&mut self, m: &raft::eraftpb::Message) -> bool {
        let Some(until) = self.no_votes_until else {
            return false;
        };
        if Instant::now() >= until {
            self.no_votes_until = None;
            return false;
        }
        matches!(
            m.get_msg_type(),
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        ) && m.context != CAMPAIGN_TRANSFER
    }

    fn run(&mut self) {
        let mut next_tick = Instant::now() + self.config.tick;
        let mut busy = true;
        loop {
            let wait = if busy {
                Duration::ZERO
            } else {
                next_tick.saturating_duration_since(Instant::now())
            };
            match self.rx.recv_timeout(wait) {
                Ok(StoreMsg::Stop) => break,
                Ok(msg) => self.handle(msg),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            // Everything that queued up meanwhile joins this round (group commit).
            let mut stop = false;
            while let Ok(msg) = self.rx.try_recv() {
                if matches!(msg, StoreMsg::Stop) {
                    stop = true;
                    break;
                }
                self.handle(msg);
            }
            let now = Instant::now();
            if now >= next_tick {
                for p in self.peers.values_mut() {
                    p.raw.tick();
                }
                self.ticks += 1;
                if self
                    .ticks
                    .is_multiple_of(self.config.pd_heartbeat_ticks.max(1))
                {
                    let leaders: Vec<u64> = self
                        .peers
                        .values()
                        .filter(|p| p.is_leader())
                        .map(|p| p.region_id)
                        .collect();
                    for region_id in leaders {
                        self.report(region_id);
                    }
                }
                if self
                    .ticks
                    .is_multiple_of(self.config.split_check_ticks.max(1))
                {
                    self.check_splits();
                }
                if self
                    .ticks
                    .is_multiple_of(self.config.pd_heartbeat_ticks.max(1) * 2)
                {
                    self.check_stale_peers();
                }
                next_tick = now + self.config.tick;
            }
            self.round(now);
            if stop {
                break;
            }
            busy = self
                .peers
                .values()
                .any(|p| p.can_execute() || p.raw.has_ready());
        }
        // Leave the engine file fully durable (not needed for safety: the log replays).
        if let Ok(txn) = self.engine.db().begin_write() {
            let _ = txn.commit();
        }
    }

    fn handle(&mut self, msg: StoreMsg) {
        let deadline = Instant::now() + self.config.request_timeout;
        match msg {
            StoreMsg::Write { region_id, task } => match self.peers.get_mut(&region_id) {
                Some(p) if p.is_leader() => p.push_write(task, Instant::now(), deadline),
                Some(p) => task.reject(p.not_leader().into()),
                None => task.reject(RegionError::RegionNotFound(region_id).into()),
            },
            StoreMsg::ReadIndex { region_id, done } => match self.peers.get_mut(&region_id) {
                Some(p) => p.push_read(done, deadline),
                None => {
                    let _ = done.send(Err(RegionError::RegionNotFound(region_id)));
                }
            },
            StoreMsg::WhenReady { region_id, done } => self.waiting_ready.push((region_id, done)),
            StoreMsg::TransferLeader { region_id, to_peer } => {
                if let Some(p) = self.peers.get_mut(&region_id).filter(|p| p.is_leader()) {
                    // TiKV's pre-transfer check: only to a replica that is alive and caught up.
                    // A leader waiting on a transfer drops proposals until it gives up (an
                    // election timeout), so a transfer to a dead store would stall writes.
                    // Alive: its store sent us something within an election timeout (raft-rs's
                    // own `recent_active` is reset at every election timeout, so it says no
                    // for a moment each time, and PD's requests can arrive in that moment).
                    let last = p.raw.raft.raft_log.last_index();
                    let alive_within = self.config.tick * self.config.election_ticks as u32;
                    let target = p
                        .raw
                        .store()
                        .region()
                        .peers
                        .iter()
                        .find(|x| x.id == to_peer && x.role == metapb::PeerRole::Voter as i32)
                        .map(|x| x.store_id);
                    let alive = target.is_some_and(|store| {
                        self.last_heard
                            .get(&store)
                            .is_some_and(|t| t.elapsed() < alive_within)
                    });
                    let matched = p.raw.raft.prs().get(to_peer).map(|pr| pr.matched);
                    if alive && matched.is_some_and(|m| m + 2 >= last) {
                        tracing::info!(region = region_id, to = to_peer, "transferring leadership");
                        p.transfer_leader(to_peer);
                    } else {
                        tracing::info!(
                            region = region_id,
                            to = to_peer,
                            voter = target.is_some(),
                            alive,
                            matched,
                            last,
                            "not transferring leadership: that replica is not an alive, caught-up voter"
                        );
                    }
                }
            }
            StoreMsg::ChangePeer {
                region_id,
                change,
                peer,
                done,
            } => match self.peers.get_mut(&region_id) {
                None => {
                    if let Some(done) = done {
                        let _ = done.send(Err(RegionError::RegionNotFound(region_id)));
                    }
                }
                Some(p) => Self::propose_conf_change(p, change, peer, done),
            },
            StoreMsg::Split {
                region_id,
                epoch,
                key,
                done,
            } => match self.peers.get_mut(&region_id) {
                None => {
                    let _ = done.send(Err(RegionError::RegionNotFound(region_id)));
                }
                Some(p) if !p.is_leader() => {
                    let _ = done.send(Err(p.not_leader()));
                }
                Some(p) => {
                    let region = p.raw.store().region().clone();
                    if epoch.is_some_and(|e| Some(e) != region.region_epoch) {
                        let _ = done.send(Err(RegionError::EpochNotMatch {
                            current: vec![region],
                        }));
                    } else if key == region.start_key {
                        // Already a boundary: nothing to do (TiKV answers the same way).
                        let _ = done.send(Ok(vec![region]));
                    } else if !split::contains(&region, &key) {
                        let _ = done.send(Err(RegionError::Refused(format!(
                            "the split key lies outside region {region_id}; split the region that holds it"
                        ))));
                    } else if p.split_wanted.is_some() || p.pending_split.is_some() {
                        let _ = done.send(Err(RegionError::Refused(format!(
                            "region {region_id} is already splitting; retry when it is done"
                        ))));
                    } else {
                        p.split_wanted = Some((key, Some(done)));
                    }
                }
            },
            StoreMsg::Raft(m) => {
                self.last_heard.insert(m.from.store_id, Instant::now());
                if self.refuses_vote(&m.message) {
                    tracing::debug!(
                        region = m.region_id,
                        from = m.from.id,
                        "no vote yet: this store restarted less than an election timeout ago"
                    );
                    return;
                }
                if let Some(held) = self.snapshot_overlap(&m) {
                    // TiKV's `check_snapshot` drops it too. Our replica of `held` has yet to
                    // apply the split that made room for this region: it may still replay
                    // writes in this range from before the split, which would land on top of
                    // the snapshot's newer data (a committed key locked again). The leader
                    // sends another snapshot later (see `send`), by when the split is applied.
                    tracing::info!(
                        region = m.region_id,
                        held,
                        store = self.store_id,
                        "not taking a snapshot that overlaps region {held}, which this store still holds: it has not applied a split yet"
                    );
                    return;
                }
                self.seen_peers.insert(m.from.id, m.from);
                if !self.peers.contains_key(&m.region_id) && m.to.store_id == self.store_id {
                    self.create_peer_for(&m);
                }
                match self.peers.get_mut(&m.region_id) {
                    Some(p) if m.to.id == p.peer_id => {
                        // raft-rs rejects what it must (stale terms, unknown peers) itself.
                        let _ = p.raw.step(m.message);
                    }
                    _ => tracing::debug!(
                        region = m.region_id,
                        to = m.to.id,
                        store = self.store_id,
                        "raft message for a peer this store does not have"
                    ),
                }
            }
            StoreMsg::Status { region_id, done } => {
                let status = self.peers.get(&region_id).map(|p| PeerStatus {
                    peer_id: p.peer_id,
                    term: p.raw.raft.term,
                    leader_id: p.raw.raft.leader_id,
                    is_ready_leader: p.is_ready_leader(),
                    applied: p.applied.0,
                    first_index: p.raw.store().first_index_now(),
                    last_index: p.raw.store().last_index_now(),
                });
                let _ = done.send(status);
            }
            StoreMsg::Stop => {}
        }
    }

    /// One pass of the loop after the inbox was drained: execute, persist, advance, apply.
    fn round(&mut self, now: Instant) {
        for p in self.peers.values_mut() {
            p.check(now);
            if p.is_applied_leader() && p.max_ts_synced_term != p.raw.raft.term {
                // A new leader cannot know what its predecessor served; until max_ts is above
                // that, it holds its writes (queued, not failed: the TiKV client treats
                // MaxTimestampNotSynced as fatal).
                match self.cm.sync_max_ts() {
                    Ok(_) => p.max_ts_synced_term = p.raw.raft.term,
                    Err(e) => tracing::warn!(region = p.region_id, "cannot sync max_ts: {e}"),
                }
            }
            if let Some(tasks) = p.take_batch(MAX_BATCH)
                && let Some(executed) =
                    scheduler::execute_batch(&self.engine, &self.cm, &self.lock_manager, tasks)
            {
                p.propose(executed, now + self.config.request_timeout);
            }
            if p.can_split() {
                Self::propose_split(p, self.pd.as_deref());
            }
            p.send_reads();
        }
        self.on_ready();
        let peers = &self.peers;
        self.waiting_ready
            .retain(|(region_id, done)| match peers.get(region_id) {
                Some(p) if p.is_ready_leader() => {
                    let _ = done.send(());
                    false
                }
                _ => true,
            });
    }

    /// Sends raft-rs's messages of `peer` through the transport.
    ///
    /// A peer created by a message (not initialized yet: no region range or peers known) still
    /// answers: its own address is this store, and the peers it talks to are the ones whose
    /// messages reached this store (`seen`).
    ///
    /// A snapshot travels inside its message, so once sent it is as finished as this leader
    /// can know, and it says so to raft-rs (TiKV does once a snapshot's file is sent). Until
    /// then raft-rs sends that replica nothing more, so a snapshot lost on the way (its store
    /// stopped, a cut link) or not taken (it overlapped a region the store still holds) would
    /// leave the replica behind for the rest of the term. Reported, the leader probes the
    /// replica at its next heartbeat and sends another snapshot if it still needs one.
    fn send(
        transport: &dyn Transport,
        peer: &mut Peer,
        messages: Vec<raft::eraftpb::Message>,
        store_id: u64,
        seen: &std::collections::HashMap<u64, metapb::Peer>,
    ) {
        let mut snapshots = Vec::new();
        let region = peer.raw.store().region();
        let from = region
            .peers
            .iter()
            .find(|p| p.id == peer.peer_id)
            .cloned()
            .or_else(|| {
                Some(metapb::Peer {
                    id: peer.peer_id,
                    store_id,
                    ..Default::default()
                })
            });
        for message in messages {
            let to = region
                .peers
                .iter()
                .find(|p| p.id == message.to)
                .or_else(|| seen.get(&message.to))
                .cloned();
            if let (Some(from), Some(to)) = (from, to) {
                if message.get_msg_type() == MessageType::MsgSnapshot {
                    snapshots.push(message.to);
                }
                transport.send(RaftMessage {
                    region_id: peer.region_id,
                    from,
                    to,
                    message,
                });
            }
        }
        for to in snapshots {
            peer.raw.report_snapshot(to, raft::SnapshotStatus::Finish);
        }
    }

    fn on_ready(&mut self) {
        if !self.peers.values().any(|p| p.raw.has_ready()) {
            return;
        }
        let mut readies = Vec::new();
        let mut new_leaders = Vec::new();
        let mut to_apply: Vec<(u64, Vec<Entry>)> = Vec::new();
        // Rare writes (a vote, a snapshot, a compaction point) go to the engine file. Its write
        // transaction is begun only when a ready has such a write: most readies carry only log
        // entries (and a commit index, which needs no fsync, see `set_hard_state`), and a
        // redb write transaction would also wait for the engine's write lock.
        let txn_cell: std::cell::OnceCell<redb::WriteTransaction> = std::cell::OnceCell::new();
        let mut tables: Option<RaftTables<'_>> = None;
        let mut state_written = false;
        // Regions whose snapshot was installed: their range may be new to the routing table.
        let mut installed = Vec::new();
        for p in self.peers.values_mut() {
            if !p.raw.has_ready() {
                continue;
            }
            let mut rd = p.raw.ready();
            if let Some(ss) = rd.ss() {
                tracing::info!(
                    region = p.region_id,
                    peer = p.peer_id,
                    store = self.store_id,
                    term = p.raw.raft.term,
                    leader = ss.leader_id,
                    "raft role: {:?}",
                    ss.raft_state
                );
                if ss.raft_state == raft::StateRole::Leader {
                    new_leaders.push(p.region_id);
                }
            }
            // A leader may send before its own log is durable (Raft allows it: the entry
            // commits only once a quorum, possibly without the leader, has it).
            Self::send(
                self.transport.as_ref(),
                p,
                rd.take_messages(),
                self.store_id,
                &self.seen_peers,
            );
            let compact = compact_index(p, self.config.log_gc_threshold);
            let writes_state = !rd.snapshot().is_empty()
                || compact.is_some()
                || rd
                    .hs()
                    .is_some_and(|hs| p.raw.store().hard_state_needs_write(hs));
            let mut t = writes_state.then(|| {
                tables.get_or_insert_with(|| {
                    let txn = txn_cell.get_or_init(|| {
                        self.engine.db().begin_write().unwrap_or_else(|e| {
                            fatal(&format!("cannot start a raft state write: {e}"))
                        })
                    });
                    RaftTables::open(txn)
                        .unwrap_or_else(|e| fatal(&format!("cannot open the raft tables: {e}")))
                })
            });
            if !rd.snapshot().is_empty()
                && let (Some(txn), Some(t)) = (txn_cell.get(), t.as_deref_mut())
            {
                let snap = rd.snapshot().clone();
                if let Err(e) = install_snapshot(txn, p, &snap, t) {
                    fatal(&format!("cannot install a snapshot: {e}"));
                }
                state_written = true;
                installed.push(p.region_id);
            }
            p.on_read_states(rd.take_read_states());
            to_apply.push((p.region_id, rd.take_committed_entries()));
            let log = &mut self.log;
            let result = (|| {
                p.raw.mut_store().append(rd.entries(), log)?;
                if let Some(hs) = rd.hs() {
                    // Without `t`, only the commit index moved: kept in memory (a restart
                    // recomputes it), no engine write.
                    state_written |= p
                        .raw
                        .mut_store()
                        .set_hard_state(hs.clone(), t.as_deref_mut())?;
                }
                if let (Some(to), Some(t)) = (compact, t.as_deref_mut()) {
                    p.raw.mut_store().compact_to(to, t)?;
                    state_written = true;
                }
                Ok::<_, PeerStorageError>(())
            })();
            if let Err(e) = result {
                fatal(&format!("cannot write the raft log: {e}"));
            }
            readies.push((p.region_id, rd));
        }
        drop(tables);
        if let Some(txn) = txn_cell.into_inner() {
            if state_written {
                // Durable before the log moves on, and before any message depends on it. It
                // also persists every apply committed before it.
                let applied_now = self.applied_now();
                if let Err(e) = txn.commit() {
                    fatal(&format!("cannot persist the raft state: {e}"));
                }
                self.made_durable(applied_now);
                let mut map = self.regions.write().unwrap_or_else(|p| p.into_inner());
                for region_id in installed {
                    if let Some(p) = self.peers.get(&region_id).filter(|p| p.is_initialized()) {
                        map.insert(region_id, p.raw.store().region().clone());
                    }
                }
            } else {
                let _ = txn.abort();
            }
        }
        if self.log.has_pending() {
            // The fsync: the entries are persisted. A full segment rolls over to a new one
            // holding the entries still live.
            let peers = &self.peers;
            let live = || {
                peers
                    .values()
                    .flat_map(|p| {
                        p.raw
                            .store()
                            .live_entries()
                            .map(|e| (p.region_id, e.clone()))
                    })
                    .collect()
            };
            if let Err(e) = self.log.sync(live) {
                fatal(&format!("cannot persist the raft log: {e}"));
            }
            let now = Instant::now();
            for p in self.peers.values_mut() {
                p.note_progress(now);
            }
        }
        for (region_id, mut rd) in readies {
            let Some(p) = self.peers.get_mut(&region_id) else {
                continue;
            };
            // A follower's answers promise the entries are durable: only now.
            let persisted = rd.take_persisted_messages();
            Self::send(
                self.transport.as_ref(),
                p,
                persisted,
                self.store_id,
                &self.seen_peers,
            );
            let mut light = p.raw.advance(rd);
            if let Some(commit) = light.commit_index() {
                p.raw.mut_store().note_commit(commit);
            }
            p.note_progress(Instant::now());
            Self::send(
                self.transport.as_ref(),
                p,
                light.take_messages(),
                self.store_id,
                &self.seen_peers,
            );
            let committed = light.take_committed_entries();
            if let Some((_, entries)) = to_apply.iter_mut().find(|(r, _)| *r == region_id) {
                entries.extend(committed);
            }
        }
        self.apply(to_apply);
        // Tell PD at once: clients that lost the old leader ask PD where the region went.
        for region_id in new_leaders {
            self.report(region_id);
        }
    }

    /// Sends PD a heartbeat for `region_id`, which this store's peer leads.
    fn report(&self, region_id: u64) {
        let (Some(pd), Some(p)) = (&self.pd, self.peers.get(&region_id)) else {
            return;
        };
        let region = p.raw.store().region().clone();
        let Some(leader) = region.peers.iter().find(|x| x.id == p.peer_id).cloned() else {
            return;
        };
        let size = p.size.clone().unwrap_or_default();
        // Pending peers: replicas still catching up — nothing acknowledged yet (a new learner),
        // waiting for a snapshot, or far behind the commit index. PD promotes a learner only
        // once it is not pending, so the quorum never waits on a replica still copying.
        let truncated = p.raw.store().first_index_now().saturating_sub(1);
        let committed = p.raw.raft.raft_log.committed;
        let pending_peers = p
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(_, pr)| {
                pr.matched == 0
                    || pr.matched < truncated
                    || pr.matched + PENDING_LAG < committed
                    || pr.state == raft::ProgressState::Snapshot
            })
            .filter_map(|(id, _)| region.peers.iter().find(|x| x.id == *id).cloned())
            .collect();
        pd.report(RegionReport {
            region,
            leader,
            term: p.raw.raft.term,
            approximate_keys: size.keys,
            approximate_size: size.bytes,
            pending_peers,
        });
    }

    /// The region this store holds whose range a snapshot in `m` (for another region)
    /// overlaps, if any. An uninitialized peer knows no range yet, so it overlaps nothing.
    fn snapshot_overlap(&self, m: &RaftMessage) -> Option<u64> {
        if m.message.get_msg_type() != MessageType::MsgSnapshot {
            return None;
        }
        let mut batch = WriteBatch::decode(&m.message.get_snapshot().data).ok()?;
        let region = super::peer_storage::take_snapshot_region(&mut batch).ok()??;
        self.peers
            .iter()
            .filter(|&(&id, p)| id != m.region_id && p.is_initialized())
            .find(|(_, p)| {
                split::overlaps(p.raw.store().region(), &region.start_key, &region.end_key)
            })
            .map(|(&id, _)| id)
    }

    /// A leader's message for a region this store has no peer of: a region split while this
    /// store was away, or this store lost its data. The peer is created empty (no range, no
    /// log); its leader finds its log missing and sends a snapshot, which brings the range, the
    /// members and the data (TiKV creates such peers the same way).
    fn create_peer_for(&mut self, m: &RaftMessage) {
        // A peer this store destroyed stays destroyed (a newer peer of the region may come).
        if self
            .tombstones
            .get(&m.region_id)
            .is_some_and(|&dead| m.to.id <= dead)
        {
            return;
        }
        // Only a leader's messages create a peer: a vote from a stale candidate must not.
        if !matches!(
            m.message.get_msg_type(),
            MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
        ) {
            return;
        }
        let region = metapb::Region {
            id: m.region_id,
            ..Default::default()
        };
        let storage = PeerStorage::bootstrap(region, self.engine.clone());
        let raft_config = raft_config(m.to.id, &self.config, 0);
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        match RawNode::new(&raft_config, storage, &logger) {
            Ok(raw) => {
                tracing::info!(
                    region = m.region_id,
                    peer = m.to.id,
                    store = self.store_id,
                    "creating an empty peer for a region this store does not hold; its leader will send a snapshot"
                );
                let peer = Peer::new(m.to.id, raw, 0, self.config.lease_span());
                self.peers.insert(m.region_id, peer);
            }
            Err(e) => tracing::warn!(region = m.region_id, "cannot create a peer: {e}"),
        }
    }

    /// Measures the regions led here that took writes since their last measure, and marks a
    /// split for each that outgrew the policy (at its middle key).
    fn check_splits(&mut self) {
        let policy = self.config.split;
        // Measuring is a scan of the region's write records: only when enough changed.
        let step = (policy.max_keys / 8).max(1);
        for p in self.peers.values_mut() {
            if !p.is_ready_leader() || (p.size.is_some() && p.written_since_measure < step) {
                continue;
            }
            let region = p.raw.store().region().clone();
            let size = match split::measure(&self.engine, &region) {
                Ok(size) => size,
                Err(e) => {
                    tracing::warn!(region = p.region_id, "cannot measure the region: {e}");
                    continue;
                }
            };
            p.written_since_measure = 0;
            let outgrown = size.keys > policy.max_keys || size.bytes > policy.max_bytes;
            if outgrown
                && self.pd.is_some()
                && p.split_wanted.is_none()
                && p.pending_split.is_none()
                && let Some(key) = split::middle_key(&self.engine, &region, size.keys)
            {
                tracing::info!(
                    region = p.region_id,
                    keys = size.keys,
                    bytes = size.bytes,
                    "region outgrew the split policy; splitting at its middle key"
                );
                p.split_wanted = Some((key, None));
            }
            p.size = Some(size);
        }
    }

    /// Asks PD for the new region's ids and proposes the split `p` wants.
    fn propose_split(p: &mut Peer, pd: Option<&dyn PdLink>) {
        let Some((key, done)) = p.split_wanted.take() else {
            return;
        };
        let fail = |done: Option<SplitCallback>, e: RegionError| {
            tracing::warn!(region = p.region_id, "split not proposed: {e}");
            if let Some(done) = done {
                let _ = done.send(Err(e));
            }
        };
        let Some(pd) = pd else {
            return fail(
                done,
                RegionError::Refused("no PD to allocate the new region's ids".into()),
            );
        };
        let region = p.raw.store().region().clone();
        let regions = match pd.ask_split(&region).and_then(|(id, peers)| {
            split::split_regions(&region, &key, id, &peers).map_err(|e| e.to_string())
        }) {
            Ok(r) => r,
            Err(e) => return fail(done, RegionError::Refused(e)),
        };
        let before = p.raw.raft.raft_log.last_index();
        if p.raw
            .propose(SPLIT_CONTEXT.to_vec(), split::encode(&regions))
            .is_err()
            || p.raw.raft.raft_log.last_index() == before
        {
            let err = p.not_leader();
            return fail(done, err);
        }
        p.pending_split = Some(PendingSplit {
            index: p.raw.raft.raft_log.last_index(),
            term: p.raw.raft.term,
            done,
        });
    }

    /// Makes a split that was just applied (durably) take effect on this store: the parent's
    /// new range, the new region's peer, the routing table, and whoever waited for it.
    fn finish_split(&mut self, parent_id: u64, regions: Vec<metapb::Region>, child: PeerStorage) {
        let was_leader = self.peers.get(&parent_id).is_some_and(|p| p.is_leader());
        let child_id = child.region_id();
        if !self.peers.get(&child_id).is_some_and(Peer::is_initialized) {
            // (An initialized one came from a snapshot, newer than this split: it stays.)
            self.start_split_child(child, was_leader);
        }
        self.finish_split_parent(parent_id, regions, child_id, was_leader);
    }

    /// Starts this store's peer of a region a split just created (replacing an empty one that
    /// a message created before the split reached this store).
    fn start_split_child(&mut self, child: PeerStorage, was_leader: bool) {
        let child_id = child.region_id();
        match open_peer(
            child,
            self.store_id,
            &self.config,
            super::peer_storage::RAFT_INIT_LOG_INDEX,
        ) {
            Ok(mut peer) => {
                if was_leader {
                    // The parent's leader store leads the new region too, at once (TiKV does
                    // the same): its peers elsewhere are created as they apply the split.
                    let _ = peer.raw.campaign();
                }
                self.peers.insert(child_id, peer);
            }
            Err(e) => fatal(&format!(
                "cannot start the peer of split region {child_id}: {e}"
            )),
        }
    }

    /// The parent's side of a split: the routing table, its queued writes, its waiter, PD.
    fn finish_split_parent(
        &mut self,
        parent_id: u64,
        regions: Vec<metapb::Region>,
        child_id: u64,
        was_leader: bool,
    ) {
        {
            let mut map = self.regions.write().unwrap_or_else(|p| p.into_inner());
            for r in &regions {
                map.insert(r.id, r.clone());
            }
        }
        if let Some(p) = self.peers.get_mut(&parent_id) {
            p.size = None;
            // Queued writes were checked against the old range: the client re-routes them.
            p.reject_queued(RegionError::EpochNotMatch {
                current: regions.clone(),
            });
            if let Some(done) = p.pending_split.take().and_then(|s| s.done) {
                let _ = done.send(Ok(regions.clone()));
            }
        }
        tracing::info!(
            parent = parent_id,
            region = child_id,
            "split applied: region {child_id} now holds the left half"
        );
        if was_leader {
            if let Some(pd) = &self.pd {
                pd.report_split(regions);
            }
            self.report(parent_id);
        }
    }

    fn applied_now(&self) -> Vec<(u64, u64)> {
        self.peers
            .values()
            .map(|p| (p.region_id, p.applied.0))
            .collect()
    }

    /// A durable engine commit covered every apply up to `applied` (per region).
    fn made_durable(&mut self, applied: Vec<(u64, u64)>) {
        for (region_id, index) in applied {
            if let Some(p) = self.peers.get_mut(&region_id) {
                p.durable_applied = index;
            }
        }
        self.last_durable = Instant::now();
    }

    /// Applies committed entries of every region in one engine commit — without an fsync,
    /// except about once a second (or after many entries): that durable commit lets the Raft
    /// log be compacted below what it covers.
    fn apply(&mut self, work: Vec<(u64, Vec<Entry>)>) {
        if work.iter().all(|(_, e)| e.is_empty()) {
            return;
        }
        let behind = self
            .peers
            .values()
            .map(|p| p.applied.0.saturating_sub(p.durable_applied))
            .max()
            .unwrap_or(0);
        // A split changes which regions exist: it is made durable at once, so a restart never
        // replays the log of a region whose record it lost.
        let has_split = work.iter().any(|(_, es)| {
            es.iter()
                .any(|e| e.context.as_ref() as &[u8] == SPLIT_CONTEXT)
        });
        // So is a membership change: a restart must find the members it made.
        let has_conf = work.iter().any(|(_, es)| {
            es.iter()
                .any(|e| e.get_entry_type() == EntryType::EntryConfChange)
        });
        let durable = has_split
            || has_conf
            || self.last_durable.elapsed() >= Duration::from_secs(1)
            || behind >= self.config.log_gc_threshold / 2;
        let mut splits: Vec<(u64, Vec<metapb::Region>, PeerStorage)> = Vec::new();
        // Membership changes applied: region → its new self, and whether this store's peer
        // was the one removed (then it is destroyed once the commit is durable).
        let mut confs: Vec<(u64, metapb::Region, bool)> = Vec::new();
        // Write records applied per region (what decides when a region is measured again).
        let mut written: std::collections::HashMap<u64, u64> = Default::default();
        let mut txn = self
            .engine
            .db()
            .begin_write()
            .unwrap_or_else(|e| fatal(&format!("cannot start an apply: {e}")));
        if !durable && let Err(e) = txn.set_durability(Durability::None) {
            fatal(&format!("cannot make the apply non-durable: {e}"));
        }
        {
            let mut t = EngineTables::open(&txn)
                .unwrap_or_else(|e| fatal(&format!("cannot open the engine tables: {e}")));
            for (region_id, entries) in &work {
                let mut destroyed = false;
                for e in entries {
                    if destroyed {
                        break;
                    }
                    if e.get_entry_type() == EntryType::EntryConfChange {
                        if let Some(p) = self.peers.get_mut(region_id)
                            && let Some((region, removed_self)) =
                                apply_conf_change(&txn, &mut t, p, e)
                        {
                            destroyed = removed_self;
                            p.end_lease();
                            confs.push((*region_id, region, removed_self));
                        }
                        continue;
                    }
                    if e.get_entry_type() != EntryType::EntryNormal || e.data.is_empty() {
                        // Empty entries are new leaders' no-ops.
                        continue;
                    }
                    if e.context.as_ref() as &[u8] == SPLIT_CONTEXT {
                        // A replica that already holds the new region (a snapshot of it came
                        // first) keeps that one: it is newer than the split's starting point.
                        let have_child = split::decode(&e.data)
                            .ok()
                            .and_then(|r| r.first().map(|l| l.id))
                            .and_then(|id| self.peers.get(&id))
                            .is_some_and(Peer::is_initialized);
                        if let Some(p) = self.peers.get_mut(region_id)
                            && let Some(split) =
                                apply_split(&txn, &mut t, p, e, &self.engine, have_child)
                        {
                            splits.push(split);
                        }
                        continue;
                    }
                    let batch = WriteBatch::decode(&e.data).unwrap_or_else(|err| {
                        fatal(&format!("region {region_id} entry {}: {err}", e.index))
                    });
                    *written.entry(*region_id).or_default() += batch
                        .ops
                        .iter()
                        .filter(|o| matches!(o, Op::Put { cf: Cf::Write, .. }))
                        .count()
                        as u64;
                    if let Err(err) = batch.apply_to(&mut t) {
                        fatal(&format!("cannot apply entry {}: {err}", e.index));
                    }
                }
                if let Some(last) = entries.last().filter(|_| !destroyed) {
                    let key = applied_key(*region_id);
                    if let Err(err) = t
                        .meta
                        .insert(key.as_str(), last.index.to_be_bytes().as_slice())
                    {
                        fatal(&format!("cannot record the applied index: {err}"));
                    }
                }
            }
        }
        if let Err(e) = txn.commit() {
            fatal(&format!("cannot commit an apply: {e}"));
        }
        let mut applied_now = Vec::new();
        for (region_id, entries) in work {
            if let Some(p) = self.peers.get_mut(&region_id) {
                p.written_since_measure += written.get(&region_id).copied().unwrap_or(0);
                p.on_applied(&entries);
                let (index, term) = p.applied;
                p.raw.mut_store().set_applied(index, term);
                applied_now.push((region_id, index));
                // A split of ours that was not applied (its slot went to another leader's
                // entry) is not coming.
                if !splits.iter().any(|(parent, _, _)| *parent == region_id)
                    && let Some(pending) = p.pending_split.take_if(|s| s.index <= index)
                    && let Some(done) = pending.done
                {
                    let _ = done.send(Err(RegionError::StaleCommand));
                }
            }
        }
        if durable {
            self.made_durable(applied_now);
        }
        for (parent, regions, child) in splits {
            self.finish_split(parent, regions, child);
        }
        for (region_id, region, removed_self) in confs {
            self.finish_conf_change(region_id, region, removed_self);
        }
        // A change of ours that was not applied (stale: another change got in first) is not
        // coming.
        for p in self.peers.values_mut() {
            let applied = p.applied.0;
            if let Some(pending) = p.pending_conf.take_if(|c| c.index <= applied)
                && let Some(done) = pending.done
            {
                let _ = done.send(Err(RegionError::StaleCommand));
            }
        }
    }

    /// Makes an applied (and durable) membership change take effect on this store: the
    /// routing table, PD, whoever waited — or, if this store's replica was the one removed,
    /// its destruction.
    fn finish_conf_change(&mut self, region_id: u64, region: metapb::Region, removed_self: bool) {
        if removed_self {
            if let Some(mut p) = self.peers.remove(&region_id) {
                p.abandon(RegionError::RegionNotFound(region_id));
                self.tombstones.insert(region_id, p.peer_id);
                tracing::info!(
                    region = region_id,
                    peer = p.peer_id,
                    store = self.store_id,
                    "this replica was removed from its region; destroyed it and its data"
                );
            }
            self.regions
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&region_id);
            return;
        }
        self.regions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(region_id, region.clone());
        let Some(p) = self.peers.get_mut(&region_id) else {
            return;
        };
        tracing::info!(
            region = region_id,
            store = self.store_id,
            conf_ver = conf_change::conf_ver(&region),
            peers = ?region.peers.iter().map(|x| (x.id, x.store_id, x.role)).collect::<Vec<_>>(),
            "membership change applied"
        );
        let applied = p.applied.0;
        if let Some(pending) = p.pending_conf.take_if(|c| c.index <= applied)
            && let Some(done) = pending.done
        {
            let _ = done.send(Ok(region));
        }
        if p.is_leader() {
            // PD follows its operator by heartbeats: tell it at once.
            self.report(region_id);
        }
    }

    /// Proposes one membership change of `p`'s region, if `p` leads and no other change is
    /// under way; answers `done` at once when it cannot.
    fn propose_conf_change(
        p: &mut Peer,
        change: ConfChangeType,
        peer: metapb::Peer,
        done: Option<ConfCallback>,
    ) {
        let fail = |done: Option<ConfCallback>, e: RegionError| {
            tracing::info!("membership change not proposed: {e}");
            if let Some(done) = done {
                let _ = done.send(Err(e));
            }
        };
        if !p.is_ready_leader() {
            return fail(done, p.not_leader());
        }
        // Raft changes one member at a time: the next waits until this one applied.
        if p.pending_conf.is_some() || p.raw.raft.has_pending_conf() || p.pending_split.is_some() {
            return fail(
                done,
                RegionError::Refused(format!(
                    "region {} is already changing; retry when that change is applied",
                    p.region_id
                )),
            );
        }
        let region = p.raw.store().region().clone();
        if let Err(e) = conf_change::changed_region(&region, change, &peer, Some(p.peer_id)) {
            return fail(done, RegionError::Refused(e.to_string()));
        }
        let context = ChangeContext {
            peer: Some(peer),
            conf_ver: conf_change::conf_ver(&region),
        }
        .encode();
        let mut cc = ConfChange::default();
        cc.set_change_type(change);
        cc.node_id = peer.id;
        let before = p.raw.raft.raft_log.last_index();
        if p.raw.propose_conf_change(context, cc).is_err()
            || p.raw.raft.raft_log.last_index() == before
        {
            let err = p.not_leader();
            return fail(done, err);
        }
        tracing::info!(
            region = p.region_id,
            peer = peer.id,
            store = peer.store_id,
            "proposing {change:?}"
        );
        p.pending_conf = Some(PendingConf {
            index: p.raw.raft.raft_log.last_index(),
            done,
        });
    }

    /// TiKV's stale-peer check: a peer that has known no leader for two checks in a row asks
    /// PD whether it is still a member. A replica removed while it was away (or partitioned)
    /// never hears of its removal from the region — its old group no longer sends it anything
    /// — so PD, which saw the change, is the one to tell it; it then destroys itself.
    fn check_stale_peers(&mut self) {
        let Some(pd) = self.pd.as_deref() else {
            return;
        };
        let mut stale = Vec::new();
        for p in self.peers.values_mut() {
            if p.raw.raft.leader_id != 0 || p.is_leader() {
                p.leaderless_checks = 0;
                continue;
            }
            p.leaderless_checks += 1;
            if p.leaderless_checks < 2 || !p.is_initialized() {
                continue;
            }
            let Some(now) = pd.region_by_id(p.region_id) else {
                continue;
            };
            let ours = conf_change::conf_ver(p.raw.store().region());
            if conf_change::conf_ver(&now) > ours && !now.peers.iter().any(|x| x.id == p.peer_id) {
                stale.push(p.region_id);
            }
        }
        for region_id in stale {
            self.destroy_peer(region_id);
        }
    }

    /// Destroys this store's replica of `region_id` (PD says it was removed): its data, its
    /// Raft state and log, durably, leaving a tombstone.
    fn destroy_peer(&mut self, region_id: u64) {
        let Some(p) = self.peers.get(&region_id) else {
            return;
        };
        let (peer_id, region) = (p.peer_id, p.raw.store().region().clone());
        let result = (|| {
            let txn = self.engine.db().begin_write().map_err(|e| e.to_string())?;
            {
                let mut t = EngineTables::open(&txn).map_err(|e| e.to_string())?;
                clear_region_data(&mut t, &region)?;
                t.meta
                    .remove(applied_key(region_id).as_str())
                    .map_err(|e| e.to_string())?;
                let mut rt = RaftTables::open(&txn).map_err(|e| e.to_string())?;
                PeerStorage::destroy(region_id, peer_id, &mut rt).map_err(|e| e.to_string())?;
            }
            txn.commit().map_err(|e| e.to_string())
        })();
        if let Err(e) = result {
            fatal(&format!(
                "cannot destroy the replica of region {region_id}: {e}"
            ));
        }
        self.finish_conf_change(region_id, region, true);
    }
}

/// Where to compact `p`'s log, if it is long enough to bother: up to what this store applied
/// durably and, on a leader, what every follower already has (a follower further behind than
/// four thresholds is left to catch up by snapshot).
fn compact_index(p: &Peer, threshold: u64) -> Option<u64> {
    let first = p.raw.store().first_index_now();
    let mut to = p.durable_applied;
    // A new replica (nothing acknowledged yet) is an empty peer that knows no region: it must
    // start from a snapshot, which brings the range and members, never from the region's first
    // entries (TiKV starts every region's log at index 5 for the same reason). While the log
    // still holds its first entry, compact it so the leader has to send a snapshot.
    let new_replica = p.is_leader() && p.raw.raft.prs().iter().any(|(_, pr)| pr.matched == 0);
    if new_replica && first <= 1 && to >= first {
        return Some(to);
    }
    if p.is_leader() {
        let slowest = p
            .raw
            .raft
            .prs()
            .iter()
            .map(|(_, pr)| pr.matched)
            .min()
            .unwrap_or(to);
        if slowest + 4 * threshold >= to {
            to = to.min(slowest + 1);
        }
    }
    (to > first + threshold).then_some(to)
}

/// Applies a split entry of `p`'s region in the apply transaction: the parent's new range and
/// the new region's peer state and applied index, all in `txn`. Returns what
/// [`StoreThread::finish_split`] needs once `txn` is durable, or `None` for a stale split.
fn apply_split(
    txn: &redb::WriteTransaction,
    t: &mut EngineTables<'_>,
    p: &mut Peer,
    e: &Entry,
    engine: &Arc<Engine>,
    have_child: bool,
) -> Option<(u64, Vec<metapb::Region>, PeerStorage)> {
    let regions = split::decode(&e.data).unwrap_or_else(|err| {
        fatal(&format!(
            "region {} split entry {}: {err}",
            p.region_id, e.index
        ))
    });
    if !split::applies_to(p.raw.store().region(), &regions) {
        tracing::info!(
            region = p.region_id,
            index = e.index,
            "skipping a stale split"
        );
        return None;
    }
    let (left, right) = (regions[0].clone(), regions[1].clone());
    let child = PeerStorage::for_split(left.clone(), engine.clone());
    let result = (|| {
        let mut rt = RaftTables::open(txn).map_err(|e| e.to_string())?;
        p.raw
            .mut_store()
            .set_region(right, &mut rt)
            .map_err(|e| e.to_string())?;
        if !have_child {
            child.persist_all(&mut rt).map_err(|e| e.to_string())?;
            t.meta
                .insert(
                    applied_key(left.id).as_str(),
                    super::peer_storage::RAFT_INIT_LOG_INDEX
                        .to_be_bytes()
                        .as_slice(),
                )
                .map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    })();
    if let Err(err) = result {
        fatal(&format!(
            "cannot apply the split of region {}: {err}",
            p.region_id
        ));
    }
    Some((p.region_id, regions, child))
}

/// Applies a membership change entry of `p`'s region in the apply transaction: raft-rs's
/// configuration and the region's members (or, if this store's replica is the one removed, its
/// data and state gone). Returns the region after the change and whether this replica was
/// removed, or `None` for a stale change (skipped alike on every replica).
fn apply_conf_change(
    txn: &redb::WriteTransaction,
    t: &mut EngineTables<'_>,
    p: &mut Peer,
    e: &Entry,
) -> Option<(metapb::Region, bool)> {
    let (region_id, index) = (p.region_id, e.index);
    let corrupt = |what: String| -> ! {
        fatal(&format!(
            "region {region_id} conf change entry {index}: {what}"
        ))
    };
    let cc = ConfChange::parse_from_bytes(&e.data).unwrap_or_else(|err| corrupt(err.to_string()));
    let ctx = ChangeContext::decode_from(&e.context).unwrap_or_else(|err| corrupt(err.to_string()));
    let peer = ctx
        .peer
        .unwrap_or_else(|| corrupt("no peer in its context".into()));
    let region = p.raw.store().region().clone();
    if ctx.conf_ver != conf_change::conf_ver(&region) {
        tracing::info!(
            region = region_id,
            index,
            "skipping a stale membership change"
        );
        return None;
    }
    let changed = match conf_change::changed_region(&region, cc.get_change_type(), &peer, None) {
        Ok(r) => r,
        Err(err) => {
            tracing::info!(region = region_id, "skipping a membership change: {err}");
            return None;
        }
    };
    let conf_state = p
        .raw
        .apply_conf_change(&cc)
        .unwrap_or_else(|err| corrupt(err.to_string()));
    let removed_self = cc.get_change_type() == ConfChangeType::RemoveNode && peer.id == p.peer_id;
    let result = (|| {
        let mut rt = RaftTables::open(txn).map_err(|e| e.to_string())?;
        if removed_self {
            clear_region_data(t, &region)?;
            t.meta
                .remove(applied_key(region_id).as_str())
                .map_err(|e| e.to_string())?;
            PeerStorage::destroy(region_id, p.peer_id, &mut rt).map_err(|e| e.to_string())
        } else {
            p.raw
                .mut_store()
                .set_conf(changed.clone(), conf_state, &mut rt)
                .map_err(|e| e.to_string())
        }
    })();
    if let Err(err) = result {
        fatal(&format!(
            "cannot apply a membership change of region {region_id}: {err}"
        ));
    }
    Some((changed, removed_self))
}

/// Deletes `region`'s rows (locks and write records) from the engine tables; the store's other
/// regions share the tables, so only the region's own range.
fn clear_region_data(e: &mut EngineTables<'_>, region: &metapb::Region) -> Result<(), String> {
    let raw = (
        split::raw_bound(&region.start_key),
        split::raw_bound(&region.end_key),
    );
    let encoded = (region.start_key.clone(), region.end_key.clone());
    for (table, (lo, hi)) in [(&mut e.lock, raw), (&mut e.write, encoded)] {
        let upper = if hi.is_empty() {
            std::ops::Bound::Unbounded
        } else {
            std::ops::Bound::Excluded(hi.as_slice())
        };
        table
            .retain_in::<&[u8], _>((std::ops::Bound::Included(lo.as_slice()), upper), |_, _| {
                false
            })
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Replaces the region's data with a snapshot's, and its log with the snapshot's point, in the
/// same (fsync'd) commit.
fn install_snapshot(
    txn: &redb::WriteTransaction,
    p: &mut Peer,
    snap: &raft::eraftpb::Snapshot,
    t: &mut RaftTables<'_>,
) -> Result<(), String> {
    let mut batch = WriteBatch::decode(&snap.data).map_err(|e| e.to_string())?;
    let meta = snap.get_metadata();
    // The region as the leader had it (range, epoch, members): an empty peer learns it here,
    // and a peer that missed a split learns its smaller range.
    let region = super::peer_storage::take_snapshot_region(&mut batch)
        .map_err(|e| format!("snapshot region: {e}"))?
        .unwrap_or_else(|| p.raw.store().region().clone());
    p.raw
        .mut_store()
        .set_region(region.clone(), t)
        .map_err(|e| e.to_string())?;
    {
        // Only the region's own range: the store's other regions share these tables.
        let mut e = EngineTables::open(txn).map_err(|e| e.to_string())?;
        clear_region_data(&mut e, &region)?;
        batch.apply_to(&mut e).map_err(|e| e.to_string())?;
        e.meta
            .insert(
                applied_key(p.region_id).as_str(),
                meta.index.to_be_bytes().as_slice(),
            )
            .map_err(|e| e.to_string())?;
    }
    p.raw
        .mut_store()
        .apply_snapshot(meta, t)
        .map_err(|e| e.to_string())?;
    p.applied = (meta.index, meta.term);
    tracing::info!(
        region = p.region_id,
        index = meta.index,
        "installed a snapshot from the leader"
    );
    Ok(())
}

/// A store that cannot write its log or apply what Raft committed must stop: carrying on
/// would answer clients from a state that diverges from its log. TiKV panics the same way.
fn fatal(what: &str) -> ! {
    tracing::error!("raftstore: {what}; stopping the process");
    eprintln!("error: raftstore: {what}");
    std::process::exit(70);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pd::tso::Tso;
    use crate::raftstore::command::{Cf, Op};
    use crate::raftstore::log_file;
    use raft::eraftpb::HardState;

    fn put_lock(key: &[u8]) -> Vec<u8> {
        WriteBatch {
            ops: vec![Op::Put {
                cf: Cf::Lock,
                key: key.to_vec(),
                value: b"lock".to_vec(),
            }],
        }
        .encode()
    }

    fn entry(index: u64, data: Vec<u8>) -> Entry {
        Entry {
            index,
            term: 1,
            data: data.into(),
            ..Default::default()
        }
    }

    fn start(dir: &std::path::Path, engine: Arc<Engine>) -> Arc<RaftStore> {
        let cm = Arc::new(ConcurrencyManager::new(Arc::new(Tso::open(dir).unwrap())));
        let store = RaftStore::start(
            engine,
            cm,
            Arc::new(LockManager::default()),
            RaftConfig::default(),
        )
        .unwrap();
        assert!(store.wait_ready(FIRST_REGION_ID, Duration::from_secs(10)));
        store
    }

    /// The crash this guards against: the log was fsync'd and the entries committed, but the
    /// process died before their (unsynced) apply reached the disk. Start-up must apply them.
    #[test]
    fn committed_entries_the_engine_never_applied_are_replayed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(dir.path()).unwrap();
        let engine = Arc::new(engine);
        let region = first_region(&[(FIRST_PEER_ID, STORE_ID)]);
        let mut ps = PeerStorage::bootstrap(region, engine.clone());
        let (mut log, _) =
            RaftLogFile::open(&dir.path().join(LOG_DIR), log_file::SEGMENT_BYTES).unwrap();
        let txn = engine.db().begin_write().unwrap();
        {
            let mut t = RaftTables::open(&txn).unwrap();
            ps.persist_all(&mut t).unwrap();
            let entries = [
                entry(1, Vec::new()),
                entry(2, put_lock(b"k1")),
                entry(3, put_lock(b"k2")),
            ];
            ps.append(&entries, &mut log).unwrap();
            log.sync(Vec::new).unwrap();
            let hs = HardState {
                term: 1,
                vote: FIRST_PEER_ID,
                commit: 3,
                ..Default::default()
            };
            ps.set_hard_state(hs, Some(&mut t)).unwrap();
        }
        txn.commit().unwrap();
        drop(log);
        assert_eq!(engine.counts().unwrap(), (0, 0), "nothing applied yet");

        let store = start(dir.path(), engine.clone());
        let snap = engine.snapshot().unwrap();
        assert!(snap.lock.get(b"k1".as_slice()).unwrap().is_some());
        assert!(snap.lock.get(b"k2".as_slice()).unwrap().is_some());
        drop(store);
        assert!(read_applied(&engine, FIRST_REGION_ID).unwrap() >= 3);
    }

    /// Restarting applies nothing twice and keeps the log, term and data.
    #[test]
    fn a_restarted_store_leads_again_in_a_later_term_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(dir.path()).unwrap();
        let engine = Arc::new(engine);
        let store = start(dir.path(), engine.clone());
        drop(store);
        let recovered = || {
            RaftLogFile::open(&dir.path().join(LOG_DIR), log_file::SEGMENT_BYTES)
                .unwrap()
                .1
        };
        let term = PeerStorage::load(&engine, FIRST_REGION_ID, &mut recovered())
            .unwrap()
            .unwrap()
            .hard_state()
            .term;
        let store = start(dir.path(), engine.clone());
        drop(store);
        let after = PeerStorage::load(&engine, FIRST_REGION_ID, &mut recovered())
            .unwrap()
            .unwrap();
        assert!(
            after.hard_state().term > term,
            "a restart is a new election"
        );
        assert_eq!(
            read_applied(&engine, FIRST_REGION_ID).unwrap(),
            after.last_index_now(),
            "every entry, the new leader's no-op included, is applied"
        );
    }

    /// Checks, as each vote or vote answer leaves the store, that the engine file already
    /// holds the term and vote it promises (a crash after the send must not forget them).
    struct VoteChecker {
        engine: Arc<Engine>,
        sent: Arc<Mutex<Vec<Sent>>>,
    }

    /// A message sent: its type, its term, and whether the state it promises was durable.
    type Sent = (raft::eraftpb::MessageType, u64, Result<(), String>);

    impl Transport for VoteChecker {
        fn send(&self, msg: RaftMessage) {
            use raft::eraftpb::MessageType::*;
            let m = &msg.message;
            let voted_for = match m.get_msg_type() {
                MsgRequestVote => m.from,
                MsgRequestVoteResponse if !m.reject => m.to,
                t => {
                    self.sent.lock().unwrap().push((t, m.term, Ok(())));
                    return;
                }
            };
            let durable = PeerStorage::load(&self.engine, msg.region_id, &mut Default::default())
                .unwrap()
                .map(|ps| ps.hard_state().clone())
                .unwrap_or_default();
            let check = if durable.term == m.term && durable.vote == voted_for {
                Ok(())
            } else {
                Err(format!(
                    "{:?} of term {} for {voted_for} sent while the engine holds term {} vote {}",
                    m.get_msg_type(),
                    m.term,
                    durable.term,
                    durable.vote
                ))
            };
            self.sent
                .lock()
                .unwrap()
                .push((m.get_msg_type(), m.term, check));
        }
    }

    /// Hard state must be durable before the messages that depend on it are sent: a peer that
    /// grants a vote, or asks for votes, and then crashes must still know that vote on restart,
    /// or it could vote twice in one term. (Since most readies write no engine state, the
    /// store opens an engine write only for those that do; this checks the ones that do.)
    #[test]
    fn a_vote_is_durable_before_the_message_that_carries_it_is_sent() {
        use raft::eraftpb::{Message, MessageType};
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(dir.path()).unwrap();
        let engine = Arc::new(engine);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let cm = Arc::new(ConcurrencyManager::new(Arc::new(
            Tso::open(dir.path()).unwrap(),
        )));
        // Store 1 of a three-store region whose other stores are silent: this test plays them.
        let peers = initial_peers(3);
        let region = first_region(&peers);
        let setup = StoreSetup {
            store_id: 1,
            bootstrap: vec![region.clone()],
            transport: Box::new(VoteChecker {
                engine: engine.clone(),
                sent: sent.clone(),
            }),
            pd: None,
        };
        let config = RaftConfig {
            tick: Duration::from_millis(10),
            ..RaftConfig::default()
        };
        let store = RaftStore::start_with(
            engine.clone(),
            cm,
            Arc::new(LockManager::default()),
            config,
            setup,
        )
        .unwrap();
        let (me, other) = (peers[0].0, peers[1].0);
        let peer = |id: u64| *region.peers.iter().find(|p| p.id == id).unwrap();
        let deliver = |t: MessageType, term: u64, reject: bool| {
            let mut m = Message::default();
            m.set_msg_type(t);
            m.from = other;
            m.to = me;
            m.term = term;
            m.reject = reject;
            store.mailbox().deliver(RaftMessage {
                region_id: FIRST_REGION_ID,
                from: peer(other),
                to: peer(me),
                message: m,
            });
        };
        let wait_for = |t: MessageType| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(&(_, term, _)) =
                    sent.lock().unwrap().iter().rev().find(|(x, _, _)| *x == t)
                {
                    return term;
                }
                assert!(Instant::now() < deadline, "no {t:?} was sent");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        // The other peer asks for our vote in term 5: we grant it, so term 5 and that vote
        // must be on disk before the answer leaves.
        deliver(MessageType::MsgRequestVote, 5, false);
        wait_for(MessageType::MsgRequestVoteResponse);
        // Our own campaign: a pre-vote (no state), granted, then a real vote for ourselves in
        // a new term, on disk before the requests leave.
        let pre_term = wait_for(MessageType::MsgRequestPreVote);
        deliver(MessageType::MsgRequestPreVoteResponse, pre_term, false);
        let vote_term = wait_for(MessageType::MsgRequestVote);
        assert!(vote_term > 5);
        drop(store);
        let sent = sent.lock().unwrap();
        let errors: Vec<&String> = sent
            .iter()
            .filter_map(|(_, _, c)| c.as_ref().err())
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }
}
