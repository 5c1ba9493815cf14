//! The transaction layer: Percolator's actions and the scheduler that runs them durably.
//!
//! This mirrors TiKV's `src/storage/txn`: each RPC that changes state becomes a command
//! ([`actions`]) that reads through an [`MvccReader`] and buffers its changes in an
//! [`MvccTxn`]; the [`scheduler`] runs a region's commands in batches on its leader and hands
//! the writes they decided on to Raft (group commit), answering each client only after its
//! batch is committed and applied.

pub mod actions;
pub mod scheduler;

use crate::concurrency::{CommitHandle, ConcurrencyManager};
use crate::mvcc::reader::{MvccReader, ReadError};
use crate::mvcc::{Lock, MvccTxn};
use crate::proto::kvrpcpb;
use crate::raftstore::RegionError;
use crate::raftstore::command::{EngineTables, WriteBatch};
use crate::txn_types::{Key, TimeStamp};

/// Why a transactional command failed. The variants are TiKV's, and [`TxnError::to_key_error`]
/// maps them onto the `KeyError` fields the TiKV client understands.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TxnError {
    /// Another transaction's lock is in the way; the client resolves it and retries. Boxed:
    /// `LockInfo` is large and this error travels through every `Result` of the layer.
    #[error("key {} is locked by transaction {}", .0.key.escape_ascii(), .0.lock_version)]
    KeyIsLocked(Box<kvrpcpb::LockInfo>),
    /// Someone committed (or rolled back) this key after our start ts: Percolator's
    /// first-committer-wins. SurrealDB reports it as a retryable "Transaction conflict".
    #[error(
        "write conflict on key {key}: committed at {conflict_commit_ts} by txn {conflict_start_ts}, after our start ts {start_ts}"
    )]
    WriteConflict {
        /// Our start ts.
        start_ts: TimeStamp,
        /// The transaction that won.
        conflict_start_ts: TimeStamp,
        /// When it committed.
        conflict_commit_ts: TimeStamp,
        /// The contested key.
        key: Key,
        /// Our primary key.
        primary: Key,
        /// Why (optimistic conflict, or we were already rolled back).
        reason: kvrpcpb::write_conflict::Reason,
    },
    /// `Insert` / `CheckNotExists` found a live value.
    #[error("key {key} already exists")]
    AlreadyExist {
        /// The key.
        key: Key,
    },
    /// A commit ts below the lock's `min_commit_ts`.
    #[error(
        "commit ts {commit_ts} of txn {start_ts} is below min commit ts {min_commit_ts} on key {key}"
    )]
    CommitTsExpired {
        /// The transaction.
        start_ts: TimeStamp,
        /// The commit ts asked for.
        commit_ts: TimeStamp,
        /// The key.
        key: Key,
        /// The lock's minimum.
        min_commit_ts: TimeStamp,
    },
    /// Commit found neither the transaction's lock nor its commit record (it was rolled back).
    #[error("txn {start_ts} has no lock on key {key} to commit (rolled back?)")]
    TxnLockNotFound {
        /// The transaction.
        start_ts: TimeStamp,
        /// The commit ts asked for.
        commit_ts: TimeStamp,
        /// The key.
        key: Key,
    },
    /// Status check of a transaction that left no trace on its primary key.
    #[error("txn {start_ts} not found on primary key {key}")]
    TxnNotFound {
        /// The transaction.
        start_ts: TimeStamp,
        /// The primary key.
        key: Key,
    },
    /// Rollback of a transaction that already committed.
    #[error("txn {start_ts} already committed at {commit_ts} (key {key})")]
    Committed {
        /// The transaction.
        start_ts: TimeStamp,
        /// Its commit ts.
        commit_ts: TimeStamp,
        /// The key.
        key: Key,
    },
    /// A pessimistic transaction prewrote a key that should hold its pessimistic lock, and
    /// the lock is not there (rolled back, resolved, or another transaction's lock is in its
    /// place). Committing without it could lose an update, so the transaction aborts.
    #[error("pessimistic lock of txn {start_ts} on key {key} not found: {reason}")]
    PessimisticLockNotFound {
        /// The transaction.
        start_ts: TimeStamp,
        /// The key.
        key: Key,
        /// What was found instead.
        reason: &'static str,
    },
    /// A pessimistic lock was requested by a transaction that is already rolled back here.
    #[error("txn {start_ts} was rolled back on key {key}; its pessimistic lock is refused")]
    PessimisticLockRolledBack {
        /// The transaction.
        start_ts: TimeStamp,
        /// The key.
        key: Key,
    },
    /// The transaction's own lock is of the other kind (an optimistic prewrite over its
    /// pessimistic lock, or a pessimistic lock request over its prewritten lock).
    #[error("txn {start_ts} on key {key}: lock type mismatch (found pessimistic: {pessimistic})")]
    LockTypeNotMatch {
        /// The transaction.
        start_ts: TimeStamp,
        /// The key.
        key: Key,
        /// Whether the lock found is pessimistic.
        pessimistic: bool,
    },
    /// The engine failed; nothing of the command was applied.
    #[error("storage engine error: {0}")]
    Engine(String),
    /// The region cannot serve the command here (not its leader, not committed in time): the
    /// gRPC layer sends it as the response's `region_error`, which the client retries.
    #[error(transparent)]
    Region(#[from] RegionError),
}

impl From<ReadError> for TxnError {
    fn from(e: ReadError) -> Self {
        TxnError::Engine(e.to_string())
    }
}

impl From<redb::StorageError> for TxnError {
    fn from(e: redb::StorageError) -> Self {
        TxnError::Engine(e.to_string())
    }
}

impl From<std::io::Error> for TxnError {
    fn from(e: std::io::Error) -> Self {
        TxnError::Engine(format!("timestamp oracle: {e}"))
    }
}

impl TxnError {
    /// `KeyIsLocked` for `lock` found on `key`.
    pub fn key_is_locked(key: &Key, lock: &Lock) -> TxnError {
        TxnError::KeyIsLocked(Box::new(lock.to_lock_info(key)))
    }

    /// The `KeyError` TiKV would send for this error (see TiKV's `extract_key_error`).
    pub fn to_key_error(&self) -> kvrpcpb::KeyError {
        let mut e = kvrpcpb::KeyError::default();
        match self {
            TxnError::KeyIsLocked(info) => e.locked = Some((**info).clone()),
            TxnError::WriteConflict {
                start_ts,
                conflict_start_ts,
                conflict_commit_ts,
                key,
                primary,
                reason,
            } => {
                e.conflict = Some(kvrpcpb::WriteConflict {
                    start_ts: start_ts.into_inner(),
                    conflict_ts: conflict_start_ts.into_inner(),
                    conflict_commit_ts: conflict_commit_ts.into_inner(),
                    key: key.as_raw().to_vec(),
                    primary: primary.as_raw().to_vec(),
                    reason: *reason as i32,
                });
            }
            TxnError::AlreadyExist { key } => {
                e.already_exist = Some(kvrpcpb::AlreadyExist {
                    key: key.as_raw().to_vec(),
                })
            }
            TxnError::CommitTsExpired {
                start_ts,
                commit_ts,
                key,
                min_commit_ts,
            } => {
                e.commit_ts_expired = Some(kvrpcpb::CommitTsExpired {
                    start_ts: start_ts.into_inner(),
                    attempted_commit_ts: commit_ts.into_inner(),
                    key: key.as_raw().to_vec(),
                    min_commit_ts: min_commit_ts.into_inner(),
                });
            }
            TxnError::TxnNotFound { start_ts, key } => {
                e.txn_not_found = Some(kvrpcpb::TxnNotFound {
                    start_ts: start_ts.into_inner(),
                    primary_key: key.as_raw().to_vec(),
                });
            }
            TxnError::TxnLockNotFound { .. } => e.retryable = self.to_string(),
            // TiKV reports these as `abort` too (its `extract_key_error` default arm).
            TxnError::Committed { .. }
            | TxnError::PessimisticLockNotFound { .. }
            | TxnError::PessimisticLockRolledBack { .. }
            | TxnError::LockTypeNotMatch { .. }
            | TxnError::Engine(_)
            | TxnError::Region(_) => e.abort = self.to_string(),
        }
        e
    }
}

/// The outcome of asking "did transaction T commit?" (CheckTxnStatus, Cleanup).
#[derive(Debug, Clone)]
pub enum TxnStatus {
    /// Committed at this ts.
    Committed(TimeStamp),
    /// Rolled back (possibly just now, by this check).
    RolledBack(kvrpcpb::Action),
    /// Still running: its primary lock, whose TTL has not run out.
    Locked(kvrpcpb::LockInfo, kvrpcpb::Action),
}

/// A byte-keyed table of the batch's write transaction.
pub type BatchTable<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

/// A reader over the batch's own tables (sees every earlier command of the batch).
pub type BatchReader<'a, 't> = MvccReader<'a, BatchTable<'t>, BatchTable<'t>>;

/// What a command sees and touches: a scratch view of the engine (its applied state plus the
/// batch's earlier commands), the commit-ts registry, and the writes to replicate.
pub struct WriteContext<'t> {
    /// The scratch view's tables; `tables.write` may be read directly (GC scans it).
    pub tables: EngineTables<'t>,
    /// Allocates commit timestamps that readers must wait for.
    pub cm: &'t ConcurrencyManager,
    /// Commit timestamps allocated in this batch, released once it is applied.
    pub allocated: Vec<CommitHandle>,
    /// The engine writes of the batch so far, proposed to Raft as one entry.
    pub batch: WriteBatch,
    /// An engine write failed half-way: the batch must be abandoned, not proposed.
    pub failed: bool,
}

impl<'t> WriteContext<'t> {
    /// A reader over the batch's tables (sees every earlier command of the batch).
    pub fn reader(&self) -> BatchReader<'_, 't> {
        MvccReader::new(&self.tables.lock, &self.tables.write)
    }

    /// Chooses a commit ts of at least `floor` for `keys`, above every read this store
    /// served, that readers above it will wait for (see [`crate::concurrency`]).
    pub fn allocate_commit_ts(
        &mut self,
        keys: Vec<Key>,
        floor: TimeStamp,
    ) -> Result<TimeStamp, TxnError> {
        let h = self.cm.allocate_commit_ts(keys, floor)?;
        self.allocated.push(h);
        Ok(h.ts)
    }

    /// Records a command's buffered changes (call only when the command succeeded): into the
    /// scratch view, so later commands of the batch see them, and into the batch to replicate.
    pub fn apply(&mut self, txn: MvccTxn) -> Result<(), TxnError> {
        if !txn.is_empty() {
            self.record(WriteBatch::from_modifies(txn.modifies))?;
        }
        Ok(())
    }

    /// Records a metadata write (e.g. the GC safe point), replicated in order with the rest.
    pub fn put_meta(&mut self, name: &str, value: &[u8]) -> Result<(), TxnError> {
        let mut b = WriteBatch::default();
        b.put_meta(name, value);
        self.record(b)
    }

    fn record(&mut self, writes: WriteBatch) -> Result<(), TxnError> {
        if let Err(e) = writes.apply_to(&mut self.tables) {
            self.failed = true;
            return Err(e.into());
        }
        self.batch.extend(writes);
        Ok(())
    }
}
