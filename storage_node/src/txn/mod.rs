//! The transaction layer: Percolator's actions and the scheduler that runs them durably.
//!
//! This mirrors TiKV's `src/storage/txn`: each RPC that changes state becomes a command
//! ([`actions`]) that reads through an [`MvccReader`] and buffers its changes in an
//! [`MvccTxn`]; the [`scheduler`] runs commands one after another on a single writer thread
//! and commits them to the engine in batches (group commit), answering each client only after
//! its batch is on disk.

pub mod actions;
pub mod scheduler;

use crate::concurrency::ConcurrencyManager;
use crate::mvcc::MvccTxn;
use crate::mvcc::reader::{MvccReader, ReadError, printable};
use crate::proto::kvrpcpb;

/// Why a transactional command failed. The variants are TiKV's, and [`TxnError::to_key_error`]
/// maps them onto the `KeyError` fields the TiKV client understands.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TxnError {
    /// Another transaction's lock is in the way; the client resolves it and retries.
    #[error("key {} is locked by transaction {}", printable(&.0.key), .0.lock_version)]
    KeyIsLocked(kvrpcpb::LockInfo),
    /// Someone committed (or rolled back) this key after our start ts: Percolator's
    /// first-committer-wins. SurrealDB reports it as a retryable "Transaction conflict".
    #[error(
        "write conflict on key {}: committed at {conflict_commit_ts} by txn {conflict_start_ts}, after our start ts {start_ts}",
        printable(key)
    )]
    WriteConflict {
        /// Our start ts.
        start_ts: u64,
        /// The transaction that won.
        conflict_start_ts: u64,
        /// When it committed.
        conflict_commit_ts: u64,
        /// The contested key.
        key: Vec<u8>,
        /// Our primary key.
        primary: Vec<u8>,
        /// Why (optimistic conflict, or we were already rolled back).
        reason: kvrpcpb::write_conflict::Reason,
    },
    /// `Insert` / `CheckNotExists` found a live value.
    #[error("key {} already exists", printable(key))]
    AlreadyExist {
        /// The key.
        key: Vec<u8>,
    },
    /// A commit ts below the lock's `min_commit_ts`.
    #[error(
        "commit ts {commit_ts} of txn {start_ts} is below min commit ts {min_commit_ts} on key {}",
        printable(key)
    )]
    CommitTsExpired {
        /// The transaction.
        start_ts: u64,
        /// The commit ts asked for.
        commit_ts: u64,
        /// The key.
        key: Vec<u8>,
        /// The lock's minimum.
        min_commit_ts: u64,
    },
    /// Commit found neither the transaction's lock nor its commit record (it was rolled back).
    #[error(
        "txn {start_ts} has no lock on key {} to commit (rolled back?)",
        printable(key)
    )]
    TxnLockNotFound {
        /// The transaction.
        start_ts: u64,
        /// The commit ts asked for.
        commit_ts: u64,
        /// The key.
        key: Vec<u8>,
    },
    /// Status check of a transaction that left no trace on its primary key.
    #[error("txn {start_ts} not found on primary key {}", printable(key))]
    TxnNotFound {
        /// The transaction.
        start_ts: u64,
        /// The primary key.
        key: Vec<u8>,
    },
    /// Rollback of a transaction that already committed.
    #[error(
        "txn {start_ts} already committed at {commit_ts} (key {})",
        printable(key)
    )]
    Committed {
        /// The transaction.
        start_ts: u64,
        /// Its commit ts.
        commit_ts: u64,
        /// The key.
        key: Vec<u8>,
    },
    /// The engine failed; nothing of the command was applied.
    #[error("storage engine error: {0}")]
    Engine(String),
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
    /// The `KeyError` TiKV would send for this error (see TiKV's `extract_key_error`).
    pub fn to_key_error(&self) -> kvrpcpb::KeyError {
        let mut e = kvrpcpb::KeyError::default();
        match self {
            TxnError::KeyIsLocked(info) => e.locked = Some(info.clone()),
            TxnError::WriteConflict {
                start_ts,
                conflict_start_ts,
                conflict_commit_ts,
                key,
                primary,
                reason,
            } => {
                e.conflict = Some(kvrpcpb::WriteConflict {
                    start_ts: *start_ts,
                    conflict_ts: *conflict_start_ts,
                    conflict_commit_ts: *conflict_commit_ts,
                    key: key.clone(),
                    primary: primary.clone(),
                    reason: *reason as i32,
                });
            }
            TxnError::AlreadyExist { key } => {
                e.already_exist = Some(kvrpcpb::AlreadyExist { key: key.clone() })
            }
            TxnError::CommitTsExpired {
                start_ts,
                commit_ts,
                key,
                min_commit_ts,
            } => {
                e.commit_ts_expired = Some(kvrpcpb::CommitTsExpired {
                    start_ts: *start_ts,
                    attempted_commit_ts: *commit_ts,
                    key: key.clone(),
                    min_commit_ts: *min_commit_ts,
                });
            }
            TxnError::TxnNotFound { start_ts, key } => {
                e.txn_not_found = Some(kvrpcpb::TxnNotFound {
                    start_ts: *start_ts,
                    primary_key: key.clone(),
                });
            }
            TxnError::TxnLockNotFound { .. } => e.retryable = self.to_string(),
            TxnError::Committed { .. } | TxnError::Engine(_) => e.abort = self.to_string(),
        }
        e
    }
}

/// The outcome of asking "did transaction T commit?" (CheckTxnStatus, Cleanup).
#[derive(Debug, Clone)]
pub enum TxnStatus {
    /// Committed at this ts.
    Committed(u64),
    /// Rolled back (possibly just now, by this check).
    RolledBack(kvrpcpb::Action),
    /// Still running: its primary lock, whose TTL has not run out.
    Locked(kvrpcpb::LockInfo, kvrpcpb::Action),
}

/// What a command sees and touches: the batch's write transaction and the commit-ts registry.
pub struct WriteContext<'t> {
    /// The lock table of the batch's write transaction.
    pub lock: redb::Table<'t, &'static [u8], &'static [u8]>,
    /// The write table of the batch's write transaction.
    pub write: redb::Table<'t, &'static [u8], &'static [u8]>,
    /// The node's metadata table.
    pub meta: redb::Table<'t, &'static str, &'static [u8]>,
    /// Allocates commit timestamps that readers must wait for.
    pub cm: &'t ConcurrencyManager,
    /// Commit timestamps allocated in this batch, released once it is durable.
    pub allocated: Vec<u64>,
    /// Whether anything was written (an untouched batch needs no fsync).
    pub dirty: bool,
    /// An engine write failed half-way: the batch must be abandoned, not committed.
    pub failed: bool,
}

impl WriteContext<'_> {
    /// A reader over the batch's tables (sees every earlier command of the batch).
    pub fn reader(
        &self,
    ) -> MvccReader<
        '_,
        redb::Table<'_, &'static [u8], &'static [u8]>,
        redb::Table<'_, &'static [u8], &'static [u8]>,
    > {
        MvccReader::new(&self.lock, &self.write)
    }

    /// Allocates a commit ts for `keys` that readers above it will wait for.
    pub fn allocate_commit_ts(&mut self, keys: Vec<Vec<u8>>) -> Result<u64, TxnError> {
        let ts = self.cm.allocate_commit_ts(keys)?;
        self.allocated.push(ts);
        Ok(ts)
    }

    /// Applies a command's buffered changes (call only when the command succeeded).
    pub fn apply(&mut self, txn: MvccTxn) -> Result<(), TxnError> {
        if !txn.is_empty() {
            self.dirty = true;
            if let Err(e) = txn.apply(&mut self.lock, &mut self.write) {
                self.failed = true;
                return Err(e.into());
            }
        }
        Ok(())
    }
}
