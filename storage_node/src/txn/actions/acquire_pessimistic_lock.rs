//! AcquirePessimisticLock: a pessimistic transaction locks keys *before* it writes them.
//!
//! Optimistic transactions find out about conflicts at prewrite, after the work is done, and
//! must start over. A pessimistic transaction locks each key as it reads or writes it
//! (`get_for_update`, `lock_keys`, or any write), so a conflict shows up at once, on one
//! key, and the transaction can simply retry that statement. Each lock request carries a
//! fresh `for_update_ts` from the TSO: the transaction reads locked keys at that timestamp
//! (read-committed for locked keys, as in TiDB), so the check is against `for_update_ts`, not
//! the start ts: a commit newer than `for_update_ts` means the value the client is about to
//! read is already stale → `WriteConflict` with reason `PessimisticRetry` (the client takes a
//! new `for_update_ts` and retries the request).
//!
//! The lock written here is a [`LockType::Pessimistic`] lock: no value, invisible to readers,
//! turned into a normal lock by prewrite (see `prewrite`), removed by KvPessimisticRollback.
//! The request is all-or-nothing like a prewrite: either every key is locked or none is, and
//! the first conflict is the answer. Waiting for another transaction's lock to go away is
//! the storage layer's job (see [`crate::lock_manager`]); this action fails at once with
//! `KeyIsLocked`.
//!
//! This is TiKV's `actions/acquire_pessimistic_lock.rs` in its legacy wake-up mode (no
//! "lock with conflict"), without shared locks.

use crate::mvcc::{Lock, LockType, MvccTxn, WriteType};
use crate::proto::kvrpcpb::write_conflict::Reason;
use crate::txn::{TxnError, WriteContext};
use crate::txn_types::{Key, TimeStamp};

/// One key of a pessimistic lock request.
#[derive(Clone, Debug)]
pub struct LockKey {
    /// The key.
    pub key: Key,
    /// The client asserted the key does not exist (an `INSERT`): a live value is
    /// `AlreadyExist`, checked now rather than at prewrite.
    pub should_not_exist: bool,
}

/// A KvPessimisticLock request, decoded.
#[derive(Clone, Debug, Default)]
pub struct AcquireArgs {
    /// The keys, in request order.
    pub keys: Vec<LockKey>,
    /// The transaction's primary key.
    pub primary: Key,
    /// The transaction's start ts.
    pub start_ts: TimeStamp,
    /// Lock TTL in ms.
    pub lock_ttl: u64,
    /// The timestamp the locked keys are read at.
    pub for_update_ts: TimeStamp,
    /// Return each key's value at `for_update_ts`.
    pub return_values: bool,
    /// Report whether each key exists (without needing the values).
    pub check_existence: bool,
    /// Lock only the keys that exist.
    pub lock_only_if_exists: bool,
    /// Large transactions: the least commit ts, carried in the lock.
    pub min_commit_ts: TimeStamp,
}

/// Per key, in request order: its value at `for_update_ts` (None: absent). Only meaningful
/// when the request asked for values or existence.
pub type LockedValues = Vec<Option<Vec<u8>>>;

/// Runs a pessimistic lock request.
pub fn acquire_pessimistic_lock(
    ctx: &mut WriteContext<'_>,
    args: &AcquireArgs,
) -> Result<LockedValues, TxnError> {
    let reader = ctx.reader();
    let mut txn = MvccTxn::default();
    let mut values = Vec::with_capacity(args.keys.len());
    let need_value = args.return_values || args.check_existence || args.lock_only_if_exists;
    for LockKey {
        key,
        should_not_exist,
    } in &args.keys
    {
        let read = |key: &Key| -> Result<Option<Vec<u8>>, TxnError> {
            let value = if need_value || *should_not_exist {
                reader.get_value(key, args.for_update_ts)?
            } else {
                None
            };
            if *should_not_exist && value.is_some() {
                return Err(TxnError::AlreadyExist { key: key.clone() });
            }
            Ok(value)
        };
        if let Some(mut lock) = reader.load_lock(key)? {
            if lock.start_ts != args.start_ts {
                return Err(TxnError::key_is_locked(key, &lock));
            }
            if !lock.is_pessimistic() {
                // Already prewritten: locking again would throw the prewrite's value away.
                return Err(TxnError::LockTypeNotMatch {
                    start_ts: args.start_ts,
                    key: key.clone(),
                    pessimistic: false,
                });
            }
            // Our own lock (a repeated or retried request): nothing can have committed on
            // the key since it was taken, so there is nothing to check, only to refresh.
            values.push(read(key)?);
            if args.for_update_ts > lock.for_update_ts {
                lock.for_update_ts = args.for_update_ts;
                lock.ttl = lock.ttl.max(args.lock_ttl);
                lock.min_commit_ts = lock.min_commit_ts.max(args.min_commit_ts);
                txn.put_lock(key, lock);
            }
            continue;
        }
        if let Some((commit_ts, write)) = reader.seek_write(key, TimeStamp::max())? {
            if commit_ts > args.for_update_ts {
                // Rollback records count, as in TiKV: they are rare above a fresh TSO
                // timestamp, and a spurious retry is harmless.
                return Err(TxnError::WriteConflict {
                    start_ts: args.start_ts,
                    conflict_start_ts: write.start_ts,
                    conflict_commit_ts: commit_ts,
                    key: key.clone(),
                    primary: args.primary.clone(),
                    reason: Reason::PessimisticRetry,
                });
            }
            // A rollback of this very transaction (a reader cleaned it up after its lock
            // expired, say): it must not take locks again. The record sits at the start ts,
            // possibly below newer commits.
            let at_start = if commit_ts > args.start_ts {
                reader.seek_write(key, args.start_ts)?
            } else {
                Some((commit_ts, write))
            };
            if let Some((ts, w)) = at_start
                && ts == args.start_ts
                && (w.write_type == WriteType::Rollback || w.has_overlapped_rollback)
            {
                return Err(TxnError::PessimisticLockRolledBack {
                    start_ts: args.start_ts,
                    key: key.clone(),
                });
            }
        }
        let value = read(key)?;
        let lock_it = !args.lock_only_if_exists || value.is_some();
        values.push(value);
        if lock_it {
            let mut lock = Lock::new(
                LockType::Pessimistic,
                args.primary.clone(),
                args.start_ts,
                args.lock_ttl,
                Vec::new(),
            );
            lock.for_update_ts = args.for_update_ts;
            lock.min_commit_ts = args.min_commit_ts;
            txn.put_lock(key, lock);
        }
    }
    ctx.apply(txn)?;
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::actions::test_util::*;

    #[test]
    fn a_commit_newer_than_for_update_ts_is_a_pessimistic_retry_conflict() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k", b"v1", b"k", 10);
        must_commit(&e, b"k", 10, 30);
        // Started at 20, locking with for_update_ts 25: the commit at 30 is newer.
        let err = must_acquire_pessimistic_lock_err(&e, b"k", b"k", 20, 25);
        match err {
            TxnError::WriteConflict {
                start_ts,
                conflict_start_ts,
                conflict_commit_ts,
                reason,
                ..
            } => {
                assert_eq!(
                    (start_ts, conflict_start_ts, conflict_commit_ts),
                    (ts(20), ts(10), ts(30))
                );
                assert_eq!(reason, Reason::PessimisticRetry);
            }
            other => panic!("expected a write conflict, got {other:?}"),
        }
        must_unlocked(&e, b"k");
        // The retry with a newer for_update_ts locks and reads the newest value, although
        // it is newer than the start ts (read committed for locked keys).
        assert_eq!(
            must_acquire_pessimistic_lock(&e, b"k", b"k", 20, 35),
            Some(b"v1".to_vec())
        );
        let lock = must_pessimistic_locked(&e, b"k", 20, 35);
        assert!(lock.value.is_empty());
    }

    #[test]
    fn readers_ignore_pessimistic_locks() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"a", b"va", b"a", 10);
        must_commit(&e, b"a", 10, 20);
        must_acquire_pessimistic_lock(&e, b"a", b"a", 30, 30);
        must_acquire_pessimistic_lock(&e, b"b", b"a", 30, 30);
        // Point reads above the lock's start see the committed data, not KeyIsLocked.
        must_get(&e, b"a", 40, b"va");
        must_get_none(&e, b"b", 40);
        let scan = crate::mvcc::ScanArgs {
            ts: ts(40),
            limit: 10,
            ..Default::default()
        };
        let entries = e.read(|r| r.scan(&scan).expect("scan"));
        assert_eq!(
            entries,
            vec![crate::mvcc::ScanEntry::Pair(k(b"a"), b"va".to_vec())]
        );
        // Once prewritten, the lock is a real one and blocks the same read.
        must_pessimistic_prewrite_put(&e, b"a", b"new", b"a", 30, 30);
        let blocked = e.read(|r| r.get(&k(b"a"), ts(40), &[]).expect("read").is_err());
        assert!(blocked, "a prewritten lock blocks readers");
    }

    #[test]
    fn another_txns_lock_is_key_is_locked_and_nothing_is_locked() {
        let e = TestEngine::new();
        must_acquire_pessimistic_lock(&e, b"k2", b"k2", 10, 10);
        let args = acquire_args(&[b"k1", b"k2"], b"k1", 20, 20);
        match must_err(e.run(|ctx| acquire_pessimistic_lock(ctx, &args))) {
            TxnError::KeyIsLocked(info) => {
                assert_eq!(info.key, b"k2");
                assert_eq!(info.lock_version, 10);
                assert_eq!(info.lock_for_update_ts, 10);
                assert_eq!(
                    info.lock_type,
                    crate::proto::kvrpcpb::Op::PessimisticLock as i32
                );
            }
            other => panic!("expected KeyIsLocked, got {other:?}"),
        }
        // All-or-nothing: k1 was not locked.
        must_unlocked(&e, b"k1");
        must_pessimistic_locked(&e, b"k2", 10, 10);
        // An optimistic transaction's lock is in the way just the same.
        must_prewrite_put(&e, b"k3", b"v", b"k3", 30);
        let err = must_acquire_pessimistic_lock_err(&e, b"k3", b"k3", 40, 40);
        assert!(matches!(err, TxnError::KeyIsLocked(_)), "{err:?}");
    }

    #[test]
    fn a_rolled_back_txn_cannot_lock_again() {
        let e = TestEngine::new();
        must_rollback(&e, b"k", 10);
        let err = must_acquire_pessimistic_lock_err(&e, b"k", b"k", 10, 12);
        assert!(
            matches!(err, TxnError::PessimisticLockRolledBack { start_ts, .. } if start_ts == ts(10)),
            "{err:?}"
        );
        // Also when a newer commit (below for_update_ts) hides the rollback record.
        must_prewrite_put(&e, b"k", b"v", b"k", 11);
        must_commit(&e, b"k", 11, 13);
        let err = must_acquire_pessimistic_lock_err(&e, b"k", b"k", 10, 14);
        assert!(
            matches!(err, TxnError::PessimisticLockRolledBack { .. }),
            "{err:?}"
        );
        must_unlocked(&e, b"k");
    }

    #[test]
    fn locking_over_its_own_prewritten_lock_is_refused() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k", b"v", b"k", 10);
        let err = must_acquire_pessimistic_lock_err(&e, b"k", b"k", 10, 12);
        assert!(
            matches!(
                err,
                TxnError::LockTypeNotMatch {
                    pessimistic: false,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(must_locked(&e, b"k", 10).lock_type, LockType::Put);
    }

    #[test]
    fn an_insert_assertion_fails_on_a_live_value() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k", b"v", b"k", 10);
        must_commit(&e, b"k", 10, 20);
        let mut args = acquire_args(&[b"k"], b"k", 30, 30);
        args.keys[0].should_not_exist = true;
        let err = must_err(e.run(|ctx| acquire_pessimistic_lock(ctx, &args)));
        assert!(matches!(err, TxnError::AlreadyExist { .. }), "{err:?}");
        must_unlocked(&e, b"k");
    }

    #[test]
    fn relocking_refreshes_for_update_ts_but_never_lowers_it() {
        let e = TestEngine::new();
        must_acquire_pessimistic_lock(&e, b"k", b"k", 10, 15);
        must_acquire_pessimistic_lock(&e, b"k", b"k", 10, 20);
        must_pessimistic_locked(&e, b"k", 10, 20);
        // A stale duplicate of the first request changes nothing.
        must_acquire_pessimistic_lock(&e, b"k", b"k", 10, 15);
        must_pessimistic_locked(&e, b"k", 10, 20);
    }

    #[test]
    fn lock_only_if_exists_skips_absent_keys() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"a", b"v", b"a", 10);
        must_commit(&e, b"a", 10, 20);
        let mut args = acquire_args(&[b"a", b"b"], b"a", 30, 30);
        args.lock_only_if_exists = true;
        let values = must_succeed(e.run(|ctx| acquire_pessimistic_lock(ctx, &args)));
        assert_eq!(values, vec![Some(b"v".to_vec()), None]);
        must_pessimistic_locked(&e, b"a", 30, 30);
        must_unlocked(&e, b"b");
    }
}
