//! Commit: phase two of Percolator — turn each lock into a write record at the commit ts.
//!
//! Committing is idempotent: a key whose lock is already gone but whose commit record for
//! this transaction exists is fine. A key with neither was rolled back (its lock expired and
//! someone cleaned it up), and the commit fails — which is why a client must commit the
//! primary first and only report success after that.

use crate::mvcc::{MvccTxn, TxnCommitRecord};
use crate::txn::actions::commit_lock;
use crate::txn::{TxnError, WriteContext};
use crate::txn_types::{Key, TimeStamp};

/// Commits `keys` of transaction `start_ts` at `commit_ts`.
pub fn commit(
    ctx: &mut WriteContext<'_>,
    keys: &[Key],
    start_ts: TimeStamp,
    commit_ts: TimeStamp,
) -> Result<(), TxnError> {
    let reader = ctx.reader();
    let mut txn = MvccTxn::default();
    for key in keys {
        match reader.load_lock(key)? {
            Some(lock) if lock.start_ts == start_ts => {
                commit_lock(&reader, &mut txn, key, &lock, commit_ts)?
            }
            _ => match reader.txn_commit_record(key, start_ts)? {
                TxnCommitRecord::Committed(_) => {}
                TxnCommitRecord::RolledBack | TxnCommitRecord::None => {
                    return Err(TxnError::TxnLockNotFound {
                        start_ts,
                        commit_ts,
                        key: key.clone(),
                    });
                }
            },
        }
    }
    ctx.apply(txn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::WriteType;
    use crate::txn::TxnStatus;
    use crate::txn::actions::test_util::*;

    #[test]
    fn commit_after_rollback_fails_and_the_txn_stays_rolled_back() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k", b"v", b"k", 10);
        must_rollback(&e, b"k", 10);
        let err = must_commit_err(&e, b"k", 10, 20);
        assert!(
            matches!(err, TxnError::TxnLockNotFound { start_ts, commit_ts, ref key }
                if start_ts == ts(10) && commit_ts == ts(20) && *key == k(b"k")),
            "{err:?}"
        );
        must_rolled_back(&e, b"k", 10);
        must_get_none(&e, b"k", 30);
    }

    #[test]
    fn commit_without_any_lock_fails() {
        let e = TestEngine::new();
        let err = must_commit_err(&e, b"k", 10, 20);
        assert!(matches!(err, TxnError::TxnLockNotFound { .. }), "{err:?}");
        assert_eq!(commit_record(&e, b"k", 10), TxnCommitRecord::None);
    }

    #[test]
    fn commit_over_another_txns_lock_fails_and_leaves_it() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k", b"v", b"k", 10);
        let err = must_commit_err(&e, b"k", 5, 20);
        assert!(matches!(err, TxnError::TxnLockNotFound { .. }), "{err:?}");
        must_locked(&e, b"k", 10);
        assert_eq!(commit_record(&e, b"k", 5), TxnCommitRecord::None);
    }

    #[test]
    fn commit_of_an_expired_lock_that_cleanup_rolled_back_fails() {
        let e = TestEngine::new();
        let start = TimeStamp::compose(1_000, 0);
        must_prewrite_put_ttl(&e, b"k", b"v", b"k", start, 100);
        // A reader found the lock 200 ms later and cleaned it up.
        let cleaned = cleanup(&e, b"k", start, TimeStamp::compose(1_200, 0));
        assert_eq!(must_succeed(cleaned), TimeStamp::zero());
        let err = must_commit_err(&e, b"k", start, TimeStamp::compose(1_300, 0));
        assert!(matches!(err, TxnError::TxnLockNotFound { .. }), "{err:?}");
        must_rolled_back(&e, b"k", start);
    }

    #[test]
    fn commit_of_an_expired_lock_resolved_as_committed_is_idempotent() {
        // An async-commit transaction whose locks all exist is committed by whoever checks it
        // first; the owner's own commit arriving later must then succeed, not fail.
        let e = TestEngine::new();
        let start = e.tso();
        let min = must_prewrite_put_async(&e, b"k", b"v", b"k", &[], start, 1);
        let status = check_txn_status(&e, b"k", start, 0, TimeStamp::max(), false);
        assert!(matches!(must_succeed(status), TxnStatus::Committed(c) if c == min));
        must_commit(&e, b"k", start, min);
        must_written(&e, b"k", start, min, WriteType::Put);
        must_get(&e, b"k", TimeStamp::max(), b"v");
    }

    #[test]
    fn commit_below_min_commit_ts_is_refused_and_keeps_the_lock() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k", b"v", b"k", 10);
        // A reader at 30 pushed the lock's min commit ts to 31 so it could read under it.
        let status = must_succeed(check_txn_status(&e, b"k", 10, 30, 0, false));
        assert!(matches!(status, TxnStatus::Locked(..)), "{status:?}");
        let err = must_commit_err(&e, b"k", 10, 20);
        assert!(
            matches!(err, TxnError::CommitTsExpired { min_commit_ts: m, .. } if m == ts(31)),
            "{err:?}"
        );
        must_locked(&e, b"k", 10);
        must_commit(&e, b"k", 10, 40);
        must_get(&e, b"k", 40, b"v");
        must_get_none(&e, b"k", 30);
    }

    #[test]
    fn commit_is_all_or_nothing() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k1", b"v", b"k1", 10);
        let keys = [k(b"k1"), k(b"k2")];
        let err = must_err(e.run(|ctx| commit(ctx, &keys, ts(10), ts(20))));
        assert!(
            matches!(err, TxnError::TxnLockNotFound { ref key, .. } if *key == k(b"k2")),
            "{err:?}"
        );
        must_locked(&e, b"k1", 10);
        assert_eq!(commit_record(&e, b"k1", 10), TxnCommitRecord::None);
    }

    #[test]
    fn commit_twice_is_fine() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k", b"v", b"k", 10);
        must_commit(&e, b"k", 10, 20);
        must_commit(&e, b"k", 10, 20);
        must_written(&e, b"k", 10, 20, WriteType::Put);
    }
}
