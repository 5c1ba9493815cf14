//! Model-based test of the replicated tier under faults, in the style of Jepsen and TinyKV:
//! PD plus three stores in this process (loopback ports), driven by SurrealDB's own TiKV
//! client, with a nemesis acting between the client's operations.
//!
//! **What it runs.** Random histories of optimistic transactions putting or deleting one to
//! three keys of a small key set (each commit path: 1PC, async commit, two-phase commit) and
//! snapshot reads of one or two keys, interleaved with faults: a store cut off from the other
//! two by its partition filter (any store, or the one leading a key's region), a store
//! stopped and later restarted on the same data folder and address (any, or a leader's), a
//! region split at a key, and healing. At most one store is down or cut off at a time, so a
//! majority of every region's replicas always remains.
//!
//! **What it claims.** The tier is linearizable at the transaction's snapshot, and a fault
//! loses nothing acknowledged:
//!
//! - the model is the set of *possible worlds* (key → value) the history allows: an
//!   acknowledged commit applies in every world; a failed commit is *unknown* (it may have
//!   applied, or may still be resolved as committed by the next reader), so every world forks
//!   into one with it and one without — atomically, all its keys or none;
//! - a successful read must be explained by at least one world, and keeps only those: an
//!   acknowledged write that finished before the read began must be visible, a never-written
//!   or overwritten value must not, and two keys read in one snapshot must come from the same
//!   world (a half-applied transaction is caught);
//! - after healing, PD names a leader for every region, a write to every key commits (the
//!   tier is live again), each key reads back through a fresh client as a world allows, and
//!   the three stores' engines hold the same locks and write records (the replicas agree).
//!
//! **Why.** `model.rs` checks the transaction layer on one `Storage`; the Raft cluster tests
//! check each fault on its own with hand-written expectations. This one lets proptest choose
//! the interleaving of operations and faults, and judges the outcome only by what a client
//! could observe, so a bug in how the raftstore answers writes, serves reads, fails over or
//! catches up shows up as a history no world explains.
//!
//! Reads are retried for a bounded time (a read changes nothing); writes are not (a failed
//! write is unknown). Proptest does not shrink or persist failures here: a history fails by
//! its timing as much as by its operations, so the failing history is printed instead.

#[path = "common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use common::{Mode, options};
use proptest::prelude::*;
use redb::ReadableTable;
use storage_node::raftstore::RaftConfig;
use storage_node::roles::pd::{PdConfig, PdNode};
use storage_node::roles::store::{StoreConfig, StoreNode};
use storage_node::storage::Storage;
use tikv_client::TransactionClient;

/// The key set: small, so transactions overlap and reads meet recent writes.
const KEYS: usize = 6;
const STORES: usize = 3;

fn key(i: usize) -> Vec<u8> {
    format!("m{i}").into_bytes()
}

/// One step of a history.
#[derive(Clone, Debug)]
enum Op {
    /// A transaction: each key put (true) or deleted (false).
    Write(Mode, Vec<(usize, bool)>),
    /// One snapshot reading these keys.
    Read(Vec<usize>),
    /// Cut store `i` off from the other two.
    Partition(usize),
    /// Cut off the store leading the region of key `k`.
    PartitionLeader(usize),
    /// Stop store `i`.
    Kill(usize),
    /// Stop the store leading the region of key `k`.
    KillLeader(usize),
    /// Heal the partition, restart the stopped store.
    Heal,
    /// Split the region holding key `k` at `k`.
    Split(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let mode = prop_oneof![
        Just(Mode::OnePc),
        Just(Mode::AsyncCommit),
        Just(Mode::TwoPc)
    ];
    // Mostly puts: a delete of an absent key shows a reader nothing.
    let muts = prop::collection::btree_map(0..KEYS, prop::bool::weighted(0.75), 1..4)
        .prop_map(|m| m.into_iter().collect::<Vec<_>>());
    let reads = prop::collection::btree_set(0..KEYS, 1..3).prop_map(|s| s.into_iter().collect());
    prop_oneof![
        8 => (mode, muts).prop_map(|(m, w)| Op::Write(m, w)),
        5 => reads.prop_map(Op::Read),
        1 => (0..STORES).prop_map(Op::Partition),
        1 => (0..KEYS).prop_map(Op::PartitionLeader),
        1 => (0..STORES).prop_map(Op::Kill),
        1 => (0..KEYS).prop_map(Op::KillLeader),
        1 => Just(Op::Heal),
        1 => (0..KEYS).prop_map(Op::Split),
    ]
}

/// The value a write puts: unique per write, so a read names the write it saw.
fn value(op: usize) -> Vec<u8> {
    format!("w{op}").into_bytes()
}

/// A world: each key's value (the id of the write that put it), `None` when absent.
type World = Vec<Option<usize>>;

/// Every world the history so far allows.
struct Model {
    worlds: BTreeSet<World>,
}

impl Model {
    fn new() -> Model {
        Model {
            worlds: BTreeSet::from([vec![None; KEYS]]),
        }
    }

    fn apply(world: &mut World, id: usize, muts: &[(usize, bool)]) {
        for &(k, put) in muts {
            world[k] = put.then_some(id);
        }
    }

    /// An acknowledged commit: it applied in every world.
    fn acknowledged(&mut self, id: usize, muts: &[(usize, bool)]) {
        self.worlds = std::mem::take(&mut self.worlds)
            .into_iter()
            .map(|mut w| {
                Self::apply(&mut w, id, muts);
                w
            })
            .collect();
    }

    /// A failed commit: it applied, or it did not.
    fn unknown(&mut self, id: usize, muts: &[(usize, bool)]) {
        let applied: Vec<World> = self
            .worlds
            .iter()
            .map(|w| {
                let mut w = w.clone();
                Self::apply(&mut w, id, muts);
                w
            })
            .collect();
        self.worlds.extend(applied);
    }

    /// A read saw `seen` (per key): keeps the worlds that explain it; false if none does.
    fn observe(&mut self, seen: &[(usize, Option<usize>)]) -> bool {
        let kept: BTreeSet<World> = self
            .worlds
            .iter()
            .filter(|w| seen.iter().all(|(k, v)| w[*k] == *v))
            .cloned()
            .collect();
        if kept.is_empty() {
            return false;
        }
        self.worlds = kept;
        true
    }

    /// What each key may hold now.
    fn allowed(&self) -> BTreeMap<usize, BTreeSet<Option<usize>>> {
        let mut out: BTreeMap<usize, BTreeSet<Option<usize>>> = BTreeMap::new();
        for w in &self.worlds {
            for (k, v) in w.iter().enumerate() {
                out.entry(k).or_default().insert(*v);
            }
        }
        out
    }
}

/// The write id a stored value names.
fn parse(v: Option<Vec<u8>>) -> Result<Option<usize>, String> {
    v.map(|v| {
        std::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.strip_prefix('w'))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("a value no write put: {v:?}"))
    })
    .transpose()
}

/// Values read, as text (`w7` is write 7's value, `-` absent).
fn show(got: &[Option<Vec<u8>>]) -> String {
    got.iter()
        .map(|v| v.as_deref().map_or("-".into(), String::from_utf8_lossy))
        .collect::<Vec<_>>()
        .join(" ")
}

fn raft_config() -> RaftConfig {
    RaftConfig {
        request_timeout: Duration::from_secs(2),
        ..RaftConfig::default()
    }
}

/// An engine table's raw (key, value) pairs.
type Table = Vec<(Vec<u8>, Vec<u8>)>;

/// PD and three stores; a store may be stopped (`None`) or cut off.
struct Tier {
    pd: PdNode,
    stores: Vec<Option<StoreNode>>,
    /// Each store's address, kept across restarts (PD and the others know it by that).
    addrs: Vec<SocketAddr>,
    dirs: Vec<tempfile::TempDir>,
    _pd_dir: tempfile::TempDir,
    cut: Option<usize>,
}

impl Tier {
    async fn start() -> Tier {
        let pd_dir = tempfile::tempdir().unwrap();
        let pd = PdNode::start(PdConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            data_dir: pd_dir.path().to_path_buf(),
            trace: None,
        })
        .await
        .expect("PD starts");
        let mut tier = Tier {
            pd,
            stores: Vec::new(),
            addrs: Vec::new(),
            dirs: Vec::new(),
            _pd_dir: pd_dir,
            cut: None,
        };
        for i in 0..STORES {
            let dir = tempfile::tempdir().unwrap();
            let store = tier
                .start_store(i, "127.0.0.1:0".parse().unwrap(), dir.path())
                .await;
            tier.addrs.push(store.addr);
            tier.dirs.push(dir);
            tier.stores.push(Some(store));
        }
        tier.wait_for_leaders(Duration::from_secs(20))
            .await
            .expect("the first region elects a leader");
        tier
    }

    async fn start_store(&self, i: usize, addr: SocketAddr, dir: &std::path::Path) -> StoreNode {
        let config = StoreConfig {
            addr,
            data_dir: dir.to_path_buf(),
            pd: self.pd.addr.to_string(),
            store_id: i as u64 + 1,
            initial_stores: STORES as u64,
            trace: None,
            raft: raft_config(),
        };
        // A restart may find the port or the data folder still held for a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match StoreNode::start(config.clone()).await {
                Ok(s) => return s,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("store {} not started yet: {e}", i + 1);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("store {} does not start on {addr}: {e}", i + 1),
            }
        }
    }

    fn live(&self) -> impl Iterator<Item = (usize, &StoreNode)> {
        self.stores
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
    }

    fn down(&self) -> Option<usize> {
        self.stores.iter().position(Option::is_none)
    }

    /// The live, connected store leading the region that holds `k`, with the region's id.
    async fn leader_of(&self, k: &[u8]) -> Result<(usize, u64), String> {
        let encoded = storage_node::mvcc::keys::encode_bytes(k);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(region) = self.pd.cluster.region_by_key(&encoded) {
                let id = region.region.id;
                if let Some((i, _)) = self.live().find(|(i, s)| {
                    Some(*i) != self.cut
                        && s.storage.peer_status(id).is_some_and(|p| p.is_ready_leader)
                }) {
                    return Ok((i, id));
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no live store leads the region of {k:?} within 10 s"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether PD names, for every region, a leader that is a live store leading it now.
    fn pd_names_live_leaders(&self) -> bool {
        let regions = self.pd.cluster.regions();
        !regions.is_empty()
            && regions.iter().all(|r| {
                r.leader.as_ref().is_some_and(|l| {
                    let i = l.store_id as usize - 1;
                    Some(i) != self.cut
                        && self.stores[i].as_ref().is_some_and(|s| {
                            s.storage
                                .peer_status(r.region.id)
                                .is_some_and(|p| p.is_ready_leader)
                        })
                })
            })
    }

    async fn wait_for_leaders(&self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        while !self.pd_names_live_leaders() {
            if Instant::now() >= deadline {
                let regions: Vec<_> = self
                    .pd
                    .cluster
                    .regions()
                    .iter()
                    .map(|r| (r.region.id, r.leader.as_ref().map(|l| l.store_id)))
                    .collect();
                return Err(format!(
                    "PD did not name a live leader for every region within {limit:?}: (region, leader store) {regions:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// At most one store is down or cut off: heal whatever is before a new fault.
    async fn heal(&mut self) {
        if let Some(i) = self.cut.take()
            && let Some(s) = &self.stores[i]
        {
            s.storage.net_filter().set([]);
        }
        if let Some(i) = self.down() {
            let store = self
                .start_store(i, self.addrs[i], self.dirs[i].path())
                .await;
            self.stores[i] = Some(store);
        }
    }

    async fn partition(&mut self, i: usize) {
        self.heal().await;
        let others = (0..STORES).filter(|j| *j != i).map(|j| j as u64 + 1);
        self.stores[i]
            .as_ref()
            .expect("healed: every store runs")
            .storage
            .net_filter()
            .set(others);
        self.cut = Some(i);
    }

    /// Stops store `i` and waits until its storage is gone (its data folder closed).
    async fn kill(&mut self, i: usize) -> Result<(), String> {
        self.heal().await;
        let store = self.stores[i].take().expect("healed: every store runs");
        let storage: Weak<Storage> = Arc::downgrade(&store.storage);
        store.stop().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while storage.strong_count() > 0 {
            if Instant::now() >= deadline {
                return Err(format!(
                    "store {}'s storage still held 10 s after it stopped",
                    i + 1
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Splits the region holding `k` at `k` (unless it starts there), retrying at the leader
    /// of the moment.
    async fn split(&self, k: &[u8]) -> Result<(), String> {
        let encoded = storage_node::mvcc::keys::encode_bytes(k);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (i, region) = self.leader_of(k).await?;
            let store = self.stores[i].as_ref().expect("a leader is live");
            if store
                .storage
                .peer_status(region)
                .is_some_and(|p| p.is_ready_leader)
                && self
                    .pd
                    .cluster
                    .region_by_id(region)
                    .is_some_and(|r| r.region.start_key == encoded)
            {
                return Ok(());
            }
            match store.storage.split(region, None, &[k.to_vec()]).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() < deadline => {
                    eprintln!("split at {k:?} not done yet: {e:?}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(format!("the split at {k:?} failed for 15 s: {e:?}")),
            }
        }
    }

    async fn client(&self) -> TransactionClient {
        TransactionClient::new(vec![self.pd.addr.to_string()])
            .await
            .expect("client connects to PD")
    }

    /// Each live store's locks and write records, as raw (key, value) pairs.
    fn tables(&self) -> Vec<(usize, Table, Table)> {
        let dump = |t: &redb::ReadOnlyTable<&'static [u8], &'static [u8]>| {
            t.iter()
                .unwrap()
                .map(|e| {
                    let (k, v) = e.unwrap();
                    (k.value().to_vec(), v.value().to_vec())
                })
                .collect::<Table>()
        };
        self.live()
            .map(|(i, s)| {
                let snap = s.storage.engine().snapshot().unwrap();
                (i, dump(&snap.lock), dump(&snap.write))
            })
            .collect()
    }

    async fn stop(self) {
        for s in self.stores.into_iter().flatten() {
            s.stop().await;
        }
        self.pd.stop().await;
    }
}

/// One transaction; `Err` when its commit was not acknowledged (its outcome unknown).
async fn write(
    client: &TransactionClient,
    mode: Mode,
    id: usize,
    muts: &[(usize, bool)],
) -> Result<(), String> {
    let mut txn = client
        .begin_with_options(options(mode))
        .await
        .map_err(|e| format!("begin: {e}"))?;
    for &(k, put) in muts {
        let r = if put {
            txn.put(key(k), value(id)).await
        } else {
            txn.delete(key(k)).await
        };
        if let Err(e) = r {
            let _ = txn.rollback().await;
            return Err(format!("buffering: {e}"));
        }
    }
    match tokio::time::timeout(Duration::from_secs(15), txn.commit()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("commit: {e}")),
        Err(_) => Err("commit took over 15 s".into()),
    }
}

/// One snapshot reading `keys` (one attempt).
async fn read_once(
    client: &TransactionClient,
    keys: &[usize],
) -> Result<Vec<Option<Vec<u8>>>, String> {
    let mut txn = client
        .begin_with_options(options(Mode::TwoPc).read_only())
        .await
        .map_err(|e| format!("begin: {e}"))?;
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        let mut out = Vec::new();
        for &k in keys {
            out.push(txn.get(key(k)).await?);
        }
        Ok::<_, tikv_client::Error>(out)
    })
    .await;
    // Rolled back whatever happened: the client panics when an active transaction is dropped.
    let _ = txn.rollback().await;
    match got {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the read took over 10 s".into()),
    }
}

/// Reads `keys` in one snapshot, retrying for up to 40 s. The TiKV client 0.5 can stick to a
/// dead store it never connected to (a connect error while routing does not invalidate its
/// region cache; see docs/architecture.md): after a second of failures, once PD names
/// live leaders, the read moves to a fresh client, which later operations then use.
async fn read(
    tier: &Tier,
    client: &mut TransactionClient,
    keys: &[usize],
) -> Result<Vec<Option<Vec<u8>>>, String> {
    let start = Instant::now();
    let mut renew_at = start + Duration::from_secs(1);
    let mut last = String::new();
    loop {
        match read_once(client, keys).await {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() < Duration::from_secs(40) => {
                if e != last {
                    eprintln!("read of {keys:?} failed, retrying: {e}");
                    last = e;
                }
                if Instant::now() >= renew_at && tier.pd_names_live_leaders() {
                    eprintln!("a fresh client for the read");
                    *client = tier.client().await;
                    renew_at = Instant::now() + Duration::from_secs(1);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(format!("no read of {keys:?} succeeded in 40 s: {e}")),
        }
    }
}

/// Checks one read against the model.
fn judge(
    model: &mut Model,
    keys: &[usize],
    got: Vec<Option<Vec<u8>>>,
    history: &[String],
) -> Result<(), TestCaseError> {
    let mut seen = Vec::new();
    for (&k, v) in keys.iter().zip(got) {
        seen.push((k, parse(v).map_err(TestCaseError::fail)?));
    }
    if !model.observe(&seen) {
        return Err(TestCaseError::fail(format!(
            "read (key, write id) {seen:?}, which no world allows; each key may hold {:?}\nhistory:\n{}",
            model.allowed(),
            history.join("\n")
        )));
    }
    Ok(())
}

async fn check_history(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let began = Instant::now();
    let mut tier = Tier::start().await;
    let mut client = tier.client().await;
    let mut model = Model::new();
    let mut history: Vec<String> = Vec::new();
    let fail = |what: String, history: &[String]| {
        TestCaseError::fail(format!("{what}\nhistory:\n{}", history.join("\n")))
    };
    for (id, op) in ops.iter().enumerate() {
        match op {
            Op::Write(mode, muts) => {
                let r = write(&client, *mode, id, muts).await;
                match &r {
                    Ok(()) => model.acknowledged(id, muts),
                    Err(_) => {
                        model.unknown(id, muts);
                        // The TiKV client 0.5 can stick to a store that was stopped (a connect
                        // error while routing does not invalidate its region cache; see
                        // docs/architecture.md): every later write fails with "transport
                        // error". Once PD names live leaders, go on with a fresh client.
                        if tier.pd_names_live_leaders() {
                            client = tier.client().await;
                        }
                    }
                }
                history.push(format!("{id}: write {mode:?} {muts:?} -> {r:?}"));
            }
            Op::Read(keys) => {
                let got = read(&tier, &mut client, keys)
                    .await
                    .map_err(|e| fail(e, &history))?;
                history.push(format!("{id}: read {keys:?} -> {}", show(&got)));
                judge(&mut model, keys, got, &history)?;
            }
            Op::Partition(i) => {
                tier.partition(*i).await;
                history.push(format!("{id}: store {} cut off", i + 1));
            }
            Op::PartitionLeader(k) => {
                tier.heal().await;
                let (i, region) = tier
                    .leader_of(&key(*k))
                    .await
                    .map_err(|e| fail(e, &history))?;
                tier.partition(i).await;
                history.push(format!(
                    "{id}: store {} (leading region {region}) cut off",
                    i + 1
                ));
            }
            Op::Kill(i) => {
                tier.kill(*i).await.map_err(|e| fail(e, &history))?;
                history.push(format!("{id}: store {} stopped", i + 1));
            }
            Op::KillLeader(k) => {
                tier.heal().await;
                let (i, region) = tier
                    .leader_of(&key(*k))
                    .await
                    .map_err(|e| fail(e, &history))?;
                tier.kill(i).await.map_err(|e| fail(e, &history))?;
                history.push(format!(
                    "{id}: store {} (leading region {region}) stopped",
                    i + 1
                ));
            }
            Op::Heal => {
                tier.heal().await;
                history.push(format!("{id}: healed"));
            }
            Op::Split(k) => {
                tier.split(&key(*k)).await.map_err(|e| fail(e, &history))?;
                history.push(format!(
                    "{id}: split at {:?}",
                    String::from_utf8_lossy(&key(*k))
                ));
            }
        }
    }

    // Healed: every region has a leader PD names, and the tier takes writes again.
    tier.heal().await;
    history.push("healed for the final check".into());
    tier.wait_for_leaders(Duration::from_secs(20))
        .await
        .map_err(|e| fail(e, &history))?;
    client = tier.client().await;
    let keys: Vec<usize> = (0..KEYS).collect();
    let got = read(&tier, &mut client, &keys)
        .await
        .map_err(|e| fail(e, &history))?;
    history.push(format!("final read {keys:?} -> {}", show(&got)));
    judge(&mut model, &keys, got, &history)?;

    let id = ops.len();
    let muts: Vec<(usize, bool)> = keys.iter().map(|&k| (k, true)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    loop {
        let r = write(&client, Mode::TwoPc, id + attempt, &muts).await;
        history.push(format!("final write {} -> {r:?}", id + attempt));
        match r {
            Ok(()) => {
                model.acknowledged(id + attempt, &muts);
                break;
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("final write not accepted yet: {e}");
                model.unknown(id + attempt, &muts);
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                return Err(fail(
                    format!("no write commits 30 s after healing: {e}"),
                    &history,
                ));
            }
        }
    }
    let got = read(&tier, &mut client, &keys)
        .await
        .map_err(|e| fail(e, &history))?;
    history.push(format!("read after the final write -> {}", show(&got)));
    judge(&mut model, &keys, got, &history)?;

    // The replicas agree: the same locks and write records on all three stores, once the
    // followers applied what the leaders did.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tables = tier.tables();
        let (_, lock0, write0) = &tables[0];
        let differ: Vec<String> = tables[1..]
            .iter()
            .filter(|(_, l, w)| l != lock0 || w != write0)
            .map(|(i, l, w)| {
                format!(
                    "store {} has {} locks, {} write records; store {} has {} and {}",
                    tables[0].0 + 1,
                    lock0.len(),
                    write0.len(),
                    i + 1,
                    l.len(),
                    w.len()
                )
            })
            .collect();
        if differ.is_empty() && tables.len() == STORES {
            break;
        }
        if Instant::now() >= deadline {
            return Err(fail(
                format!("the replicas differ 20 s after healing: {differ:?}"),
                &history,
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(client);
    tier.stop().await;
    let count = |what: &str| history.iter().filter(|h| h.contains(what)).count();
    eprintln!(
        "history of {} steps passed in {:.1?}: {} writes acknowledged, {} unknown, {} reads, {} cut off, {} stopped, {} splits, {} worlds left",
        ops.len(),
        began.elapsed(),
        count("-> Ok(())"),
        count("-> Err("),
        count(": read"),
        count(" cut off"),
        count(" stopped"),
        count(": split at"),
        model.worlds.len(),
    );
    if std::env::var_os("MODEL_HISTORY").is_some() {
        eprintln!("{}", history.join("\n"));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 4,
        max_shrink_iters: 0,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]
    #[test]
    fn the_replicated_tier_matches_the_model_under_faults(ops in prop::collection::vec(op(), 10..25)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(check_history(ops))?;
    }
}
