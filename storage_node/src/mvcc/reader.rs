//! The MVCC reader: answers "what did key K look like at timestamp T?" from the lock and
//! write tables, the way TiKV's `MvccReader`, `PointGetter` and `Scanner` do.
//!
//! A snapshot read at `ts` first looks at the key's lock: a lock of a transaction that
//! started at or before `ts` and might still commit at or before `ts` hides the truth, so the
//! reader reports it (`KeyIsLocked`) and the client resolves it and retries. Otherwise the
//! newest *data* version committed at or before `ts` is the answer (Lock and Rollback
//! records are bookkeeping and are skipped).
//!
//! The reader is generic over redb's `ReadableTable`, so the same code reads a read-only
//! snapshot (KvGet, KvScan) and the tables of the batch's write transaction (prewrite and
//! commit need to see what earlier commands in the same batch did).

use std::ops::Bound;

use redb::ReadableTable;

use crate::mvcc::keys;
use crate::mvcc::records::{Lock, LockType, Write, WriteType};
use crate::proto::kvrpcpb::LockInfo;
use crate::txn_types::{Key, TimeStamp};

/// A redb table of byte keys and byte values.
pub trait ByteTable: ReadableTable<&'static [u8], &'static [u8]> {}
impl<T: ReadableTable<&'static [u8], &'static [u8]>> ByteTable for T {}

/// Errors while reading: a broken engine or an undecodable record.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The engine failed.
    #[error("storage engine error: {0}")]
    Engine(#[from] redb::StorageError),
    /// A record did not decode: the data directory is damaged.
    #[error("corrupt record under key {key}: {reason}")]
    Corrupt {
        /// The printable key.
        key: String,
        /// What failed.
        reason: String,
    },
}

/// How a transaction ended, as far as one key's write records tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnCommitRecord {
    /// A write record of the transaction exists at this commit ts.
    Committed(TimeStamp),
    /// A rollback record of the transaction exists.
    RolledBack,
    /// Nothing about the transaction is recorded on this key.
    None,
}

/// One entry of a scan result: a visible pair, or a lock the client must resolve first.
#[derive(Clone, Debug, PartialEq)]
pub enum ScanEntry {
    /// A key and its value at the read ts (`value` is empty for key-only scans).
    Pair(Key, Vec<u8>),
    /// The key is locked by a transaction that may have committed before the read ts.
    Locked(LockInfo),
}

/// A snapshot scan: what KvScan asks for.
#[derive(Clone, Debug, Default)]
pub struct ScanArgs {
    /// Inclusive lower bound.
    pub lower: Key,
    /// Exclusive upper bound; empty = unbounded.
    pub upper: Key,
    /// The read timestamp.
    pub ts: TimeStamp,
    /// At most this many entries (locked keys count).
    pub limit: usize,
    /// Leave values out.
    pub key_only: bool,
    /// Walk from `upper` down to `lower`.
    pub reverse: bool,
    /// Transactions the client already resolved (`Context.resolved_locks`).
    pub bypass: Vec<TimeStamp>,
}

/// Reads MVCC data from a lock table and a write table.
pub struct MvccReader<'a, L: ByteTable, W: ByteTable> {
    lock: &'a L,
    write: &'a W,
}

impl<'a, L: ByteTable, W: ByteTable> MvccReader<'a, L, W> {
    /// A reader over the given tables.
    pub fn new(lock: &'a L, write: &'a W) -> Self {
        MvccReader { lock, write }
    }

    /// The lock on `key`, if any.
    pub fn load_lock(&self, key: &Key) -> Result<Option<Lock>, ReadError> {
        match self.lock.get(key.as_raw())? {
            Some(v) => Ok(Some(decode_lock(key.as_raw(), v.value())?)),
            None => Ok(None),
        }
    }

    /// The newest write record of `key` with commit ts ≤ `ts`.
    pub fn seek_write(
        &self,
        key: &Key,
        ts: TimeStamp,
    ) -> Result<Option<(TimeStamp, Write)>, ReadError> {
        let from = keys::versioned(key, ts);
        let to = keys::past_versions(key);
        if let Some(entry) = self
            .write
            .range::<&[u8]>(from.as_slice()..to.as_slice())?
            .next()
        {
            let (k, v) = entry?;
            let (_, commit_ts) = split(k.value())?;
            return Ok(Some((commit_ts, decode_write(k.value(), v.value())?)));
        }
        Ok(None)
    }

    /// All write records of `key`, newest first, with commit ts ≥ `min_commit_ts`.
    fn versions_since(
        &self,
        key: &Key,
        min_commit_ts: TimeStamp,
    ) -> Result<Vec<(TimeStamp, Write)>, ReadError> {
        let from = keys::first_version(key);
        let to = keys::versioned(key, min_commit_ts);
        let mut out = Vec::new();
        for entry in self.write.range::<&[u8]>(from.as_slice()..=to.as_slice())? {
            let (k, v) = entry?;
            let (_, commit_ts) = split(k.value())?;
            out.push((commit_ts, decode_write(k.value(), v.value())?));
        }
        Ok(out)
    }

    /// What `key`'s write records say about transaction `start_ts` (TiKV's
    /// `get_txn_commit_record`): only records at or after `start_ts` can be its own.
    pub fn txn_commit_record(
        &self,
        key: &Key,
        start_ts: TimeStamp,
    ) -> Result<TxnCommitRecord, ReadError> {
        for (commit_ts, write) in self.versions_since(key, start_ts)? {
            if write.start_ts == start_ts {
                return Ok(match write.write_type {
                    WriteType::Rollback => TxnCommitRecord::RolledBack,
                    _ => TxnCommitRecord::Committed(commit_ts),
                });
            }
            if commit_ts == start_ts && write.has_overlapped_rollback {
                return Ok(TxnCommitRecord::RolledBack);
            }
        }
        Ok(TxnCommitRecord::None)
    }

    /// The newest write of `key` that changed data (Put/Delete), at any ts — used by
    /// `Insert` / `CheckNotExists` to decide whether the key exists now.
    pub fn latest_data_write(&self, key: &Key) -> Result<Option<(TimeStamp, Write)>, ReadError> {
        for (commit_ts, write) in self.versions_since(key, TimeStamp::zero())? {
            if write.write_type.is_data() {
                return Ok(Some((commit_ts, write)));
            }
        }
        Ok(None)
    }

    /// The value of `key` at `ts`, ignoring locks (the caller checked them).
    pub fn get_value(&self, key: &Key, ts: TimeStamp) -> Result<Option<Vec<u8>>, ReadError> {
        let from = keys::versioned(key, ts);
        let to = keys::past_versions(key);
        for entry in self.write.range::<&[u8]>(from.as_slice()..to.as_slice())? {
            let (k, v) = entry?;
            let write = decode_write(k.value(), v.value())?;
            match write.write_type {
                WriteType::Put => return Ok(Some(write.value)),
                WriteType::Delete => return Ok(None),
                WriteType::Lock | WriteType::Rollback => continue,
            }
        }
        Ok(None)
    }

    /// A snapshot point read: the lock check, then the value.
    pub fn get(
        &self,
        key: &Key,
        ts: TimeStamp,
        bypass: &[TimeStamp],
    ) -> Result<Result<Option<Vec<u8>>, LockInfo>, ReadError> {
        if let Some(lock) = self.load_lock(key)?
            && lock_blocks_read(&lock, ts, bypass)
        {
            return Ok(Err(lock.to_lock_info(key)));
        }
        Ok(Ok(self.get_value(key, ts)?))
    }

    /// A snapshot scan over `[lower, upper)` (empty `upper` = unbounded), forward or reverse,
    /// returning at most `limit` entries. Locked keys come back as `ScanEntry::Locked` and
    /// count towards the limit, as in TiKV.
    pub fn scan(&self, args: &ScanArgs) -> Result<Vec<ScanEntry>, ReadError> {
        let ScanArgs {
            lower,
            upper,
            ts,
            limit,
            key_only,
            reverse,
            bypass,
        } = args;
        let (ts, limit, reverse) = (*ts, *limit, *reverse);
        let mut out = Vec::new();
        if limit == 0 || (!upper.is_empty() && lower >= upper) {
            return Ok(out);
        }
        // Engine bounds. Every version of a user key k starts with encode_bytes(k), and
        // encodings are prefix-free, so [enc(lower), enc(upper)) holds exactly the versions
        // of keys in [lower, upper).
        let lock_hi = bound_of(upper);
        let enc_lo = keys::encode_bytes(lower.as_raw());
        let enc_hi = (!upper.is_empty()).then(|| keys::encode_bytes(upper.as_raw()));
        let write_hi = match &enc_hi {
            Some(k) => Bound::Excluded(k.as_slice()),
            None => Bound::Unbounded,
        };
        let lock_range = self
            .lock
            .range::<&[u8]>((Bound::Included(lower.as_raw()), lock_hi))?;
        let write_range = self
            .write
            .range::<&[u8]>((Bound::Included(enc_lo.as_slice()), write_hi))?;

        // Two sorted streams — locks by user key, versions by (user key, newest first) — are
        // merged by user key. Reverse scans walk both backwards; versions then arrive oldest
        // first, so each key's versions are gathered before choosing.
        let mut locks: Box<dyn Iterator<Item = _>> = if reverse {
            Box::new(lock_range.rev())
        } else {
            Box::new(lock_range)
        };
        let mut writes: Box<dyn Iterator<Item = _>> = if reverse {
            Box::new(write_range.rev())
        } else {
            Box::new(write_range)
        };
        let mut next_lock = read_lock_entry(locks.next())?;
        let mut next_write = read_write_entry(writes.next())?;

        while out.len() < limit {
            // Pick the next user key in scan order.
            let key = match (&next_lock, &next_write) {
                (None, None) => break,
                (Some((lk, _)), None) => lk.clone(),
                (None, Some((wk, _, _))) => wk.clone(),
                (Some((lk, _)), Some((wk, _, _))) => {
                    let lock_first = if reverse { lk >= wk } else { lk <= wk };
                    if lock_first { lk.clone() } else { wk.clone() }
                }
            };
            // Gather this key's versions.
            let mut versions = Vec::new();
            while let Some((wk, commit_ts, write)) = next_write.take() {
                if wk != key {
                    next_write = Some((wk, commit_ts, write));
                    break;
                }
                versions.push((commit_ts, write));
                next_write = read_write_entry(writes.next())?;
            }
            // And its lock.
            let mut lock = None;
            if let Some((lk, l)) = next_lock.take() {
                if lk == key {
                    lock = Some(l);
                    next_lock = read_lock_entry(locks.next())?;
                } else {
                    next_lock = Some((lk, l));
                }
            }
            if let Some(lock) = lock
                && lock_blocks_read(&lock, ts, bypass)
            {
                out.push(ScanEntry::Locked(lock.to_lock_info(&key)));
                continue;
            }
            // Newest data version at or before ts.
            let visible = versions
                .into_iter()
                .filter(|(commit_ts, w)| *commit_ts <= ts && w.write_type.is_data())
                .max_by_key(|(commit_ts, _)| *commit_ts);
            if let Some((_, write)) = visible
                && write.write_type == WriteType::Put
            {
                let value = if *key_only { Vec::new() } else { write.value };
                out.push(ScanEntry::Pair(key, value));
            }
        }
        Ok(out)
    }

    /// Locks with start ts ≤ `max_ts` in `[lower, upper)` (KvScanLock, used by lock cleanup).
    pub fn scan_locks(
        &self,
        lower: &Key,
        upper: &Key,
        max_ts: TimeStamp,
        limit: usize,
    ) -> Result<Vec<(Key, Lock)>, ReadError> {
        let mut out = Vec::new();
        for entry in self
            .lock
            .range::<&[u8]>((Bound::Included(lower.as_raw()), bound_of(upper)))?
        {
            let (k, v) = entry?;
            let lock = decode_lock(k.value(), v.value())?;
            if lock.start_ts <= max_ts {
                out.push((Key::from_raw(k.value()), lock));
                if limit > 0 && out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// The snapshot-isolation lock check of a read at `ts` (TiKV's `check_ts_conflict`): true
/// when the reader must report the lock (`KeyIsLocked`) instead of reading past it.
///
/// A lock does *not* block the read when:
/// - it belongs to a transaction that started after `ts` (its writes are invisible anyway);
/// - it is a `Lock`-type lock (it will never change data);
/// - it is a pessimistic lock: it only reserves the key and holds no value. Its owner has not
///   prewritten yet, so whatever it writes commits at a timestamp taken after this read,
///   above `ts` (TiKV readers skip pessimistic locks for the same reason);
/// - its `min_commit_ts` is above `ts`, so it will commit after `ts` if at all (async commit
///   allocates `min_commit_ts` from the TSO at prewrite, so every reader that started before
///   the prewrite skips the lock instead of waiting);
/// - the client already resolved that transaction (`Context.resolved_locks`).
pub fn lock_blocks_read(lock: &Lock, ts: TimeStamp, bypass: &[TimeStamp]) -> bool {
    !(lock.start_ts > ts
        || lock.lock_type == LockType::Lock
        || lock.lock_type == LockType::Pessimistic
        || lock.min_commit_ts > ts
        || bypass.contains(&lock.start_ts))
}

fn bound_of(upper: &Key) -> Bound<&[u8]> {
    if upper.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(upper.as_raw())
    }
}

type LockEntry = Option<(Key, Lock)>;
type WriteEntry = Option<(Key, TimeStamp, Write)>;
type Guard<'g> = redb::AccessGuard<'g, &'static [u8]>;

fn read_lock_entry(
    e: Option<Result<(Guard<'_>, Guard<'_>), redb::StorageError>>,
) -> Result<LockEntry, ReadError> {
    match e {
        None => Ok(None),
        Some(r) => {
            let (k, v) = r?;
            Ok(Some((
                Key::from_raw(k.value()),
                decode_lock(k.value(), v.value())?,
            )))
        }
    }
}

fn read_write_entry(
    e: Option<Result<(Guard<'_>, Guard<'_>), redb::StorageError>>,
) -> Result<WriteEntry, ReadError> {
    match e {
        None => Ok(None),
        Some(r) => {
            let (k, v) = r?;
            let (user_key, commit_ts) = split(k.value())?;
            Ok(Some((
                user_key,
                commit_ts,
                decode_write(k.value(), v.value())?,
            )))
        }
    }
}

fn split(engine_key: &[u8]) -> Result<(Key, TimeStamp), ReadError> {
    keys::split_versioned(engine_key).ok_or_else(|| ReadError::Corrupt {
        key: printable(engine_key),
        reason: "not a versioned key".into(),
    })
}

fn decode_lock(key: &[u8], bytes: &[u8]) -> Result<Lock, ReadError> {
    Lock::from_bytes(bytes).map_err(|e| ReadError::Corrupt {
        key: printable(key),
        reason: e.to_string(),
    })
}

fn decode_write(key: &[u8], bytes: &[u8]) -> Result<Write, ReadError> {
    Write::from_bytes(bytes).map_err(|e| ReadError::Corrupt {
        key: printable(key),
        reason: e.to_string(),
    })
}

/// Engine bytes as readable text, escaped like [`Key`]'s `Display` (for corrupt-record
/// reports, where the bytes may not even be a valid engine key).
pub fn printable(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}
