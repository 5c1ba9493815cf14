//! TxnHeartBeat: a long transaction extends its primary lock's TTL so nobody cleans it up.

use super::super::{TxnError, WriteContext};
use crate::mvcc::MvccTxn;

/// Raises the TTL of `start_ts`'s lock on `primary` to at least `advise_ttl`; returns the TTL.
pub fn heartbeat(
    ctx: &mut WriteContext<'_>,
    primary: &[u8],
    start_ts: u64,
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
            key: primary.to_vec(),
        }),
    }
}
