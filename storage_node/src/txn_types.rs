//! The two values every Percolator action juggles: user keys and TSO timestamps.
//!
//! TiKV wraps both (`txn_types::Key`, `txn_types::TimeStamp`) instead of passing `Vec<u8>` and
//! `u64` around, and so do we: an action takes a start ts, a commit ts, a current ts and a
//! lock's min commit ts, and a TTL in milliseconds beside them; with bare `u64`s nothing stops a
//! TTL from landing where a timestamp belongs, and a key and a value are both `Vec<u8>`. The
//! gRPC layer (`server/`) turns protobuf fields into these types once, on the way in, and back
//! on the way out; everything between speaks only `Key` and `TimeStamp`.

use std::fmt;

/// A user key exactly as the client sent it (its *raw* form).
///
/// Why a type: keys, values and engine keys are all byte strings, and mixing them up compiles
/// happily with `Vec<u8>`. A `Key` can only be made from a client's key on purpose.
///
/// Raw vs. encoded: TiKV's `Key` stores the memcomparable encoding, because every TiKV column
/// family is keyed by it. Here only the write table is (user key encoded, then the inverted
/// commit ts, see [`crate::mvcc::keys`]); the lock table is keyed by the raw key. So `Key`
/// holds the raw bytes, and the encoded engine keys are plain byte strings produced and parsed
/// only by `mvcc::keys`; a `Key` never holds an engine key.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Vec<u8>);

impl Key {
    /// The key a client named (copies the bytes).
    pub fn from_raw(raw: &[u8]) -> Key {
        Key(raw.to_vec())
    }

    /// The raw bytes, as stored in the lock table and sent back to clients.
    pub fn as_raw(&self) -> &[u8] {
        &self.0
    }

    /// The raw bytes, by value (for protobuf replies).
    pub fn into_raw(self) -> Vec<u8> {
        self.0
    }

    /// The empty key; as a range bound it means "unbounded" (as in TiKV's requests).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for Key {
    fn from(raw: Vec<u8>) -> Key {
        Key(raw)
    }
}

impl From<&[u8]> for Key {
    fn from(raw: &[u8]) -> Key {
        Key::from_raw(raw)
    }
}

/// Printable ASCII stays, the rest is escaped: SurrealDB keys look like `/*lab*main*user…`
/// with binary separators, and error messages and traces should stay readable.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.escape_ascii())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(\"{self}\")")
    }
}

/// A timestamp from the TSO: `(physical_ms << 18) + logical` (see [`crate::pd::tso`]).
///
/// Why a type: Percolator is a dance of timestamps (start ts, commit ts, min commit ts, the
/// current ts of a TTL check, a GC safe point), and confusing start_ts with commit_ts is the
/// classic Percolator bug. Keeping them apart from `u64` means a TTL, a count or a key length
/// cannot be passed where a timestamp goes, and the arithmetic that is legitimate (the next
/// timestamp, the physical milliseconds) has a name.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeStamp(u64);

impl TimeStamp {
    /// Bits holding the logical counter; the rest are wall-clock milliseconds.
    pub const LOGICAL_BITS: u32 = 18;

    /// A timestamp from its wire value.
    pub const fn new(ts: u64) -> TimeStamp {
        TimeStamp(ts)
    }

    /// Composes a timestamp from milliseconds and a logical counter.
    pub const fn compose(physical_ms: u64, logical: u64) -> TimeStamp {
        TimeStamp((physical_ms << Self::LOGICAL_BITS) + logical)
    }

    /// Zero: "none" in the protocol (no caller, not committed, roll back).
    pub const fn zero() -> TimeStamp {
        TimeStamp(0)
    }

    /// The largest timestamp: "newest version" in a seek, "every lock is expired" in a check.
    pub const fn max() -> TimeStamp {
        TimeStamp(u64::MAX)
    }

    /// Whether this is the protocol's "none".
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Wall-clock milliseconds (what lock TTLs are measured against).
    pub const fn physical(self) -> u64 {
        self.0 >> Self::LOGICAL_BITS
    }

    /// The logical counter within the millisecond.
    pub const fn logical(self) -> u64 {
        self.0 & ((1 << Self::LOGICAL_BITS) - 1)
    }

    /// The smallest timestamp after this one (e.g. the least commit ts a lock may use).
    pub const fn next(self) -> TimeStamp {
        TimeStamp(self.0.saturating_add(1))
    }

    /// The wire value.
    pub const fn into_inner(self) -> u64 {
        self.0
    }
}

impl From<u64> for TimeStamp {
    fn from(ts: u64) -> TimeStamp {
        TimeStamp(ts)
    }
}

impl fmt::Display for TimeStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for TimeStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimeStamp({})", self.0)
    }
}

/// Converts protobuf key lists at the gRPC boundary (no copy: `Key` is a plain wrapper).
pub fn keys_from_raw(raw: Vec<Vec<u8>>) -> Vec<Key> {
    raw.into_iter().map(Key::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_parts_round_trip() {
        let ts = TimeStamp::compose(1_700_000_000_000, 7);
        assert_eq!(ts.physical(), 1_700_000_000_000);
        assert_eq!(ts.logical(), 7);
        assert_eq!(TimeStamp::from(ts.into_inner()), ts);
        assert!(ts < ts.next());
        assert_eq!(TimeStamp::max().next(), TimeStamp::max());
        assert_eq!(ts.to_string(), ts.into_inner().to_string());
    }

    #[test]
    fn keys_print_escaped_and_order_like_bytes() {
        let k = Key::from_raw(b"/*lab\x00a");
        assert_eq!(k.to_string(), "/*lab\\x00a");
        assert_eq!(format!("{k:?}"), "Key(\"/*lab\\x00a\")");
        assert!(Key::from_raw(b"a") < Key::from_raw(b"a\0"));
        assert_eq!(Key::from(b"x".to_vec()).into_raw(), b"x".to_vec());
    }
}
