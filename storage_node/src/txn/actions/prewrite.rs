//! Prewrite: phase one of Percolator — check for conflicts and lock every key.
//!
//! For each key: a lock of another transaction → `KeyIsLocked` (the client resolves and
//! retries); a write record newer than our start ts → `WriteConflict` (first committer wins);
//! `Insert`/`CheckNotExists` on a live value → `AlreadyExist`. Only when every key passes are
//! the locks written, so a prewrite is all-or-nothing.
//!
//! Two shortcuts SurrealDB always asks for (and cannot do without, see the protocol notes):
//! - **1PC** (`try_one_pc`, the whole transaction in one request): skip the locks and write
//!   the commit records directly at a commit ts we allocate now.
//! - **Async commit**: every lock records a `min_commit_ts` we allocate now, the primary lists
//!   the secondaries, and the transaction is committed once all locks exist; the client
//!   commits at the largest `min_commit_ts` without another round trip.
//!
//! A pessimistic transaction (non-zero `for_update_ts`) already holds pessimistic locks on
//! the keys it writes (see `acquire_pessimistic_lock`), and marks those mutations
//! `DoPessimisticCheck`. For them the lock *is* the conflict check — nobody committed since
//! it was taken — so prewrite just turns it into a normal lock carrying the transaction's
//! `for_update_ts` (and the higher TTL / `min_commit_ts` of the two). If the lock is missing
//! (rolled back by a reader after it expired, or resolved) the prewrite fails with
//! `PessimisticLockNotFound`: writing anyway could overwrite a commit the transaction never
//! saw. Mutations without the flag get the optimistic check against the start ts.

use crate::mvcc::{Lock, LockType, MvccTxn, TxnCommitRecord, Write, WriteType};
use crate::proto::kvrpcpb::prewrite_request::PessimisticAction;
use crate::proto::kvrpcpb::{self, write_conflict::Reason};
use crate::txn::{TxnError, WriteContext};
use crate::txn_types::{Key, TimeStamp};

/// One key of a prewrite.
#[derive(Clone, Debug)]
pub struct Mutation {
    /// What to do.
    pub op: kvrpcpb::Op,
    /// The key.
    pub key: Key,
    /// The value for Put/Insert.
    pub value: Vec<u8>,
    /// Pessimistic transactions: whether the key must hold the transaction's pessimistic
    /// lock (`DoPessimisticCheck`) or gets the optimistic conflict check (the others).
    pub pessimistic_action: PessimisticAction,
}

/// A prewrite request, decoded.
#[derive(Clone, Debug, Default)]
pub struct PrewriteArgs {
    /// The keys.
    pub mutations: Vec<Mutation>,
    /// The transaction's primary key.
    pub primary: Key,
    /// The transaction's start ts.
    pub start_ts: TimeStamp,
    /// Lock TTL in ms.
    pub lock_ttl: u64,
    /// Keys in the whole transaction.
    pub txn_size: u64,
    /// Async commit requested.
    pub use_async_commit: bool,
    /// Async commit: the other keys (sent with the primary).
    pub secondaries: Vec<Key>,
    /// 1PC requested.
    pub try_one_pc: bool,
    /// Pessimistic transactions: the newest `for_update_ts` of their lock requests; zero for
    /// optimistic transactions.
    pub for_update_ts: TimeStamp,
}

/// The result: per-key lock errors, or the timestamps the client needs.
#[derive(Debug, Default)]
pub struct PrewriteOutcome {
    /// `KeyIsLocked` errors (nothing was written when non-empty).
    pub locked: Vec<TxnError>,
    /// Async commit: the commit ts candidate (zero otherwise).
    pub min_commit_ts: TimeStamp,
    /// 1PC: the commit ts (zero otherwise).
    pub one_pc_commit_ts: TimeStamp,
}

/// Runs a prewrite.
pub fn prewrite(
    ctx: &mut WriteContext<'_>,
    args: PrewriteArgs,
) -> Result<PrewriteOutcome, TxnError> {
    let reader = ctx.reader();
    let mut locked = Vec::new();
    let mut intents = Vec::new();
    // A retried request may find its own earlier work.
    let mut own_min_commit_ts = TimeStamp::zero();
    let mut own_commit_ts = None;
    // Pessimistically locked keys whose mutation writes nothing (`CheckNotExists`): their
    // lock stays until commit removes it — or, with 1PC, which has no commit, right now.
    let mut unwritten_pessimistic = Vec::new();
    for m in &args.mutations {
        let must_be_locked = m.pessimistic_action == PessimisticAction::DoPessimisticCheck;
        let not_found = |reason| TxnError::PessimisticLockNotFound {
            start_ts: args.start_ts,
            key: m.key.clone(),
            reason,
        };
        match reader.load_lock(&m.key)? {
            Some(lock) if lock.start_ts != args.start_ts => {
                if must_be_locked {
                    // Our lock was lost and someone else locked the key since.
                    return Err(not_found("another transaction holds the key"));
                }
                locked.push(TxnError::key_is_locked(&m.key, &lock));
                continue;
            }
            Some(lock) if lock.is_pessimistic() => {
                if args.for_update_ts.is_zero() {
                    return Err(TxnError::LockTypeNotMatch {
                        start_ts: args.start_ts,
                        key: m.key.clone(),
                        pessimistic: true,
                    });
                }
                // Held since `lock.for_update_ts`: no conflict check needed (or possible —
                // the transaction may legitimately have read a value newer than its start).
                if let Some(lock_type) = LockType::from_op(m.op) {
                    intents.push((m.key.clone(), lock_type, m.value.clone(), Some(lock)));
                } else {
                    unwritten_pessimistic.push(m.key.clone());
                }
                continue;
            }
            Some(lock) => {
                // Our own prewritten lock: a retried request.
                own_min_commit_ts = own_min_commit_ts.max(lock.min_commit_ts);
                continue;
            }
            None if must_be_locked => {
                // A replay of a prewrite that already committed (1PC, say) reports that
                // commit; otherwise the lock was rolled back or resolved away.
                if let TxnCommitRecord::Committed(ts) =
                    reader.txn_commit_record(&m.key, args.start_ts)?
                {
                    own_commit_ts = Some(ts);
                    continue;
                }
                return Err(not_found("no lock (rolled back or resolved)"));
            }
            None => {}
        }
        if let Some((commit_ts, write)) = reader.seek_write(&m.key, TimeStamp::max())? {
            let conflict = |reason| TxnError::WriteConflict {
                start_ts: args.start_ts,
                conflict_start_ts: write.start_ts,
                conflict_commit_ts: commit_ts,
                key: m.key.clone(),
                primary: args.primary.clone(),
                reason,
            };
            let rolled_back_self = commit_ts == args.start_ts
                && (write.write_type == WriteType::Rollback || write.has_overlapped_rollback);
            if rolled_back_self {
                return Err(conflict(Reason::SelfRolledBack));
            }
            if commit_ts > args.start_ts {
                // A record newer than our snapshot: someone else's commit (first committer
                // wins) — unless this request is a replay of one that already committed
                // (1PC whose reply was lost, say). Our own commit need not be the newest
                // record any more, so look it up rather than compare with `write` (TiKV's
                // `check_committed_record_on_err`).
                if let TxnCommitRecord::Committed(ts) =
                    reader.txn_commit_record(&m.key, args.start_ts)?
                {
                    own_commit_ts = Some(ts);
                    continue;
                }
                return Err(conflict(
                    if m.pessimistic_action == PessimisticAction::DoConstraintCheck {
                        Reason::LazyUniquenessCheck
                    } else {
                        Reason::Optimistic
                    },
                ));
            }
        }
        if matches!(m.op, kvrpcpb::Op::Insert | kvrpcpb::Op::CheckNotExists)
            && let Some((_, w)) = reader.latest_data_write(&m.key)?
            && w.write_type == WriteType::Put
        {
            return Err(TxnError::AlreadyExist { key: m.key.clone() });
        }
        if let Some(lock_type) = LockType::from_op(m.op) {
            intents.push((m.key.clone(), lock_type, m.value.clone(), None));
        }
    }
    if !locked.is_empty() {
        return Ok(PrewriteOutcome {
            locked,
            ..Default::default()
        });
    }
    if let Some(ts) = own_commit_ts {
        // Already committed earlier; report the same outcome again.
        return Ok(if args.try_one_pc {
            PrewriteOutcome {
                one_pc_commit_ts: ts,
                ..Default::default()
            }
        } else {
            PrewriteOutcome {
                min_commit_ts: if args.use_async_commit {
                    ts
                } else {
                    TimeStamp::zero()
                },
                ..Default::default()
            }
        });
    }

    let mut txn = MvccTxn::default();
    let keys: Vec<Key> = intents.iter().map(|(k, _, _, _)| k.clone()).collect();
    let mut outcome = PrewriteOutcome::default();
    // TiKV's floor: above the start ts and the for-update ts (the store adds max_ts + 1).
    let floor = args.start_ts.next().max(args.for_update_ts.next());
    if args.try_one_pc {
        let commit_ts = ctx.allocate_commit_ts(keys, floor)?;
        for key in &unwritten_pessimistic {
            txn.unlock(key);
        }
        for (key, lock_type, value, pessimistic) in intents {
            if pessimistic.is_some() {
                txn.unlock(&key);
            }
            txn.put_write(
                &key,
                commit_ts,
                Write::new(WriteType::from_lock(lock_type), args.start_ts, value),
            );
        }
        outcome.one_pc_commit_ts = commit_ts;
    } else {
        let min_commit_ts = if args.use_async_commit && !intents.is_empty() {
            ctx.allocate_commit_ts(keys, floor)?
        } else {
            args.start_ts.next()
        };
        for (key, lock_type, value, pessimistic) in intents {
            let mut lock = Lock::new(
                lock_type,
                args.primary.clone(),
                args.start_ts,
                args.lock_ttl,
                value,
            );
            lock.txn_size = args.txn_size;
            lock.min_commit_ts = min_commit_ts;
            lock.for_update_ts = args.for_update_ts;
            if let Some(p) = pessimistic {
                // A heartbeat may have raised the TTL, a large transaction set a floor.
                lock.ttl = lock.ttl.max(p.ttl);
                lock.min_commit_ts = lock.min_commit_ts.max(p.min_commit_ts);
            }
            if args.use_async_commit {
                lock.use_async_commit = true;
                if key == args.primary {
                    lock.secondaries = args.secondaries.clone();
                }
            }
            txn.put_lock(&key, lock);
        }
        if args.use_async_commit {
            outcome.min_commit_ts = min_commit_ts.max(own_min_commit_ts);
        }
    }
    ctx.apply(txn)?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::actions::test_util::*;
    use kvrpcpb::Op;

    #[test]
    fn prewrite_onto_a_newer_commit_is_a_write_conflict() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k", b"v1", b"k", 10);
        must_commit(&e, b"k", 10, 20);
        // Started at 15, before the commit at 20: first committer wins.
        match must_prewrite_put_err(&e, b"k", b"v2", b"k", 15) {
            TxnError::WriteConflict {
                start_ts,
                conflict_start_ts,
                conflict_commit_ts,
                reason,
                ..
            } => {
                assert_eq!(
                    (start_ts, conflict_start_ts, conflict_commit_ts),
                    (ts(15), ts(10), ts(20))
                );
                assert_eq!(reason, Reason::Optimistic);
            }
            other => panic!("expected a write conflict, got {other:?}"),
        }
        must_unlocked(&e, b"k");
        // A transaction that started after the commit is fine.
        must_prewrite_put(&e, b"k", b"v3", b"k", 25);
    }

    #[test]
    fn prewrite_onto_a_newer_rollback_is_a_write_conflict() {
        // Rollback records count too (as in TiKV): a txn rolled back at 20 "wrote" the key
        // after our snapshot at 15.
        let e = TestEngine::new();
        must_rollback(&e, b"k", 20);
        let err = must_prewrite_put_err(&e, b"k", b"v", b"k", 15);
        must_conflict(&err, Reason::Optimistic);
        must_unlocked(&e, b"k");
    }

    #[test]
    fn prewrite_onto_another_txns_lock_is_key_locked_and_writes_nothing() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k1", b"v", b"k1", 10);
        let args = prewrite_args(
            &[(Op::Put, b"k2", b"w"), (Op::Put, b"k1", b"w")],
            b"k2",
            20,
            3000,
        );
        match must_err(try_prewrite(&e, args)) {
            TxnError::KeyIsLocked(info) => {
                assert_eq!(info.key, b"k1");
                assert_eq!(info.lock_version, 10);
                assert_eq!(info.primary_lock, b"k1");
            }
            other => panic!("expected KeyIsLocked, got {other:?}"),
        }
        // All-or-nothing: the free key was not locked either, and the old lock is intact.
        must_unlocked(&e, b"k2");
        must_locked(&e, b"k1", 10);
    }

    #[test]
    fn prewrite_after_this_txn_was_rolled_back_is_refused() {
        // The rollback arrived first (a reader cleaned up, or the client gave up) and left a
        // protected rollback record; the late prewrite must not resurrect the transaction.
        let e = TestEngine::new();
        must_rollback(&e, b"k", 10);
        let err = must_prewrite_put_err(&e, b"k", b"v", b"k", 10);
        must_conflict(&err, Reason::SelfRolledBack);
        must_unlocked(&e, b"k");
        must_rolled_back(&e, b"k", 10);
    }

    #[test]
    fn insert_onto_a_live_value_already_exists() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k", b"v", b"k", 10);
        must_commit(&e, b"k", 10, 20);
        let args = prewrite_args(&[(Op::Insert, b"k", b"w")], b"k", 30, 3000);
        let err = must_err(try_prewrite(&e, args));
        assert!(
            matches!(err, TxnError::AlreadyExist { ref key } if *key == k(b"k")),
            "{err:?}"
        );
        must_unlocked(&e, b"k");
        // Once deleted, the key may be inserted again.
        must_prewrite_delete(&e, b"k", b"k", 40);
        must_commit(&e, b"k", 40, 50);
        let args = prewrite_args(&[(Op::Insert, b"k", b"w")], b"k", 60, 3000);
        must_succeed(try_prewrite(&e, args));
    }

    #[test]
    fn retried_prewrite_keeps_its_own_lock() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k", b"v", b"k", 10);
        must_prewrite_put(&e, b"k", b"v", b"k", 10);
        must_locked(&e, b"k", 10);
    }

    #[test]
    fn pessimistic_prewrite_turns_the_lock_into_a_normal_one_despite_a_newer_commit() {
        // Started at 10, another txn committed at 20, the key was locked at 25: the
        // transaction read the value of 20 and may write over it (no conflict vs start ts).
        let e = TestEngine::new();
        must_prewrite_put(&e, b"k", b"v1", b"k", 15);
        must_commit(&e, b"k", 15, 20);
        must_acquire_pessimistic_lock(&e, b"k", b"k", 10, 25);
        must_pessimistic_prewrite_put(&e, b"k", b"v2", b"k", 10, 25);
        let lock = must_locked(&e, b"k", 10);
        assert_eq!(lock.lock_type, LockType::Put);
        assert_eq!(lock.for_update_ts, ts(25));
        assert_eq!(
            lock.ttl, 20_000,
            "the higher TTL of the pessimistic lock is kept"
        );
        must_commit(&e, b"k", 10, 30);
        must_get(&e, b"k", 30, b"v2");
    }

    #[test]
    fn pessimistic_prewrite_without_its_lock_fails_and_writes_nothing() {
        let e = TestEngine::new();
        // Never locked.
        let err = must_pessimistic_prewrite_put_err(&e, b"k", b"v", b"k", 10, 12);
        assert!(
            matches!(err, TxnError::PessimisticLockNotFound { start_ts, .. } if start_ts == ts(10)),
            "{err:?}"
        );
        must_unlocked(&e, b"k");
        // Locked, then the lock expired and a reader rolled it back; meanwhile another
        // transaction committed the key. Prewriting anyway would lose that update.
        must_acquire_pessimistic_lock(&e, b"k", b"k", 20, 22);
        must_rollback(&e, b"k", 20);
        must_prewrite_put(&e, b"k", b"other", b"k", 30);
        must_commit(&e, b"k", 30, 40);
        let err = must_pessimistic_prewrite_put_err(&e, b"k", b"v", b"k", 20, 22);
        assert!(
            matches!(err, TxnError::PessimisticLockNotFound { .. }),
            "{err:?}"
        );
        must_get(&e, b"k", 45, b"other");
        // Another transaction's lock in place of ours is not ours either.
        must_acquire_pessimistic_lock(&e, b"k", b"k", 50, 50);
        let err = must_pessimistic_prewrite_put_err(&e, b"k", b"v", b"k", 45, 46);
        assert!(
            matches!(err, TxnError::PessimisticLockNotFound { .. }),
            "{err:?}"
        );
        must_pessimistic_locked(&e, b"k", 50, 50);
    }

    #[test]
    fn unflagged_keys_of_a_pessimistic_txn_get_the_optimistic_check() {
        let e = TestEngine::new();
        must_prewrite_put(&e, b"free", b"v1", b"free", 15);
        must_commit(&e, b"free", 15, 20);
        must_acquire_pessimistic_lock(&e, b"p", b"p", 10, 25);
        let mut args = pessimistic_prewrite_args(
            &[(Op::Put, b"p", b"v"), (Op::Put, b"free", b"v")],
            b"p",
            10,
            25,
        );
        args.mutations[1].pessimistic_action = PessimisticAction::SkipPessimisticCheck;
        let err = must_err(try_prewrite(&e, args));
        must_conflict(&err, Reason::Optimistic);
        // All-or-nothing: the pessimistic lock is still a pessimistic lock.
        must_pessimistic_locked(&e, b"p", 10, 25);
        must_unlocked(&e, b"free");
    }

    #[test]
    fn optimistic_prewrite_over_its_own_pessimistic_lock_is_refused() {
        let e = TestEngine::new();
        must_acquire_pessimistic_lock(&e, b"k", b"k", 10, 10);
        let err = must_prewrite_put_err(&e, b"k", b"v", b"k", 10);
        assert!(
            matches!(
                err,
                TxnError::LockTypeNotMatch {
                    pessimistic: true,
                    ..
                }
            ),
            "{err:?}"
        );
        must_pessimistic_locked(&e, b"k", 10, 10);
    }

    #[test]
    fn pessimistic_one_pc_removes_the_pessimistic_locks() {
        let e = TestEngine::new();
        let start = e.tso();
        must_acquire_pessimistic_lock(&e, b"k", b"k", start, start);
        must_acquire_pessimistic_lock(&e, b"checked", b"k", start, start);
        let mut args = pessimistic_prewrite_args(
            &[(Op::Put, b"k", b"v"), (Op::CheckNotExists, b"checked", b"")],
            b"k",
            start,
            start,
        );
        args.use_async_commit = true;
        args.try_one_pc = true;
        let commit_ts = must_succeed(try_prewrite(&e, args)).one_pc_commit_ts;
        must_unlocked(&e, b"k");
        // 1PC has no commit RPC to clean up after: the lock of the checked key goes too.
        must_unlocked(&e, b"checked");
        must_committed(&e, b"k", start, commit_ts);
        must_get(&e, b"k", commit_ts, b"v");
    }

    #[test]
    fn replayed_one_pc_prewrite_reports_its_commit_even_under_a_newer_one() {
        // A 1PC prewrite committed, its reply was lost, another txn then wrote the key, and
        // the client retries the prewrite: it must hear "committed at c", not "conflict"
        // (which would make SurrealDB run the transaction a second time).
        let e = TestEngine::new();
        let one_pc = |start: TimeStamp| {
            let mut args = prewrite_args(&[(Op::Put, b"k", b"v1")], b"k", start, 3000);
            args.use_async_commit = true;
            args.try_one_pc = true;
            args
        };
        let start = e.tso();
        let committed = must_succeed(try_prewrite(&e, one_pc(start))).one_pc_commit_ts;
        assert!(committed > start);
        let later = e.tso();
        must_prewrite_put(&e, b"k", b"v2", b"k", later);
        must_commit(&e, b"k", later, e.tso());
        let replay = must_succeed(try_prewrite(&e, one_pc(start)));
        assert_eq!(replay.one_pc_commit_ts, committed);
        must_unlocked(&e, b"k");
    }
}
