//! ResolveLock: once a transaction's fate is known, finish its leftover locks.
//!
//! Readers call it after Cleanup/CheckTxnStatus told them how a transaction ended; the lock
//! cleanup task calls it with a batch of `(txn, commit ts or 0)` for everything it found.

use std::collections::HashMap;

use crate::mvcc::{Lock, MvccTxn};
use crate::txn::actions::{commit_lock, rollback_lock};
use crate::txn::{TxnError, WriteContext};
use crate::txn_types::{Key, TimeStamp};

/// Commits (non-zero commit ts) or rolls back (zero) the locks of the transactions in
/// `txn_status` (start ts → commit ts); when `keys` is non-empty only those keys are
/// considered, otherwise every lock.
pub fn resolve_lock(
    ctx: &mut WriteContext<'_>,
    txn_status: &HashMap<TimeStamp, TimeStamp>,
    keys: &[Key],
) -> Result<usize, TxnError> {
    let reader = ctx.reader();
    let targets: Vec<(Key, Lock)> = if keys.is_empty() {
        reader.scan_locks(&Key::default(), &Key::default(), TimeStamp::max(), 0)?
    } else {
        let mut found = Vec::new();
        for key in keys {
            if let Some(lock) = reader.load_lock(key)? {
                found.push((key.clone(), lock));
            }
        }
        found
    };
    let mut txn = MvccTxn::default();
    let mut resolved = 0;
    for (key, lock) in targets {
        let Some(&commit_ts) = txn_status.get(&lock.start_ts) else {
            continue;
        };
        if !commit_ts.is_zero() {
            commit_lock(&reader, &mut txn, &key, &lock, commit_ts)?;
        } else {
            rollback_lock(&reader, &mut txn, &key, &lock)?;
        }
        resolved += 1;
    }
    ctx.apply(txn)?;
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::WriteType;
    use crate::txn::actions::test_util::*;

    fn resolve(e: &TestEngine, status: &[(u64, u64)], keys: &[&[u8]]) -> Result<usize, TxnError> {
        let status: HashMap<TimeStamp, TimeStamp> =
            status.iter().map(|(s, c)| (ts(*s), ts(*c))).collect();
        let keys: Vec<Key> = keys.iter().map(|raw| k(raw)).collect();
        e.run(|ctx| resolve_lock(ctx, &status, &keys))
    }

    #[test]
    fn resolve_commit_finishes_only_the_named_txn() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k1", b"v1", b"k1", 10);
        must_prewrite_put(&e, b"k2", b"v2", b"k1", 10);
        must_prewrite_put(&e, b"k3", b"v3", b"k3", 20);
        assert_eq!(must_succeed(resolve(&e, &[(10, 30)], &[])), 2);
        must_written(&e, b"k1", 10, 30, WriteType::Put);
        must_written(&e, b"k2", 10, 30, WriteType::Put);
        must_locked(&e, b"k3", 20);
    }

    #[test]
    fn resolve_rollback_leaves_rollback_records() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k1", b"v1", b"k1", 10);
        assert_eq!(must_succeed(resolve(&e, &[(10, 0)], &[b"k1"])), 1);
        must_unlocked(&e, b"k1");
        must_rolled_back(&e, b"k1", 10);
        must_prewrite_put_err(&e, b"k1", b"v1", b"k1", 10);
    }

    #[test]
    fn resolve_commit_below_min_commit_ts_fails_and_changes_nothing() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k1", b"v1", b"k1", 10);
        let start = e.tso();
        let min = must_prewrite_put_async(&e, b"k2", b"v2", b"k2", &[], start, 60_000);
        let too_early = min.into_inner() - 1;
        let err = must_err(resolve(
            &e,
            &[(10, 30), (start.into_inner(), too_early)],
            &[],
        ));
        assert!(matches!(err, TxnError::CommitTsExpired { .. }), "{err:?}");
        // One command, one outcome: txn 10's lock was not committed either.
        must_locked(&e, b"k1", 10);
        must_locked(&e, b"k2", start);
    }

    #[test]
    fn a_pessimistic_lock_is_removed_never_committed_as_data() {
        // Txn 10 locked k1 and k2 pessimistically, prewrote only k1, and committed at 30
        // (its pessimistic rollback of k2 was lost); txn 20 was abandoned with a lock.
        let e = TestEngine::new();
        must_acquire_pessimistic_lock(&e, b"k1", b"k1", 10, 10);
        must_acquire_pessimistic_lock(&e, b"k2", b"k1", 10, 10);
        must_pessimistic_prewrite_put(&e, b"k1", b"v1", b"k1", 10, 10);
        must_acquire_pessimistic_lock(&e, b"k3", b"k3", 20, 20);
        assert_eq!(must_succeed(resolve(&e, &[(10, 30), (20, 0)], &[])), 3);
        must_written(&e, b"k1", 10, 30, WriteType::Put);
        must_unlocked(&e, b"k2");
        assert_eq!(e.write_count(b"k2"), 0, "no record of any kind on k2");
        must_get_none(&e, b"k2", 40);
        // The rolled-back one is fenced like any rolled-back lock.
        must_unlocked(&e, b"k3");
        must_rolled_back(&e, b"k3", 20);
    }

    #[test]
    fn resolve_with_keys_touches_only_those_keys() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k1", b"v1", b"k1", 10);
        must_prewrite_put(&e, b"k2", b"v2", b"k1", 10);
        assert_eq!(must_succeed(resolve(&e, &[(10, 30)], &[b"k2", b"nope"])), 1);
        must_locked(&e, b"k1", 10);
        must_written(&e, b"k2", 10, 30, WriteType::Put);
    }
}
