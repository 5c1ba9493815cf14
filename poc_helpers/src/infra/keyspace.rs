//! From a record's name to the storage tier's key space: SurrealDB 3.3.5's key of a record or
//! a table, and the *memcomparable* form in which PD and TiKV draw region boundaries.
//!
//! Why this exists: regions are ranges of encoded keys, so "which region holds `user:ada`" and
//! "split at table `user`" both start by building the key SurrealDB itself writes. The layout
//! (`crates/core/src/key` in SurrealDB, read back by [`crate::vocab::key_meaning`]):
//!
//! ```text
//! record   /*{ns id: u32 BE}*{db id: u32 BE}*{table}\0*{id}
//! id       number: 0x02 + 8 bytes big-endian with the sign bit flipped (so numbers sort)
//!          string: 0x03 + the bytes + 0x00
//! ```
//!
//! Namespace and database ids are numbers SurrealDB allocates; `INFO FOR ROOT STRUCTURE` and
//! `INFO FOR NS STRUCTURE` list them. The memcomparable encoding is TiKV's `encode_bytes`
//! (8-byte groups, each closed by a marker byte), the form `/pd/api/v1/regions` prints in hex.

use crate::vocab::error::LabError;

const GROUP: usize = 8;
const MARKER: u8 = 0xFF;

/// TiKV's memcomparable encoding of `key` (byte order of encodings = order of keys).
pub fn encode_bytes(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity((key.len() / GROUP + 1) * (GROUP + 1));
    let mut chunks = key.chunks_exact(GROUP);
    for chunk in &mut chunks {
        out.extend_from_slice(chunk);
        out.push(MARKER);
    }
    let rest = chunks.remainder();
    let pad = GROUP - rest.len();
    out.extend_from_slice(rest);
    out.extend(std::iter::repeat_n(0u8, pad));
    out.push(MARKER - pad as u8);
    out
}

/// The raw key an encoded key starts with; `None` if `data` is not an encoding.
pub fn decode_bytes(data: &[u8]) -> Option<Vec<u8>> {
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
        if pad > GROUP {
            return None;
        }
        key.extend_from_slice(&group[..GROUP - pad]);
        return Some(key);
    }
}

/// Upper-case hex, as PD prints keys.
pub fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02X}")).collect()
}

/// Bytes from hex (either case); `None` if it is not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The first key of table `table`'s records: every record of the table sorts after it, and
/// the table's catalog (`…\0!fd…`) and the next table sort before or after the range.
pub fn table_prefix(ns_id: u32, db_id: u32, table: &str) -> Vec<u8> {
    let mut k = b"/*".to_vec();
    k.extend_from_slice(&ns_id.to_be_bytes());
    k.push(b'*');
    k.extend_from_slice(&db_id.to_be_bytes());
    k.push(b'*');
    k.extend_from_slice(table.as_bytes());
    k.extend_from_slice(b"\0*");
    k
}

/// A record named `table:id` split into its table and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordName {
    /// `table:42`.
    Number(String, i64),
    /// `table:ada` or `table:⟨any text⟩`.
    Text(String, String),
}

impl RecordName {
    /// Parses `table:id`; an id of digits is a number, `⟨…⟩` or backticks quote text.
    pub fn parse(record: &str) -> Result<RecordName, LabError> {
        let bad = |why: &str| {
            LabError::config(
                "record",
                format!("{record:?}: {why}"),
                "name a record as `table:id`, e.g. \"user:ada\" or \"user:42\"",
            )
        };
        let (table, id) = record
            .split_once(':')
            .ok_or_else(|| bad("there is no `:`"))?;
        if table.is_empty() || id.is_empty() {
            return Err(bad("the table or the id is empty"));
        }
        let unquoted = id
            .strip_prefix('⟨')
            .and_then(|s| s.strip_suffix('⟩'))
            .or_else(|| id.strip_prefix('`').and_then(|s| s.strip_suffix('`')));
        if let Some(text) = unquoted {
            return Ok(RecordName::Text(table.into(), text.into()));
        }
        if id.starts_with(['[', '{', '\'', '"']) || id.contains('-') && id.len() == 36 {
            return Err(bad(
                "only number and text ids are located (not arrays, objects or UUIDs)",
            ));
        }
        Ok(match id.parse::<i64>() {
            Ok(n) => RecordName::Number(table.into(), n),
            Err(_) => RecordName::Text(table.into(), id.into()),
        })
    }

    /// The table.
    pub fn table(&self) -> &str {
        match self {
            RecordName::Number(t, _) | RecordName::Text(t, _) => t,
        }
    }

    /// The key SurrealDB stores the record under.
    pub fn key(&self, ns_id: u32, db_id: u32) -> Vec<u8> {
        let mut k = table_prefix(ns_id, db_id, self.table());
        match self {
            RecordName::Number(_, n) => {
                k.push(2);
                k.extend_from_slice(&((*n as u64) ^ (1 << 63)).to_be_bytes());
            }
            RecordName::Text(_, s) => {
                k.push(3);
                k.extend_from_slice(s.as_bytes());
                k.push(0);
            }
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::key_meaning::{KeyMeaning, decode_key};

    #[test]
    fn encoding_round_trips_and_keeps_order() {
        for k in [
            &b""[..],
            b"a",
            b"12345678",
            b"/*\0\0\0\x01*\0\0\0\0*user\0*\x03ada\0",
        ] {
            assert_eq!(decode_bytes(&encode_bytes(k)).unwrap(), k);
        }
        assert!(encode_bytes(b"a") < encode_bytes(b"a\0"));
        assert!(encode_bytes(b"user\0*") < encode_bytes(b"user\0*\x03ada\0"));
        assert_eq!(unhex(&hex(&[0, 0xAB, 0xFF])).unwrap(), [0, 0xAB, 0xFF]);
        assert!(unhex("ABC").is_none());
    }

    /// The layout matches keys seen in a real trace (notebook 05's `counter:hits`, 02's notes).
    #[test]
    fn record_keys_are_the_ones_surrealdb_writes() {
        let hits = RecordName::parse("counter:hits").unwrap().key(1, 0);
        assert_eq!(hits, b"/*\0\0\0\x01*\0\0\0\0*counter\0*\x03hits\0");
        let note = RecordName::parse("note:2").unwrap().key(1, 0);
        assert_eq!(
            decode_key(&note.escape_ascii().to_string()),
            KeyMeaning::Record {
                table: "note".into(),
                record: "note:2".into()
            }
        );
        assert!(table_prefix(1, 0, "note") < note);
        assert!(note < table_prefix(1, 0, "notf"));
    }

    #[test]
    fn a_record_name_that_cannot_be_located_names_the_fix() {
        for bad in ["user", ":ada", "user:", "user:[1,2]"] {
            let e = RecordName::parse(bad).unwrap_err().to_string();
            assert!(e.contains("table:id"), "{bad}: {e}");
        }
        assert_eq!(
            RecordName::parse("user:⟨ada lovelace⟩").unwrap(),
            RecordName::Text("user".into(), "ada lovelace".into())
        );
    }
}
