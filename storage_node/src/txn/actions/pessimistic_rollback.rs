//! PessimisticRollback: a pessimistic transaction gives back locks it no longer wants.
//!
//! The client sends it when a lock request failed half-way (locks of the succeeded part must
//! go), when it rolls back a pessimistic transaction, and when it retries a statement. Only
//! this transaction's *pessimistic* locks at or below `for_update_ts` are removed: a lock
//! taken by a later request of the same transaction (a higher `for_update_ts`) belongs to a
//! newer statement and must stay, a prewritten lock is the commit protocol's business
//! (KvBatchRollback), and other transactions' locks are never touched.
//!
//! No rollback record is written (TiKV's `commands/pessimistic_rollback.rs` does the same):
//! a pessimistic lock holds no data, and the transaction itself may go on and lock the key
//! again; a rollback record would fence it out.

use crate::mvcc::MvccTxn;
use crate::txn::{TxnError, WriteContext};
use crate::txn_types::{Key, TimeStamp};

/// Removes `start_ts`'s pessimistic locks with `for_update_ts` ≤ the given one on `keys`;
/// returns how many were removed.
pub fn pessimistic_rollback(
    ctx: &mut WriteContext<'_>,
    keys: &[Key],
    start_ts: TimeStamp,
    for_update_ts: TimeStamp,
) -> Result<usize, TxnError> {
    let reader = ctx.reader();
    let mut txn = MvccTxn::default();
    let mut removed = 0;
    for key in keys {
        if let Some(lock) = reader.load_lock(key)?
            && lock.is_pessimistic()
            && lock.start_ts == start_ts
            && lock.for_update_ts <= for_update_ts
        {
            txn.unlock(key);
            removed += 1;
        }
    }
    ctx.apply(txn)?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{LockType, TxnCommitRecord};
    use crate::txn::actions::test_util::*;

    fn rollback(e: &TestEngine, keys: &[&[u8]], start: u64, for_update: u64) -> usize {
        let keys: Vec<Key> = keys.iter().map(|raw| k(raw)).collect();
        must_succeed(e.run(|ctx| pessimistic_rollback(ctx, &keys, ts(start), ts(for_update))))
    }

    #[test]
    fn removes_the_lock_without_a_rollback_record() {
        let e = TestEngine::new();
        must_acquire_pessimistic_lock(&e, b"k", b"k", 10, 12);
        assert_eq!(rollback(&e, &[b"k"], 10, 12), 1);
        must_unlocked(&e, b"k");
        assert_eq!(commit_record(&e, b"k", 10), TxnCommitRecord::None);
        assert_eq!(e.write_count(b"k"), 0);
        // The transaction may lock the key again, and another may lock it at once.
        must_acquire_pessimistic_lock(&e, b"k", b"k", 10, 14);
        assert_eq!(rollback(&e, &[b"k"], 10, 14), 1);
        must_acquire_pessimistic_lock(&e, b"k", b"k", 20, 20);
    }

    #[test]
    fn leaves_newer_prewritten_and_foreign_locks_alone() {
        let e = TestEngine::new();
        // Taken by a later statement of the same transaction.
        must_acquire_pessimistic_lock(&e, b"newer", b"newer", 10, 20);
        // Already prewritten by this transaction.
        must_acquire_pessimistic_lock(&e, b"pre", b"newer", 10, 12);
        must_pessimistic_prewrite_put(&e, b"pre", b"v", b"newer", 10, 12);
        // Another transaction's pessimistic lock, and an optimistic one.
        must_acquire_pessimistic_lock(&e, b"other", b"other", 30, 30);
        must_prewrite_put(&e, b"opt", b"v", b"opt", 10);
        assert_eq!(
            rollback(&e, &[b"newer", b"pre", b"other", b"opt", b"absent"], 10, 15),
            0
        );
        must_pessimistic_locked(&e, b"newer", 10, 20);
        assert_eq!(must_locked(&e, b"pre", 10).lock_type, LockType::Put);
        must_pessimistic_locked(&e, b"other", 30, 30);
        assert_eq!(must_locked(&e, b"opt", 10).lock_type, LockType::Put);
        assert_eq!(e.write_count(b"absent"), 0, "nothing is fenced");
    }
}
