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

use crate::mvcc::{MvccTxn, Write, WriteType, keys};
use crate::txn::{TxnError, WriteContext};
use crate::txn_types::{Key, TimeStamp};

/// Keys examined per GC command, so one pass never stalls the writer for long.
pub const GC_BATCH_KEYS: usize = 512;

/// Collects garbage at or below `safe_point` for up to `GC_BATCH_KEYS` user keys starting at
/// `from` and before `end` (empty: no end — a region's range, so each region collects its
/// own keys through its own log); returns where to continue (None when the range is done) and
/// versions removed.
pub fn gc_batch(
    ctx: &mut WriteContext<'_>,
    safe_point: TimeStamp,
    from: &Key,
    end: &Key,
) -> Result<(Option<Key>, usize), TxnError> {
    let start = keys::encode_bytes(from.as_raw());
    let mut txn = MvccTxn::default();
    let mut removed = 0;
    let mut seen_keys = 0;
    let mut current: Option<Key> = None;
    let mut kept_data_below = false;
    let mut next = None;
    for entry in ctx.tables.write.range::<&[u8]>(start.as_slice()..)? {
        let (k, v) = entry?;
        let (user_key, commit_ts) = keys::split_versioned(k.value())
            .ok_or_else(|| TxnError::Engine("corrupt write key".into()))?;
        if !end.is_empty() && user_key.as_raw() >= end.as_raw() {
            break;
        }
        if current.as_ref() != Some(&user_key) {
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
        let write = Write::from_bytes(v.value()).map_err(|e| TxnError::Engine(e.to_string()))?;
        let keep = !kept_data_below && write.write_type == WriteType::Put;
        if write.write_type.is_data() {
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
    start: &Key,
    end: &Key,
) -> Result<usize, TxnError> {
    let mut txn = MvccTxn::default();
    for (key, _) in ctx.reader().scan_locks(start, end, TimeStamp::max(), 0)? {
        txn.unlock(&key);
    }
    let lo = keys::encode_bytes(start.as_raw());
    let hi = (!end.is_empty()).then(|| keys::encode_bytes(end.as_raw()));
    let upper = match &hi {
        Some(h) => std::ops::Bound::Excluded(h.as_slice()),
        None => std::ops::Bound::Unbounded,
    };
    for entry in ctx
        .tables
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::actions::test_util::*;

    fn gc(e: &TestEngine, safe_point: u64) -> usize {
        let (next, removed) = must_succeed(
            e.run(|ctx| gc_batch(ctx, ts(safe_point), &Key::default(), &Key::default())),
        );
        assert_eq!(next, None, "a handful of keys fits one batch");
        removed
    }

    fn put(e: &TestEngine, key: &[u8], value: &[u8], start: u64, commit: u64) {
        must_prewrite_put(e, key, value, key, start);
        must_commit(e, key, start, commit);
    }

    #[test]
    fn gc_keeps_the_version_visible_at_the_safe_point() {
        let e = TestEngine::new();
        put(&e, b"k", b"v1", 10, 20);
        put(&e, b"k", b"v2", 30, 40);
        put(&e, b"k", b"v3", 50, 60);
        // Safe point exactly at a commit ts: that version is what a read at 40 sees.
        assert_eq!(gc(&e, 40), 1);
        must_get(&e, b"k", 40, b"v2");
        must_get(&e, b"k", 45, b"v2");
        must_get(&e, b"k", 60, b"v3");
        assert_eq!(e.write_count(b"k"), 2);
        // Running it again finds nothing more to remove.
        assert_eq!(gc(&e, 40), 0);
    }

    #[test]
    fn gc_drops_lock_and_rollback_records_but_not_the_value_beneath() {
        let e = TestEngine::new();
        put(&e, b"k", b"v1", 10, 20);
        let args = prewrite_args(
            &[(crate::proto::kvrpcpb::Op::Lock, b"k", b"")],
            b"k",
            30,
            3000,
        );
        must_succeed(try_prewrite(&e, args));
        must_commit(&e, b"k", 30, 40);
        must_rollback(&e, b"k", 50);
        assert_eq!(e.write_count(b"k"), 3);
        assert_eq!(gc(&e, 55), 2);
        must_get(&e, b"k", 55, b"v1");
        assert_eq!(e.write_count(b"k"), 1);
    }

    #[test]
    fn gc_removes_a_deleted_key_entirely_but_keeps_newer_versions() {
        let e = TestEngine::new();
        put(&e, b"k", b"v1", 10, 20);
        must_prewrite_delete(&e, b"k", b"k", 30);
        must_commit(&e, b"k", 30, 40);
        put(&e, b"k", b"v3", 50, 60);
        assert_eq!(gc(&e, 45), 2);
        must_get_none(&e, b"k", 45);
        must_get(&e, b"k", 60, b"v3");
        assert_eq!(e.write_count(b"k"), 1);
    }

    #[test]
    fn gc_leaves_pessimistic_locks_and_the_value_they_guard() {
        let e = TestEngine::new();
        put(&e, b"k", b"v1", 10, 20);
        put(&e, b"k", b"v2", 30, 40);
        must_acquire_pessimistic_lock(&e, b"k", b"k", 50, 50);
        assert_eq!(gc(&e, 45), 1);
        must_pessimistic_locked(&e, b"k", 50, 50);
        must_get(&e, b"k", 45, b"v2");
        // The lock holder still commits on top of what GC kept.
        must_pessimistic_prewrite_put(&e, b"k", b"v3", b"k", 50, 50);
        must_commit(&e, b"k", 50, 60);
        must_get(&e, b"k", 60, b"v3");
    }

    #[test]
    fn destroy_range_stays_inside_its_range() {
        let e = TestEngine::new();
        put(&e, b"a", b"v", 10, 20);
        put(&e, b"b", b"v", 10, 20);
        must_prewrite_put(&e, b"b2", b"v", b"b2", 30);
        put(&e, b"c", b"v", 10, 20);
        let removed = must_succeed(e.run(|ctx| destroy_range(ctx, &k(b"b"), &k(b"c"))));
        assert_eq!(removed, 2, "b's version and b2's lock");
        must_get(&e, b"a", 25, b"v");
        must_get_none(&e, b"b", 25);
        must_unlocked(&e, b"b2");
        must_get(&e, b"c", 25, b"v");
    }
}
