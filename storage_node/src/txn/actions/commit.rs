//! Commit: phase two of Percolator — turn each lock into a write record at the commit ts.
//!
//! Committing is idempotent: a key whose lock is already gone but whose commit record for
//! this transaction exists is fine. A key with neither was rolled back (its lock expired and
//! someone cleaned it up), and the commit fails — which is why a client must commit the
//! primary first and only report success after that.

use super::super::{TxnError, WriteContext};
use super::commit_lock;
use crate::mvcc::{MvccTxn, TxnCommitRecord};

/// Commits `keys` of transaction `start_ts` at `commit_ts`.
pub fn commit(
    ctx: &mut WriteContext<'_>,
    keys: &[Vec<u8>],
    start_ts: u64,
    commit_ts: u64,
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
    drop(reader);
    ctx.apply(txn)
}
