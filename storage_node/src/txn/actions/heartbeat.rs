//! TxnHeartBeat: a long transaction extends its primary lock's TTL so nobody cleans it up.

use crate::mvcc::MvccTxn;
use crate::txn::{TxnError, WriteContext};
use crate::txn_types::{Key, TimeStamp};

/// Raises the TTL of `start_ts`'s lock on `primary` to at least `advise_ttl`; returns the TTL.
pub fn heartbeat(
    ctx: &mut WriteContext<'_>,
    primary: &Key,
    start_ts: TimeStamp,
    advise_ttl: u64,
) -> Result<u64, TxnError> {
    match ctx.reader().load_lock(primary)? {
        Some(mut lock) if lock.start_ts == start_ts => {
            if advise_ttl > lock.ttl {
                lock.ttl = advise_ttl;
                let mut txn = MvccTxn::default();
                txn.put_lock(primary, lock.clone());
                ctx.apply(txn)?;
            }
            Ok(lock.ttl)
        }
        _ => Err(TxnError::TxnNotFound {
            start_ts,
            key: primary.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::actions::test_util::*;

    fn beat(e: &TestEngine, primary: &[u8], start: u64, ttl: u64) -> Result<u64, TxnError> {
        e.run(|ctx| heartbeat(ctx, &k(primary), ts(start), ttl))
    }

    #[test]
    fn heartbeat_without_a_lock_is_txn_not_found() {
        let e = TestEngine::new();
        let err = must_err(beat(&e, b"p", 10, 5_000));
        assert!(
            matches!(err, TxnError::TxnNotFound { start_ts, .. } if start_ts == ts(10)),
            "{err:?}"
        );
        // Also after the transaction was rolled back: a heartbeat cannot revive it.
        must_prewrite_put(&e, b"p", b"v", b"p", 20);
        must_rollback(&e, b"p", 20);
        let err = must_err(beat(&e, b"p", 20, 5_000));
        assert!(matches!(err, TxnError::TxnNotFound { .. }), "{err:?}");
        must_unlocked(&e, b"p");
    }

    #[test]
    fn heartbeat_on_another_txns_lock_fails_and_leaves_it() {
        let e = TestEngine::new();
        must_prewrite_put_ttl(&e, b"p", b"v", b"p", 10, 100);
        let err = must_err(beat(&e, b"p", 20, 5_000));
        assert!(matches!(err, TxnError::TxnNotFound { .. }), "{err:?}");
        assert_eq!(must_locked(&e, b"p", 10).ttl, 100);
    }

    #[test]
    fn heartbeat_extends_a_pessimistic_primary_and_keeps_it_pessimistic() {
        let e = TestEngine::new();
        must_acquire_pessimistic_lock(&e, b"p", b"p", 10, 12);
        assert_eq!(must_succeed(beat(&e, b"p", 10, 60_000)), 60_000);
        let lock = must_pessimistic_locked(&e, b"p", 10, 12);
        assert_eq!(lock.ttl, 60_000);
        // Not on a secondary's lock, only where it is asked: the primary it names.
        let err = must_err(beat(&e, b"q", 10, 60_000));
        assert!(matches!(err, TxnError::TxnNotFound { .. }), "{err:?}");
    }

    #[test]
    fn heartbeat_raises_but_never_lowers_the_ttl() {
        let e = TestEngine::new();
        must_prewrite_put_ttl(&e, b"p", b"v", b"p", 10, 100);
        assert_eq!(must_succeed(beat(&e, b"p", 10, 5_000)), 5_000);
        assert_eq!(must_succeed(beat(&e, b"p", 10, 200)), 5_000);
        assert_eq!(must_locked(&e, b"p", 10).ttl, 5_000);
    }
}
