//! The two records Percolator stores besides data: locks and write (commit) records.
//!
//! TiKV keeps three column families: `CF_LOCK` (one lock per key while a transaction is in
//! flight), `CF_WRITE` (one record per committed or rolled-back version, keyed by commit ts)
//! and `CF_DEFAULT` (large values, keyed by start ts). We keep the first two and store every
//! value inline, the way TiKV stores "short values" (≤ 255 bytes): one table and one lookup
//! fewer, and nothing a learner needs to see is lost.
//!
//! Records are encoded with prost, so adding a field later stays readable by older data. In
//! memory they are typed ([`Key`], [`TimeStamp`]); the private `wire` structs hold the stored
//! shape, which is the format-1 layout byte for byte.

use prost::Message;

use crate::proto::kvrpcpb;
use crate::txn_types::{Key, TimeStamp};

/// What a lock (and later its write record) will do to the key when committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockType {
    /// Write a new value.
    Put,
    /// Delete the key.
    Delete,
    /// Write nothing, but conflict with concurrent writers (SELECT … FOR UPDATE style).
    Lock,
    /// A pessimistic transaction's lock taken *before* prewrite (KvPessimisticLock): it
    /// reserves the key against other writers but carries no value and never commits as data.
    /// Prewrite turns it into one of the kinds above; readers ignore it (see
    /// `reader::lock_blocks_read`).
    Pessimistic,
}

impl LockType {
    /// Maps a mutation's op to the lock it leaves; `None` for ops that only check.
    pub fn from_op(op: kvrpcpb::Op) -> Option<LockType> {
        match op {
            kvrpcpb::Op::Put | kvrpcpb::Op::Insert => Some(LockType::Put),
            kvrpcpb::Op::Del => Some(LockType::Delete),
            kvrpcpb::Op::Lock => Some(LockType::Lock),
            // Not from prewrite: only KvPessimisticLock creates this kind, on purpose.
            _ => None,
        }
    }

    /// The op reported back to clients in `LockInfo.lock_type`.
    pub fn to_op(self) -> kvrpcpb::Op {
        match self {
            LockType::Put => kvrpcpb::Op::Put,
            LockType::Delete => kvrpcpb::Op::Del,
            LockType::Lock => kvrpcpb::Op::Lock,
            LockType::Pessimistic => kvrpcpb::Op::PessimisticLock,
        }
    }

    fn code(self) -> i32 {
        match self {
            LockType::Put => 1,
            LockType::Delete => 2,
            LockType::Lock => 3,
            // Added after format 1: older builds never wrote it, so old data reads the same.
            LockType::Pessimistic => 4,
        }
    }

    fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            1 => LockType::Put,
            2 => LockType::Delete,
            3 => LockType::Lock,
            4 => LockType::Pessimistic,
            _ => return None,
        })
    }
}

/// A Percolator lock: "transaction `start_ts` is writing this key; ask `primary` how it ended".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    /// What committing the lock writes; fixed at creation.
    pub lock_type: LockType,
    /// The transaction's primary key: its lock (or commit record) decides the transaction.
    pub primary: Key,
    /// The transaction's start timestamp; identifies the transaction.
    pub start_ts: TimeStamp,
    /// Milliseconds after `start_ts`'s physical time at which others may clean the lock up.
    pub ttl: u64,
    /// The value to write on commit (for `Put`).
    pub value: Vec<u8>,
    /// Keys in the transaction (as reported by the client).
    pub txn_size: u64,
    /// The transaction may not commit below this ts. For async commit it *is* the commit ts
    /// candidate; readers older than it can ignore the lock.
    pub min_commit_ts: TimeStamp,
    /// Async commit: the transaction counts as committed once all its locks exist.
    pub use_async_commit: bool,
    /// Async commit, primary only: every other key of the transaction.
    pub secondaries: Vec<Key>,
    /// Pessimistic transactions only (zero otherwise): the timestamp the lock was taken at,
    /// i.e. the snapshot its owner read the key at. A pessimistic lock's `for_update_ts` is
    /// what KvPessimisticRollback compares with; a prewritten lock carries it for clients.
    pub for_update_ts: TimeStamp,
}

impl Lock {
    /// A new lock.
    pub fn new(
        lock_type: LockType,
        primary: Key,
        start_ts: TimeStamp,
        ttl: u64,
        value: Vec<u8>,
    ) -> Self {
        Lock {
            lock_type,
            primary,
            start_ts,
            // A zero TTL would read as "no lock" in CheckTxnStatus replies (the client treats
            // `(commit 0, ttl 0, info)` as impossible), so a lock lives at least 1 ms.
            ttl: ttl.max(1),
            value,
            txn_size: 0,
            min_commit_ts: TimeStamp::zero(),
            use_async_commit: false,
            secondaries: Vec::new(),
            for_update_ts: TimeStamp::zero(),
        }
    }

    /// Whether this is a pessimistic lock (taken before prewrite, no value).
    pub fn is_pessimistic(&self) -> bool {
        self.lock_type == LockType::Pessimistic
    }

    /// True when the lock's owner has not refreshed it within its TTL as of `current_ts`.
    pub fn is_expired(&self, current_ts: TimeStamp) -> bool {
        // Saturating: the TTL comes from the client (prewrite, heartbeat), and an absurd one
        // must mean "never expires", not wrap around to "expired long ago".
        self.start_ts.physical().saturating_add(self.ttl) < current_ts.physical()
    }

    /// The lock as clients see it in `KeyError.locked` and `CheckTxnStatus` replies.
    pub fn to_lock_info(&self, key: &Key) -> kvrpcpb::LockInfo {
        kvrpcpb::LockInfo {
            primary_lock: self.primary.as_raw().to_vec(),
            lock_version: self.start_ts.into_inner(),
            key: key.as_raw().to_vec(),
            lock_ttl: self.ttl,
            txn_size: self.txn_size,
            lock_type: self.lock_type.to_op() as i32,
            use_async_commit: self.use_async_commit,
            min_commit_ts: self.min_commit_ts.into_inner(),
            secondaries: self
                .secondaries
                .iter()
                .map(|k| k.as_raw().to_vec())
                .collect(),
            lock_for_update_ts: self.for_update_ts.into_inner(),
            ..Default::default()
        }
    }

    /// Serialized form for the engine.
    pub fn into_bytes(self) -> Vec<u8> {
        wire::LockRecord {
            lock_type_code: self.lock_type.code(),
            primary: self.primary.into_raw(),
            start_ts: self.start_ts.into_inner(),
            ttl: self.ttl,
            value: self.value,
            txn_size: self.txn_size,
            min_commit_ts: self.min_commit_ts.into_inner(),
            use_async_commit: self.use_async_commit,
            secondaries: self.secondaries.into_iter().map(Key::into_raw).collect(),
            for_update_ts: self.for_update_ts.into_inner(),
        }
        .encode_to_vec()
    }

    /// Parses a stored lock.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, prost::DecodeError> {
        let r = wire::LockRecord::decode(bytes)?;
        Ok(Lock {
            lock_type: LockType::from_code(r.lock_type_code).unwrap_or(LockType::Lock),
            primary: Key::from(r.primary),
            start_ts: TimeStamp::new(r.start_ts),
            ttl: r.ttl,
            value: r.value,
            txn_size: r.txn_size,
            min_commit_ts: TimeStamp::new(r.min_commit_ts),
            use_async_commit: r.use_async_commit,
            secondaries: r.secondaries.into_iter().map(Key::from).collect(),
            for_update_ts: TimeStamp::new(r.for_update_ts),
        })
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
            // A pessimistic lock is never committed as such (commit removes it, see
            // `actions::commit_lock`); were it ever, it must not change data.
            LockType::Lock | LockType::Pessimistic => WriteType::Lock,
        }
    }

    /// Put and Delete change data; Lock and Rollback records are skipped by readers.
    pub fn is_data(self) -> bool {
        matches!(self, WriteType::Put | WriteType::Delete)
    }
}

/// A write record, stored in the write table at `(key, commit_ts)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// What happened at this version.
    pub write_type: WriteType,
    /// The transaction that wrote it.
    pub start_ts: TimeStamp,
    /// The committed value (for `Put`).
    pub value: Vec<u8>,
    /// Another transaction's rollback happened at this same ts (timestamps collided); the
    /// rollback is remembered here instead of in its own record.
    pub has_overlapped_rollback: bool,
}

impl Write {
    /// A new write record.
    pub fn new(write_type: WriteType, start_ts: TimeStamp, value: Vec<u8>) -> Self {
        Write {
            write_type,
            start_ts,
            value,
            has_overlapped_rollback: false,
        }
    }

    /// Serialized form for the engine.
    pub fn into_bytes(self) -> Vec<u8> {
        wire::WriteRecord {
            write_type_code: self.write_type.code(),
            start_ts: self.start_ts.into_inner(),
            value: self.value,
            has_overlapped_rollback: self.has_overlapped_rollback,
        }
        .encode_to_vec()
    }

    /// Parses a stored write record.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, prost::DecodeError> {
        let r = wire::WriteRecord::decode(bytes)?;
        Ok(Write {
            write_type: WriteType::from_code(r.write_type_code),
            start_ts: TimeStamp::new(r.start_ts),
            value: r.value,
            has_overlapped_rollback: r.has_overlapped_rollback,
        })
    }
}

/// The stored shapes of the records. prost fields must be plain `u64`s and byte vectors, so
/// the typed records above convert to and from these at the engine boundary. The tags are the
/// format-1 layout and must never change meaning (see `engine::FORMAT_VERSION`).
mod wire {
    /// A stored lock.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LockRecord {
        #[prost(int32, tag = "1")]
        pub lock_type_code: i32,
        #[prost(bytes = "vec", tag = "2")]
        pub primary: Vec<u8>,
        #[prost(uint64, tag = "3")]
        pub start_ts: u64,
        #[prost(uint64, tag = "4")]
        pub ttl: u64,
        #[prost(bytes = "vec", tag = "5")]
        pub value: Vec<u8>,
        #[prost(uint64, tag = "6")]
        pub txn_size: u64,
        #[prost(uint64, tag = "7")]
        pub min_commit_ts: u64,
        #[prost(bool, tag = "8")]
        pub use_async_commit: bool,
        #[prost(bytes = "vec", repeated, tag = "9")]
        pub secondaries: Vec<Vec<u8>>,
        /// Added for pessimistic transactions. Zero (absent) in every lock of an optimistic
        /// transaction, so those encode exactly as format 1 did and old locks decode as 0.
        #[prost(uint64, tag = "10")]
        pub for_update_ts: u64,
    }

    /// A stored write record.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRecord {
        #[prost(int32, tag = "1")]
        pub write_type_code: i32,
        #[prost(uint64, tag = "2")]
        pub start_ts: u64,
        #[prost(bytes = "vec", tag = "3")]
        pub value: Vec<u8>,
        #[prost(bool, tag = "4")]
        pub has_overlapped_rollback: bool,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(t: u64) -> TimeStamp {
        TimeStamp::new(t)
    }

    #[test]
    fn records_round_trip() {
        let mut lock = Lock::new(LockType::Delete, Key::from_raw(b"p"), ts(42), 3000, vec![]);
        lock.use_async_commit = true;
        lock.secondaries = vec![Key::from_raw(b"s1")];
        assert_eq!(Lock::from_bytes(&lock.clone().into_bytes()).unwrap(), lock);
        let write = Write::new(WriteType::Put, ts(7), b"v".to_vec());
        assert_eq!(
            Write::from_bytes(&write.clone().into_bytes()).unwrap(),
            write
        );
    }

    #[test]
    fn records_are_byte_identical_to_format_1() {
        // Bytes written by the build before keys and timestamps became types: existing data
        // directories must read back the same, and new records must look the same.
        let mut lock = Lock::new(
            LockType::Put,
            Key::from_raw(b"pri"),
            TimeStamp::compose(1_700_000_000_000, 7),
            3000,
            b"val".to_vec(),
        );
        lock.txn_size = 3;
        lock.min_commit_ts = TimeStamp::compose(1_700_000_000_001, 2);
        lock.use_async_commit = true;
        lock.secondaries = vec![Key::from_raw(b"s1"), Key::from_raw(b"s2")];
        let lock_bytes = [
            0x08, 0x01, 0x12, 0x03, 0x70, 0x72, 0x69, 0x18, 0x87, 0x80, 0x80, 0x80, 0xda, 0xf2,
            0xcf, 0x97, 0x06, 0x20, 0xb8, 0x17, 0x2a, 0x03, 0x76, 0x61, 0x6c, 0x30, 0x03, 0x38,
            0x82, 0x80, 0x90, 0x80, 0xda, 0xf2, 0xcf, 0x97, 0x06, 0x40, 0x01, 0x4a, 0x02, 0x73,
            0x31, 0x4a, 0x02, 0x73, 0x32,
        ];
        assert_eq!(lock.clone().into_bytes(), lock_bytes);
        assert_eq!(Lock::from_bytes(&lock_bytes).unwrap(), lock);
        let plain = Lock::new(LockType::Delete, Key::from_raw(b"k"), ts(10), 0, vec![]);
        assert_eq!(
            plain.into_bytes(),
            [0x08, 0x02, 0x12, 0x01, 0x6b, 0x18, 0x0a, 0x20, 0x01]
        );
        let mut write = Write::new(WriteType::Put, ts(42), b"v".to_vec());
        write.has_overlapped_rollback = true;
        assert_eq!(
            write.into_bytes(),
            [0x08, 0x01, 0x10, 0x2a, 0x1a, 0x01, 0x76, 0x20, 0x01]
        );
        let rollback = Write::new(WriteType::Rollback, ts(43), vec![]);
        assert_eq!(rollback.into_bytes(), [0x08, 0x04, 0x10, 0x2b]);
    }

    #[test]
    fn pessimistic_locks_round_trip_and_old_locks_read_as_optimistic() {
        let mut lock = Lock::new(
            LockType::Pessimistic,
            Key::from_raw(b"p"),
            ts(10),
            20_000,
            vec![],
        );
        lock.for_update_ts = ts(12);
        let bytes = lock.clone().into_bytes();
        assert_eq!(Lock::from_bytes(&bytes).unwrap(), lock);
        // Type code 4 and the new field (tag 10) are the only additions.
        assert_eq!(
            bytes,
            [
                0x08, 0x04, 0x12, 0x01, 0x70, 0x18, 0x0a, 0x20, 0xa0, 0x9c, 0x01, 0x50, 0x0c
            ]
        );
        let info = lock.to_lock_info(&Key::from_raw(b"p"));
        assert_eq!(info.lock_type, kvrpcpb::Op::PessimisticLock as i32);
        assert_eq!(info.lock_for_update_ts, 12);
        // A format-1 lock (no tag 10) is an optimistic lock with for_update_ts zero.
        let old =
            Lock::from_bytes(&[0x08, 0x02, 0x12, 0x01, 0x6b, 0x18, 0x0a, 0x20, 0x01]).unwrap();
        assert_eq!(old.lock_type, LockType::Delete);
        assert!(old.for_update_ts.is_zero() && !old.is_pessimistic());
    }

    #[test]
    fn expiry_compares_physical_milliseconds() {
        let start = TimeStamp::compose(1_000, 5);
        let lock = Lock::new(LockType::Put, Key::default(), start, 100, vec![]);
        assert!(!lock.is_expired(TimeStamp::compose(1_100, 0)));
        assert!(lock.is_expired(TimeStamp::compose(1_101, 0)));
    }

    #[test]
    fn a_huge_ttl_never_expires() {
        let start = TimeStamp::compose(1_000, 0);
        let lock = Lock::new(LockType::Put, Key::default(), start, u64::MAX, vec![]);
        assert!(!lock.is_expired(TimeStamp::max()));
    }

    #[test]
    fn zero_ttl_is_raised_to_one() {
        let lock = Lock::new(LockType::Put, Key::default(), ts(1), 0, vec![]);
        assert_eq!(lock.ttl, 1);
    }
}
