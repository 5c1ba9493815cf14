//! The two records Percolator stores besides data: locks and write (commit) records.
//!
//! TiKV keeps three column families: `CF_LOCK` (one lock per key while a transaction is in
//! flight), `CF_WRITE` (one record per committed or rolled-back version, keyed by commit ts)
//! and `CF_DEFAULT` (large values, keyed by start ts). We keep the first two and store every
//! value inline, the way TiKV stores "short values" (≤ 255 bytes): one table and one lookup
//! fewer, and nothing a learner needs to see is lost.
//!
//! Records are encoded with prost, so adding a field later stays readable by older data.

use crate::proto::kvrpcpb;
use prost::Message;

/// What a lock (and later its write record) will do to the key when committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockType {
    /// Write a new value.
    Put,
    /// Delete the key.
    Delete,
    /// Write nothing, but conflict with concurrent writers (SELECT … FOR UPDATE style).
    Lock,
}

impl LockType {
    /// Maps a mutation's op to the lock it leaves; `None` for ops that only check.
    pub fn from_op(op: kvrpcpb::Op) -> Option<LockType> {
        match op {
            kvrpcpb::Op::Put | kvrpcpb::Op::Insert => Some(LockType::Put),
            kvrpcpb::Op::Del => Some(LockType::Delete),
            kvrpcpb::Op::Lock => Some(LockType::Lock),
            _ => None,
        }
    }

    /// The op reported back to clients in `LockInfo.lock_type`.
    pub fn to_op(self) -> kvrpcpb::Op {
        match self {
            LockType::Put => kvrpcpb::Op::Put,
            LockType::Delete => kvrpcpb::Op::Del,
            LockType::Lock => kvrpcpb::Op::Lock,
        }
    }

    fn code(self) -> i32 {
        match self {
            LockType::Put => 1,
            LockType::Delete => 2,
            LockType::Lock => 3,
        }
    }

    fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            1 => LockType::Put,
            2 => LockType::Delete,
            3 => LockType::Lock,
            _ => return None,
        })
    }
}

/// A Percolator lock: "transaction `start_ts` is writing this key; ask `primary` how it ended".
#[derive(Clone, PartialEq, Message)]
pub struct Lock {
    #[prost(int32, tag = "1")]
    lock_type_code: i32,
    /// The transaction's primary key: its lock (or commit record) decides the transaction.
    #[prost(bytes = "vec", tag = "2")]
    pub primary: Vec<u8>,
    /// The transaction's start timestamp; identifies the transaction.
    #[prost(uint64, tag = "3")]
    pub start_ts: u64,
    /// Milliseconds after `start_ts`'s physical time at which others may clean the lock up.
    #[prost(uint64, tag = "4")]
    pub ttl: u64,
    /// The value to write on commit (for `Put`).
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
    /// Keys in the transaction (as reported by the client).
    #[prost(uint64, tag = "6")]
    pub txn_size: u64,
    /// The transaction may not commit below this ts. For async commit it *is* the commit ts
    /// candidate; readers older than it can ignore the lock.
    #[prost(uint64, tag = "7")]
    pub min_commit_ts: u64,
    /// Async commit: the transaction counts as committed once all its locks exist.
    #[prost(bool, tag = "8")]
    pub use_async_commit: bool,
    /// Async commit, primary only: every other key of the transaction.
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub secondaries: Vec<Vec<u8>>,
}

impl Lock {
    /// A new lock; `lock_type` is fixed at creation.
    pub fn new(
        lock_type: LockType,
        primary: Vec<u8>,
        start_ts: u64,
        ttl: u64,
        value: Vec<u8>,
    ) -> Self {
        Lock {
            lock_type_code: lock_type.code(),
            primary,
            start_ts,
            // A zero TTL would read as "no lock" in CheckTxnStatus replies (the client treats
            // `(commit 0, ttl 0, info)` as impossible), so a lock lives at least 1 ms.
            ttl: ttl.max(1),
            value,
            txn_size: 0,
            min_commit_ts: 0,
            use_async_commit: false,
            secondaries: Vec::new(),
        }
    }

    /// What committing this lock writes.
    pub fn lock_type(&self) -> LockType {
        LockType::from_code(self.lock_type_code).unwrap_or(LockType::Lock)
    }

    /// True when the lock's owner has not refreshed it within its TTL as of `current_ts`.
    pub fn is_expired(&self, current_ts: u64) -> bool {
        physical(self.start_ts) + self.ttl < physical(current_ts)
    }

    /// The lock as clients see it in `KeyError.locked` and `CheckTxnStatus` replies.
    pub fn to_lock_info(&self, key: &[u8]) -> kvrpcpb::LockInfo {
        kvrpcpb::LockInfo {
            primary_lock: self.primary.clone(),
            lock_version: self.start_ts,
            key: key.to_vec(),
            lock_ttl: self.ttl,
            txn_size: self.txn_size,
            lock_type: self.lock_type().to_op() as i32,
            use_async_commit: self.use_async_commit,
            min_commit_ts: self.min_commit_ts,
            secondaries: self.secondaries.clone(),
            ..Default::default()
        }
    }

    /// Serialized form for the engine.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// Parses a stored lock.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, prost::DecodeError> {
        Lock::decode(bytes)
    }
}

/// What a write record says happened at its commit ts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteType {
    /// A value was committed.
    Put,
    /// The key was deleted.
    Delete,
    /// A `Lock`-only mutation committed: no data change.
    Lock,
    /// The transaction `start_ts` was rolled back; stored at commit ts = start ts so that a
    /// late prewrite of the same transaction finds it and fails.
    Rollback,
}

impl WriteType {
    fn code(self) -> i32 {
        match self {
            WriteType::Put => 1,
            WriteType::Delete => 2,
            WriteType::Lock => 3,
            WriteType::Rollback => 4,
        }
    }

    fn from_code(code: i32) -> Self {
        match code {
            1 => WriteType::Put,
            2 => WriteType::Delete,
            3 => WriteType::Lock,
            _ => WriteType::Rollback,
        }
    }

    /// The write a committed lock of this type leaves.
    pub fn from_lock(lock: LockType) -> Self {
        match lock {
            LockType::Put => WriteType::Put,
            LockType::Delete => WriteType::Delete,
            LockType::Lock => WriteType::Lock,
        }
    }

    /// Put and Delete change data; Lock and Rollback records are skipped by readers.
    pub fn is_data(self) -> bool {
        matches!(self, WriteType::Put | WriteType::Delete)
    }
}

/// A write record, stored in the write table at `(key, commit_ts)`.
#[derive(Clone, PartialEq, Message)]
pub struct Write {
    #[prost(int32, tag = "1")]
    write_type_code: i32,
    /// The transaction that wrote it.
    #[prost(uint64, tag = "2")]
    pub start_ts: u64,
    /// The committed value (for `Put`).
    #[prost(bytes = "vec", tag = "3")]
    pub value: Vec<u8>,
    /// Another transaction's rollback happened at this same ts (timestamps collided); the
    /// rollback is remembered here instead of in its own record.
    #[prost(bool, tag = "4")]
    pub has_overlapped_rollback: bool,
}

impl Write {
    /// A new write record.
    pub fn new(write_type: WriteType, start_ts: u64, value: Vec<u8>) -> Self {
        Write {
            write_type_code: write_type.code(),
            start_ts,
            value,
            has_overlapped_rollback: false,
        }
    }

    /// What happened at this version.
    pub fn write_type(&self) -> WriteType {
        WriteType::from_code(self.write_type_code)
    }

    /// Serialized form for the engine.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// Parses a stored write record.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, prost::DecodeError> {
        Write::decode(bytes)
    }
}

/// Bits of a TSO timestamp that hold the logical counter (the rest is milliseconds).
pub const LOGICAL_BITS: u32 = 18;

/// The physical (wall-clock milliseconds) part of a TSO timestamp.
pub fn physical(ts: u64) -> u64 {
    ts >> LOGICAL_BITS
}

/// Composes a TSO timestamp.
pub fn compose_ts(physical_ms: u64, logical: u64) -> u64 {
    (physical_ms << LOGICAL_BITS) + logical
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut lock = Lock::new(LockType::Delete, b"p".to_vec(), 42, 3000, vec![]);
        lock.use_async_commit = true;
        lock.secondaries = vec![b"s1".to_vec()];
        assert_eq!(Lock::from_bytes(&lock.to_bytes()).unwrap(), lock);
        assert_eq!(lock.lock_type(), LockType::Delete);
        let write = Write::new(WriteType::Put, 7, b"v".to_vec());
        assert_eq!(
            Write::from_bytes(&write.to_bytes()).unwrap().write_type(),
            WriteType::Put
        );
    }

    #[test]
    fn expiry_compares_physical_milliseconds() {
        let lock = Lock::new(LockType::Put, vec![], compose_ts(1_000, 5), 100, vec![]);
        assert!(!lock.is_expired(compose_ts(1_100, 0)));
        assert!(lock.is_expired(compose_ts(1_101, 0)));
    }

    #[test]
    fn zero_ttl_is_raised_to_one() {
        assert_eq!(Lock::new(LockType::Put, vec![], 1, 0, vec![]).ttl, 1);
    }
}
