//! Rollback and cleanup: ending a transaction that will not commit.
//!
//! `KvBatchRollback` is a client abandoning its own transaction. `KvCleanup` is a *reader*
//! that found an expired lock and asks the primary's owner "are you dead?": if the primary
//! lock's TTL ran out, it is rolled back (or, for async commit, decided from the secondaries);
//! if the transaction already committed, the reply carries the commit ts so the reader can
//! roll the secondary forward instead.

use crate::mvcc::{Lock, MvccTxn, TxnCommitRecord};
use crate::proto::kvrpcpb::Action;
use crate::txn::actions::{commit_lock, resolve_async_commit, rollback_lock, write_rollback};
use crate::txn::{TxnError, TxnStatus, WriteContext};
use crate::txn_types::{Key, TimeStamp};

/// Rolls back `keys` of transaction `start_ts`.
pub fn rollback(
    ctx: &mut WriteContext<'_>,
    keys: &[Key],
    start_ts: TimeStamp,
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
    ctx.apply(txn)
}

/// Cleans up transaction `start_ts` through its primary `key`; returns its commit ts, or zero
/// when it is (now) rolled back. A zero `current_ts` means "roll back even if not expired".
pub fn cleanup(
    ctx: &mut WriteContext<'_>,
    key: &Key,
    start_ts: TimeStamp,
    current_ts: TimeStamp,
) -> Result<TimeStamp, TxnError> {
    let lock = ctx.reader().load_lock(key)?;
    match lock {
        Some(lock) if lock.start_ts == start_ts => {
            if !current_ts.is_zero() && !lock.is_expired(current_ts) {
                return Err(TxnError::key_is_locked(key, &lock));
            }
            if lock.use_async_commit {
                return Ok(match resolve_async_commit_via(ctx, key, &lock)? {
                    TxnStatus::Committed(ts) => ts,
                    _ => TimeStamp::zero(),
                });
            }
            let reader = ctx.reader();
            let mut txn = MvccTxn::default();
            rollback_lock(&reader, &mut txn, key, &lock)?;
            ctx.apply(txn)?;
            Ok(TimeStamp::zero())
        }
        _ => {
            let reader = ctx.reader();
            let record = reader.txn_commit_record(key, start_ts)?;
            let mut txn = MvccTxn::default();
            let result = match record {
                TxnCommitRecord::Committed(ts) => ts,
                TxnCommitRecord::RolledBack => TimeStamp::zero(),
                TxnCommitRecord::None => {
                    write_rollback(&reader, &mut txn, key, start_ts)?;
                    TimeStamp::zero()
                }
            };
            ctx.apply(txn)?;
            Ok(result)
        }
    }
}

/// Async-commit resolution starting from any key of the transaction: the decision lives with
/// the primary lock (which lists the secondaries).
pub fn resolve_async_commit_via(
    ctx: &mut WriteContext<'_>,
    key: &Key,
    lock: &Lock,
) -> Result<TxnStatus, TxnError> {
    if lock.primary == *key {
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
                    commit_lock(&reader, &mut txn, key, lock, ts)?;
                    TxnStatus::Committed(ts)
                }
                TxnCommitRecord::RolledBack => {
                    rollback_lock(&reader, &mut txn, key, lock)?;
                    TxnStatus::RolledBack(Action::NoAction)
                }
                TxnCommitRecord::None => {
                    // The primary was never prewritten (a split prewrite still on its way):
                    // roll back here and fence the primary, so the transaction cannot later
                    // complete without this key.
                    rollback_lock(&reader, &mut txn, key, lock)?;
                    write_rollback(&reader, &mut txn, &lock.primary, lock.start_ts)?;
                    TxnStatus::RolledBack(Action::LockNotExistRollback)
                }
            };
            ctx.apply(txn)?;
            Ok(status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::WriteType;
    use crate::proto::kvrpcpb::write_conflict::Reason;
    use crate::txn::actions::test_util::{self, *};

    #[test]
    fn rollback_of_a_committed_txn_fails_and_keeps_the_commit() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k", b"v", b"k", 10);
        must_commit(&e, b"k", 10, 20);
        let err = must_rollback_err(&e, b"k", 10);
        assert!(
            matches!(err, TxnError::Committed { commit_ts, .. } if commit_ts == ts(20)),
            "{err:?}"
        );
        must_committed(&e, b"k", 10, 20);
        must_get(&e, b"k", 25, b"v");
    }

    #[test]
    fn rollback_before_prewrite_leaves_a_protected_record() {
        let e = TestEngine::new();
        must_rollback(&e, b"k", 10);
        must_written(&e, b"k", 10, 10, WriteType::Rollback);
        // The late prewrite is refused, so the transaction cannot come back to life.
        let err = must_prewrite_put_err(&e, b"k", b"v", b"k", 10);
        must_conflict(&err, Reason::SelfRolledBack);
        must_unlocked(&e, b"k");
    }

    #[test]
    fn rollback_over_a_commit_at_the_same_ts_flags_it_instead_of_erasing_it() {
        // Txn 5 committed k at 10; txn 10 (start ts = that commit ts) is rolled back on k.
        // The rollback must neither destroy txn 5's value nor be forgotten.
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k", b"v5", b"k", 5);
        must_commit(&e, b"k", 5, 10);
        must_rollback(&e, b"k", 10);
        let write = must_written(&e, b"k", 5, 10, WriteType::Put);
        assert!(write.has_overlapped_rollback);
        must_get(&e, b"k", 10, b"v5");
        must_rolled_back(&e, b"k", 10);
        let err = must_prewrite_put_err(&e, b"k", b"v10", b"k", 10);
        must_conflict(&err, Reason::SelfRolledBack);
    }

    #[test]
    fn rollback_leaves_another_txns_lock_alone() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k", b"v", b"k", 10);
        must_rollback(&e, b"k", 20);
        must_locked(&e, b"k", 10);
        must_rolled_back(&e, b"k", 20);
    }

    #[test]
    fn cleanup_of_a_live_lock_is_refused() {
        let e = TestEngine::new();
        let start = TimeStamp::compose(1_000, 0);
        must_prewrite_put_ttl(&e, b"k", b"v", b"k", start, 100);
        let err = must_err(test_util::cleanup(
            &e,
            b"k",
            start,
            TimeStamp::compose(1_050, 0),
        ));
        assert!(
            matches!(err, TxnError::KeyIsLocked(ref l) if l.lock_version == start.into_inner()),
            "{err:?}"
        );
        must_locked(&e, b"k", start);
        // Once the TTL has run out it is rolled back.
        let rolled = test_util::cleanup(&e, b"k", start, TimeStamp::compose(1_101, 0));
        assert_eq!(must_succeed(rolled), TimeStamp::zero());
        must_unlocked(&e, b"k");
        must_rolled_back(&e, b"k", start);
    }

    #[test]
    fn cleanup_of_a_committed_txn_reports_the_commit_and_writes_nothing() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k", b"v", b"k", 10);
        must_commit(&e, b"k", 10, 20);
        assert_eq!(must_succeed(test_util::cleanup(&e, b"k", 10, 0)), ts(20));
        assert_eq!(e.write_count(b"k"), 1);
    }

    #[test]
    fn cleanup_of_an_unknown_txn_fences_it() {
        let e = TestEngine::new();
        assert_eq!(
            must_succeed(test_util::cleanup(&e, b"k", 10, 0)),
            TimeStamp::zero()
        );
        must_rolled_back(&e, b"k", 10);
        must_prewrite_put_err(&e, b"k", b"v", b"k", 10);
    }

    #[test]
    fn cleanup_via_a_secondary_follows_a_rolled_back_primary() {
        // Async commit: the secondary's lock is resolved through its primary, which was
        // already rolled back; the secondary must be rolled back too, not committed.
        let e = TestEngine::new();
        let start = e.tso();
        must_prewrite_put_async(&e, b"s", b"v", b"p", &[], start, 1);
        must_rollback(&e, b"p", start);
        let lock = must_locked(&e, b"s", start);
        let status = must_succeed(e.run(|ctx| resolve_async_commit_via(ctx, &k(b"s"), &lock)));
        assert!(matches!(status, TxnStatus::RolledBack(_)), "{status:?}");
        must_unlocked(&e, b"s");
        must_rolled_back(&e, b"s", start);
    }
}
