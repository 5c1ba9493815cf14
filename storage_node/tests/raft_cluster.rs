//! Replicated regions under a network the test controls, in the style of raft-rs's harness and
//! TinyKV's `test_raftstore`: three stores in one process, each with its own engine, joined by
//! an in-memory network that can isolate a store and heal. Each test states a Raft guarantee
//! and breaks the network to challenge it:
//!
//! - a write is acknowledged only once a majority has it (an isolated leader acknowledges none);
//! - the majority elects a new leader after the old one is cut off;
//! - a deposed leader never serves a read (even one that never noticed it was deposed);
//! - a leader serves reads without the quorum only within its lease, and has none in a term in
//!   which it began a leadership transfer; a restarted store grants no vote for an election
//!   timeout (it forgot which leader it heard from);
//! - a follower that missed entries catches up from the log, or from a snapshot once the
//!   leader compacted its log past what the follower has;
//! - a store that missed a split takes no snapshot of the new region while its replica of the
//!   parent still covers that range (the parent's replay would land on the snapshot's data);
//!   the new region's leader sends another once the split is applied;
//! - a replica moves to a new store (learner → voter → old one removed) and the new store
//!   counts in the quorum; the removed replica is destroyed, data and all.
//!
//! The stores run their real threads and timers; each wait is bounded and says what it waited for.
//! One test runs the same cluster over real gRPC (TiKV's `Raft` stream on loopback ports), the
//! transport store processes use.

use std::collections::{HashMap, HashSet};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raft::eraftpb::MessageType;

use storage_node::concurrency::ConcurrencyManager;
use storage_node::engine::Engine;
use storage_node::lock_manager::LockManager;
use storage_node::mvcc::{Lock, LockType, MvccReader, MvccTxn, Write, WriteType};
use storage_node::pd::tso::Tso;
use storage_node::proto::metapb;
use storage_node::proto::raft_serverpb;
use storage_node::proto::tikvpb::tikv_server::{Tikv, TikvServer};
use storage_node::raftstore::grpc::{self, GrpcTransport};
use storage_node::raftstore::split::SplitPolicy;
use storage_node::raftstore::store::{
    FIRST_REGION_ID as REGION, Mailbox, PdLink, StoreSetup, first_region,
};
use storage_node::raftstore::transport::{RaftMessage, Transport};
use storage_node::raftstore::{RaftConfig, RaftStore};
use storage_node::txn::TxnError;
use storage_node::txn::scheduler::Scheduler;
use storage_node::{Key, TimeStamp};

/// The network between the stores: who may talk to whom.
#[derive(Default)]
struct Net {
    mailboxes: Mutex<HashMap<u64, Mailbox>>,
    cut: Mutex<HashSet<(u64, u64)>>,
    /// Every message sent since the tap was opened: (type, from peer, to peer).
    tap: Mutex<Option<Vec<(MessageType, u64, u64)>>>,
    /// (store, region): that store hears nothing of that region (its other regions still talk).
    held: Mutex<HashSet<(u64, u64)>>,
    /// Every snapshot sent: (region, to store), whether or not it arrived.
    snapshots: Mutex<Vec<(u64, u64)>>,
}

impl Net {
    fn isolate(&self, store: u64, stores: &[u64]) {
        let mut cut = self.cut.lock().unwrap();
        for &other in stores {
            cut.insert((store, other));
            cut.insert((other, store));
        }
    }

    /// Store `store` hears nothing more from `stores`; what it sends still arrives.
    fn deafen(&self, store: u64, stores: &[u64]) {
        let mut cut = self.cut.lock().unwrap();
        for &other in stores {
            cut.insert((other, store));
        }
    }

    fn heal(&self) {
        self.cut.lock().unwrap().clear();
    }

    /// Store `store` hears nothing more of region `region`, until `release`.
    fn hold(&self, store: u64, region: u64) {
        self.held.lock().unwrap().insert((store, region));
    }

    fn release(&self) {
        self.held.lock().unwrap().clear();
    }
}

struct Link {
    net: Arc<Net>,
    from: u64,
}

impl Transport for Link {
    fn send(&self, msg: RaftMessage) {
        if let Some(tap) = self.net.tap.lock().unwrap().as_mut() {
            tap.push((msg.message.get_msg_type(), msg.from.id, msg.to.id));
        }
        let to = msg.to.store_id;
        if msg.message.get_msg_type() == MessageType::MsgSnapshot {
            self.net.snapshots.lock().unwrap().push((msg.region_id, to));
        }
        if self.net.cut.lock().unwrap().contains(&(self.from, to))
            || self.net.held.lock().unwrap().contains(&(to, msg.region_id))
        {
            return;
        }
        if let Some(mb) = self.net.mailboxes.lock().unwrap().get(&to) {
            mb.deliver(msg);
        }
    }
}

struct Store {
    raft: Arc<RaftStore>,
    engine: Arc<Engine>,
    /// The store's max_ts keeper (what a read raises, what a new leader syncs from the TSO).
    cm: Arc<ConcurrencyManager>,
    /// The store's gRPC server, when the cluster runs over gRPC.
    server: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// A TiKV service that only takes Raft messages (the rest answer UNIMPLEMENTED).
struct RaftOnly(Mailbox);

#[tonic::async_trait]
impl Tikv for RaftOnly {
    async fn raft(
        &self,
        request: tonic::Request<tonic::Streaming<raft_serverpb::RaftMessage>>,
    ) -> Result<tonic::Response<raft_serverpb::Done>, tonic::Status> {
        let done = grpc::receive(request.into_inner(), self.0.clone()).await?;
        Ok(tonic::Response::new(done))
    }
}

struct Cluster {
    net: Arc<Net>,
    stores: Vec<Store>,
    tso: Arc<Tso>,
    /// Region ids, and PD's view of the regions, shared by every store's [`TestPd`].
    pd: TestPd,
    config: RaftConfig,
    _tso_dir: tempfile::TempDir,
}

const STORES: [u64; 3] = [1, 2, 3];

fn config() -> RaftConfig {
    RaftConfig {
        request_timeout: Duration::from_secs(2),
        ..RaftConfig::default()
    }
}

impl Cluster {
    fn start(config: RaftConfig) -> Cluster {
        let net = Arc::new(Net::default());
        Self::start_with(config, |store_id| {
            Box::new(Link {
                net: net.clone(),
                from: store_id,
            })
        })
        .with_net(net)
    }

    fn with_net(mut self, net: Arc<Net>) -> Cluster {
        for (i, s) in self.stores.iter().enumerate() {
            net.mailboxes
                .lock()
                .unwrap()
                .insert(i as u64 + 1, s.raft.mailbox());
        }
        self.net = net;
        self
    }

    /// The same cluster, each store serving TiKV's `Raft` stream on a loopback port.
    async fn start_over_grpc(config: RaftConfig) -> Cluster {
        let mut listeners = HashMap::new();
        let mut addrs = HashMap::new();
        for id in STORES {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.insert(id, l.local_addr().unwrap().to_string());
            listeners.insert(id, l);
        }
        let addrs = Arc::new(addrs);
        let runtime = tokio::runtime::Handle::current();
        let mut c = Self::start_with(config, |_| {
            let addrs = addrs.clone();
            Box::new(GrpcTransport::new(
                runtime.clone(),
                Arc::new(move |store| addrs.get(&store).cloned()),
            ))
        });
        for (i, store) in c.stores.iter_mut().enumerate() {
            let listener = listeners.remove(&(i as u64 + 1)).unwrap();
            let svc = TikvServer::new(RaftOnly(store.raft.mailbox()));
            store.server = Some(tokio::spawn(async move {
                let _ = tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                    .await;
            }));
        }
        c
    }

    fn start_with(config: RaftConfig, transport: impl Fn(u64) -> Box<dyn Transport>) -> Cluster {
        let tso_dir = tempfile::tempdir().unwrap();
        // One timestamp oracle for all stores, as PD is.
        let tso = Arc::new(Tso::open(tso_dir.path()).unwrap());
        let region = first_region(&[(11, 1), (12, 2), (13, 3)]);
        let pd = TestPd::default();
        let stores = STORES
            .iter()
            .map(|&store_id| {
                let dir = tempfile::tempdir().unwrap();
                let (engine, _) = Engine::open(dir.path()).unwrap();
                let engine = Arc::new(engine);
                let setup = StoreSetup {
                    store_id,
                    bootstrap: vec![region.clone()],
                    transport: transport(store_id),
                    pd: Some(Box::new(pd.clone())),
                };
                let cm = Arc::new(ConcurrencyManager::new(tso.clone()));
                let raft = RaftStore::start_with(
                    engine.clone(),
                    cm.clone(),
                    Arc::new(LockManager::default()),
                    config.clone(),
                    setup,
                )
                .unwrap();
                Store {
                    raft,
                    engine,
                    cm,
                    server: None,
                    _dir: dir,
                }
            })
            .collect();
        Cluster {
            net: Arc::default(),
            stores,
            tso,
            pd,
            config,
            _tso_dir: tso_dir,
        }
    }

    /// Starts store `id`'s Raft thread on `engine` with no bootstrap region (it holds what the
    /// engine holds, or nothing), joined to the network.
    fn launch(
        &self,
        id: u64,
        engine: &Arc<Engine>,
        cm: &Arc<ConcurrencyManager>,
    ) -> Arc<RaftStore> {
        let setup = StoreSetup {
            store_id: id,
            bootstrap: Vec::new(),
            transport: Box::new(Link {
                net: self.net.clone(),
                from: id,
            }),
            pd: Some(Box::new(self.pd.clone())),
        };
        let raft = RaftStore::start_with(
            engine.clone(),
            cm.clone(),
            Arc::new(LockManager::default()),
            self.config.clone(),
            setup,
        )
        .unwrap();
        self.net
            .mailboxes
            .lock()
            .unwrap()
            .insert(id, raft.mailbox());
        raft
    }

    /// Stops store `id` and starts it again on its engine and log, as a process restart does:
    /// what it kept only in memory (whom it heard from lately) is gone.
    fn restart(&mut self, id: u64) {
        let i = (id - 1) as usize;
        self.net.mailboxes.lock().unwrap().remove(&id);
        let Store {
            raft,
            engine,
            cm,
            server,
            _dir,
        } = self.stores.remove(i);
        assert_eq!(Arc::strong_count(&raft), 1, "store {id} is still in use");
        drop(raft); // stops its thread
        let raft = self.launch(id, &engine, &cm);
        self.stores.insert(
            i,
            Store {
                raft,
                engine,
                cm,
                server,
                _dir,
            },
        );
    }

    /// Starts store `id` (the next one) with no replica, on the same network: how a store
    /// joins a running cluster.
    fn add_store(&mut self, id: u64) {
        assert_eq!(
            id as usize,
            self.stores.len() + 1,
            "stores are added in order"
        );
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(dir.path()).unwrap();
        let engine = Arc::new(engine);
        let cm = Arc::new(ConcurrencyManager::new(self.tso.clone()));
        let raft = self.launch(id, &engine, &cm);
        self.stores.push(Store {
            raft,
            engine,
            cm,
            server: None,
            _dir: dir,
        });
    }

    fn store(&self, id: u64) -> &Store {
        &self.stores[(id - 1) as usize]
    }

    /// The store whose peer leads and may serve, among `among`, within 10 s.
    fn leader_among(&self, among: &[u64]) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for &id in among {
                if self
                    .store(id)
                    .raft
                    .status(REGION)
                    .is_some_and(|s| s.is_ready_leader)
                {
                    return id;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader among stores {among:?} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes `key = value` as a committed version through store `id`'s Raft group of the
    /// region holding `key`.
    async fn put(&self, id: u64, key: &str, value: &str) -> Result<(), TxnError> {
        let ts = self.tso.next().unwrap();
        let value = value.as_bytes().to_vec();
        self.apply(id, key, move |txn, key| {
            txn.put_write(key, ts, Write::new(WriteType::Put, ts, value.clone()))
        })
        .await
    }

    /// Applies the changes `change` makes to `key` through store `id`'s Raft group of the
    /// region holding `key`.
    async fn apply(
        &self,
        id: u64,
        key: &str,
        change: impl FnOnce(&mut MvccTxn, &Key) + Send + 'static,
    ) -> Result<(), TxnError> {
        let region = self.store(id).raft.region_of(key.as_bytes());
        let key = Key::from_raw(key.as_bytes());
        Scheduler::new(self.store(id).raft.clone())
            .run(region, move |ctx| {
                let mut txn = MvccTxn::default();
                change(&mut txn, &key);
                ctx.apply(txn)
            })
            .await
    }

    /// What store `id`'s engine holds for `key` now, without asking Raft.
    fn local(&self, id: u64, key: &str) -> Option<String> {
        let snap = self.store(id).engine.snapshot().unwrap();
        MvccReader::new(&snap.lock, &snap.write)
            .get(&Key::from_raw(key.as_bytes()), TimeStamp::max(), &[])
            .unwrap()
            .unwrap()
            .map(|v| String::from_utf8(v).unwrap())
    }

    /// A linearizable read through store `id`: a read index first, then the engine.
    async fn read(&self, id: u64, key: &str) -> Result<Option<String>, TxnError> {
        let region = self.store(id).raft.region_of(key.as_bytes());
        self.store(id).raft.read_index(region).await?;
        Ok(self.local(id, key))
    }

    /// Waits (up to 10 s) until store `id`'s engine holds `value` for `key`.
    fn wait_local(&self, id: u64, key: &str, value: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.local(id, key).as_deref() != Some(value) {
            assert!(
                Instant::now() < deadline,
                "store {id} never applied {key} = {value} (has {:?})",
                self.local(id, key)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// PD as far as the stores need it here: ids from one counter shared by the stores, and the
/// regions their leaders last reported (what a removed replica asks about).
#[derive(Clone)]
struct TestPd {
    ids: Arc<AtomicU64>,
    regions: Arc<Mutex<HashMap<u64, metapb::Region>>>,
}

impl Default for TestPd {
    fn default() -> Self {
        TestPd {
            ids: Arc::new(AtomicU64::new(1000)),
            regions: Arc::default(),
        }
    }
}

impl PdLink for TestPd {
    fn report(&self, report: storage_node::pd::cluster::RegionReport) {
        let mut regions = self.regions.lock().unwrap();
        let newer = |have: &metapb::Region| {
            let (a, b) = (
                have.region_epoch.unwrap(),
                report.region.region_epoch.unwrap(),
            );
            (b.conf_ver, b.version) >= (a.conf_ver, a.version)
        };
        if regions.get(&report.region.id).is_none_or(newer) {
            regions.insert(report.region.id, report.region);
        }
    }

    fn ask_split(&self, region: &metapb::Region) -> Result<(u64, Vec<u64>), String> {
        let next = || self.ids.fetch_add(1, Ordering::SeqCst);
        Ok((next(), region.peers.iter().map(|_| next()).collect()))
    }

    fn report_split(&self, _: Vec<metapb::Region>) {}

    fn region_by_id(&self, region_id: u64) -> Option<metapb::Region> {
        self.regions.lock().unwrap().get(&region_id).cloned()
    }
}

impl Cluster {
    /// Every store's regions (id, range, epoch), once all three hold the same ones, within 10 s.
    fn agreed_regions(&self, at_least: usize) -> Vec<(u64, Vec<u8>, Vec<u8>, u64)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let views: Vec<Vec<_>> = STORES
                .iter()
                .map(|&id| {
                    let raft = &self.store(id).raft;
                    raft.region_ids()
                        .into_iter()
                        .filter_map(|r| raft.region(r))
                        .map(|r| {
                            let version = r.region_epoch.unwrap().version;
                            (r.id, r.start_key, r.end_key, version)
                        })
                        .collect()
                })
                .collect();
            if views[0].len() >= at_least && views.iter().all(|v| *v == views[0]) {
                return views[0].clone();
            }
            assert!(
                Instant::now() < deadline,
                "the stores never agreed on {at_least}+ regions: {views:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The store leading `region`, within 10 s.
    fn leader_of(&self, region: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for id in STORES {
                if self
                    .store(id)
                    .raft
                    .status(region)
                    .is_some_and(|s| s.is_ready_leader)
                {
                    return id;
                }
            }
            assert!(
                Instant::now() < deadline,
                "region {region} has no leader after 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes `key = value` through whichever store leads its region, retrying region errors
    /// (a split or an election moved it) for up to 10 s, as the TiKV client does. The region
    /// is the one the leading store routes the key to (a lagging store's map may be older).
    async fn put_anywhere(&self, key: &str, value: &str) {
        let ts = self.tso.next().unwrap();
        let value = value.as_bytes().to_vec();
        self.apply_anywhere(key, move |txn, key| {
            txn.put_write(key, ts, Write::new(WriteType::Put, ts, value.clone()))
        })
        .await
    }

    /// [`Cluster::apply`] through whichever store leads `key`'s region, retried (up to 10 s)
    /// while the region has no leader or moves.
    async fn apply_anywhere(
        &self,
        key: &str,
        change: impl Fn(&mut MvccTxn, &Key) + Clone + Send + 'static,
    ) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let leader = STORES.iter().copied().find(|&id| {
                let raft = &self.store(id).raft;
                raft.status(raft.region_of(key.as_bytes()))
                    .is_some_and(|s| s.is_ready_leader)
            });
            let Some(leader) = leader else {
                assert!(
                    Instant::now() < deadline,
                    "no store leads the region of {key}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            match self.apply(leader, key, change.clone()).await {
                Ok(()) => return,
                Err(TxnError::Region(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("{key}: {e}"),
            }
        }
    }

    /// Whether store `id`'s engine holds a lock on `key` now.
    fn locked(&self, id: u64, key: &str) -> bool {
        let snap = self.store(id).engine.snapshot().unwrap();
        MvccReader::new(&snap.lock, &snap.write)
            .load_lock(&Key::from_raw(key.as_bytes()))
            .unwrap()
            .is_some()
    }
}

fn others(id: u64) -> Vec<u64> {
    STORES.iter().copied().filter(|&s| s != id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_stores_elect_a_leader_and_every_replica_applies_a_write() {
    let c = Cluster::start(config());
    let leader = c.leader_among(&STORES);
    c.put(leader, "k", "v1").await.expect("the leader commits");
    for id in STORES {
        c.wait_local(id, "k", "v1");
    }
    for follower in others(leader) {
        let err = c
            .put(follower, "k", "v2")
            .await
            .expect_err("followers refuse");
        assert!(err.to_string().contains("not its leader"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_acknowledges_nothing_and_the_majority_carries_on() {
    let c = Cluster::start(config());
    let old = c.leader_among(&STORES);
    c.put(old, "before", "1").await.unwrap();
    c.net.isolate(old, &STORES);

    let started = Instant::now();
    let lost = c.put(old, "lost", "x").await;
    assert!(
        lost.is_err(),
        "a leader cut off from its quorum acknowledged a write"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the minority write was answered only after {:?}",
        started.elapsed()
    );

    let new = c.leader_among(&others(old));
    c.put(new, "after", "2")
        .await
        .expect("the majority commits");
    c.net.heal();
    c.wait_local(old, "after", "2");
    for id in STORES {
        assert_eq!(
            c.local(id, "lost"),
            None,
            "store {id} applied a write that was never committed"
        );
        c.wait_local(id, "before", "1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_never_serves_a_read_even_unaware_that_it_was_deposed() {
    // Without check-quorum the old leader never steps down by itself: it keeps believing it
    // leads, and only the read index protocol stands between it and a stale answer.
    let c = Cluster::start(RaftConfig {
        check_quorum: false,
        ..config()
    });
    let old = c.leader_among(&STORES);
    c.put(old, "k", "old").await.unwrap();
    c.net.isolate(old, &STORES);
    let new = c.leader_among(&others(old));
    c.put(new, "k", "new").await.unwrap();
    assert_eq!(c.read(new, "k").await.unwrap().as_deref(), Some("new"));

    let status = c.store(old).raft.status(REGION).unwrap();
    assert!(
        status.is_ready_leader,
        "the test needs the old leader still believing it leads: {status:?}"
    );
    match c.read(old, "k").await {
        Err(e) => assert!(e.to_string().contains("stale command"), "{e}"),
        Ok(v) => panic!("the deposed leader served a read: {v:?} (the majority has \"new\")"),
    }
    c.net.heal();
    c.wait_local(old, "k", "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_serves_reads_in_its_lease_without_the_quorum_and_not_after_it() {
    let c = Cluster::start(config());
    let span = c.config.lease_span();
    assert!(!span.is_zero(), "lease reads are on by default");
    let old = c.leader_among(&STORES);
    c.put(old, "k", "old").await.unwrap();
    let asked = Instant::now();
    c.read(old, "k").await.unwrap(); // a read index: the quorum confirms, the lease starts
    c.net.isolate(old, &STORES);

    let t = Instant::now();
    let v = c
        .read(old, "k")
        .await
        .expect("a read in the lease needs no quorum");
    assert_eq!(v.as_deref(), Some("old"));
    assert!(
        asked.elapsed() < span && t.elapsed() < Duration::from_millis(100),
        "the test needs that read inside the lease ({span:?}); it took {:?}",
        t.elapsed()
    );

    // A follower may vote an election timeout less one tick after it last heard from the
    // leader, so by then the lease must be over: the cut-off leader (which steps down only an
    // election timeout after the cut, at the earliest) has to ask the quorum, and cannot.
    let must_end = asked + c.config.election_timeout() - c.config.tick;
    tokio::time::sleep_until(must_end.into()).await;
    let late = c.read(old, "k").await;
    assert!(
        late.is_err(),
        "a read {:?} after the lease began, cut off from the quorum, was served: {late:?}",
        must_end - asked
    );
    let new = c.leader_among(&others(old));
    c.put(new, "k", "new").await.unwrap();
    c.net.heal();
    c.wait_local(old, "k", "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_began_a_transfer_has_no_lease_even_unaware_that_it_was_deposed() {
    // A transfer's candidate is elected at once, whatever leases the voters keep. The old
    // leader here hears nothing after it sent the transfer, so it still believes it leads.
    let c = Cluster::start(config());
    let old = c.leader_among(&STORES);
    c.put(old, "k", "old").await.unwrap();
    let asked = Instant::now();
    c.read(old, "k").await.unwrap(); // the lease starts
    let to = others(old)[0];
    c.net.deafen(old, &STORES);
    c.store(old).raft.transfer_leader(REGION, 10 + to);
    let new = c.leader_among(&[to]);
    c.put(new, "k", "new").await.unwrap();
    assert!(
        asked.elapsed() < c.config.lease_span(),
        "the test needs the old lease still running: {:?}",
        asked.elapsed()
    );
    let status = c.store(old).raft.status(REGION).unwrap();
    assert_eq!(
        status.leader_id,
        10 + old,
        "the old leader must not know yet: {status:?}"
    );
    if let Ok(v) = c.read(old, "k").await {
        assert_ne!(
            v.as_deref(),
            Some("old"),
            "stale read: the old leader used its lease after it began a transfer (the majority has \"new\")"
        );
    }
    c.net.heal();
    c.wait_local(old, "k", "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_store_grants_no_vote_for_an_election_timeout() {
    // A leader's lease counts on the followers that acknowledged it voting for nobody else
    // for an election timeout. One that restarts forgets it heard from the leader, so it must
    // hold its votes that long by itself (tikv#15035).
    let mut c = Cluster::start(config());
    let leader = c.leader_among(&STORES);
    c.put(leader, "k", "v").await.unwrap();
    let (voter, candidate) = (others(leader)[0], others(leader)[1]);
    // It never hears from the leader again: nothing but its restart keeps it from voting (a
    // peer that heard from a leader lately ignores vote requests anyway).
    c.net.deafen(voter, &[leader]);
    c.restart(voter);
    let restarted = Instant::now();
    let status = c.store(voter).raft.status(REGION).unwrap();
    // A pre-vote for the next term from a peer whose log is as long as the voter's: a peer
    // that knows of no leader grants it.
    let ask = |c: &Cluster| {
        let mut m = raft::eraftpb::Message::default();
        m.set_msg_type(MessageType::MsgRequestPreVote);
        m.from = 10 + candidate;
        m.to = 10 + voter;
        m.term = status.term + 1;
        m.index = status.last_index;
        m.log_term = status.term;
        let peer = |store: u64| metapb::Peer {
            id: 10 + store,
            store_id: store,
            ..Default::default()
        };
        c.store(voter).raft.mailbox().deliver(RaftMessage {
            region_id: REGION,
            from: peer(candidate),
            to: peer(voter),
            message: m,
        });
    };
    let answers = |c: &Cluster| {
        c.net
            .tap
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|(t, from, to)| {
                *t == MessageType::MsgRequestPreVoteResponse
                    && *from == 10 + voter
                    && *to == 10 + candidate
            })
            .count()
    };
    *c.net.tap.lock().unwrap() = Some(Vec::new());
    ask(&c);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        restarted.elapsed() < c.config.election_timeout(),
        "the test needs the request answered (or not) within an election timeout of the restart"
    );
    assert_eq!(
        answers(&c),
        0,
        "store {voter} answered a vote request {:?} after it restarted",
        restarted.elapsed()
    );
    std::thread::sleep(
        (restarted + c.config.election_timeout()).saturating_duration_since(Instant::now()),
    );
    ask(&c);
    let deadline = Instant::now() + Duration::from_secs(2);
    while answers(&c) == 0 {
        assert!(
            Instant::now() < deadline,
            "store {voter} still answers no vote request an election timeout after its restart"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    c.net.heal();
    c.put(leader, "k2", "v2")
        .await
        .expect("the group still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_missed_entries_catches_up_from_the_log() {
    let c = Cluster::start(config());
    let leader = c.leader_among(&STORES);
    let lagging = others(leader)[0];
    c.net.isolate(lagging, &STORES);
    for i in 0..10 {
        c.put(leader, &format!("k{i}"), &i.to_string())
            .await
            .unwrap();
    }
    assert_eq!(c.local(lagging, "k9"), None);
    c.net.heal();
    for i in 0..10 {
        c.wait_local(lagging, &format!("k{i}"), &i.to_string());
    }
    let s = c.store(lagging).raft.status(REGION).unwrap();
    assert_eq!(s.first_index, 1, "caught up by log, not by snapshot: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_a_compacted_log_catches_up_from_a_snapshot() {
    let c = Cluster::start(RaftConfig {
        log_gc_threshold: 5,
        ..config()
    });
    let leader = c.leader_among(&STORES);
    let lagging = others(leader)[0];
    c.net.isolate(lagging, &STORES);
    for i in 0..60 {
        c.put(leader, &format!("k{i}"), &i.to_string())
            .await
            .unwrap();
    }
    let behind = c.store(lagging).raft.status(REGION).unwrap();
    let ahead = c.store(leader).raft.status(REGION).unwrap();
    assert!(
        ahead.first_index > behind.last_index + 1,
        "the leader must have compacted past the follower: {ahead:?} vs {behind:?}"
    );
    c.net.heal();
    for i in 0..60 {
        c.wait_local(lagging, &format!("k{i}"), &i.to_string());
    }
    let s = c.store(lagging).raft.status(REGION).unwrap();
    assert!(
        s.first_index > 1,
        "the follower restarted its log at a snapshot: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_grpc_three_stores_elect_a_leader_and_replicate() {
    let c = Cluster::start_over_grpc(config()).await;
    let leader = c.leader_among(&STORES);
    for (i, value) in ["v1", "v2", "v3"].into_iter().enumerate() {
        c.put(leader, &format!("k{i}"), value)
            .await
            .expect("the leader commits");
    }
    for id in STORES {
        for (i, value) in ["v1", "v2", "v3"].into_iter().enumerate() {
            c.wait_local(id, &format!("k{i}"), value);
        }
    }
    assert!(c.store(leader).server.is_some());
}

/// A split under load: writes keep arriving while the region outgrows the policy. Every
/// replica ends with the same regions (the split applied at the same log position on each),
/// each region elects a leader, and every acknowledged write is on every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_split_under_load_keeps_every_write_on_every_replica() {
    let c = Cluster::start(RaftConfig {
        split: SplitPolicy {
            max_keys: 40,
            max_bytes: u64::MAX,
        },
        split_check_ticks: 2,
        ..config()
    });
    c.leader_among(&STORES);
    let keys: Vec<String> = (0..120).map(|i| format!("k{i:03}")).collect();
    for k in &keys {
        c.put_anywhere(k, k).await;
    }
    let regions = c.agreed_regions(2);
    assert!(regions.len() >= 2, "no split after 120 keys: {regions:?}");
    assert!(
        regions.iter().all(|r| r.3 > 1),
        "every region's version moved past 1 after splitting: {regions:?}"
    );
    for k in &keys {
        for id in STORES {
            c.wait_local(id, k, k);
        }
    }
    // Both halves serve writes through their own leaders.
    for r in &regions {
        let leader = c.leader_of(r.0);
        assert!(c.store(leader).raft.status(r.0).unwrap().is_ready_leader);
    }
    c.put_anywhere("k000", "again").await;
    c.put_anywhere("k119", "again").await;
    for id in STORES {
        c.wait_local(id, "k000", "again");
        c.wait_local(id, "k119", "again");
    }
}

/// A split on request (`SplitRegion`): at a key inside the region it happens; at the region's
/// start it is a no-op; with a stale epoch, or outside the region, it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_on_request_checks_its_epoch_and_key() {
    let c = Cluster::start(config());
    let leader = c.leader_among(&STORES);
    let raft = &c.store(leader).raft;
    let before = raft.region(REGION).unwrap().region_epoch;
    let regions = raft.split(REGION, before, b"m").await.expect("split at m");
    assert_eq!(regions.len(), 2);
    assert_eq!(regions[1].id, REGION, "the parent keeps the right half");
    let stale = raft.split(REGION, before, b"t").await.unwrap_err();
    assert!(
        matches!(
            stale,
            storage_node::raftstore::RegionError::EpochNotMatch { .. }
        ),
        "{stale:?}"
    );
    let outside = raft.split(REGION, None, b"a").await.unwrap_err();
    assert!(outside.to_string().contains("outside"), "{outside}");
    c.agreed_regions(2);
    c.put_anywhere("a", "left").await;
    c.put_anywhere("z", "right").await;
    for id in STORES {
        c.wait_local(id, "a", "left");
        c.wait_local(id, "z", "right");
    }
}

/// A follower cut off while its region split, and while the leaders compacted their logs past
/// it, comes back: it gets the parent's new (smaller) range by snapshot, and a peer of the new
/// region — which it never saw created — is made from the new leader's messages and filled by
/// snapshot too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_missed_a_split_gets_both_regions_by_snapshot() {
    let config = RaftConfig {
        log_gc_threshold: 5,
        ..config()
    };
    let c = Cluster::start(config);
    let leader = c.leader_among(&STORES);
    let lagging = others(leader)[0];
    c.net.isolate(lagging, &STORES);
    for i in 0..20 {
        c.put_anywhere(&format!("a{i:02}"), "x").await;
    }
    let regions = c
        .store(leader)
        .raft
        .split(REGION, None, b"m")
        .await
        .expect("split at m");
    assert_eq!(regions.len(), 2);
    for i in 0..40 {
        c.put_anywhere(&format!("a{i:02}"), "y").await;
        c.put_anywhere(&format!("z{i:02}"), "y").await;
    }
    c.net.heal();
    c.agreed_regions(2);
    for i in 0..40 {
        c.wait_local(lagging, &format!("a{i:02}"), "y");
        c.wait_local(lagging, &format!("z{i:02}"), "y");
    }
}

/// A store that missed a split hears of the new region before its replica of the parent
/// applied the split (the parent's catch-up is held back here). The new region's snapshot
/// overlaps the parent's range on that store, so the store must not take it: the parent still
/// has to replay its entries from before the split, and one of them locks a key the snapshot
/// shows committed, so taking the snapshot first would leave a lock that no transaction owns.
/// TiKV drops such a snapshot for the same reason (`check_snapshot`: it overlaps an existing
/// region); the new region's leader sends another once the split made room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_takes_no_snapshot_overlapping_a_region_it_holds_until_the_split_applied() {
    let c = Cluster::start(config());
    let leader = c.leader_among(&STORES);
    let lagging = others(leader)[0];
    c.net.isolate(lagging, &STORES);
    // A transaction locks "a" before the split and commits after it, in the new region.
    let start = c.tso.next().unwrap();
    c.apply_anywhere("a", move |txn, key| {
        let lock = Lock::new(LockType::Put, key.clone(), start, 3000, b"v".to_vec());
        txn.put_lock(key, lock)
    })
    .await;
    c.store(leader)
        .raft
        .split(REGION, None, b"m")
        .await
        .expect("split at m");
    let child = c.store(leader).raft.region_of(b"a");
    assert_ne!(child, REGION, "the split made a new region for \"a\"");
    let commit = c.tso.next().unwrap();
    c.apply_anywhere("a", move |txn, key| {
        txn.unlock(key);
        txn.put_write(
            key,
            commit,
            Write::new(WriteType::Put, start, b"v".to_vec()),
        );
    })
    .await;
    assert!(!c.locked(leader, "a"));

    // The lagging store hears the new region's leader, but nothing of the parent yet.
    c.net.hold(lagging, REGION);
    c.net.heal();
    let deadline = Instant::now() + Duration::from_secs(10);
    let snapshot_sent = || c.net.snapshots.lock().unwrap().contains(&(child, lagging));
    while !snapshot_sent() {
        assert!(
            Instant::now() < deadline,
            "the new region's leader sent store {lagging} no snapshot in 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Time to take it, were it taken.
    std::thread::sleep(Duration::from_millis(300));
    c.net.release();
    c.put_anywhere("z", "after").await;
    c.wait_local(lagging, "z", "after");
    c.agreed_regions(2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.locked(lagging, "a") {
        assert!(
            Instant::now() < deadline,
            "store {lagging} holds a lock on \"a\" that no transaction owns (it was committed in the new region)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    c.wait_local(lagging, "a", "v");
}

/// A replica moves from store `gone` to a new store 4 the way PD moves one: a learner first
/// (it catches up by snapshot: the log was compacted long before it joined), promoted to voter,
/// then the old replica removed. The new store then counts in the quorum (writes commit with
/// the old third store cut off), and the removed replica destroys itself and its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_moves_to_a_new_store_learner_then_voter_then_the_old_one_removed() {
    use raft::eraftpb::ConfChangeType::{AddLearnerNode, AddNode, RemoveNode};
    let mut c = Cluster::start(RaftConfig {
        log_gc_threshold: 5,
        ..config()
    });
    let leader = c.leader_among(&STORES);
    for i in 0..40 {
        c.put(leader, &format!("k{i}"), &i.to_string())
            .await
            .unwrap();
    }
    c.add_store(4);
    let raft = c.store(leader).raft.clone();
    let newcomer = metapb::Peer {
        id: 2000,
        store_id: 4,
        ..Default::default()
    };
    let region = raft
        .change_peer_and_wait(REGION, AddLearnerNode, newcomer)
        .await
        .expect("the learner is added");
    let learner = region.peers.iter().find(|p| p.id == 2000).unwrap();
    assert_eq!(learner.role, metapb::PeerRole::Learner as i32);
    assert_eq!(region.region_epoch.unwrap().conf_ver, 2, "conf_ver + 1");
    for i in 0..40 {
        c.wait_local(4, &format!("k{i}"), &i.to_string());
    }
    let s4 = c.store(4).raft.status(REGION).unwrap();
    assert!(
        s4.first_index > 1,
        "the learner started from a snapshot: {s4:?}"
    );

    // A second change while one is under way is refused by Raft's one-at-a-time rule only
    // before it applies; this one applied, so promotion goes ahead.
    raft.change_peer_and_wait(REGION, AddNode, newcomer)
        .await
        .expect("the learner is promoted");
    let gone = others(leader)[0];
    let stays = others(leader)[1];
    let gone_peer = raft
        .region(REGION)
        .unwrap()
        .peers
        .into_iter()
        .find(|p| p.store_id == gone)
        .unwrap();
    let err = raft
        .change_peer_and_wait(
            REGION,
            RemoveNode,
            raft.region(REGION)
                .unwrap()
                .peers
                .into_iter()
                .find(|p| p.store_id == leader)
                .unwrap(),
        )
        .await
        .expect_err("the leader may not remove itself");
    assert!(err.to_string().contains("transfer the leader"), "{err}");
    let region = raft
        .change_peer_and_wait(REGION, RemoveNode, gone_peer)
        .await
        .expect("the old replica is removed");
    let stores: HashSet<u64> = region.peers.iter().map(|p| p.store_id).collect();
    assert_eq!(stores, HashSet::from([leader, stays, 4]));
    assert_eq!(region.region_epoch.unwrap().conf_ver, 4);

    // The removed replica learns it from PD (its group no longer talks to it) and destroys
    // itself, data included.
    let deadline = Instant::now() + Duration::from_secs(15);
    while c.store(gone).raft.region(REGION).is_some() || c.local(gone, "k0").is_some() {
        assert!(
            Instant::now() < deadline,
            "store {gone} still holds its removed replica after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Store 4 is a voter now: with store `stays` cut off, the leader and store 4 are a quorum.
    c.net.isolate(stays, &[leader, gone, 4]);
    c.put(leader, "after", "move")
        .await
        .expect("the leader and the new store commit without the third");
    c.wait_local(4, "after", "move");
    assert_eq!(c.local(stays, "after"), None);
    c.net.heal();
    c.wait_local(stays, "after", "move");
}

/// A store cut off by its own partition filter (what `POST /lab/v1/partition` sets: no proxy,
/// the store drops Raft messages to and from the others) loses the region: it commits nothing,
/// the other two elect a leader and carry on, and once healed it catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_partitioned_by_its_filter_commits_nothing_and_catches_up_when_healed() {
    let c = Cluster::start(config());
    let leader = c.leader_among(&STORES);
    c.put(leader, "k", "before").await.unwrap();
    c.store(leader).raft.net_filter().set(others(leader));
    let err = c
        .put(leader, "k", "minority")
        .await
        .expect_err("a leader cut off from both followers commits nothing");
    eprintln!("the cut-off leader answered: {err}");
    let new = c.leader_among(&others(leader));
    c.put(new, "k", "majority")
        .await
        .expect("the majority commits");
    assert!(
        c.read(leader, "k").await.is_err(),
        "the cut-off store serves no read"
    );
    assert_eq!(c.local(leader, "k").as_deref(), Some("before"));
    c.store(leader).raft.net_filter().set([]);
    c.wait_local(leader, "k", "majority");
}

/// A new leader cannot know which timestamps its predecessor served reads at, so before it
/// takes a one-phase or async-commit write (whose commit timestamp comes from the store's
/// max_ts) it raises max_ts from the TSO. Otherwise a commit could land at or below a
/// timestamp the old leader already answered a read for, and that read would have missed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_syncs_max_ts_from_the_tso_before_it_serves() {
    let c = Cluster::start(config());
    let old = c.leader_among(&STORES);
    let read_ts = c.tso.next().unwrap();
    // A read served by the old leader at `read_ts` (what KvGet does to max_ts).
    c.store(old).cm.update_max_ts(read_ts);
    c.net.isolate(old, &STORES);
    let new = c.leader_among(&others(old));
    assert!(
        c.store(new).cm.max_ts() > read_ts,
        "store {new} leads and may take writes, but its max_ts {:?} is not above the read the old leader served at {read_ts:?}",
        c.store(new).cm.max_ts()
    );
}
