//! ResolveLock: once a transaction's fate is known, finish its leftover locks.
//!
//! Readers call it after Cleanup/CheckTxnStatus told them how a transaction ended; the lock
//! cleanup task calls it with a batch of `(txn, commit ts or 0)` for everything it found.

use std::collections::HashMap;

use super::super::{TxnError, WriteContext};
use super::{commit_lock, rollback_lock};
use crate::mvcc::MvccTxn;

/// Commits (commit ts > 0) or rolls back (0) the locks of the transactions in `txn_status`;
/// when `keys` is non-empty only those keys are considered, otherwise every lock.
pub fn resolve_lock(
    ctx: &mut WriteContext<'_>,
    txn_status: &HashMap<u64, u64>,
    keys: &[Vec<u8>],
) -> Result<usize, TxnError> {
    let reader = ctx.reader();
    let targets: Vec<(Vec<u8>, crate::mvcc::Lock)> = if keys.is_empty() {
        reader.scan_locks(&[], &[], u64::MAX, 0)?
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
        if commit_ts > 0 {
            commit_lock(&reader, &mut txn, &key, &lock, commit_ts)?;
        } else {
            rollback_lock(&reader, &mut txn, &key, &lock)?;
        }
        resolved += 1;
    }
    drop(reader);
    ctx.apply(txn)?;
    Ok(resolved)
}
