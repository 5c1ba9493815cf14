//! What a storage key means: SurrealDB 3.3.5's key layout decoded into namespace, database,
//! table and record, so a trace line or a waterfall row says "the table definition of `note`"
//! instead of printing escaped bytes. The waterfall, the region view and the other storage
//! experiments read their keys through it.

use serde::{Deserialize, Serialize};

/// What a storage key is, decoded from SurrealDB 3.3.5's key layout (`crates/core/src/key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyMeaning {
    /// `/!ns{name}`: a namespace definition.
    NamespaceDefinition {
        /// Namespace name.
        namespace: String,
    },
    /// `/*{ns id}!db{name}`: a database definition.
    DatabaseDefinition {
        /// Database name.
        database: String,
    },
    /// `/*{ns id}*{db id}!tb{name}`: a table definition.
    TableDefinition {
        /// Table name.
        table: String,
    },
    /// `/*{ns id}*{db id}*{table}\0*{id}`: a record.
    Record {
        /// Table name.
        table: String,
        /// The record id, as `table:id` when it is a plain number, else its printable bytes.
        record: String,
    },
    /// `/*{ns id}*{db id}*{table}\0!{kind}…`: the table's own catalog (`!fd` field, `!ix`
    /// index, `!ev` event definitions, …), read like the other definitions.
    TableCatalog {
        /// Table name.
        table: String,
        /// What the entries define, e.g. `field definitions`.
        what: String,
    },
    /// Another catalog entry or a system key (`/!nd` membership).
    Other {
        /// A short description.
        what: String,
    },
    /// No key: a timestamp request to PD.
    Timestamp,
}

impl KeyMeaning {
    /// True for namespace, database and table definitions.
    pub fn is_definition(&self) -> bool {
        matches!(
            self,
            KeyMeaning::NamespaceDefinition { .. }
                | KeyMeaning::DatabaseDefinition { .. }
                | KeyMeaning::TableDefinition { .. }
                | KeyMeaning::TableCatalog { .. }
        )
    }

    /// The group used for colours and counts: `timestamp`, `definition`, `record`, `other`.
    pub fn group(&self) -> &'static str {
        match self {
            KeyMeaning::Timestamp => "timestamp (PD)",
            KeyMeaning::Record { .. } => "record",
            KeyMeaning::Other { .. } => "other",
            _ => "definition",
        }
    }
}

impl std::fmt::Display for KeyMeaning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyMeaning::NamespaceDefinition { namespace } => {
                write!(f, "namespace definition `{namespace}`")
            }
            KeyMeaning::DatabaseDefinition { database } => {
                write!(f, "database definition `{database}`")
            }
            KeyMeaning::TableDefinition { table } => write!(f, "table definition `{table}`"),
            KeyMeaning::TableCatalog { table, what } => write!(f, "{what} of `{table}`"),
            KeyMeaning::Record { record, .. } => write!(f, "record `{record}`"),
            KeyMeaning::Other { what } => f.write_str(what),
            KeyMeaning::Timestamp => f.write_str("a start/commit timestamp"),
        }
    }
}

/// The bytes behind a trace key (the storage node writes keys with `escape_ascii`).
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let hex = || {
            b.get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        };
        let (byte, used) = match b[i + 1] {
            b'x' => hex().map(|v| (v, 4)).unwrap_or((b'\\', 1)),
            b'n' => (b'\n', 2),
            b't' => (b'\t', 2),
            b'r' => (b'\r', 2),
            c @ (b'\\' | b'\'' | b'"') => (c, 2),
            _ => (b'\\', 1),
        };
        out.push(byte);
        i += used;
    }
    out
}

/// Decodes one key of the trace (printable form) into what it means.
pub fn decode_key(printable: &str) -> KeyMeaning {
    let k = unescape(printable);
    let name = |from: &[u8]| -> String {
        let end = from.iter().position(|c| *c == 0).unwrap_or(from.len());
        String::from_utf8_lossy(&from[..end]).into_owned()
    };
    if let Some(rest) = k.strip_prefix(b"/!ns") {
        return KeyMeaning::NamespaceDefinition {
            namespace: name(rest),
        };
    }
    if let Some(rest) = k.strip_prefix(b"/!") {
        let kind = String::from_utf8_lossy(&rest[..rest.len().min(2)]).into_owned();
        return KeyMeaning::Other {
            what: format!("system key `!{kind}` (cluster bookkeeping)"),
        };
    }
    // `/*` + 4-byte namespace id, then either `!db…` or `*` + 4-byte database id.
    let Some(ns) = k.strip_prefix(b"/*").filter(|r| r.len() >= 5) else {
        return KeyMeaning::Other {
            what: "a key outside SurrealDB's namespaces".into(),
        };
    };
    let after_ns = &ns[4..];
    if let Some(rest) = after_ns.strip_prefix(b"!db") {
        return KeyMeaning::DatabaseDefinition {
            database: name(rest),
        };
    }
    let Some(db) = after_ns.strip_prefix(b"*").filter(|r| r.len() >= 5) else {
        return KeyMeaning::Other {
            what: "a namespace catalog entry".into(),
        };
    };
    let after_db = &db[4..];
    if let Some(rest) = after_db.strip_prefix(b"!tb") {
        return KeyMeaning::TableDefinition { table: name(rest) };
    }
    if let Some(rest) = after_db.strip_prefix(b"!") {
        let kind = String::from_utf8_lossy(&rest[..rest.len().min(2)]).into_owned();
        return KeyMeaning::Other {
            what: format!("database catalog entry `!{kind}`"),
        };
    }
    let Some(tb) = after_db.strip_prefix(b"*") else {
        return KeyMeaning::Other {
            what: "a database entry".into(),
        };
    };
    let table = name(tb);
    let after_tb = &tb[(table.len() + 1).min(tb.len())..];
    if let Some(rest) = after_tb.strip_prefix(b"!") {
        let what = match rest.get(..2) {
            Some(b"fd") => "field definitions",
            Some(b"ix") => "index definitions",
            Some(b"ev") => "event definitions",
            Some(b"ft") => "foreign-table definitions",
            Some(b"lq") => "live queries",
            _ => "catalog entries",
        };
        return KeyMeaning::TableCatalog {
            table,
            what: what.into(),
        };
    }
    match after_tb.strip_prefix(b"*") {
        Some(id) => KeyMeaning::Record {
            record: format!("{table}:{}", record_id(id)),
            table,
        },
        None => KeyMeaning::Other {
            what: format!(
                "table `{table}` entry `{}`",
                String::from_utf8_lossy(&after_tb[..after_tb.len().min(3)])
            ),
        },
    }
}

/// A record id's bytes: a number is a tag byte 2 and 8 big-endian bytes with the sign bit
/// flipped (so numbers sort); anything else is shown printable.
fn record_id(id: &[u8]) -> String {
    if let [2, rest @ ..] = id
        && rest.len() == 8
    {
        let v = u64::from_be_bytes(rest.try_into().expect("8 bytes")) ^ (1 << 63);
        return (v as i64).to_string();
    }
    id.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_a_real_trace_decode_into_their_meaning() {
        assert_eq!(
            decode_key("/!nslab\\x00"),
            KeyMeaning::NamespaceDefinition {
                namespace: "lab".into()
            }
        );
        assert_eq!(
            decode_key("/*\\x00\\x00\\x00\\x01!dbmain\\x00"),
            KeyMeaning::DatabaseDefinition {
                database: "main".into()
            }
        );
        assert_eq!(
            decode_key("/*\\x00\\x00\\x00\\x01*\\x00\\x00\\x00\\x00!tbnote\\x00"),
            KeyMeaning::TableDefinition {
                table: "note".into()
            }
        );
        assert_eq!(
            decode_key(
                "/*\\x00\\x00\\x00\\x01*\\x00\\x00\\x00\\x00*note\\x00*\\x02\\x80\\x00\\x00\\x00\\x00\\x00\\x00\\x02"
            ),
            KeyMeaning::Record {
                table: "note".into(),
                record: "note:2".into()
            }
        );
        assert_eq!(
            decode_key("/*\\x00\\x00\\x00\\x01*\\x00\\x00\\x00\\x00*note\\x00!fd\\x00"),
            KeyMeaning::TableCatalog {
                table: "note".into(),
                what: "field definitions".into()
            }
        );
        assert!(matches!(
            decode_key("/!nd\\x01\\x02"),
            KeyMeaning::Other { .. }
        ));
    }
}
