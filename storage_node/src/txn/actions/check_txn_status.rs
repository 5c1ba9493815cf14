//! CheckTxnStatus and CheckSecondaryLocks: how other clients learn a transaction's fate.
//!
//! CheckTxnStatus asks the primary key. Possible answers (the client accepts exactly these):
//! committed `(commit_ts, 0, None)`, rolled back `(0, 0, None)`, or still locked
//! `(0, ttl, lock)`. An expired primary lock is rolled back on the spot — except for async
//! commit, whose fate depends on the secondaries (see `resolve_async_commit`). A live 2PC lock
//! may get its `min_commit_ts` pushed above the caller's start ts, so the caller can read
//! under it without waiting: the owner will have to commit later than the caller's snapshot.

use super::super::{TxnError, TxnStatus, WriteContext};
use super::cleanup::resolve_async_commit_via;
use super::{rollback_lock, write_rollback};
use crate::mvcc::{MvccTxn, TxnCommitRecord};
use crate::proto::kvrpcpb::{Action, LockInfo};

/// The arguments of KvCheckTxnStatus.
#[derive(Clone, Debug)]
pub struct CheckTxnStatusArgs {
    /// The transaction's primary key.
    pub primary: Vec<u8>,
    /// The transaction (its start ts).
    pub lock_ts: u64,
    /// The asking transaction's start ts (0: none).
    pub caller_start_ts: u64,
    /// Now, for TTL checks (`u64::MAX`: treat every lock as expired).
    pub current_ts: u64,
    /// Write a rollback record if the transaction left no trace.
    pub rollback_if_not_exist: bool,
    /// Treat an async-commit lock like a 2PC lock.
    pub force_sync_commit: bool,
}

/// Runs KvCheckTxnStatus.
pub fn check_txn_status(
    ctx: &mut WriteContext<'_>,
    args: &CheckTxnStatusArgs,
) -> Result<TxnStatus, TxnError> {
    let key = args.primary.as_slice();
    let lock = ctx.reader().load_lock(key)?;
    match lock {
        Some(mut lock) if lock.start_ts == args.lock_ts => {
            if lock.is_expired(args.current_ts) {
                if lock.use_async_commit {
                    return resolve_async_commit_via(ctx, key, &lock);
                }
                let reader = ctx.reader();
                let mut txn = MvccTxn::default();
                rollback_lock(&reader, &mut txn, key, &lock)?;
                drop(reader);
                ctx.apply(txn)?;
                return Ok(TxnStatus::RolledBack(Action::TtlExpireRollback));
            }
            let mut action = Action::NoAction;
            let pushable = !lock.use_async_commit || args.force_sync_commit;
            if pushable
                && args.caller_start_ts != 0
                && args.caller_start_ts != u64::MAX
                && lock.min_commit_ts <= args.caller_start_ts
            {
                lock.min_commit_ts = args.caller_start_ts + 1;
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
                TxnCommitRecord::None if args.rollback_if_not_exist => {
                    write_rollback(&reader, &mut txn, key, args.lock_ts)?;
                    TxnStatus::RolledBack(Action::LockNotExistRollback)
                }
                TxnCommitRecord::None => {
                    return Err(TxnError::TxnNotFound {
                        start_ts: args.lock_ts,
                        key: key.to_vec(),
                    });
                }
            };
            drop(reader);
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
    keys: &[Vec<u8>],
    start_ts: u64,
) -> Result<(Vec<LockInfo>, u64), TxnError> {
    let reader = ctx.reader();
    let mut txn = MvccTxn::default();
    let mut locks = Vec::new();
    let mut commit_ts = 0;
    let mut rolled_back = false;
    for key in keys {
        match reader.load_lock(key)? {
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
    drop(reader);
    ctx.apply(txn)?;
    Ok(if rolled_back {
        (Vec::new(), 0)
    } else {
        (locks, commit_ts)
    })
}
