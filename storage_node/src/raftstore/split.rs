//! Regions by key range, and how one becomes two (a split).
//!
//! A region covers `[start_key, end_key)` of the *encoded* key space (the memcomparable form
//! of [`crate::mvcc::keys`]; empty means unbounded), exactly as PD and the TiKV client see it.
//! That is also the prefix of every write-table engine key, so a region's write records are one
//! contiguous engine range; the lock table is keyed by raw user keys, whose order is the same.
//!
//! A split, as TiKV does it:
//! 1. the leader finds a split key — the middle of the region's write records once the region
//!    holds more than the split threshold ([`measure`]), or a key asked for (`SplitRegion`);
//! 2. it asks PD for a new region id and one new peer id per replica (`AskBatchSplit`);
//! 3. it proposes the two resulting regions as one Raft entry ([`SPLIT_CONTEXT`]);
//! 4. every replica applies that entry at the same log position: the parent keeps the right
//!    half (TiKV's `right_derive_when_split`), a new region takes the left half, both with
//!    `version + 1`, and each store creates its peer of the new region;
//! 5. the leader tells PD (`ReportBatchSplit` and heartbeats).
//!
//! Because every replica splits at the same entry, their data needs no copying: the new region
//! starts from the engine rows its store already holds.

use prost::Message as _;
use redb::ReadableDatabase;

use crate::engine::{Engine, EngineError, WRITE_TABLE};
use crate::mvcc::keys;
use crate::proto::{metapb, pdpb};

/// The `context` of a Raft entry that carries a split (a write batch's context is empty).
pub const SPLIT_CONTEXT: &[u8] = b"split";

/// When a region splits by itself, and how often that is checked.
///
/// TiKV splits at 96 MiB or 960,000 keys (256 MiB from v8.4). The lab's data is tiny, so its
/// thresholds are small enough to be seen splitting in a load test; the TiKV client's own CI
/// uses smaller still (7 keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitPolicy {
    /// Split once the region holds more write records (MVCC versions) than this.
    pub max_keys: u64,
    /// … or more bytes of write records than this.
    pub max_bytes: u64,
}

impl Default for SplitPolicy {
    fn default() -> Self {
        SplitPolicy {
            max_keys: 20_000,
            max_bytes: 8 << 20,
        }
    }
}

/// Why a split cannot happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// The key is a boundary already, or outside the region.
    #[error(
        "cannot split region {region} at that key: it is the region's start or lies outside the region (use a key strictly inside it)"
    )]
    BadKey {
        /// The region.
        region: u64,
    },
    /// PD gave fewer peer ids than the region has replicas.
    #[error("PD gave {got} new peer ids for {want} replicas")]
    PeerIds {
        /// Given.
        got: usize,
        /// Needed.
        want: usize,
    },
}

/// Whether `region` shares a key with the range `start..end` (encoded keys; an empty end is
/// unbounded).
pub fn overlaps(region: &metapb::Region, start: &[u8], end: &[u8]) -> bool {
    let starts_before_end = end.is_empty() || region.start_key.as_slice() < end;
    let ends_after_start = region.end_key.is_empty() || region.end_key.as_slice() > start;
    starts_before_end && ends_after_start
}

/// Whether `region` holds the encoded key `key`.
pub fn contains(region: &metapb::Region, key: &[u8]) -> bool {
    region.start_key.as_slice() <= key && (region.end_key.is_empty() || key < &region.end_key[..])
}

/// Decodes a region bound (an encoded key) to the raw user key it starts; empty stays empty.
pub fn raw_bound(encoded: &[u8]) -> Vec<u8> {
    if encoded.is_empty() {
        return Vec::new();
    }
    keys::decode_bytes(encoded)
        .map(|(k, _)| k)
        .unwrap_or_else(|| encoded.to_vec())
}

/// The two regions `parent` becomes when split at encoded `key`: `[left (new), right (parent)]`.
pub fn split_regions(
    parent: &metapb::Region,
    key: &[u8],
    new_region_id: u64,
    new_peer_ids: &[u64],
) -> Result<[metapb::Region; 2], SplitError> {
    if key <= parent.start_key.as_slice() || !contains(parent, key) {
        return Err(SplitError::BadKey { region: parent.id });
    }
    if new_peer_ids.len() != parent.peers.len() {
        return Err(SplitError::PeerIds {
            got: new_peer_ids.len(),
            want: parent.peers.len(),
        });
    }
    let epoch = parent.region_epoch.unwrap_or_default();
    let epoch = metapb::RegionEpoch {
        conf_ver: epoch.conf_ver,
        version: epoch.version + 1,
    };
    let mut right = parent.clone();
    right.start_key = key.to_vec();
    right.region_epoch = Some(epoch);
    let mut left = parent.clone();
    left.id = new_region_id;
    left.end_key = key.to_vec();
    left.region_epoch = Some(epoch);
    left.peers = parent
        .peers
        .iter()
        .zip(new_peer_ids)
        .map(|(p, &id)| metapb::Peer { id, ..*p })
        .collect();
    Ok([left, right])
}

/// A split entry's payload: the resulting regions (PD's `ReportBatchSplitRequest` shape).
pub fn encode(regions: &[metapb::Region]) -> Vec<u8> {
    pdpb::ReportBatchSplitRequest {
        header: None,
        regions: regions.to_vec(),
    }
    .encode_to_vec()
}

/// Decodes a split entry's payload.
pub fn decode(data: &[u8]) -> Result<Vec<metapb::Region>, prost::DecodeError> {
    Ok(pdpb::ReportBatchSplitRequest::decode(data)?.regions)
}

/// Whether a split proposed as `regions` still applies to `current` (the parent as this
/// replica holds it when the entry is applied): the same range, and the epoch it was computed
/// from. A second split proposed from the same epoch is skipped, as TiKV skips a stale one.
pub fn applies_to(current: &metapb::Region, regions: &[metapb::Region]) -> bool {
    let [left, right] = regions else {
        return false;
    };
    let now = current.region_epoch.unwrap_or_default();
    let next = right.region_epoch.unwrap_or_default();
    right.id == current.id
        && next.version == now.version + 1
        && next.conf_ver == now.conf_ver
        && left.start_key == current.start_key
        && right.end_key == current.end_key
        && left.end_key == right.start_key
}

/// A region's size as its write records measure it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionSize {
    /// Write records (MVCC versions) in the range.
    pub keys: u64,
    /// Their bytes (keys and values).
    pub bytes: u64,
}

/// Counts the write records of `region`'s range.
pub fn measure(engine: &Engine, region: &metapb::Region) -> Result<RegionSize, EngineError> {
    let txn = engine.db().begin_read()?;
    let table = txn.open_table(WRITE_TABLE)?;
    let mut size = RegionSize::default();
    for row in range(&table, region)? {
        let (k, v) = row?;
        size.keys += 1;
        size.bytes += (k.value().len() + v.value().len()) as u64;
    }
    Ok(size)
}

/// The encoded user key in the middle of `region`'s write records (by count), if it is a
/// valid split key: strictly after the region's start.
pub fn middle_key(engine: &Engine, region: &metapb::Region, keys: u64) -> Option<Vec<u8>> {
    let txn = engine.db().begin_read().ok()?;
    let table = txn.open_table(WRITE_TABLE).ok()?;
    let (k, _) = range(&table, region).ok()?.nth((keys / 2) as usize)?.ok()?;
    let (user_key, _) = keys::split_versioned(k.value())?;
    let encoded = keys::encode_bytes(user_key.as_raw());
    (encoded.as_slice() > region.start_key.as_slice()).then_some(encoded)
}

type Rows<'a> = redb::Range<'a, &'static [u8], &'static [u8]>;

fn range<'a>(
    table: &'a redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    region: &metapb::Region,
) -> Result<Rows<'a>, redb::StorageError> {
    use std::ops::Bound;
    let upper = if region.end_key.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(region.end_key.as_slice())
    };
    table.range::<&[u8]>((Bound::Included(region.start_key.as_slice()), upper))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &[u8], end: &[u8], version: u64) -> metapb::Region {
        metapb::Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version,
            }),
            peers: (1..=3)
                .map(|s| metapb::Peer {
                    id: 10 + s,
                    store_id: s,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_parent_keeps_the_right_half_and_both_halves_move_to_the_next_version() {
        let parent = region(2, b"", b"", 1);
        let [left, right] = split_regions(&parent, b"m", 1000, &[1001, 1002, 1003]).unwrap();
        assert_eq!(
            (left.id, &left.start_key[..], &left.end_key[..]),
            (1000, &b""[..], &b"m"[..])
        );
        assert_eq!(
            (right.id, &right.start_key[..], &right.end_key[..]),
            (2, &b"m"[..], &b""[..])
        );
        assert_eq!(left.region_epoch.unwrap().version, 2);
        assert_eq!(right.region_epoch.unwrap().version, 2);
        let stores: Vec<_> = left.peers.iter().map(|p| (p.id, p.store_id)).collect();
        assert_eq!(stores, [(1001, 1), (1002, 2), (1003, 3)]);
        assert!(applies_to(&parent, &[left.clone(), right.clone()]));
        assert_eq!(
            decode(&encode(&[left.clone(), right.clone()])).unwrap(),
            [left, right]
        );
    }

    #[test]
    fn a_split_at_the_start_or_outside_is_refused() {
        let parent = region(2, b"c", b"x", 1);
        for key in [&b"c"[..], b"a", b"x", b"z"] {
            assert_eq!(
                split_regions(&parent, key, 9, &[1, 2, 3]).unwrap_err(),
                SplitError::BadKey { region: 2 }
            );
        }
        assert!(matches!(
            split_regions(&parent, b"m", 9, &[1]),
            Err(SplitError::PeerIds { got: 1, want: 3 })
        ));
    }

    #[test]
    fn a_second_split_from_the_same_epoch_does_not_apply() {
        let parent = region(2, b"", b"", 1);
        let first = split_regions(&parent, b"m", 1000, &[1, 2, 3]).unwrap();
        let second = split_regions(&parent, b"t", 2000, &[4, 5, 6]).unwrap();
        assert!(applies_to(&parent, &first));
        // After the first applied, the parent is [m, "") at version 2: the second is stale.
        assert!(!applies_to(&first[1], &second));
    }

    #[test]
    fn region_bounds_decode_to_the_raw_keys_they_start() {
        let enc = keys::encode_bytes(b"/*ns\0*db\0*user\0*");
        assert_eq!(raw_bound(&enc), b"/*ns\0*db\0*user\0*");
        assert!(raw_bound(b"").is_empty());
        let r = region(2, &enc, b"", 1);
        assert!(contains(
            &r,
            &keys::encode_bytes(b"/*ns\0*db\0*user\0*\0ada")
        ));
        assert!(!contains(&r, &keys::encode_bytes(b"/*ns\0*db\0*order")));
    }
}
