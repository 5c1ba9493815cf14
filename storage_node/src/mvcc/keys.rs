//! How user keys and timestamps become engine keys.
//!
//! TiKV keeps every version of a key side by side, newest first: the engine key is the user
//! key in *memcomparable* form followed by the commit timestamp inverted (`u64::MAX - ts`,
//! big-endian). Memcomparable encoding matters because a plain `key ++ ts` would let the
//! versions of `a` interleave with the key `a\0…` (the timestamp bytes would compare against
//! the next key's bytes). Encoding in 8-byte groups, each closed by a marker byte that says
//! how much of the group is padding, keeps byte order equal to key order and makes the end
//! of the user key unambiguous. This is TiKV's `codec::bytes::encode_bytes` and
//! `Key::append_ts`, written out so the layout can be read in one place.
//!
//! The byte-level functions (`encode_bytes`, `decode_bytes`) work on slices; the rest take a
//! [`Key`] and a [`TimeStamp`], so the engine key of a version can only be built from a user
//! key and a timestamp, never from two loose byte strings and a `u64`.

use crate::txn_types::{Key, TimeStamp};

/// Bytes per group in the memcomparable encoding.
const GROUP: usize = 8;
/// Marker of a full group: "this group holds 8 real bytes and the key continues".
const MARKER: u8 = 0xFF;
/// Length of the inverted timestamp suffix.
pub const TS_LEN: usize = 8;

/// Encodes `key` so that comparing encodings byte-wise orders keys like comparing them.
pub fn encode_bytes(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity((key.len() / GROUP + 1) * (GROUP + 1) + TS_LEN);
    let mut chunks = key.chunks_exact(GROUP);
    for chunk in &mut chunks {
        out.extend_from_slice(chunk);
        out.push(MARKER);
    }
    // The last group is always present (possibly empty) and always padded, which is what
    // terminates the key: its marker is < 0xFF.
    let rest = chunks.remainder();
    let pad = GROUP - rest.len();
    out.extend_from_slice(rest);
    out.extend(std::iter::repeat_n(0u8, pad));
    out.push(MARKER - pad as u8);
    out
}

/// Decodes an `encode_bytes` prefix of `data`, returning the key and the bytes consumed.
pub fn decode_bytes(data: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut key = Vec::with_capacity(data.len());
    let mut offset = 0;
    loop {
        let group = data.get(offset..offset + GROUP + 1)?;
        let marker = group[GROUP];
        offset += GROUP + 1;
        if marker == MARKER {
            key.extend_from_slice(&group[..GROUP]);
            continue;
        }
        let pad = (MARKER - marker) as usize;
        if pad > GROUP || group[GROUP - pad..GROUP].iter().any(|b| *b != 0) {
            return None;
        }
        key.extend_from_slice(&group[..GROUP - pad]);
        return Some((key, offset));
    }
}

/// The engine key of the version of `key` written at `ts` (commit ts in the write table).
pub fn versioned(key: &Key, ts: TimeStamp) -> Vec<u8> {
    let mut k = encode_bytes(key.as_raw());
    k.extend_from_slice(&(u64::MAX - ts.into_inner()).to_be_bytes());
    k
}

/// Splits a versioned engine key back into the user key and its timestamp.
pub fn split_versioned(engine_key: &[u8]) -> Option<(Key, TimeStamp)> {
    let (user_key, used) = decode_bytes(engine_key)?;
    let ts_bytes: [u8; TS_LEN] = engine_key.get(used..)?.try_into().ok()?;
    Some((
        Key::from(user_key),
        TimeStamp::new(u64::MAX - u64::from_be_bytes(ts_bytes)),
    ))
}

/// The smallest engine key of any version of `key` (its newest possible version).
pub fn first_version(key: &Key) -> Vec<u8> {
    versioned(key, TimeStamp::max())
}

/// The smallest engine key *after* every version of `key`.
pub fn past_versions(key: &Key) -> Vec<u8> {
    // The encoded prefix followed by the largest possible suffix, plus one byte: nothing that
    // starts with `encode_bytes(key)` and a timestamp sorts at or after it.
    let mut k = encode_bytes(key.as_raw());
    k.extend_from_slice(&[0xFF; TS_LEN + 1]);
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_key_is_one_padded_group() {
        assert_eq!(encode_bytes(b""), vec![0, 0, 0, 0, 0, 0, 0, 0, 0xF7]);
    }

    fn k(raw: &[u8]) -> Key {
        Key::from_raw(raw)
    }

    fn ts(t: u64) -> TimeStamp {
        TimeStamp::new(t)
    }

    #[test]
    fn versions_of_a_do_not_interleave_with_a_nul() {
        // With a plain concatenation, `a` at ts 0 (…FF FF) would sort after `a\0`.
        let a_old = versioned(&k(b"a"), ts(1));
        let a_new = versioned(&k(b"a"), ts(1000));
        let a_nul = versioned(&k(b"a\0"), TimeStamp::max());
        assert!(a_new < a_old, "newer versions come first");
        assert!(a_old < a_nul);
        assert!(past_versions(&k(b"a")) <= first_version(&k(b"a\0")));
    }

    #[test]
    fn versioned_layout_is_unchanged_on_disk() {
        // Bytes written by the format-1 build before keys and timestamps became types: two
        // groups (8 bytes + FF, 2 bytes + 6 zeros + F9), then !ts big-endian.
        assert_eq!(
            versioned(&k(b"abcdefghij"), ts(0x0102_0304_0506_0708)),
            [
                0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0xff, 0x69, 0x6a, 0, 0, 0, 0, 0, 0,
                0xf9, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa, 0xf9, 0xf8, 0xf7
            ]
        );
    }

    proptest! {
        #[test]
        fn encoding_preserves_order(a in proptest::collection::vec(any::<u8>(), 0..24),
                                    b in proptest::collection::vec(any::<u8>(), 0..24)) {
            prop_assert_eq!(a.cmp(&b), encode_bytes(&a).cmp(&encode_bytes(&b)));
        }

        #[test]
        fn versioned_keys_round_trip(raw in proptest::collection::vec(any::<u8>(), 0..40), t in any::<u64>()) {
            prop_assert_eq!(split_versioned(&versioned(&k(&raw), ts(t))), Some((k(&raw), ts(t))));
        }

        #[test]
        fn versioned_order_is_key_then_newest_first(a in proptest::collection::vec(any::<u8>(), 0..12), ta in any::<u64>(),
                                                     b in proptest::collection::vec(any::<u8>(), 0..12), tb in any::<u64>()) {
            let expected = a.cmp(&b).then(tb.cmp(&ta));
            prop_assert_eq!(versioned(&k(&a), ts(ta)).cmp(&versioned(&k(&b), ts(tb))), expected);
        }
    }
}
