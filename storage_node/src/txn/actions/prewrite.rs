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

use super::super::{TxnError, WriteContext};
use crate::mvcc::{Lock, LockType, MvccTxn, Write, WriteType};
use crate::proto::kvrpcpb::{self, write_conflict::Reason};

/// One key of a prewrite.
#[derive(Clone, Debug)]
pub struct Mutation {
    /// What to do.
    pub op: kvrpcpb::Op,
    /// The key.
    pub key: Vec<u8>,
    /// The value for Put/Insert.
    pub value: Vec<u8>,
}

/// A prewrite request, decoded.
#[derive(Clone, Debug, Default)]
pub struct PrewriteArgs {
    /// The keys.
    pub mutations: Vec<Mutation>,
    /// The transaction's primary key.
    pub primary: Vec<u8>,
    /// The transaction's start ts.
    pub start_ts: u64,
    /// Lock TTL in ms.
    pub lock_ttl: u64,
    /// Keys in the whole transaction.
    pub txn_size: u64,
    /// Async commit requested.
    pub use_async_commit: bool,
    /// Async commit: the other keys (sent with the primary).
    pub secondaries: Vec<Vec<u8>>,
    /// 1PC requested.
    pub try_one_pc: bool,
}

/// The result: per-key lock errors, or the timestamps the client needs.
#[derive(Debug, Default)]
pub struct PrewriteOutcome {
    /// `KeyIsLocked` errors (nothing was written when non-empty).
    pub locked: Vec<TxnError>,
    /// Async commit: the commit ts candidate.
    pub min_commit_ts: u64,
    /// 1PC: the commit ts.
    pub one_pc_commit_ts: u64,
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
    let mut own_min_commit_ts = 0;
    let mut own_commit_ts = None;
    for m in &args.mutations {
        if let Some(lock) = reader.load_lock(&m.key)? {
            if lock.start_ts != args.start_ts {
                locked.push(TxnError::KeyIsLocked(lock.to_lock_info(&m.key)));
            } else {
                own_min_commit_ts = own_min_commit_ts.max(lock.min_commit_ts);
            }
            continue;
        }
        if let Some((commit_ts, write)) = reader.seek_write(&m.key, u64::MAX)? {
            let conflict = |reason| TxnError::WriteConflict {
                start_ts: args.start_ts,
                conflict_start_ts: write.start_ts,
                conflict_commit_ts: commit_ts,
                key: m.key.clone(),
                primary: args.primary.clone(),
                reason,
            };
            let rolled_back_self = commit_ts == args.start_ts
                && (write.write_type() == WriteType::Rollback || write.has_overlapped_rollback);
            if rolled_back_self {
                return Err(conflict(Reason::SelfRolledBack));
            }
            if commit_ts > args.start_ts {
                if write.start_ts == args.start_ts && write.write_type() != WriteType::Rollback {
                    // Our own commit: this request is a replay of one that already succeeded.
                    own_commit_ts = Some(commit_ts);
                    continue;
                }
                return Err(conflict(Reason::Optimistic));
            }
        }
        let op = kvrpcpb::Op::try_from(m.op).unwrap_or(kvrpcpb::Op::Put);
        if matches!(op, kvrpcpb::Op::Insert | kvrpcpb::Op::CheckNotExists) {
            if let Some((_, w)) = reader.latest_data_write(&m.key)? {
                if w.write_type() == WriteType::Put {
                    return Err(TxnError::AlreadyExist { key: m.key.clone() });
                }
            }
        }
        if let Some(lock_type) = LockType::from_op(op) {
            intents.push((m.key.clone(), lock_type, m.value.clone()));
        }
    }
    drop(reader);
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
                min_commit_ts: if args.use_async_commit { ts } else { 0 },
                ..Default::default()
            }
        });
    }

    let mut txn = MvccTxn::default();
    let keys: Vec<Vec<u8>> = intents.iter().map(|(k, _, _)| k.clone()).collect();
    let mut outcome = PrewriteOutcome::default();
    if args.try_one_pc {
        let commit_ts = ctx.allocate_commit_ts(keys)?;
        for (key, lock_type, value) in intents {
            txn.put_write(
                &key,
                commit_ts,
                Write::new(WriteType::from_lock(lock_type), args.start_ts, value),
            );
        }
        outcome.one_pc_commit_ts = commit_ts;
    } else {
        let min_commit_ts = if args.use_async_commit && !intents.is_empty() {
            ctx.allocate_commit_ts(keys)?
        } else {
            args.start_ts + 1
        };
        for (key, lock_type, value) in intents {
            let mut lock = Lock::new(
                lock_type,
                args.primary.clone(),
                args.start_ts,
                args.lock_ttl,
                value,
            );
            lock.txn_size = args.txn_size;
            lock.min_commit_ts = min_commit_ts;
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
