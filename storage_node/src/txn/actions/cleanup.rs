//! Rollback and cleanup: ending a transaction that will not commit.
//!
//! `KvBatchRollback` is a client abandoning its own transaction. `KvCleanup` is a *reader*
//! that found an expired lock and asks the primary's owner "are you dead?": if the primary
//! lock's TTL ran out, it is rolled back (or, for async commit, decided from the secondaries);
//! if the transaction already committed, the reply carries the commit ts so the reader can
//! roll the secondary forward instead.

use super::super::{TxnError, TxnStatus, WriteContext};
use super::{resolve_async_commit, rollback_lock, write_rollback};
use crate::mvcc::{MvccTxn, TxnCommitRecord};

/// Rolls back `keys` of transaction `start_ts`.
pub fn rollback(
    ctx: &mut WriteContext<'_>,
    keys: &[Vec<u8>],
    start_ts: u64,
) -> Result<(), TxnError> {
    let reader = ctx.reader();
    let mut txn = MvccTxn::default();
    for key in keys {
        match reader.load_lock(key)? {
            Some(lock) if lock.start_ts == start_ts => {
                rollback_lock(&reader, &mut txn, key, &lock)?
            }
            _ => match reader.txn_commit_record(key, start_ts)? {
                TxnCommitRecord::Committed(commit_ts) => {
                    return Err(TxnError::Committed {
                        start_ts,
                        commit_ts,
                        key: key.clone(),
                    });
                }
                TxnCommitRecord::RolledBack => {}
                // Not prewritten yet: leave a rollback record so a late prewrite fails.
                TxnCommitRecord::None => write_rollback(&reader, &mut txn, key, start_ts)?,
            },
        }
    }
    drop(reader);
    ctx.apply(txn)
}

/// Cleans up transaction `start_ts` through its primary `key`; returns its commit ts, or 0
/// when it is (now) rolled back. `current_ts == 0` means "roll back even if not expired".
pub fn cleanup(
    ctx: &mut WriteContext<'_>,
    key: &[u8],
    start_ts: u64,
    current_ts: u64,
) -> Result<u64, TxnError> {
    let lock = ctx.reader().load_lock(key)?;
    match lock {
        Some(lock) if lock.start_ts == start_ts => {
            if current_ts != 0 && !lock.is_expired(current_ts) {
                return Err(TxnError::KeyIsLocked(lock.to_lock_info(key)));
            }
            if lock.use_async_commit {
                return Ok(match resolve_async_commit_via(ctx, key, &lock)? {
                    TxnStatus::Committed(ts) => ts,
                    _ => 0,
                });
            }
            let reader = ctx.reader();
            let mut txn = MvccTxn::default();
            rollback_lock(&reader, &mut txn, key, &lock)?;
            drop(reader);
            ctx.apply(txn)?;
            Ok(0)
        }
        _ => {
            let reader = ctx.reader();
            let record = reader.txn_commit_record(key, start_ts)?;
            let mut txn = MvccTxn::default();
            let result = match record {
                TxnCommitRecord::Committed(ts) => ts,
                TxnCommitRecord::RolledBack => 0,
                TxnCommitRecord::None => {
                    write_rollback(&reader, &mut txn, key, start_ts)?;
                    0
                }
            };
            drop(reader);
            ctx.apply(txn)?;
            Ok(result)
        }
    }
}

/// Async-commit resolution starting from any key of the transaction: the decision lives with
/// the primary lock (which lists the secondaries).
pub fn resolve_async_commit_via(
    ctx: &mut WriteContext<'_>,
    key: &[u8],
    lock: &crate::mvcc::Lock,
) -> Result<TxnStatus, TxnError> {
    if lock.primary == key {
        return resolve_async_commit(ctx, key, lock);
    }
    let primary_lock = ctx.reader().load_lock(&lock.primary)?;
    match primary_lock {
        Some(p) if p.start_ts == lock.start_ts => {
            resolve_async_commit(ctx, &lock.primary.clone(), &p)
        }
        _ => {
            // The primary is already decided; follow it.
            let record = ctx
                .reader()
                .txn_commit_record(&lock.primary, lock.start_ts)?;
            let reader = ctx.reader();
            let mut txn = MvccTxn::default();
            let status = match record {
                TxnCommitRecord::Committed(ts) => {
                    super::commit_lock(&reader, &mut txn, key, lock, ts)?;
                    TxnStatus::Committed(ts)
                }
                TxnCommitRecord::RolledBack => {
                    rollback_lock(&reader, &mut txn, key, lock)?;
                    TxnStatus::RolledBack(crate::proto::kvrpcpb::Action::NoAction)
                }
                TxnCommitRecord::None => {
                    // The primary was never prewritten (a split prewrite still on its way):
                    // roll back here and fence the primary, so the transaction cannot later
                    // complete without this key.
                    rollback_lock(&reader, &mut txn, key, lock)?;
                    write_rollback(&reader, &mut txn, &lock.primary, lock.start_ts)?;
                    TxnStatus::RolledBack(crate::proto::kvrpcpb::Action::LockNotExistRollback)
                }
            };
            drop(reader);
            ctx.apply(txn)?;
            Ok(status)
        }
    }
}
