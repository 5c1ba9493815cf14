//! Percolator's transaction actions, one module each as in TiKV's `txn/actions` and
//! `txn/commands`. Every action reads through the batch's [`MvccReader`](crate::mvcc::MvccReader),
//! buffers changes in an [`MvccTxn`] and applies them only when it succeeds.
//!
//! | RPC | action |
//! |---|---|
//! | KvPrewrite | [`prewrite::prewrite`] (incl. 1PC and async commit) |
//! | KvCommit | [`commit::commit`] |
//! | KvBatchRollback, KvCleanup | [`cleanup::rollback`], [`cleanup::cleanup`] |
//! | KvCheckTxnStatus, KvCheckSecondaryLocks | [`check_txn_status`] |
//! | KvResolveLock | [`resolve_lock::resolve_lock`] |
//! | KvTxnHeartBeat | [`heartbeat::heartbeat`] |
//! | KvGC, UpdateGCSafePoint, UnsafeDestroyRange | [`gc`] |

pub mod check_txn_status;
pub mod cleanup;
pub mod commit;
pub mod gc;
pub mod heartbeat;
pub mod prewrite;
pub mod resolve_lock;

use super::{TxnError, WriteContext};
use crate::mvcc::reader::{ByteTable, MvccReader, TxnCommitRecord};
use crate::mvcc::{Lock, MvccTxn, Write, WriteType};

/// Turns `lock` into a write record at `commit_ts` (the heart of Percolator's commit).
pub fn commit_lock<L: ByteTable, W: ByteTable>(
    reader: &MvccReader<'_, L, W>,
    txn: &mut MvccTxn,
    key: &[u8],
    lock: &Lock,
    commit_ts: u64,
) -> Result<(), TxnError> {
    if commit_ts < lock.min_commit_ts {
        return Err(TxnError::CommitTsExpired {
            start_ts: lock.start_ts,
            commit_ts,
            key: key.to_vec(),
            min_commit_ts: lock.min_commit_ts,
        });
    }
    let mut write = Write::new(
        WriteType::from_lock(lock.lock_type()),
        lock.start_ts,
        lock.value.clone(),
    );
    // If another transaction's rollback sits at exactly this ts, keep its meaning alive.
    if let Some((ts, existing)) = reader.seek_write(key, commit_ts)? {
        if ts == commit_ts && existing.write_type() == WriteType::Rollback {
            write.has_overlapped_rollback = true;
        }
    }
    txn.unlock(key);
    txn.put_write(key, commit_ts, write);
    Ok(())
}

/// Leaves a rollback record for `start_ts` on `key`, so a late prewrite of that transaction
/// fails instead of resurrecting it (TiKV's "protected rollback").
pub fn write_rollback<L: ByteTable, W: ByteTable>(
    reader: &MvccReader<'_, L, W>,
    txn: &mut MvccTxn,
    key: &[u8],
    start_ts: u64,
) -> Result<(), TxnError> {
    if let Some((ts, mut existing)) = reader.seek_write(key, start_ts)? {
        if ts == start_ts {
            // Another transaction committed at exactly our start ts: record the rollback as a
            // flag on its write instead of overwriting it.
            if existing.write_type() != WriteType::Rollback && !existing.has_overlapped_rollback {
                existing.has_overlapped_rollback = true;
                txn.put_write(key, start_ts, existing);
            }
            return Ok(());
        }
    }
    txn.put_write(
        key,
        start_ts,
        Write::new(WriteType::Rollback, start_ts, Vec::new()),
    );
    Ok(())
}

/// Removes `lock` and records the rollback.
pub fn rollback_lock<L: ByteTable, W: ByteTable>(
    reader: &MvccReader<'_, L, W>,
    txn: &mut MvccTxn,
    key: &[u8],
    lock: &Lock,
) -> Result<(), TxnError> {
    txn.unlock(key);
    write_rollback(reader, txn, key, lock.start_ts)
}

/// Decides an async-commit transaction whose primary lock has expired, and applies the
/// decision to every key of the transaction.
///
/// Async commit declares a transaction committed the moment all its locks exist; the commit
/// ts is the largest `min_commit_ts` among them. So the primary lock alone cannot be rolled
/// back on expiry (the client may already have told its user "committed"): we look at every
/// secondary. TiKV leaves this to the client (CheckSecondaryLocks); a single-node store can
/// do it in one atomic step, which also protects against a client that would only look at
/// some of the answers.
pub fn resolve_async_commit(
    ctx: &mut WriteContext<'_>,
    primary: &[u8],
    primary_lock: &Lock,
) -> Result<super::TxnStatus, TxnError> {
    use crate::proto::kvrpcpb::Action;
    let start_ts = primary_lock.start_ts;
    let reader = ctx.reader();
    let mut txn = MvccTxn::default();
    let mut commit_ts = primary_lock.min_commit_ts;
    let mut committed_at = None;
    let mut rolled_back = false;
    let mut locked = Vec::new();
    let mut missing = Vec::new();
    for key in &primary_lock.secondaries {
        match reader.load_lock(key)? {
            Some(lock) if lock.start_ts == start_ts => {
                commit_ts = commit_ts.max(lock.min_commit_ts);
                locked.push((key.clone(), lock));
            }
            _ => match reader.txn_commit_record(key, start_ts)? {
                TxnCommitRecord::Committed(ts) => committed_at = Some(ts),
                TxnCommitRecord::RolledBack => rolled_back = true,
                TxnCommitRecord::None => {
                    rolled_back = true;
                    missing.push(key.clone());
                }
            },
        }
    }
    let status = if let Some(ts) = committed_at.or((!rolled_back).then_some(commit_ts)) {
        commit_lock(&reader, &mut txn, primary, primary_lock, ts)?;
        for (key, lock) in &locked {
            commit_lock(&reader, &mut txn, key, lock, ts)?;
        }
        super::TxnStatus::Committed(ts)
    } else {
        rollback_lock(&reader, &mut txn, primary, primary_lock)?;
        for (key, lock) in &locked {
            rollback_lock(&reader, &mut txn, key, lock)?;
        }
        for key in &missing {
            write_rollback(&reader, &mut txn, key, start_ts)?;
        }
        super::TxnStatus::RolledBack(Action::TtlExpireRollback)
    };
    drop(reader);
    ctx.apply(txn)?;
    Ok(status)
}
