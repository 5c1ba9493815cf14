//! PD's picture of the cluster: which stores exist, which regions there are, and who leads
//! each — built only from what the stores report, as real PD builds it.
//!
//! Stores register with `PutStore` and say they are alive with `StoreHeartbeat`. Each region's
//! leader sends a `RegionHeartbeat` when it becomes leader and then every second: the region's
//! range, epoch and peers, and itself as leader. Clients ask `GetRegion(key)` and get the region
//! holding the key with the leader last reported, then `GetStore` for its address.
//!
//! PD also *schedules*, as real PD does, by answering a region heartbeat with an operator step
//! the leader carries out. In the order PD looks for work:
//!
//! 1. a **move-peer** operator under way (see [`super::operator`]);
//! 2. a **transfer leader** asked for by a person (`POST /pd/api/v1/operators`);
//! 3. the **replica checker**: a region with a replica on a store being removed
//!    (`DELETE /pd/api/v1/store/{id}`) gets that replica moved to an up store that lacks one;
//! 4. **balance-region**: a replica moves from the store holding the most to one holding two or
//!    more fewer (how a new store fills up);
//! 5. **balance-leader**: a leader moves from the store leading the most regions to the one
//!    leading the fewest once they differ by two or more (TinyKV's `balance_leader`), leaving a
//!    leader a person placed where it is for a minute.
//!
//! A heartbeat is accepted only if it is not older than what PD has: a higher epoch (a split or
//! a membership change happened), or the same epoch with a term at least as high (a newer
//! election). A deposed leader's late heartbeat cannot take the region back.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use super::operator::{Instruction, Operator, Progress};
use crate::proto::metapb;
use crate::raftstore::split::overlaps;

/// Ids below this are the fixed ones of the first region and the initial stores (see
/// [`crate::raftstore::store`]); PD allocates above it.
pub const FIRST_ALLOCATED_ID: u64 = 1000;

/// A store silent for this long is shown as disconnected (real PD: 20 s; stores here
/// heartbeat every second).
pub const STORE_DISCONNECTED_AFTER: Duration = Duration::from_secs(3);

/// A store as PD knows it.
#[derive(Clone, Debug)]
pub struct StoreInfo {
    /// Its id, address and state as it registered.
    pub store: metapb::Store,
    /// When it last heartbeat.
    pub last_heartbeat: Instant,
}

impl StoreInfo {
    /// Whether it heartbeat recently.
    pub fn is_up(&self) -> bool {
        self.last_heartbeat.elapsed() < STORE_DISCONNECTED_AFTER
    }
}

/// A region as its leader last reported it.
#[derive(Clone, Debug)]
pub struct RegionInfo {
    /// Range, epoch and peers.
    pub region: metapb::Region,
    /// The peer that reported as leader.
    pub leader: Option<metapb::Peer>,
    /// The leader's Raft term when it reported.
    pub term: u64,
    /// Approximate number of keys (engine entries) in the region.
    pub approximate_keys: u64,
    /// Approximate bytes.
    pub approximate_size: u64,
    /// When the last heartbeat arrived.
    pub updated: Instant,
    /// Replicas the leader reported as still catching up.
    pub pending_peers: Vec<metapb::Peer>,
}

/// A region heartbeat: what a leader reports.
#[derive(Clone, Debug)]
pub struct RegionReport {
    /// Range, epoch, peers.
    pub region: metapb::Region,
    /// The reporting leader.
    pub leader: metapb::Peer,
    /// Its term.
    pub term: u64,
    /// Approximate keys.
    pub approximate_keys: u64,
    /// Approximate bytes.
    pub approximate_size: u64,
    /// Replicas whose log lags behind what the leader keeps (waiting for a snapshot).
    pub pending_peers: Vec<metapb::Peer>,
}

/// Why a heartbeat was not taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    /// Older than what PD has.
    #[error("stale heartbeat for region {region}: PD has epoch {have:?} term {have_term}")]
    Stale {
        /// The region.
        region: u64,
        /// PD's epoch (conf_ver, version).
        have: (u64, u64),
        /// PD's term.
        have_term: u64,
    },
}

#[derive(Default)]
struct State {
    stores: BTreeMap<u64, StoreInfo>,
    regions: BTreeMap<u64, RegionInfo>,
    /// Region id by start key: the key → region lookup.
    by_start: BTreeMap<Vec<u8>, u64>,
    /// Leader transfers waiting for their region's leader to carry them out: region → the
    /// store to lead it, when the operator was made, and whether a person asked for it.
    transfers: BTreeMap<u64, (u64, Instant, bool)>,
    /// Regions whose leader a person placed: the balancer leaves them alone until then.
    pinned: BTreeMap<u64, Instant>,
    /// Move-peer operators under way, by region.
    operators: BTreeMap<u64, Operator>,
}

/// At most this many replica moves run at once (each copies a region to a new store).
const MAX_MOVES: usize = 4;

fn is_offline(s: &StoreInfo) -> bool {
    s.store.state != metapb::StoreState::Up as i32
}

/// How long the balancer leaves a leader where an operator put it (so a learner who moved a
/// leader sees it stay).
const PIN_AFTER_TRANSFER: Duration = Duration::from_secs(60);

/// An operator is dropped if its region's leader has not carried it out by then (the target
/// store may be down; the balancer may try again).
const OPERATOR_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a leader transfer cannot be asked for.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    /// PD knows no such region.
    #[error("PD knows no region {0}; list them with `/pd/api/v1/regions` (`lab placement`)")]
    NoRegion(u64),
    /// The store holds no replica of the region, so it cannot lead it.
    #[error(
        "store {store} holds no replica of region {region} (its replicas are on stores {have}); transfer the leader to one of those"
    )]
    NoReplica {
        /// The region.
        region: u64,
        /// The store asked for.
        store: u64,
        /// The stores that hold a replica.
        have: String,
    },
}

/// PD's cluster state.
pub struct PdCluster {
    cluster_id: u64,
    ids: IdAllocator,
    state: RwLock<State>,
}

fn epoch(r: &metapb::Region) -> (u64, u64) {
    r.region_epoch
        .as_ref()
        .map(|e| (e.conf_ver, e.version))
        .unwrap_or_default()
}

impl PdCluster {
    /// The cluster `cluster_id`, allocating ids persisted in `dir`.
    pub fn open(cluster_id: u64, dir: &Path) -> std::io::Result<PdCluster> {
        Ok(PdCluster {
            cluster_id,
            ids: IdAllocator::open(dir)?,
            state: RwLock::new(State::default()),
        })
    }

    /// The cluster id every response carries.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// A fresh id (for stores, regions and peers), never handed out before.
    pub fn alloc_id(&self) -> std::io::Result<u64> {
        self.ids.next()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers (or re-registers) a store; also counts as a heartbeat. A store being removed
    /// stays so; a removed one (tombstone) is refused: its replicas were moved away and its
    /// data folder belongs to the past.
    pub fn put_store(&self, mut store: metapb::Store) -> Result<(), String> {
        let id = store.id;
        let mut state = self.write();
        if let Some(have) = state.stores.get(&id) {
            if have.store.state == metapb::StoreState::Tombstone as i32 {
                return Err(format!(
                    "store {id} was removed from this cluster (tombstone); its data folder is stale: delete it and join as a new store (`lab add-store`)"
                ));
            }
            store.state = have.store.state;
        }
        state.stores.insert(
            id,
            StoreInfo {
                store,
                last_heartbeat: Instant::now(),
            },
        );
        Ok(())
    }

    /// Whether PD knows store `store_id` holds replicas (a store that restarts with an empty
    /// data folder under that id would have forgotten what it acknowledged).
    pub fn store_holds_replicas(&self, store_id: u64) -> Vec<u64> {
        self.read()
            .regions
            .values()
            .filter(|r| r.region.peers.iter().any(|p| p.store_id == store_id))
            .map(|r| r.region.id)
            .collect()
    }

    /// Starts removing store `store_id` (real PD's `DELETE /pd/api/v1/store/{id}`): it is
    /// marked offline and the replica checker moves its replicas to other stores; once it
    /// holds none it becomes a tombstone. Returns what will happen, in words.
    pub fn remove_store(&self, store_id: u64) -> Result<String, String> {
        let mut state = self.write();
        let up_others = state
            .stores
            .values()
            .filter(|s| s.store.id != store_id && !is_offline(s))
            .count();
        let Some(s) = state.stores.get_mut(&store_id) else {
            return Err(format!(
                "PD knows no store {store_id}; list them with `/pd/api/v1/stores` (`lab status`)"
            ));
        };
        if s.store.state == metapb::StoreState::Tombstone as i32 {
            return Ok(format!("store {store_id} is already removed (tombstone)"));
        }
        s.store.state = metapb::StoreState::Offline as i32;
        let replicas = state
            .regions
            .values()
            .filter(|r| r.region.peers.iter().any(|p| p.store_id == store_id))
            .count();
        tracing::info!(
            store = store_id,
            replicas,
            "store is offline: moving its replicas away"
        );
        refresh_tombstones(&mut state);
        if replicas > 0 && up_others < 3 {
            return Ok(format!(
                "store {store_id} is offline; its {replicas} replica(s) can move only to a store that lacks one, and only {up_others} other store(s) are up: add a store (`lab add-store`)"
            ));
        }
        Ok(format!(
            "store {store_id} is offline; PD moves its {replicas} replica(s) to other stores, then marks it a tombstone"
        ))
    }

    /// Moves region `region_id`'s replica from store `from` to store `to` (real PD's
    /// `transfer-peer` operator).
    pub fn transfer_peer(&self, region_id: u64, from: u64, to: u64) -> Result<(), String> {
        let mut state = self.write();
        let info = state
            .regions
            .get(&region_id)
            .ok_or_else(|| OperatorError::NoRegion(region_id).to_string())?
            .clone();
        let stores = |r: &metapb::Region| {
            r.peers
                .iter()
                .map(|p| p.store_id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(source) = info.region.peers.iter().find(|p| p.store_id == from) else {
            return Err(format!(
                "store {from} holds no replica of region {region_id} (its replicas are on stores {}); move one of those",
                stores(&info.region)
            ));
        };
        if info.region.peers.iter().any(|p| p.store_id == to) {
            return Err(format!(
                "store {to} already holds a replica of region {region_id}; pick a store without one"
            ));
        }
        if !state
            .stores
            .get(&to)
            .is_some_and(|s| s.is_up() && !is_offline(s))
        {
            return Err(format!(
                "store {to} is not an up store of this cluster; list them with `/pd/api/v1/stores` (`lab status`)"
            ));
        }
        if state.operators.contains_key(&region_id) {
            return Err(format!(
                "region {region_id} already has an operator under way; retry when it finishes"
            ));
        }
        let why = format!(
            "transfer-peer (asked for): region {region_id} from store {from} to store {to}"
        );
        let op = self
            .move_to(region_id, *source, to, why)
            .map_err(|e| format!("PD cannot allocate an id: {e}"))?;
        state.operators.insert(region_id, op);
        Ok(())
    }

    /// The move-peer operators under way: (region, from store, to store, step, why).
    pub fn operators(&self) -> Vec<(u64, u64, u64, &'static str, String)> {
        self.read()
            .operators
            .values()
            .map(|op| {
                let (to, from) = op.stores();
                (op.region_id, from, to, op.step_name(), op.why.clone())
            })
            .collect()
    }

    /// What the leader that just reported `region_id` should do next, if anything: a step of
    /// the region's operator, a leader transfer, or a new operator from the checkers.
    pub fn next_operation(&self, region_id: u64) -> Option<Instruction> {
        if let Some(step) = self.operator_step(region_id) {
            return Some(step);
        }
        if let Some(to) = self.next_transfer(region_id) {
            return Some(Instruction::TransferLeader(to));
        }
        None
    }

    /// Advances `region_id`'s operator (or makes one, if a checker finds work) and returns
    /// its step. `None` also when it waits or just finished.
    fn operator_step(&self, region_id: u64) -> Option<Instruction> {
        let mut state = self.write();
        let info = state.regions.get(&region_id)?.clone();
        if !state.operators.contains_key(&region_id) {
            let made = self.replica_check(&state, &info).or_else(|| {
                state
                    .operators
                    .is_empty()
                    .then(|| self.balance_region(&state, &info))
                    .flatten()
            });
            match made {
                Some(op) if state.operators.len() < MAX_MOVES => {
                    tracing::info!(region = region_id, "operator created: {}", op.why);
                    state.operators.insert(region_id, op);
                }
                _ => return None,
            }
        }
        let op = state.operators.get_mut(&region_id)?;
        match op.next(&info.region, info.leader.as_ref(), &info.pending_peers) {
            Progress::Do(step) => Some(step),
            Progress::Wait => None,
            Progress::Finished => {
                tracing::info!(region = region_id, "operator finished: {}", op.why);
                state.operators.remove(&region_id);
                refresh_tombstones(&mut state);
                None
            }
            Progress::TimedOut => {
                tracing::warn!(
                    region = region_id,
                    step = op.step_name(),
                    "operator abandoned: its step did not finish in time ({})",
                    op.why
                );
                state.operators.remove(&region_id);
                None
            }
        }
    }

    /// Up stores (not being removed) that hold no replica of `region`, fewest replicas first.
    fn targets(state: &State, region: &metapb::Region) -> Vec<(u64, usize)> {
        let mut out: Vec<(u64, usize)> = state
            .stores
            .values()
            .filter(|s| !is_offline(s) && s.is_up())
            .map(|s| s.store.id)
            .filter(|id| !region.peers.iter().any(|p| p.store_id == *id))
            .map(|id| (id, replica_count(state, id)))
            .collect();
        out.sort_by_key(|&(id, n)| (n, id));
        out
    }

    /// The replica checker: a replica on a store being removed moves to an up store.
    fn replica_check(&self, state: &State, info: &RegionInfo) -> Option<Operator> {
        let from = info.region.peers.iter().find(|p| {
            state
                .stores
                .get(&p.store_id)
                .is_some_and(|s| s.store.state == metapb::StoreState::Offline as i32)
        })?;
        let (target, _) = *Self::targets(state, &info.region).first()?;
        let why = format!(
            "replica-checker: store {} is being removed; region {}'s replica moves to store {target}",
            from.store_id, info.region.id
        );
        self.move_to(info.region.id, *from, target, why).ok()
    }

    /// A move-peer operator for replica `from` of region `region_id` to a new peer on store
    /// `target` (its id allocated now).
    fn move_to(
        &self,
        region_id: u64,
        from: metapb::Peer,
        target: u64,
        why: String,
    ) -> std::io::Result<Operator> {
        let to = metapb::Peer {
            id: self.alloc_id()?,
            store_id: target,
            ..Default::default()
        };
        Ok(Operator::move_peer(region_id, from, to, why))
    }

    /// balance-region: a replica moves from the store holding the most replicas to one that
    /// holds two or more fewer (a new store fills up this way).
    fn balance_region(&self, state: &State, info: &RegionInfo) -> Option<Operator> {
        let (target, fewest) = *Self::targets(state, &info.region).first()?;
        let from = info
            .region
            .peers
            .iter()
            .filter(|p| p.role == metapb::PeerRole::Voter as i32)
            .max_by_key(|p| (replica_count(state, p.store_id), p.store_id))?;
        let most = replica_count(state, from.store_id);
        if most < fewest + 2 {
            return None;
        }
        let why = format!(
            "balance-region: store {} holds {most} replicas and store {target} {fewest}; region {}'s replica moves",
            from.store_id, info.region.id
        );
        self.move_to(info.region.id, *from, target, why).ok()
    }

    /// A store says it is alive; false if PD does not know it (it must `PutStore` first).
    pub fn store_heartbeat(&self, store_id: u64) -> bool {
        match self.write().stores.get_mut(&store_id) {
            Some(s) => {
                s.last_heartbeat = Instant::now();
                true
            }
            None => false,
        }
    }

    /// One store.
    pub fn store(&self, store_id: u64) -> Option<StoreInfo> {
        self.read().stores.get(&store_id).cloned()
    }

    /// Every store, by id.
    pub fn stores(&self) -> Vec<StoreInfo> {
        self.read().stores.values().cloned().collect()
    }

    /// Takes a leader's report, unless it is older than what PD has.
    pub fn region_heartbeat(&self, report: RegionReport) -> Result<(), HeartbeatError> {
        let mut state = self.write();
        let id = report.region.id;
        if let Some(have) = state.regions.get(&id) {
            let (new, old) = (epoch(&report.region), epoch(&have.region));
            let newer_epoch = new.0 >= old.0 && new.1 >= old.1 && new != old;
            if !(newer_epoch || (new == old && report.term >= have.term)) {
                return Err(HeartbeatError::Stale {
                    region: id,
                    have: old,
                    have_term: have.term,
                });
            }
        }
        put_region(
            &mut state,
            report.region,
            Some(report.leader),
            report.term,
            report.approximate_keys,
            report.approximate_size,
        );
        if let Some(info) = state.regions.get_mut(&id) {
            info.pending_peers = report.pending_peers;
        }
        Ok(())
    }

    /// Asks region `region_id`'s leader to hand leadership to its replica on `store_id`
    /// (carried out at the leader's next heartbeat, within a second).
    pub fn transfer_leader(&self, region_id: u64, store_id: u64) -> Result<(), OperatorError> {
        let mut state = self.write();
        let info = state
            .regions
            .get(&region_id)
            .ok_or(OperatorError::NoRegion(region_id))?;
        if !info.region.peers.iter().any(|p| p.store_id == store_id) {
            let have: Vec<String> = info
                .region
                .peers
                .iter()
                .map(|p| p.store_id.to_string())
                .collect();
            return Err(OperatorError::NoReplica {
                region: region_id,
                store: store_id,
                have: have.join(", "),
            });
        }
        state
            .transfers
            .insert(region_id, (store_id, Instant::now(), true));
        Ok(())
    }

    /// What the leader that just reported `region_id` should do: the peer to hand leadership
    /// to, if an operator (or the balancer) wants one. Forgets operators that are done or
    /// stale.
    pub fn next_transfer(&self, region_id: u64) -> Option<metapb::Peer> {
        let mut state = self.write();
        let info = state.regions.get(&region_id)?.clone();
        let leader_store = info.leader.as_ref().map(|l| l.store_id);
        if let Some(&(store, made, by_hand)) = state.transfers.get(&region_id) {
            if Some(store) == leader_store || made.elapsed() > OPERATOR_TIMEOUT {
                state.transfers.remove(&region_id);
                if by_hand && Some(store) == leader_store {
                    state
                        .pinned
                        .insert(region_id, Instant::now() + PIN_AFTER_TRANSFER);
                }
            } else {
                return info
                    .region
                    .peers
                    .iter()
                    .find(|p| p.store_id == store)
                    .cloned();
            }
        }
        // The balancer: one move at a time, from the busiest leader store to the idlest store
        // holding a replica of this region, once they differ by two or more — never a leader
        // a person just placed.
        let now = Instant::now();
        state.pinned.retain(|_, until| *until > now);
        if !state.transfers.is_empty() || state.pinned.contains_key(&region_id) {
            return None;
        }
        let leader_store = leader_store?;
        let up: Vec<u64> = state
            .stores
            .values()
            .filter(|s| s.is_up())
            .map(|s| s.store.id)
            .collect();
        let count = |store: u64| {
            state
                .regions
                .values()
                .filter(|r| r.leader.as_ref().is_some_and(|l| l.store_id == store))
                .count()
        };
        let (target, fewest) = info
            .region
            .peers
            .iter()
            .map(|p| p.store_id)
            .filter(|s| *s != leader_store && up.contains(s))
            .map(|s| (s, count(s)))
            .min_by_key(|(s, n)| (*n, *s))?;
        if count(leader_store) < fewest + 2 {
            return None;
        }
        tracing::info!(
            region = region_id,
            from = leader_store,
            to = target,
            "balance-leader: moving a leader to the store leading the fewest regions"
        );
        state
            .transfers
            .insert(region_id, (target, Instant::now(), false));
        info.region
            .peers
            .iter()
            .find(|p| p.store_id == target)
            .cloned()
    }

    /// Ids for a split of `region` (`AskBatchSplit`): a new region id, and one new peer id
    /// per replica, in the order of `region.peers`.
    pub fn ask_split(&self, region: &metapb::Region) -> std::io::Result<(u64, Vec<u64>)> {
        let id = self.alloc_id()?;
        let peers = region
            .peers
            .iter()
            .map(|_| self.alloc_id())
            .collect::<std::io::Result<_>>()?;
        Ok((id, peers))
    }

    /// The regions a split produced (`ReportBatchSplit`), before their leaders report: each
    /// replaces what it overlaps, so no key is left without a region meanwhile. The parent
    /// keeps its leader; a new region has none until its first heartbeat (a client asking in
    /// between backs off and asks again).
    pub fn report_split(&self, regions: Vec<metapb::Region>) {
        let mut state = self.write();
        // Leaders are read before anything is replaced: the left half overlaps the parent's
        // old range and would remove it (and its leader) before the parent is updated.
        let known: Vec<Option<(Option<metapb::Peer>, u64)>> = regions
            .iter()
            .map(|region| match state.regions.get(&region.id) {
                Some(have) if epoch(&have.region) >= epoch(region) => None,
                Some(have) => Some((have.leader, have.term)),
                None => Some((None, 0)),
            })
            .collect();
        for (region, known) in regions.into_iter().zip(known) {
            if let Some((leader, term)) = known {
                put_region(&mut state, region, leader, term, 0, 0);
            }
        }
    }

    /// Records the cluster's first region as its stores created it, before any leader is
    /// elected (TiKV's `Bootstrap`): from now on every key has a region, and a client asking
    /// for one gets it without a leader, so it backs off until a leader reports. Returns false
    /// if the cluster already has regions (then nothing changes).
    pub fn bootstrap(&self, region: metapb::Region) -> bool {
        let mut state = self.write();
        if !state.regions.is_empty() {
            return false;
        }
        state.by_start.insert(region.start_key.clone(), region.id);
        state.regions.insert(
            region.id,
            RegionInfo {
                region,
                leader: None,
                term: 0,
                approximate_keys: 0,
                approximate_size: 0,
                updated: Instant::now(),
                pending_peers: Vec::new(),
            },
        );
        true
    }

    /// Whether the cluster has its first region.
    pub fn is_bootstrapped(&self) -> bool {
        !self.read().regions.is_empty()
    }

    /// The region holding `key` (in the region's key encoding), if PD knows one.
    pub fn region_by_key(&self, key: &[u8]) -> Option<RegionInfo> {
        let state = self.read();
        let (_, id) = state.by_start.range(..=key.to_vec()).next_back()?;
        let info = state.regions.get(id)?;
        let end = &info.region.end_key;
        (end.is_empty() || key < end.as_slice()).then(|| info.clone())
    }

    /// A region by id.
    pub fn region_by_id(&self, region_id: u64) -> Option<RegionInfo> {
        self.read().regions.get(&region_id).cloned()
    }

    /// Every region, in key order.
    pub fn regions(&self) -> Vec<RegionInfo> {
        let state = self.read();
        state
            .by_start
            .values()
            .filter_map(|id| state.regions.get(id).cloned())
            .collect()
    }
}

/// Stores `region` (replacing its older self and any region it overlaps).
fn put_region(
    state: &mut State,
    region: metapb::Region,
    leader: Option<metapb::Peer>,
    term: u64,
    approximate_keys: u64,
    approximate_size: u64,
) {
    let id = region.id;
    if let Some(have) = state.regions.get(&id) {
        let old_start = have.region.start_key.clone();
        state.by_start.remove(&old_start);
    }
    // Regions this one now covers (a split's parent seen before its children…) give way.
    let (start, end) = (&region.start_key, &region.end_key);
    let overlapped: Vec<u64> = state
        .regions
        .values()
        .filter(|r| r.region.id != id && overlaps(&r.region, start, end))
        .map(|r| r.region.id)
        .collect();
    for other in overlapped {
        if let Some(r) = state.regions.remove(&other) {
            state.by_start.remove(&r.region.start_key);
        }
    }
    state.by_start.insert(start.clone(), id);
    state.regions.insert(
        id,
        RegionInfo {
            region,
            leader,
            term,
            approximate_keys,
            approximate_size,
            updated: Instant::now(),
            pending_peers: Vec::new(),
        },
    );
}

/// How many regions have a replica on `store_id`.
fn replica_count(state: &State, store_id: u64) -> usize {
    state
        .regions
        .values()
        .filter(|r| r.region.peers.iter().any(|p| p.store_id == store_id))
        .count()
}

/// An offline store that no longer holds a replica is removed for good (a tombstone).
fn refresh_tombstones(state: &mut State) {
    let empty: Vec<u64> = state
        .stores
        .values()
        .filter(|s| s.store.state == metapb::StoreState::Offline as i32)
        .map(|s| s.store.id)
        .filter(|&id| replica_count(state, id) == 0)
        .collect();
    for id in empty {
        if let Some(s) = state.stores.get_mut(&id) {
            tracing::info!(store = id, "store holds no replica any more: tombstone");
            s.store.state = metapb::StoreState::Tombstone as i32;
        }
    }
}

/// Hands out ids above everything handed out before, across restarts: like the TSO, it
/// persists a limit ahead of use (one fsync per [`IdAllocator::STEP`] ids).
struct IdAllocator {
    next: AtomicU64,
    limit: Mutex<u64>,
    file: PathBuf,
}

impl IdAllocator {
    const STEP: u64 = 1000;
    const FILE: &'static str = "pd-alloc-id";

    fn open(dir: &Path) -> std::io::Result<IdAllocator> {
        std::fs::create_dir_all(dir)?;
        let file = dir.join(Self::FILE);
        let saved = match std::fs::read(&file) {
            Ok(b) => u64::from_be_bytes(b.as_slice().try_into().map_err(|_| {
                std::io::Error::other(format!(
                    "{} is damaged (expected 8 bytes); restore it or use a fresh --data-dir",
                    file.display()
                ))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FIRST_ALLOCATED_ID,
            Err(e) => return Err(e),
        };
        Ok(IdAllocator {
            next: AtomicU64::new(saved),
            limit: Mutex::new(saved),
            file,
        })
    }

    fn next(&self) -> std::io::Result<u64> {
        let mut limit = self.limit.lock().unwrap_or_else(|p| p.into_inner());
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        if id >= *limit {
            let new_limit = id + Self::STEP;
            let tmp = self.file.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&new_limit.to_be_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.file)?;
            *limit = new_limit;
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &[u8], end: &[u8], conf_ver: u64, version: u64) -> metapb::Region {
        metapb::Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(metapb::RegionEpoch { conf_ver, version }),
            ..Default::default()
        }
    }

    fn report(region: metapb::Region, leader: u64, term: u64) -> RegionReport {
        RegionReport {
            region,
            leader: metapb::Peer {
                id: leader,
                store_id: leader,
                ..Default::default()
            },
            term,
            approximate_keys: 0,
            approximate_size: 0,
            pending_peers: Vec::new(),
        }
    }

    #[test]
    fn a_deposed_leaders_late_heartbeat_does_not_take_the_region_back() {
        let dir = tempfile::tempdir().unwrap();
        let pd = PdCluster::open(7, dir.path()).unwrap();
        pd.region_heartbeat(report(region(2, b"", b"", 1, 1), 3, 5))
            .unwrap();
        pd.region_heartbeat(report(region(2, b"", b"", 1, 1), 4, 6))
            .unwrap();
        let late = pd.region_heartbeat(report(region(2, b"", b"", 1, 1), 3, 5));
        assert!(matches!(late, Err(HeartbeatError::Stale { .. })));
        assert_eq!(pd.region_by_key(b"k").unwrap().leader.unwrap().id, 4);
    }

    #[test]
    fn after_a_split_keys_route_to_the_child_that_holds_them() {
        let dir = tempfile::tempdir().unwrap();
        let pd = PdCluster::open(7, dir.path()).unwrap();
        pd.region_heartbeat(report(region(2, b"", b"", 1, 1), 3, 5))
            .unwrap();
        pd.region_heartbeat(report(region(2, b"m", b"", 1, 2), 3, 5))
            .unwrap();
        pd.region_heartbeat(report(region(9, b"", b"m", 1, 2), 3, 5))
            .unwrap();
        assert_eq!(pd.region_by_key(b"a").unwrap().region.id, 9);
        assert_eq!(pd.region_by_key(b"m").unwrap().region.id, 2);
        assert_eq!(pd.region_by_key(b"zz").unwrap().region.id, 2);
        assert_eq!(pd.regions().len(), 2);
    }

    fn report_on(region_id: u64, start: &[u8], end: &[u8], leader_store: u64) -> RegionReport {
        let mut r = region(region_id, start, end, 1, 2);
        r.peers = (1..=3)
            .map(|s| metapb::Peer {
                id: region_id * 10 + s,
                store_id: s,
                ..Default::default()
            })
            .collect();
        let leader = r.peers[(leader_store - 1) as usize];
        RegionReport {
            region: r,
            leader,
            term: 1,
            approximate_keys: 0,
            approximate_size: 0,
            pending_peers: Vec::new(),
        }
    }

    /// A PD that knows stores 1, 2 and 3 (all up).
    fn with_three_stores(dir: &Path) -> PdCluster {
        let pd = PdCluster::open(7, dir).unwrap();
        for id in 1..=3 {
            pd.put_store(metapb::Store {
                id,
                ..Default::default()
            })
            .unwrap();
        }
        pd
    }

    /// Applies what a leader would do with `step` to `report` (the next heartbeat's view).
    fn carry_out(report: &mut RegionReport, step: &Instruction) {
        use raft::eraftpb::ConfChangeType;
        let r = &mut report.region;
        match step {
            Instruction::TransferLeader(to) => report.leader = *to,
            Instruction::ChangePeer(ConfChangeType::AddLearnerNode, p) => r.peers.push(*p),
            Instruction::ChangePeer(ConfChangeType::AddNode, p) => {
                r.peers.iter_mut().find(|x| x.id == p.id).unwrap().role =
                    metapb::PeerRole::Voter as i32
            }
            Instruction::ChangePeer(ConfChangeType::RemoveNode, p) => {
                r.peers.retain(|x| x.id != p.id)
            }
        }
        r.region_epoch.as_mut().unwrap().conf_ver += 1;
        report.term += 1;
    }

    #[test]
    fn a_new_store_receives_replicas_and_a_removed_store_gives_them_up() {
        let dir = tempfile::tempdir().unwrap();
        let pd = with_three_stores(dir.path());
        let mut reports: Vec<RegionReport> =
            [(2, &b""[..], &b"h"[..]), (3, b"h", b"p"), (4, b"p", b"")]
                .into_iter()
                .map(|(id, start, end)| report_on(id, start, end, 1))
                .collect();
        for r in &reports {
            pd.region_heartbeat(r.clone()).unwrap();
        }
        assert!(
            !matches!(pd.next_operation(2), Some(Instruction::ChangePeer(..))),
            "three stores, three replicas each: no replica moves"
        );
        pd.put_store(metapb::Store {
            id: 4,
            ..Default::default()
        })
        .unwrap();
        // Heartbeats until nothing is asked: each step carried out as a leader would.
        let settle = |reports: &mut Vec<RegionReport>| {
            for _ in 0..50 {
                let mut asked = false;
                for r in reports.iter_mut() {
                    pd.region_heartbeat(r.clone()).unwrap();
                    if let Some(step) = pd.next_operation(r.region.id) {
                        carry_out(r, &step);
                        asked = true;
                    }
                }
                if !asked {
                    return;
                }
            }
            panic!("PD kept asking for steps");
        };
        settle(&mut reports);
        let on = |store: u64, reports: &[RegionReport]| {
            reports
                .iter()
                .filter(|r| r.region.peers.iter().any(|p| p.store_id == store))
                .count()
        };
        assert_eq!(on(4, &reports), 2, "9 replicas on 4 stores: 3/2/2/2");
        assert!(reports.iter().all(|r| r.region.peers.len() == 3));

        let said = pd.remove_store(1).unwrap();
        assert!(said.contains("offline"), "{said}");
        settle(&mut reports);
        assert_eq!(on(1, &reports), 0, "store 1 gave up every replica");
        assert!(
            reports
                .iter()
                .all(|r| r.region.peers.len() == 3 && r.leader.store_id != 1)
        );
        assert_eq!(
            pd.store(1).unwrap().store.state,
            metapb::StoreState::Tombstone as i32
        );
        let err = pd
            .put_store(metapb::Store {
                id: 1,
                ..Default::default()
            })
            .unwrap_err();
        assert!(err.contains("lab add-store"), "{err}");
        // Three stores left, each region on all three: removing another cannot be carried out.
        let said = pd.remove_store(2).unwrap();
        assert!(said.contains("add a store"), "{said}");
    }

    #[test]
    fn the_balancer_moves_leaders_off_the_busiest_store_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let pd = with_three_stores(dir.path());
        // Three regions, all led by store 1: 3 / 0 / 0.
        for (id, start, end) in [(2, &b""[..], &b"h"[..]), (3, b"h", b"p"), (4, b"p", b"")] {
            pd.region_heartbeat(report_on(id, start, end, 1)).unwrap();
        }
        let first = pd.next_transfer(2).expect("a move off store 1");
        assert_eq!(
            first.store_id, 2,
            "to the lowest-numbered store of the idlest"
        );
        assert_eq!(pd.next_transfer(3), None, "one move at a time");
        // The leader moved: 2 / 1 / 0 — store 1 leads only one more than store 3: done.
        pd.region_heartbeat(RegionReport {
            term: 2,
            ..report_on(2, b"", b"h", 2)
        })
        .unwrap();
        assert_eq!(pd.next_transfer(2), None, "the operator is done");
        // 2 / 1 / 0: store 1 still leads two more than store 3.
        assert_eq!(pd.next_transfer(3).map(|p| p.store_id), Some(3));
        pd.region_heartbeat(RegionReport {
            term: 2,
            ..report_on(3, b"h", b"p", 3)
        })
        .unwrap();
        assert_eq!(pd.next_transfer(3), None, "the operator is done");
        assert_eq!(pd.next_transfer(4), None, "1 / 1 / 1 is balanced");
    }

    #[test]
    fn a_reported_split_keeps_the_parents_leader_and_gives_the_new_region_none_yet() {
        let dir = tempfile::tempdir().unwrap();
        let pd = PdCluster::open(7, dir.path()).unwrap();
        pd.region_heartbeat(report_on(2, b"", b"", 1)).unwrap();
        let mut left = region(1000, b"", b"m", 1, 3);
        let mut right = region(2, b"m", b"", 1, 3);
        left.peers = pd.region_by_id(2).unwrap().region.peers;
        right.peers = left.peers.clone();
        pd.report_split(vec![left, right]);
        assert_eq!(pd.regions().len(), 2);
        assert_eq!(
            pd.region_by_key(b"z").unwrap().leader.map(|l| l.store_id),
            Some(1)
        );
        assert_eq!(pd.region_by_key(b"a").unwrap().region.id, 1000);
        assert!(pd.region_by_key(b"a").unwrap().leader.is_none());
    }

    #[test]
    fn a_transfer_to_a_store_without_a_replica_names_the_stores_that_have_one() {
        let dir = tempfile::tempdir().unwrap();
        let pd = PdCluster::open(7, dir.path()).unwrap();
        pd.region_heartbeat(report_on(2, b"", b"", 1)).unwrap();
        assert_eq!(
            pd.transfer_leader(2, 4).unwrap_err().to_string(),
            "store 4 holds no replica of region 2 (its replicas are on stores 1, 2, 3); transfer the leader to one of those"
        );
        assert_eq!(pd.transfer_leader(9, 1), Err(OperatorError::NoRegion(9)));
        pd.transfer_leader(2, 3).unwrap();
        assert_eq!(pd.next_transfer(2).map(|p| p.store_id), Some(3));
    }

    #[test]
    fn the_balancer_leaves_a_leader_placed_by_hand_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let pd = with_three_stores(dir.path());
        pd.region_heartbeat(report_on(2, b"", b"h", 1)).unwrap();
        pd.region_heartbeat(report_on(3, b"h", b"", 2)).unwrap();
        // By hand: region 3 to store 1, which then leads both (2 / 0 / 0).
        pd.transfer_leader(3, 1).unwrap();
        assert_eq!(pd.next_transfer(3).map(|p| p.store_id), Some(1));
        pd.region_heartbeat(RegionReport {
            term: 2,
            ..report_on(3, b"h", b"", 1)
        })
        .unwrap();
        assert_eq!(pd.next_transfer(3), None, "pinned where the person put it");
        assert_eq!(
            pd.next_transfer(2).map(|p| p.store_id),
            Some(2),
            "the balancer moves the other region instead"
        );
    }

    #[test]
    fn ids_never_repeat_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let first = PdCluster::open(7, dir.path()).unwrap().alloc_id().unwrap();
        assert!(first >= FIRST_ALLOCATED_ID);
        let again = PdCluster::open(7, dir.path()).unwrap().alloc_id().unwrap();
        assert!(again > first);
    }
}
