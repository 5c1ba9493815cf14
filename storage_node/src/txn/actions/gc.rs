//! Garbage collection and range destruction: really deleting what nobody can read any more.
//!
//! MVCC keeps every version, so something must drop old ones. The GC *safe point* (set by
//! SurrealDB through PD's UpdateGCSafePoint, by default "now − 10 minutes") promises that no
//! transaction will read below it. For each key, versions above the safe point stay; at or
//! below it only the newest data version survives, and only if it is a Put; Lock and
//! Rollback records there are dropped too. TiKV's GC worker does the same per region.
//!
//! UnsafeDestroyRange is the blunt tool SurrealDB uses after removing a table or database:
//! every lock and version in the range goes, without MVCC.

use redb::ReadableTable;

use super::super::{TxnError, WriteContext};
use crate::mvcc::{MvccTxn, WriteType, keys};

/// Keys examined per GC command, so one pass never stalls the writer for long.
pub const GC_BATCH_KEYS: usize = 512;

/// Collects garbage at or below `safe_point` for up to `GC_BATCH_KEYS` user keys starting at
/// `from`; returns where to continue (None when the keyspace is done) and versions removed.
pub fn gc_batch(
    ctx: &mut WriteContext<'_>,
    safe_point: u64,
    from: &[u8],
) -> Result<(Option<Vec<u8>>, usize), TxnError> {
    let start = keys::encode_bytes(from);
    let mut txn = MvccTxn::default();
    let mut removed = 0;
    let mut seen_keys = 0;
    let mut current: Option<Vec<u8>> = None;
    let mut kept_data_below = false;
    let mut next = None;
    for entry in ctx.write.range::<&[u8]>(start.as_slice()..)? {
        let (k, v) = entry?;
        let (user_key, commit_ts) = keys::split_versioned(k.value())
            .ok_or_else(|| TxnError::Engine("corrupt write key".into()))?;
        if current.as_deref() != Some(user_key.as_slice()) {
            if seen_keys == GC_BATCH_KEYS {
                next = Some(user_key);
                break;
            }
            seen_keys += 1;
            current = Some(user_key.clone());
            kept_data_below = false;
        }
        if commit_ts > safe_point {
            continue;
        }
        let write = crate::mvcc::Write::from_bytes(v.value())
            .map_err(|e| TxnError::Engine(e.to_string()))?;
        let keep = !kept_data_below && write.write_type() == WriteType::Put;
        if write.write_type().is_data() {
            kept_data_below = true;
        }
        if !keep {
            txn.delete_write(&user_key, commit_ts);
            removed += 1;
        }
    }
    ctx.apply(txn)?;
    Ok((next, removed))
}

/// Deletes every lock and version of keys in `[start, end)` (empty `end`: to the end).
pub fn destroy_range(
    ctx: &mut WriteContext<'_>,
    start: &[u8],
    end: &[u8],
) -> Result<usize, TxnError> {
    let mut txn = MvccTxn::default();
    let reader = ctx.reader();
    for (key, _) in reader.scan_locks(start, end, u64::MAX, 0)? {
        txn.unlock(&key);
    }
    drop(reader);
    let lo = keys::encode_bytes(start);
    let hi = (!end.is_empty()).then(|| keys::encode_bytes(end));
    let upper = match &hi {
        Some(h) => std::ops::Bound::Excluded(h.as_slice()),
        None => std::ops::Bound::Unbounded,
    };
    for entry in ctx
        .write
        .range::<&[u8]>((std::ops::Bound::Included(lo.as_slice()), upper))?
    {
        let (k, _) = entry?;
        if let Some((user_key, ts)) = keys::split_versioned(k.value()) {
            txn.delete_write(&user_key, ts);
        }
    }
    let removed = txn.modifies.len();
    ctx.apply(txn)?;
    Ok(removed)
}
