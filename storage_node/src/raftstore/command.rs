//! The replicated write: what one Raft entry carries, and how a replica applies it.
//!
//! TiKV replicates *results*, not requests: the leader runs a Percolator action against its
//! state (a prewrite checks for conflicts, a one-phase commit takes a commit timestamp) and
//! proposes the engine writes that action decided on, as `Put`/`Delete` per column family
//! (`raft_cmdpb::Request`). Every replica then applies the same writes in the same order and
//! ends in the same state, with no need to re-run the action (whose outcome depends on clocks
//! and timestamps only the leader saw). A [`WriteBatch`] is that list of writes for our tables.
//!
//! The encoding is a small length-prefixed format of our own; it is versioned, so a future
//! change can be refused instead of misread:
//!
//! ```text
//! [version u8 = 1] [count u32] then per op: [cf u8] [kind u8: 1 put, 2 delete]
//!                                           [key len u32] [key] ([value len u32] [value])
//! ```

use crate::engine::{LOCK_TABLE, META_TABLE, WRITE_TABLE};
use crate::mvcc::keys;
use crate::mvcc::txn::Modify;

/// Which table an op writes (TiKV's column families).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Cf {
    /// The lock table, keyed by raw user key.
    Lock = 1,
    /// The write table, keyed by versioned key.
    Write = 2,
    /// The node's metadata table (e.g. the GC safe point), keyed by name.
    Meta = 3,
}

/// One engine write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Insert or replace `key` in `cf`.
    Put {
        /// The table.
        cf: Cf,
        /// The engine key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key` from `cf`.
    Delete {
        /// The table.
        cf: Cf,
        /// The engine key.
        key: Vec<u8>,
    },
}

/// The engine writes of one proposal, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// The writes.
    pub ops: Vec<Op>,
}

/// The entry could not be decoded (a corrupt log, or one written by another format).
#[derive(Debug, thiserror::Error)]
#[error("cannot decode a replicated write batch: {0}")]
pub struct DecodeError(&'static str);

/// The tables of one engine write transaction, as an apply needs them.
pub struct EngineTables<'t> {
    /// The lock table.
    pub lock: redb::Table<'t, &'static [u8], &'static [u8]>,
    /// The write table.
    pub write: redb::Table<'t, &'static [u8], &'static [u8]>,
    /// The meta table.
    pub meta: redb::Table<'t, &'static str, &'static [u8]>,
}

impl<'t> EngineTables<'t> {
    /// Opens the three tables of `txn`.
    pub fn open(txn: &'t redb::WriteTransaction) -> Result<Self, redb::TableError> {
        Ok(EngineTables {
            lock: txn.open_table(LOCK_TABLE)?,
            write: txn.open_table(WRITE_TABLE)?,
            meta: txn.open_table(META_TABLE)?,
        })
    }
}

const VERSION: u8 = 1;

impl WriteBatch {
    /// Whether there is nothing to replicate.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The engine writes of MVCC changes: locks by raw key, write records by versioned key.
    pub fn from_modifies(modifies: Vec<Modify>) -> WriteBatch {
        let ops = modifies
            .into_iter()
            .map(|m| match m {
                Modify::PutLock(k, l) => Op::Put {
                    cf: Cf::Lock,
                    key: k.into_raw(),
                    value: l.into_bytes(),
                },
                Modify::DeleteLock(k) => Op::Delete {
                    cf: Cf::Lock,
                    key: k.into_raw(),
                },
                Modify::PutWrite(k, ts, w) => Op::Put {
                    cf: Cf::Write,
                    key: keys::versioned(&k, ts),
                    value: w.into_bytes(),
                },
                Modify::DeleteWrite(k, ts) => Op::Delete {
                    cf: Cf::Write,
                    key: keys::versioned(&k, ts),
                },
            })
            .collect();
        WriteBatch { ops }
    }

    /// Appends a metadata write.
    pub fn put_meta(&mut self, name: &str, value: &[u8]) {
        self.ops.push(Op::Put {
            cf: Cf::Meta,
            key: name.as_bytes().to_vec(),
            value: value.to_vec(),
        });
    }

    /// Appends `other`'s writes after ours.
    pub fn extend(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }

    /// Whether any op removes a lock (pessimistic lock waiters want to know).
    pub fn releases_locks(&self) -> bool {
        self.ops
            .iter()
            .any(|op| matches!(op, Op::Delete { cf: Cf::Lock, .. }))
    }

    /// Applies the writes to an engine transaction's tables.
    pub fn apply_to(&self, t: &mut EngineTables<'_>) -> Result<(), redb::StorageError> {
        for op in &self.ops {
            match op {
                Op::Put { cf, key, value } => match cf {
                    Cf::Lock => {
                        t.lock.insert(key.as_slice(), value.as_slice())?;
                    }
                    Cf::Write => {
                        t.write.insert(key.as_slice(), value.as_slice())?;
                    }
                    Cf::Meta => {
                        let name = std::str::from_utf8(key).unwrap_or_default();
                        t.meta.insert(name, value.as_slice())?;
                    }
                },
                Op::Delete { cf, key } => match cf {
                    Cf::Lock => {
                        t.lock.remove(key.as_slice())?;
                    }
                    Cf::Write => {
                        t.write.remove(key.as_slice())?;
                    }
                    Cf::Meta => {
                        let name = std::str::from_utf8(key).unwrap_or_default();
                        t.meta.remove(name)?;
                    }
                },
            }
        }
        Ok(())
    }

    /// The entry payload.
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, .. } => 10 + key.len() + value.len(),
                Op::Delete { key, .. } => 6 + key.len(),
            })
            .sum();
        let mut out = Vec::with_capacity(5 + size);
        out.push(VERSION);
        out.extend_from_slice(&(self.ops.len() as u32).to_be_bytes());
        for op in &self.ops {
            let bytes = |out: &mut Vec<u8>, b: &[u8]| {
                out.extend_from_slice(&(b.len() as u32).to_be_bytes());
                out.extend_from_slice(b);
            };
            match op {
                Op::Put { cf, key, value } => {
                    out.extend_from_slice(&[*cf as u8, 1]);
                    bytes(&mut out, key);
                    bytes(&mut out, value);
                }
                Op::Delete { cf, key } => {
                    out.extend_from_slice(&[*cf as u8, 2]);
                    bytes(&mut out, key);
                }
            }
        }
        out
    }

    /// Reads a payload written by [`encode`](Self::encode).
    pub fn decode(mut data: &[u8]) -> Result<WriteBatch, DecodeError> {
        fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
            if data.len() < n {
                return Err(DecodeError("truncated"));
            }
            let (head, rest) = data.split_at(n);
            *data = rest;
            Ok(head)
        }
        fn len(data: &mut &[u8]) -> Result<usize, DecodeError> {
            let b = take(data, 4)?;
            Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        }
        if take(&mut data, 1)?[0] != VERSION {
            return Err(DecodeError("unknown version"));
        }
        let count = len(&mut data)?;
        let mut ops = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            let head = take(&mut data, 2)?;
            let cf = match head[0] {
                1 => Cf::Lock,
                2 => Cf::Write,
                3 => Cf::Meta,
                _ => return Err(DecodeError("unknown column family")),
            };
            let n = len(&mut data)?;
            let key = take(&mut data, n)?.to_vec();
            ops.push(match head[1] {
                1 => {
                    let n = len(&mut data)?;
                    let value = take(&mut data, n)?.to_vec();
                    Op::Put { cf, key, value }
                }
                2 => Op::Delete { cf, key },
                _ => return Err(DecodeError("unknown op")),
            });
        }
        if !data.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(WriteBatch { ops })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> WriteBatch {
        let mut b = WriteBatch {
            ops: vec![
                Op::Put {
                    cf: Cf::Lock,
                    key: b"k".to_vec(),
                    value: b"lock".to_vec(),
                },
                Op::Delete {
                    cf: Cf::Write,
                    key: vec![0, 1, 2],
                },
                Op::Put {
                    cf: Cf::Write,
                    key: Vec::new(),
                    value: Vec::new(),
                },
            ],
        };
        b.put_meta("gc_safe_point", &7u64.to_be_bytes());
        b
    }

    #[test]
    fn a_batch_survives_encoding() {
        let b = sample();
        assert_eq!(WriteBatch::decode(&b.encode()).unwrap(), b);
        assert_eq!(
            WriteBatch::decode(&WriteBatch::default().encode()).unwrap(),
            WriteBatch::default()
        );
    }

    #[test]
    fn damaged_payloads_are_refused_not_misread() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(WriteBatch::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(WriteBatch::decode(&extra).is_err());
        let mut future = bytes;
        future[0] = 2;
        assert!(WriteBatch::decode(&future).is_err());
    }

    #[test]
    fn lock_release_is_detected() {
        assert!(!sample().releases_locks());
        let b = WriteBatch {
            ops: vec![Op::Delete {
                cf: Cf::Lock,
                key: b"k".to_vec(),
            }],
        };
        assert!(b.releases_locks());
    }
}
