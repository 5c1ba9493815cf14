//! Percolator's transaction actions, one module each as in TiKV's `txn/actions` and
//! `txn/commands`. Every action reads through the batch's [`MvccReader`],
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
//! | KvPessimisticLock | [`acquire_pessimistic_lock::acquire_pessimistic_lock`] |
//! | KvPessimisticRollback | [`pessimistic_rollback::pessimistic_rollback`] |
//!
//! Each module ends with tests of what its action refuses to do (TiKV's `must_err` style),
//! built on the `test_util` helpers: a temp-dir engine and `must_prewrite_put`, `must_commit`,
//! `must_rollback`, `must_locked`, `must_get`, … that run one command the way the scheduler
//! does.

pub mod acquire_pessimistic_lock;
pub mod check_txn_status;
pub mod cleanup;
pub mod commit;
pub mod gc;
pub mod heartbeat;
pub mod pessimistic_rollback;
pub mod prewrite;
pub mod resolve_lock;
#[cfg(test)]
pub mod test_util;

use crate::mvcc::reader::{ByteTable, MvccReader, TxnCommitRecord};
use crate::mvcc::{Lock, MvccTxn, Write, WriteType};
use crate::proto::kvrpcpb::Action;
use crate::txn::{TxnError, TxnStatus, WriteContext};
use crate::txn_types::{Key, TimeStamp};

/// Turns `lock` into a write record at `commit_ts` (the heart of Percolator's commit).
pub fn commit_lock<L: ByteTable, W: ByteTable>(
    reader: &MvccReader<'_, L, W>,
    txn: &mut MvccTxn,
    key: &Key,
    lock: &Lock,
    commit_ts: TimeStamp,
) -> Result<(), TxnError> {
    if commit_ts < lock.min_commit_ts {
        return Err(TxnError::CommitTsExpired {
            start_ts: lock.start_ts,
            commit_ts,
            key: key.clone(),
            min_commit_ts: lock.min_commit_ts,
        });
    }
    if lock.is_pessimistic() {
        // A pessimistic lock the transaction never prewrote (it retried the statement and
        // did not need the key after all, and the pessimistic rollback was lost): it holds
        // no data, so committing the transaction just removes it (TiKV does the same).
        txn.unlock(key);
        return Ok(());
    }
    let mut write = Write::new(
        WriteType::from_lock(lock.lock_type),
        lock.start_ts,
        lock.value.clone(),
    );
    // If another transaction's rollback sits at exactly this ts, keep its meaning alive.
    if let Some((ts, existing)) = reader.seek_write(key, commit_ts)?
        && ts == commit_ts
        && existing.write_type == WriteType::Rollback
    {
        write.has_overlapped_rollback = true;
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
    key: &Key,
    start_ts: TimeStamp,
) -> Result<(), TxnError> {
    if let Some((ts, mut existing)) = reader.seek_write(key, start_ts)?
        && ts == start_ts
    {
        // Another transaction committed at exactly our start ts: record the rollback as a
        // flag on its write instead of overwriting it.
        if existing.write_type != WriteType::Rollback && !existing.has_overlapped_rollback {
            existing.has_overlapped_rollback = true;
            txn.put_write(key, start_ts, existing);
        }
        return Ok(());
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
    key: &Key,
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
    primary: &Key,
    primary_lock: &Lock,
) -> Result<TxnStatus, TxnError> {
    let start_ts = primary_lock.start_ts;
    let reader = ctx.reader();
    let mut txn = MvccTxn::default();
    let mut commit_ts = primary_lock.min_commit_ts;
    let mut committed_at = None;
    let mut rolled_back = false;
    let mut locked = Vec::new();
    let mut missing = Vec::new();
    let mut locked_pessimistic = Vec::new();
    for key in &primary_lock.secondaries {
        match reader.load_lock(key)? {
            // Locked but not prewritten yet: as good as missing (TiKV's CheckSecondaryLocks
            // rolls a pessimistic lock back too).
            Some(lock) if lock.start_ts == start_ts && lock.is_pessimistic() => {
                rolled_back = true;
                locked_pessimistic.push((key.clone(), lock));
            }
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
        for (key, lock) in locked.iter().chain(&locked_pessimistic) {
            commit_lock(&reader, &mut txn, key, lock, ts)?;
        }
        TxnStatus::Committed(ts)
    } else {
        rollback_lock(&reader, &mut txn, primary, primary_lock)?;
        for (key, lock) in locked.iter().chain(&locked_pessimistic) {
            rollback_lock(&reader, &mut txn, key, lock)?;
        }
        for key in &missing {
            write_rollback(&reader, &mut txn, key, start_ts)?;
        }
        TxnStatus::RolledBack(Action::TtlExpireRollback)
    };
    ctx.apply(txn)?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use crate::mvcc::WriteType;
    use crate::proto::kvrpcpb::write_conflict::Reason;
    use crate::txn::actions::test_util::*;

    #[test]
    fn commit_onto_another_txns_rollback_at_the_same_ts_keeps_the_rollback() {
        // Txn 10 holds k; txn 20 is rolled back on k before it got there (record at 20);
        // txn 10 then commits k at 20. The commit record replaces the rollback record but
        // must carry it, or txn 20's late prewrite would be accepted.
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k", b"v", b"k", 10);
        must_rollback(&e, b"k", 20);
        must_commit(&e, b"k", 10, 20);
        let write = must_written(&e, b"k", 10, 20, WriteType::Put);
        assert!(write.has_overlapped_rollback);
        must_rolled_back(&e, b"k", 20);
        let err = must_prewrite_put_err(&e, b"k", b"w", b"k", 20);
        must_conflict(&err, Reason::SelfRolledBack);
    }
}
