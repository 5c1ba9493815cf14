//! `PeerStorage`: a region peer's Raft log and Raft state, durable in the store's engine file.
//!
//! raft-rs is only the consensus algorithm; it asks its host for the log through the
//! [`raft::Storage`] trait and hands back, in each `Ready`, the entries and hard state the
//! host must make durable. TiKV's `PeerStorage` answers from an in-memory entry cache backed
//! by raft-engine; ours answers from memory too (every entry since the last compaction) and is
//! backed by two tables of the same redb file that holds the data:
//!
//! ```text
//! raft_log    region id ‖ index            → eraftpb::Entry
//! raft_state  region id ‖ 'h' | 'c' | 't'  → HardState | ConfState | truncated (index, term)
//!             region id ‖ 'r'              → metapb::Region (its range, epoch and peers)
//! ```
//!
//! A follower too far behind for the log (compacted past what it has) gets a **snapshot**: the
//! region's data at the applied index, built from the engine by [`raft::Storage::snapshot`].
//!
//! Why the same file: one redb commit with an fsync makes a batch of log entries durable, and
//! the same fsync also persists every data write applied since the last one (those are
//! committed without an fsync, see [`super::store`]). One file, one fsync per write cycle.

use std::collections::VecDeque;
use std::sync::Arc;

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};
use redb::{ReadableDatabase, TableDefinition};

use super::command::{Cf, Op, WriteBatch};
use super::log_file::{RaftLogFile, Recovered};
use crate::engine::{Engine, LOCK_TABLE, META_GC_SAFE_POINT, META_TABLE, WRITE_TABLE};
use crate::proto::metapb;

/// Raft hard state, configuration and truncation point of every region on this store.
pub const RAFT_STATE_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("raft_state");

const HARD_STATE: u8 = b'h';
const CONF_STATE: u8 = b'c';
const TRUNCATED: u8 = b't';
const REGION: u8 = b'r';
/// A peer this store destroyed (removed from its region): its id, so a late message for it
/// does not bring it back.
const TOMBSTONE: u8 = b'x';

/// Where a region created by a split starts its log (TiKV's `RAFT_INIT_LOG_INDEX`): above
/// zero, so its peers can tell its first state from an empty one.
pub const RAFT_INIT_LOG_INDEX: u64 = 5;
/// The term of that starting point (TiKV's `RAFT_INIT_LOG_TERM`).
pub const RAFT_INIT_LOG_TERM: u64 = 5;

fn state_key(region_id: u64, tag: u8) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&region_id.to_be_bytes());
    k[8] = tag;
    k
}

/// The Raft state table of one engine write transaction.
pub struct RaftTables<'t> {
    /// The state.
    pub state: redb::Table<'t, &'static [u8], &'static [u8]>,
}

impl<'t> RaftTables<'t> {
    /// Opens the table of `txn`.
    pub fn open(txn: &'t redb::WriteTransaction) -> Result<Self, redb::TableError> {
        Ok(RaftTables {
            state: txn.open_table(RAFT_STATE_TABLE)?,
        })
    }
}

/// Why the Raft state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PeerStorageError {
    /// The engine failed.
    #[error("raft log: storage engine error: {0}")]
    Engine(String),
    /// A record did not decode.
    #[error("raft log of region {region_id} is damaged: {what}")]
    Corrupt {
        /// The region.
        region_id: u64,
        /// What was wrong.
        what: String,
    },
}

macro_rules! engine_err {
    ($($t:ty),*) => {$(
        impl From<$t> for PeerStorageError {
            fn from(e: $t) -> Self { PeerStorageError::Engine(e.to_string()) }
        }
    )*};
}
engine_err!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// One peer's log and state: every entry since the last compaction is kept in memory.
pub struct PeerStorage {
    region_id: u64,
    region: metapb::Region,
    engine: Arc<Engine>,
    /// Index and term of the last applied entry (a snapshot is taken there).
    applied: (u64, u64),
    hard_state: HardState,
    /// The (term, vote) last written to the engine: the parts of the hard state that must be
    /// durable before the messages that depend on them are sent.
    persisted_vote: (u64, u64),
    conf_state: ConfState,
    /// The region and configuration as of `applied`: what a snapshot carries. A membership
    /// change or split updates `region` and `conf_state` while its apply is still under way
    /// (raft-rs may ask for a snapshot in that window), so a snapshot must not read those.
    applied_view: (metapb::Region, ConfState),
    /// The last entry dropped by compaction (index, term); (0, 0) before any.
    truncated: (u64, u64),
    /// Entries `truncated.0 + 1 ..= last`.
    entries: VecDeque<Entry>,
}

impl PeerStorage {
    /// A new peer's state at index 0, with the region's peers as the voters (bootstrap: every
    /// store of the region starts from this same state, as raft-rs requires).
    pub fn bootstrap(region: metapb::Region, engine: Arc<Engine>) -> PeerStorage {
        let learner = |p: &&metapb::Peer| p.role == metapb::PeerRole::Learner as i32;
        let mut conf_state = ConfState::default();
        conf_state.set_voters(
            region
                .peers
                .iter()
                .filter(|p| !learner(p))
                .map(|p| p.id)
                .collect(),
        );
        conf_state.set_learners(region.peers.iter().filter(learner).map(|p| p.id).collect());
        PeerStorage {
            region_id: region.id,
            applied_view: (region.clone(), conf_state.clone()),
            region,
            engine,
            applied: (0, 0),
            hard_state: HardState::default(),
            persisted_vote: (0, 0),
            conf_state,
            truncated: (0, 0),
            entries: VecDeque::new(),
        }
    }

    /// A peer of a region just created by a split: its log starts at [`RAFT_INIT_LOG_INDEX`]
    /// (as TiKV's does), so every peer of the new region starts from the same state, and its
    /// data is what this store's engine already holds for the range.
    pub fn for_split(region: metapb::Region, engine: Arc<Engine>) -> PeerStorage {
        let mut s = Self::bootstrap(region, engine);
        let init = (RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM);
        s.truncated = init;
        s.applied = init;
        s.hard_state.term = RAFT_INIT_LOG_TERM;
        s.hard_state.commit = RAFT_INIT_LOG_INDEX;
        s.persisted_vote = (s.hard_state.term, s.hard_state.vote);
        s
    }

    /// The ids of every region this store holds state for (its peers, found at start-up).
    pub fn persisted_regions(engine: &Engine) -> Result<Vec<u64>, PeerStorageError> {
        let txn = engine.db().begin_read()?;
        let state = match txn.open_table(RAFT_STATE_TABLE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut ids = Vec::new();
        for row in redb::ReadableTable::iter(&state)? {
            let (k, _) = row?;
            let k = k.value();
            if k.len() == 9 && k[8] == REGION {
                ids.push(u64::from_be_bytes(k[..8].try_into().unwrap_or_default()));
            }
        }
        Ok(ids)
    }

    /// Replaces the region's range, epoch and peers (a split applied), durably with `t`.
    pub fn set_region(
        &mut self,
        region: metapb::Region,
        t: &mut RaftTables<'_>,
    ) -> Result<(), PeerStorageError> {
        self.region = region;
        self.put_state(t, REGION, &self.region.encode_to_vec())
    }

    /// Takes a conf change that was applied: the region's new members and raft-rs's
    /// configuration, durably with `t`.
    pub fn set_conf(
        &mut self,
        region: metapb::Region,
        conf_state: ConfState,
        t: &mut RaftTables<'_>,
    ) -> Result<(), PeerStorageError> {
        self.conf_state = conf_state;
        self.write_conf_state(t)?;
        self.set_region(region, t)
    }

    /// Forgets region `region_id`'s Raft state on this store (its peer `peer_id` was removed)
    /// and leaves a tombstone, so a late message for that peer does not create it again.
    pub fn destroy(
        region_id: u64,
        peer_id: u64,
        t: &mut RaftTables<'_>,
    ) -> Result<(), PeerStorageError> {
        for tag in [HARD_STATE, CONF_STATE, TRUNCATED, REGION] {
            t.state.remove(state_key(region_id, tag).as_slice())?;
        }
        t.state.insert(
            state_key(region_id, TOMBSTONE).as_slice(),
            peer_id.to_be_bytes().as_slice(),
        )?;
        Ok(())
    }

    /// The peers this store destroyed: region id → the highest destroyed peer id.
    pub fn tombstones(
        engine: &Engine,
    ) -> Result<std::collections::HashMap<u64, u64>, PeerStorageError> {
        let txn = engine.db().begin_read()?;
        let state = match txn.open_table(RAFT_STATE_TABLE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Default::default()),
            Err(e) => return Err(e.into()),
        };
        let mut out = std::collections::HashMap::new();
        for row in redb::ReadableTable::iter(&state)? {
            let (k, v) = row?;
            let (k, v) = (k.value(), v.value());
            if k.len() == 9 && k[8] == TOMBSTONE && v.len() == 8 {
                let region = u64::from_be_bytes(k[..8].try_into().unwrap_or_default());
                let peer = u64::from_be_bytes(v.try_into().unwrap_or_default());
                out.insert(region, peer);
            }
        }
        Ok(out)
    }

    /// raft-rs's configuration (voters and learners).
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Writes the whole state (used right after [`bootstrap`](Self::bootstrap)).
    pub fn persist_all(&self, t: &mut RaftTables<'_>) -> Result<(), PeerStorageError> {
        self.put_state(t, REGION, &self.region.encode_to_vec())?;
        self.write_hard_state(t)?;
        self.write_conf_state(t)?;
        self.write_truncated(t)?;
        Ok(())
    }

    /// Reads region `region_id`'s state from the engine; `None` if this store has none.
    pub fn load(
        engine: &Arc<Engine>,
        region_id: u64,
        recovered: &mut Recovered,
    ) -> Result<Option<PeerStorage>, PeerStorageError> {
        let txn = engine.db().begin_read()?;
        let state = txn.open_table(RAFT_STATE_TABLE)?;
        let corrupt = |what: String| PeerStorageError::Corrupt { region_id, what };
        let Some(hs) = state.get(state_key(region_id, HARD_STATE).as_slice())? else {
            return Ok(None);
        };
        let hard_state = HardState::parse_from_bytes(hs.value())
            .map_err(|e| corrupt(format!("hard state: {e}")))?;
        let region = match state.get(state_key(region_id, REGION).as_slice())? {
            Some(v) => {
                metapb::Region::decode(v.value()).map_err(|e| corrupt(format!("region: {e}")))?
            }
            None => return Err(corrupt("no region record".into())),
        };
        let conf_state = match state.get(state_key(region_id, CONF_STATE).as_slice())? {
            Some(v) => ConfState::parse_from_bytes(v.value())
                .map_err(|e| corrupt(format!("conf state: {e}")))?,
            None => return Err(corrupt("no conf state".into())),
        };
        let truncated = match state.get(state_key(region_id, TRUNCATED).as_slice())? {
            Some(v) if v.value().len() == 16 => {
                let b = v.value();
                (
                    u64::from_be_bytes(b[..8].try_into().unwrap_or_default()),
                    u64::from_be_bytes(b[8..].try_into().unwrap_or_default()),
                )
            }
            _ => return Err(corrupt("no truncated state".into())),
        };
        let mut entries = VecDeque::new();
        for e in recovered.remove(&region_id).unwrap_or_default() {
            if e.index <= truncated.0 {
                continue;
            }
            let expected = truncated.0 + 1 + entries.len() as u64;
            if e.index != expected {
                return Err(corrupt(format!(
                    "raft log entry {} where {expected} was expected",
                    e.index
                )));
            }
            entries.push_back(e);
        }
        Ok(Some(PeerStorage {
            region_id,
            applied_view: (region.clone(), conf_state.clone()),
            region,
            engine: engine.clone(),
            applied: (0, 0),
            persisted_vote: (hard_state.term, hard_state.vote),
            hard_state,
            conf_state,
            truncated,
            entries,
        }))
    }

    /// The region.
    pub fn region_id(&self) -> u64 {
        self.region_id
    }

    /// The region's range, epoch and peers.
    pub fn region(&self) -> &metapb::Region {
        &self.region
    }

    /// Records where the engine's state stands (a snapshot is taken there).
    pub fn set_applied(&mut self, index: u64, term: u64) {
        self.applied = (index, term);
        self.applied_view = (self.region.clone(), self.conf_state.clone());
    }

    /// Installs a snapshot's Raft state: the log restarts after it. (The store writes the
    /// snapshot's data into the engine in the same commit.)
    pub fn apply_snapshot(
        &mut self,
        meta: &SnapshotMetadata,
        t: &mut RaftTables<'_>,
    ) -> Result<(), PeerStorageError> {
        self.entries.clear();
        self.truncated = (meta.index, meta.term);
        self.conf_state = meta.get_conf_state().clone();
        self.applied_view = (self.region.clone(), self.conf_state.clone());
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.applied = (meta.index, meta.term);
        self.persisted_vote = (self.hard_state.term, self.hard_state.vote);
        self.persist_all(t)
    }

    /// The index of the last entry.
    pub fn last_index_now(&self) -> u64 {
        self.entries.back().map_or(self.truncated.0, |e| e.index)
    }

    /// The first index still in the log.
    pub fn first_index_now(&self) -> u64 {
        self.truncated.0 + 1
    }

    /// The voters of the configuration.
    pub fn voters(&self) -> &[u64] {
        self.conf_state.get_voters()
    }

    /// Remembers a commit index Raft learned after a persist (written with the next hard
    /// state; a restart recomputes anything newer from the applied index).
    pub fn note_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    /// The hard state as last persisted (or about to be).
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Raises the remembered commit index (a restart may know more than the persisted hard
    /// state: data applied and made durable up to `applied` was committed).
    pub fn raise_commit(&mut self, applied: u64) {
        if applied > self.hard_state.commit {
            self.hard_state.commit = applied;
        }
    }

    /// Appends `entries` (which may replace a conflicting suffix) in memory, and queues them
    /// in the log file (durable at its next sync).
    pub fn append(
        &mut self,
        entries: &[Entry],
        log: &mut RaftLogFile,
    ) -> Result<(), PeerStorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        // Drop our suffix from the first new index on (Raft overwrote it with another term's);
        // in the file, the later records replace it the same way (see `log_file`).
        while self.entries.back().is_some_and(|e| e.index >= first.index) {
            self.entries.pop_back();
        }
        for e in entries {
            log.push(self.region_id, e)
                .map_err(|e| PeerStorageError::Engine(format!("raft log file: {e}")))?;
            self.entries.push_back(e.clone());
        }
        Ok(())
    }

    /// The entries not yet compacted (a new log segment starts with them).
    pub fn live_entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// Whether [`set_hard_state`](Self::set_hard_state) with `hs` would write the engine: its
    /// term or vote differs from the persisted one. (A commit index alone is never written
    /// at once: a restart recomputes it from the log and the applied index.)
    pub fn hard_state_needs_write(&self, hs: &HardState) -> bool {
        (hs.term, hs.vote) != self.persisted_vote
    }

    /// Replaces the hard state in memory, and in `t` when its term or vote changed; returns
    /// whether `t` was written (it must then be committed before messages are sent). `t` may
    /// be `None` only when [`hard_state_needs_write`](Self::hard_state_needs_write) said no:
    /// a term or vote that reached no engine write would be forgotten by a crash, and a peer
    /// could vote twice in one term.
    pub fn set_hard_state(
        &mut self,
        hs: HardState,
        t: Option<&mut RaftTables<'_>>,
    ) -> Result<bool, PeerStorageError> {
        let vote = (hs.term, hs.vote);
        if vote == self.persisted_vote {
            self.hard_state = hs;
            return Ok(false);
        }
        let Some(t) = t else {
            return Err(PeerStorageError::Engine(format!(
                "region {}: the hard state's term or vote changed but no engine write was open",
                self.region_id
            )));
        };
        self.hard_state = hs;
        self.write_hard_state(t)?;
        self.persisted_vote = vote;
        Ok(true)
    }

    /// Drops the entries before `index` (they are applied and durable everywhere needed).
    pub fn compact_to(
        &mut self,
        index: u64,
        t: &mut RaftTables<'_>,
    ) -> Result<(), PeerStorageError> {
        if index <= self.first_index_now() || index > self.last_index_now() {
            return Ok(());
        }
        let mut last_dropped = self.truncated;
        while self.entries.front().is_some_and(|e| e.index < index) {
            let e = self.entries.pop_front().expect("checked");
            last_dropped = (e.index, e.term);
        }
        self.truncated = last_dropped;
        self.write_truncated(t)
    }

    fn write_hard_state(&self, t: &mut RaftTables<'_>) -> Result<(), PeerStorageError> {
        self.put_state(t, HARD_STATE, &encode(&self.hard_state)?)
    }

    fn write_conf_state(&self, t: &mut RaftTables<'_>) -> Result<(), PeerStorageError> {
        self.put_state(t, CONF_STATE, &encode(&self.conf_state)?)
    }

    fn write_truncated(&self, t: &mut RaftTables<'_>) -> Result<(), PeerStorageError> {
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&self.truncated.0.to_be_bytes());
        v[8..].copy_from_slice(&self.truncated.1.to_be_bytes());
        self.put_state(t, TRUNCATED, &v)
    }

    /// Writes one of this region's state records.
    fn put_state(
        &self,
        t: &mut RaftTables<'_>,
        tag: u8,
        value: &[u8],
    ) -> Result<(), PeerStorageError> {
        t.state
            .insert(state_key(self.region_id, tag).as_slice(), value)?;
        Ok(())
    }
}

/// A raft-rs (rust-protobuf) message's bytes.
fn encode(m: &impl protobuf::Message) -> Result<Vec<u8>, PeerStorageError> {
    m.write_to_bytes()
        .map_err(|e| PeerStorageError::Engine(e.to_string()))
}

impl raft::Storage for PeerStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.truncated.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index_now() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let offset = self.truncated.0 + 1;
        let mut out: Vec<Entry> = self
            .entries
            .range((low - offset) as usize..(high - offset) as usize)
            .cloned()
            .collect();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated.0 {
            return Ok(self.truncated.1);
        }
        if idx < self.truncated.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index_now() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.truncated.0 - 1) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first_index_now())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index_now())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // Called on the store thread, where applies happen: the engine is exactly at
        // `applied`, so its data and that index describe the same state.
        let (region, conf_state) = &self.applied_view;
        let data = region_data(&self.engine, region)
            .map_err(|e| raft::Error::Store(StorageError::Other(Box::new(e))))?;
        let mut snap = Snapshot {
            data: data.encode().into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = self.applied.0;
        meta.term = self.applied.1;
        meta.set_conf_state(conf_state.clone());
        Ok(snap)
    }
}

/// The meta key under which a snapshot carries its region (range, epoch, peers): it is taken
/// out before the data is applied, never stored in the meta table.
pub const SNAPSHOT_REGION: &str = "snapshot_region";

/// Takes the region out of a snapshot's batch (older snapshots carry none).
pub fn take_snapshot_region(
    batch: &mut WriteBatch,
) -> Result<Option<metapb::Region>, prost::DecodeError> {
    let Some(i) = batch.ops.iter().position(
        |op| matches!(op, Op::Put { cf: Cf::Meta, key, .. } if key == SNAPSHOT_REGION.as_bytes()),
    ) else {
        return Ok(None);
    };
    match batch.ops.remove(i) {
        Op::Put { value, .. } => metapb::Region::decode(value.as_slice()).map(Some),
        Op::Delete { .. } => Ok(None),
    }
}

/// The region's data as puts: every lock and write record in its range, the GC safe point,
/// and the region itself ([`SNAPSHOT_REGION`]). Locks are keyed by raw key, write records by encoded key: each table is ranged by
/// the region's bounds in its own form.
fn region_data(engine: &Engine, region: &metapb::Region) -> Result<WriteBatch, PeerStorageError> {
    let txn = engine.db().begin_read()?;
    let mut batch = WriteBatch::default();
    let raw = (
        super::split::raw_bound(&region.start_key),
        super::split::raw_bound(&region.end_key),
    );
    let encoded = (region.start_key.clone(), region.end_key.clone());
    for (cf, table, (lo, hi)) in [
        (Cf::Lock, LOCK_TABLE, raw),
        (Cf::Write, WRITE_TABLE, encoded),
    ] {
        let upper = if hi.is_empty() {
            std::ops::Bound::Unbounded
        } else {
            std::ops::Bound::Excluded(hi.as_slice())
        };
        let table = txn.open_table(table)?;
        let rows = redb::ReadableTable::range::<&[u8]>(
            &table,
            (std::ops::Bound::Included(lo.as_slice()), upper),
        )?;
        for row in rows {
            let (k, v) = row?;
            batch.ops.push(Op::Put {
                cf,
                key: k.value().to_vec(),
                value: v.value().to_vec(),
            });
        }
    }
    if let Some(v) = txn.open_table(META_TABLE)?.get(META_GC_SAFE_POINT)? {
        batch.put_meta(META_GC_SAFE_POINT, v.value());
    }
    batch.put_meta(SNAPSHOT_REGION, &region.encode_to_vec());
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage as _;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("e{index}t{term}").into_bytes().into(),
            ..Default::default()
        }
    }

    fn write(engine: &Engine, f: impl FnOnce(&mut RaftTables<'_>)) {
        let txn = engine.db().begin_write().unwrap();
        {
            let mut t = RaftTables::open(&txn).unwrap();
            f(&mut t);
        }
        txn.commit().unwrap();
    }

    #[test]
    fn the_log_survives_a_reopen_with_overwrites_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(dir.path()).unwrap();
        let engine = Arc::new(engine);
        let region = metapb::Region {
            id: 7,
            peers: vec![metapb::Peer {
                id: 1,
                store_id: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut ps = PeerStorage::bootstrap(region, engine.clone());
        let log_dir = dir.path().join("raft-log");
        let (mut log, _) = RaftLogFile::open(&log_dir, 1 << 16).unwrap();
        write(&engine, |t| ps.persist_all(t).unwrap());
        ps.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>(), &mut log)
            .unwrap();
        log.sync(Vec::new).unwrap();
        // A new leader overwrites 4..=5 with one entry of term 2.
        ps.append(&[entry(4, 2)], &mut log).unwrap();
        log.sync(Vec::new).unwrap();
        assert_eq!(ps.last_index_now(), 4);
        write(&engine, |t| {
            let hs = HardState {
                term: 2,
                commit: 4,
                ..Default::default()
            };
            ps.set_hard_state(hs, Some(t)).unwrap();
            ps.compact_to(3, t).unwrap();
        });
        assert_eq!(ps.first_index_now(), 3);
        assert_eq!(
            ps.term(2).unwrap(),
            1,
            "the truncation point keeps its term"
        );
        assert!(ps.term(1).is_err());
        drop(ps);
        drop(log);

        let (_, mut recovered) = RaftLogFile::open(&log_dir, 1 << 16).unwrap();
        let back = PeerStorage::load(&engine, 7, &mut recovered)
            .unwrap()
            .expect("state exists");
        assert_eq!(back.first_index_now(), 3);
        assert_eq!(back.last_index_now(), 4);
        assert_eq!(back.term(4).unwrap(), 2);
        assert_eq!(back.hard_state().commit, 4);
        let got = back
            .entries(3, 5, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got, vec![entry(3, 1), entry(4, 2)]);
        assert!(
            PeerStorage::load(&engine, 8, &mut recovered)
                .unwrap()
                .is_none(),
            "another region has no state"
        );
    }

    /// A ready that only moves the commit index writes no engine state; one that changes the
    /// term or vote cannot be kept in memory alone.
    #[test]
    fn only_a_term_or_vote_change_needs_an_engine_write() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(dir.path()).unwrap();
        let region = metapb::Region {
            id: 7,
            peers: vec![metapb::Peer {
                id: 1,
                store_id: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut ps = PeerStorage::bootstrap(region, Arc::new(engine));
        let hs = |term, vote, commit| HardState {
            term,
            vote,
            commit,
            ..Default::default()
        };
        assert!(ps.hard_state_needs_write(&hs(1, 1, 0)));
        assert!(
            ps.set_hard_state(hs(1, 1, 0), None).is_err(),
            "a new vote with nowhere to write it is refused"
        );
        assert_eq!(ps.hard_state().term, 0, "and not taken in memory either");
        write(&ps.engine.clone(), |t| {
            ps.persist_all(t).unwrap();
            assert!(ps.set_hard_state(hs(1, 1, 0), Some(t)).unwrap());
        });
        assert!(!ps.hard_state_needs_write(&hs(1, 1, 9)));
        assert!(!ps.set_hard_state(hs(1, 1, 9), None).unwrap());
        assert_eq!(ps.hard_state().commit, 9);
        let back = PeerStorage::load(&ps.engine, 7, &mut Recovered::new())
            .unwrap()
            .unwrap();
        assert_eq!((back.hard_state().term, back.hard_state().vote), (1, 1));
    }
}
