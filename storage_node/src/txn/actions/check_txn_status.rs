//! CheckTxnStatus and CheckSecondaryLocks: how other clients learn a transaction's fate.
//!
//! CheckTxnStatus asks the primary key. Possible answers (the client accepts exactly these):
//! committed `(commit_ts, 0, None)`, rolled back `(0, 0, None)`, or still locked
//! `(0, ttl, lock)`. An expired primary lock is rolled back on the spot — except for async
//! commit, whose fate depends on the secondaries (see `resolve_async_commit`). A live 2PC lock
//! may get its `min_commit_ts` pushed above the caller's start ts, so the caller can read
//! under it without waiting: the owner will have to commit later than the caller's snapshot.
//!
//! A pessimistic primary lock (its transaction has not prewritten yet) is reported like any
//! live lock, but never pushed (readers ignore it, so nobody needs a push; TiKV pushes only
//! non-zero `min_commit_ts`). Once expired it is rolled back with a rollback record — or,
//! when the caller is itself resolving a pessimistic lock (`resolving_pessimistic_lock`),
//! just removed, as a pessimistic rollback would (action `TtlExpirePessimisticRollback`);
//! such a caller finding no trace at all gets `LockNotExistDoNothing` and nothing written.
//! CheckSecondaryLocks treats a pessimistic lock as "this key was never prewritten": it is
//! rolled back, and so is the transaction.

use crate::mvcc::{MvccTxn, TxnCommitRecord};
use crate::proto::kvrpcpb::{Action, LockInfo};
use crate::txn::actions::cleanup::resolve_async_commit_via;
use crate::txn::actions::{rollback_lock, write_rollback};
use crate::txn::{TxnError, TxnStatus, WriteContext};
use crate::txn_types::{Key, TimeStamp};

/// The arguments of KvCheckTxnStatus.
#[derive(Clone, Debug)]
pub struct CheckTxnStatusArgs {
    /// The transaction's primary key.
    pub primary: Key,
    /// The transaction (its start ts).
    pub lock_ts: TimeStamp,
    /// The asking transaction's start ts (zero: none).
    pub caller_start_ts: TimeStamp,
    /// Now, for TTL checks ([`TimeStamp::max`]: treat every lock as expired).
    pub current_ts: TimeStamp,
    /// Write a rollback record if the transaction left no trace.
    pub rollback_if_not_exist: bool,
    /// Treat an async-commit lock like a 2PC lock.
    pub force_sync_commit: bool,
    /// The caller met a *pessimistic* lock of the transaction (it is not reading).
    pub resolving_pessimistic_lock: bool,
}

/// Runs KvCheckTxnStatus.
pub fn check_txn_status(
    ctx: &mut WriteContext<'_>,
    args: &CheckTxnStatusArgs,
) -> Result<TxnStatus, TxnError> {
    // The caller will read at its start ts once it knows this transaction's fate: a commit
    // timestamp chosen here later must land above it (TiKV does the same).
    ctx.cm.update_max_ts(args.caller_start_ts);
    let key = &args.primary;
    let lock = ctx.reader().load_lock(key)?;
    match lock {
        Some(mut lock) if lock.start_ts == args.lock_ts => {
            if lock.is_expired(args.current_ts) {
                if lock.use_async_commit {
                    return resolve_async_commit_via(ctx, key, &lock);
                }
                let reader = ctx.reader();
                let mut txn = MvccTxn::default();
                let action = if lock.is_pessimistic() && args.resolving_pessimistic_lock {
                    txn.unlock(key);
                    Action::TtlExpirePessimisticRollback
                } else {
                    rollback_lock(&reader, &mut txn, key, &lock)?;
                    Action::TtlExpireRollback
                };
                ctx.apply(txn)?;
                return Ok(TxnStatus::RolledBack(action));
            }
            let mut action = Action::NoAction;
            let pushable =
                (!lock.use_async_commit || args.force_sync_commit) && !lock.min_commit_ts.is_zero();
            if pushable
                && !args.caller_start_ts.is_zero()
                && args.caller_start_ts != TimeStamp::max()
                && lock.min_commit_ts <= args.caller_start_ts
            {
                lock.min_commit_ts = args.caller_start_ts.next();
                let mut txn = MvccTxn::default();
                txn.put_lock(key, lock.clone());
                ctx.apply(txn)?;
                action = Action::MinCommitTsPushed;
            }
            Ok(TxnStatus::Locked(lock.to_lock_info(key), action))
        }
        _ => {
            let reader = ctx.reader();
            let record = reader.txn_commit_record(key, args.lock_ts)?;
            let mut txn = MvccTxn::default();
            let status = match record {
                TxnCommitRecord::Committed(ts) => TxnStatus::Committed(ts),
                TxnCommitRecord::RolledBack => TxnStatus::RolledBack(Action::NoAction),
                TxnCommitRecord::None
                    if args.rollback_if_not_exist && args.resolving_pessimistic_lock =>
                {
                    // The pessimistic lock the caller met is gone and nothing was
                    // committed: nothing to fence (TiKV's `LockNotExistDoNothing`).
                    TxnStatus::RolledBack(Action::LockNotExistDoNothing)
                }
                TxnCommitRecord::None if args.rollback_if_not_exist => {
                    write_rollback(&reader, &mut txn, key, args.lock_ts)?;
                    TxnStatus::RolledBack(Action::LockNotExistRollback)
                }
                TxnCommitRecord::None => {
                    return Err(TxnError::TxnNotFound {
                        start_ts: args.lock_ts,
                        key: key.clone(),
                    });
                }
            };
            ctx.apply(txn)?;
            Ok(status)
        }
    }
}

/// Runs KvCheckSecondaryLocks: the locks of `start_ts` on `keys`, or the commit ts if any key
/// is committed; an empty answer with commit ts 0 means "rolled back". A key with no trace is
/// fenced with a rollback record — that is what makes the answer final.
pub fn check_secondary_locks(
    ctx: &mut WriteContext<'_>,
    keys: &[Key],
    start_ts: TimeStamp,
) -> Result<(Vec<LockInfo>, TimeStamp), TxnError> {
    let reader = ctx.reader();
    let mut txn = MvccTxn::default();
    let mut locks = Vec::new();
    let mut commit_ts = TimeStamp::zero();
    let mut rolled_back = false;
    for key in keys {
        match reader.load_lock(key)? {
            Some(lock) if lock.start_ts == start_ts && lock.is_pessimistic() => {
                rollback_lock(&reader, &mut txn, key, &lock)?;
                rolled_back = true;
            }
            Some(lock) if lock.start_ts == start_ts => locks.push(lock.to_lock_info(key)),
            _ => match reader.txn_commit_record(key, start_ts)? {
                TxnCommitRecord::Committed(ts) => commit_ts = ts,
                TxnCommitRecord::RolledBack => rolled_back = true,
                TxnCommitRecord::None => {
                    write_rollback(&reader, &mut txn, key, start_ts)?;
                    rolled_back = true;
                }
            },
        }
        if rolled_back {
            break;
        }
    }
    ctx.apply(txn)?;
    Ok(if rolled_back {
        (Vec::new(), TimeStamp::zero())
    } else {
        (locks, commit_ts)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::WriteType;
    use crate::proto::kvrpcpb::write_conflict::Reason;
    use crate::txn::actions::test_util::{self, *};

    fn status(
        e: &TestEngine,
        primary: &[u8],
        lock_ts: TimeStamp,
        caller: TimeStamp,
        current: TimeStamp,
        rollback_if_not_exist: bool,
    ) -> Result<TxnStatus, TxnError> {
        test_util::check_txn_status(e, primary, lock_ts, caller, current, rollback_if_not_exist)
    }

    #[test]
    fn expired_primary_lock_is_rolled_back_and_its_commit_then_fails() {
        let e = TestEngine::new();
        let start = TimeStamp::compose(1_000, 0);
        must_prewrite_put_ttl(&e, b"p", b"v", b"p", start, 100);
        let now = TimeStamp::compose(1_200, 0);
        let s = must_succeed(status(&e, b"p", start, now, now, false));
        assert!(
            matches!(s, TxnStatus::RolledBack(Action::TtlExpireRollback)),
            "{s:?}"
        );
        must_unlocked(&e, b"p");
        must_rolled_back(&e, b"p", start);
        let err = must_commit_err(&e, b"p", start, TimeStamp::compose(1_300, 0));
        assert!(matches!(err, TxnError::TxnLockNotFound { .. }), "{err:?}");
    }

    #[test]
    fn live_primary_lock_is_reported_and_its_min_commit_ts_pushed() {
        let e = TestEngine::new();
        let start = TimeStamp::compose(1_000, 0);
        must_prewrite_put_ttl(&e, b"p", b"v", b"p", start, 100);
        let caller = TimeStamp::compose(1_040, 3);
        let now = TimeStamp::compose(1_050, 0);
        let s = must_succeed(status(&e, b"p", start, caller, now, false));
        match s {
            TxnStatus::Locked(info, Action::MinCommitTsPushed) => {
                assert_eq!(info.lock_version, start.into_inner());
                assert_eq!(info.min_commit_ts, caller.next().into_inner());
            }
            other => panic!("expected a live, pushed lock, got {other:?}"),
        }
        // Still alive, and the push was durable.
        assert_eq!(must_locked(&e, b"p", start).min_commit_ts, caller.next());
        // A second check by an older caller changes nothing.
        let s = must_succeed(status(&e, b"p", start, caller, now, false));
        assert!(matches!(s, TxnStatus::Locked(_, Action::NoAction)), "{s:?}");
    }

    #[test]
    fn async_commit_lock_is_not_pushed() {
        // Its min commit ts may already be the commit ts the client announced.
        let e = TestEngine::new();
        let start = e.tso();
        let min = must_prewrite_put_async(&e, b"p", b"v", b"p", &[], start, 60_000);
        let caller = e.tso();
        let s = must_succeed(status(&e, b"p", start, caller, caller, false));
        assert!(matches!(s, TxnStatus::Locked(_, Action::NoAction)), "{s:?}");
        assert_eq!(must_locked(&e, b"p", start).min_commit_ts, min);
    }

    #[test]
    fn missing_primary_is_txn_not_found_unless_asked_to_roll_back() {
        let e = TestEngine::new();
        let err = must_err(status(&e, b"p", ts(10), ts(0), ts(20), false));
        assert!(
            matches!(err, TxnError::TxnNotFound { start_ts, .. } if start_ts == ts(10)),
            "{err:?}"
        );
        assert_eq!(e.write_count(b"p"), 0, "a failed check writes nothing");
        let s = must_succeed(status(&e, b"p", ts(10), ts(0), ts(20), true));
        assert!(
            matches!(s, TxnStatus::RolledBack(Action::LockNotExistRollback)),
            "{s:?}"
        );
        // The rollback record fences the transaction's late prewrite.
        let err = must_prewrite_put_err(&e, b"p", b"v", b"p", 10);
        must_conflict(&err, Reason::SelfRolledBack);
    }

    #[test]
    fn committed_txn_reports_its_commit_ts() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"p", b"v", b"p", 10);
        must_commit(&e, b"p", 10, 20);
        let s = must_succeed(status(&e, b"p", ts(10), ts(0), TimeStamp::max(), true));
        assert!(matches!(s, TxnStatus::Committed(c) if c == ts(20)), "{s:?}");
        must_written(&e, b"p", 10, 20, WriteType::Put);
    }

    #[test]
    fn expired_async_commit_with_every_lock_present_is_committed() {
        let e = TestEngine::new();
        let start = e.tso();
        let min_p = must_prewrite_put_async(&e, b"p", b"vp", b"p", &[b"s"], start, 1);
        let min_s = must_prewrite_put_async(&e, b"s", b"vs", b"p", &[], start, 1);
        let s = must_succeed(status(&e, b"p", start, ts(0), TimeStamp::max(), false));
        let commit_ts = min_p.max(min_s);
        assert!(
            matches!(s, TxnStatus::Committed(c) if c == commit_ts),
            "{s:?}"
        );
        must_committed(&e, b"p", start, commit_ts);
        must_committed(&e, b"s", start, commit_ts);
        must_get(&e, b"s", commit_ts, b"vs");
    }

    #[test]
    fn expired_async_commit_with_a_missing_secondary_is_rolled_back_and_fenced() {
        let e = TestEngine::new();
        let start = e.tso();
        must_prewrite_put_async(&e, b"p", b"vp", b"p", &[b"s"], start, 1);
        let s = must_succeed(status(&e, b"p", start, ts(0), TimeStamp::max(), false));
        assert!(matches!(s, TxnStatus::RolledBack(_)), "{s:?}");
        must_rolled_back(&e, b"p", start);
        must_rolled_back(&e, b"s", start);
        // The secondary's prewrite, still on its way, can no longer complete the txn.
        let mut args = prewrite_args(
            &[(crate::proto::kvrpcpb::Op::Put, b"s", b"vs")],
            b"p",
            start,
            1,
        );
        args.use_async_commit = true;
        let err = must_err(try_prewrite(&e, args));
        must_conflict(&err, Reason::SelfRolledBack);
    }

    #[test]
    fn pessimistic_primary_is_reported_alive_unpushed_then_rolled_back_on_expiry() {
        let e = TestEngine::new();
        let start = TimeStamp::compose(1_000, 0);
        must_acquire_pessimistic_lock(&e, b"p", b"p", start, start);
        let caller = TimeStamp::compose(1_100, 0);
        let s = must_succeed(status(&e, b"p", start, caller, caller, false));
        match s {
            TxnStatus::Locked(info, Action::NoAction) => {
                assert_eq!(info.lock_ttl, PESSIMISTIC_TTL);
                assert_eq!(info.lock_for_update_ts, start.into_inner());
            }
            other => panic!("expected a live, unpushed lock, got {other:?}"),
        }
        assert!(
            must_pessimistic_locked(&e, b"p", start, start)
                .min_commit_ts
                .is_zero()
        );
        // Expired: rolled back and fenced, so the owner cannot come back and lock again.
        let later = TimeStamp::compose(1_000 + PESSIMISTIC_TTL + 1, 0);
        let s = must_succeed(status(&e, b"p", start, later, later, false));
        assert!(
            matches!(s, TxnStatus::RolledBack(Action::TtlExpireRollback)),
            "{s:?}"
        );
        must_unlocked(&e, b"p");
        must_rolled_back(&e, b"p", start);
        let err = must_acquire_pessimistic_lock_err(&e, b"p", b"p", start, start);
        assert!(
            matches!(err, TxnError::PessimisticLockRolledBack { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn resolving_a_pessimistic_lock_only_removes_it() {
        let e = TestEngine::new();
        let start = TimeStamp::compose(1_000, 0);
        must_acquire_pessimistic_lock(&e, b"p", b"p", start, start);
        let mut args = CheckTxnStatusArgs {
            primary: k(b"p"),
            lock_ts: start,
            caller_start_ts: TimeStamp::max(),
            current_ts: TimeStamp::max(),
            rollback_if_not_exist: true,
            force_sync_commit: false,
            resolving_pessimistic_lock: true,
        };
        let s = must_succeed(e.run(|ctx| super::check_txn_status(ctx, &args)));
        assert!(
            matches!(
                s,
                TxnStatus::RolledBack(Action::TtlExpirePessimisticRollback)
            ),
            "{s:?}"
        );
        must_unlocked(&e, b"p");
        assert_eq!(e.write_count(b"p"), 0, "no rollback record");
        // Asked again: nothing there, nothing written.
        let s = must_succeed(e.run(|ctx| super::check_txn_status(ctx, &args)));
        assert!(
            matches!(s, TxnStatus::RolledBack(Action::LockNotExistDoNothing)),
            "{s:?}"
        );
        assert_eq!(e.write_count(b"p"), 0);
        args.resolving_pessimistic_lock = false;
        let s = must_succeed(e.run(|ctx| super::check_txn_status(ctx, &args)));
        assert!(
            matches!(s, TxnStatus::RolledBack(Action::LockNotExistRollback)),
            "{s:?}"
        );
        must_rolled_back(&e, b"p", start);
    }

    #[test]
    fn check_secondary_locks_rolls_back_a_pessimistic_lock() {
        let e = TestEngine::new();
        let start = e.tso();
        must_prewrite_put_async(&e, b"s1", b"v", b"p", &[], start, 60_000);
        must_acquire_pessimistic_lock(&e, b"s2", b"p", start, start);
        let keys = [k(b"s1"), k(b"s2")];
        let (locks, commit_ts) =
            must_succeed(e.run(|ctx| check_secondary_locks(ctx, &keys, start)));
        assert!(locks.is_empty() && commit_ts.is_zero(), "rolled back");
        must_unlocked(&e, b"s2");
        must_rolled_back(&e, b"s2", start);
    }

    #[test]
    fn check_secondary_locks_fences_a_missing_key() {
        let e = TestEngine::new();
        let start = e.tso();
        must_prewrite_put_async(&e, b"s1", b"v", b"p", &[], start, 60_000);
        let keys = [k(b"s1"), k(b"s2")];
        let (locks, commit_ts) =
            must_succeed(e.run(|ctx| check_secondary_locks(ctx, &keys, start)));
        assert!(locks.is_empty() && commit_ts.is_zero(), "rolled back");
        must_rolled_back(&e, b"s2", start);
        // The lock that does exist is reported as long as nothing is missing.
        let (locks, _) = must_succeed(e.run(|ctx| check_secondary_locks(ctx, &[k(b"s1")], start)));
        assert_eq!(locks.len(), 1);
    }
}
