//! Both sides of shared storage: node A's traced write of a record and node B's traced read of
//! it, put side by side. The nodes never talk to each other, so the only thing the two traces
//! can share is the record's *key* in storage; and B can only see A's write because B's
//! transaction takes a later timestamp from the same oracle (PD's TSO). [`Handoff`] finds that
//! key in both traces, compares the start timestamps, and says what this run showed.
//!
//! A TSO timestamp is `(physical ms << 18) + logical counter`, so `ts >> 18` is PD's clock in
//! ms: the difference of two start timestamps, shifted, is the time between the two starts.

use serde::{Deserialize, Serialize};

use crate::experiments::waterfall::{KeyMeaning, decode_key};
use crate::infra::trace::TraceRow;
use crate::vocab::error::LabError;
use crate::vocab::frames::frame;
use polars::prelude::{Column, DataFrame};

/// Bits of a TSO timestamp below its physical milliseconds.
const TSO_LOGICAL_BITS: u32 = 18;

/// One side's request that touched the shared record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordRpc {
    /// The node that sent it (`node-a`).
    pub node: String,
    /// `KvPrewrite`, `KvGet`, …
    pub rpc: String,
    /// Its transaction's start timestamp (TSO).
    pub start_ts: u64,
    /// Arrival at the storage node, µs since the Unix epoch.
    pub at_us: u64,
    /// Time the storage node spent on it, µs.
    pub us: u64,
}

/// A traced write of one record on one node and a traced read of it on another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handoff {
    /// The record both traces touch, e.g. `note:2`.
    pub record: String,
    /// Its storage key, printable (the same bytes on both sides).
    pub key: String,
    /// The write's request that carried the record (the prewrite, or the commit).
    pub write: RecordRpc,
    /// The read's request that fetched the record.
    pub read: RecordRpc,
    /// Every request of the write, as traced.
    pub write_rows: Vec<TraceRow>,
    /// Every request of the read, as traced.
    pub read_rows: Vec<TraceRow>,
}

fn is_write_rpc(rpc: &str) -> bool {
    rpc.contains("Prewrite") || rpc.contains("Commit")
}

fn is_read_rpc(rpc: &str) -> bool {
    rpc.contains("Get") || rpc.contains("Scan")
}

/// The record keys of a row, decoded: `(printable key, table:id)`.
fn record_keys(row: &TraceRow) -> impl Iterator<Item = (&String, String)> {
    row.keys.iter().filter_map(|k| match decode_key(k) {
        KeyMeaning::Record { record, .. } => Some((k, record)),
        _ => None,
    })
}

impl Handoff {
    /// Pairs the write's trace with the read's: the first record key the write committed that
    /// the read then fetched. An error says which half is missing (no trace, no record write,
    /// a read of another record).
    pub fn new(write_rows: &[TraceRow], read_rows: &[TraceRow]) -> Result<Handoff, LabError> {
        let missing = |what: &str| {
            LabError::config(
                "storage_trace",
                what.to_string(),
                "start the lab with `.storage_trace(true)` (shared storage), write a record with \
                 `sql_traced_rows` on one node, then read that same record with `sql_traced_rows` on another",
            )
        };
        let written: Vec<(&TraceRow, &String, String)> = write_rows
            .iter()
            .filter(|r| r.ok && is_write_rpc(&r.rpc))
            .flat_map(|r| record_keys(r).map(move |(k, rec)| (r, k, rec)))
            .collect();
        if written.is_empty() {
            return Err(missing(
                "the write's trace has no request that writes a record",
            ));
        }
        let (w, key, record, r) = written
            .iter()
            .find_map(|(w, key, record)| {
                read_rows
                    .iter()
                    .filter(|r| r.ok && is_read_rpc(&r.rpc))
                    .find(|r| r.keys.iter().any(|k| k == *key))
                    .map(|r| (*w, (*key).clone(), record.clone(), r))
            })
            .ok_or_else(|| {
                let records: Vec<&str> = written.iter().map(|(_, _, rec)| rec.as_str()).collect();
                missing(&format!(
                    "the read's trace never fetches what the write wrote ({})",
                    records.join(", ")
                ))
            })?;
        let rpc = |row: &TraceRow| RecordRpc {
            node: row.node.clone(),
            rpc: row.rpc.clone(),
            start_ts: row.start_ts,
            at_us: row.at_us(),
            us: row.us,
        };
        Ok(Handoff {
            record,
            key,
            write: rpc(w),
            read: rpc(r),
            write_rows: write_rows.to_vec(),
            read_rows: read_rows.to_vec(),
        })
    }

    /// The node that wrote.
    pub fn writer(&self) -> &str {
        &self.write.node
    }

    /// The node that read.
    pub fn reader(&self) -> &str {
        &self.read.node
    }

    /// The read's start timestamp minus the write's, in PD's milliseconds (`ts >> 18`);
    /// positive when the read began later.
    pub fn ts_gap_ms(&self) -> i64 {
        (self.read.start_ts >> TSO_LOGICAL_BITS) as i64
            - (self.write.start_ts >> TSO_LOGICAL_BITS) as i64
    }

    /// How long after the storage node finished the write's request the read's request
    /// arrived, ms (the storage node's clock).
    pub fn read_after_write_ms(&self) -> f64 {
        let done = self.write.at_us + self.write.us;
        (self.read.at_us as f64 - done as f64) / 1000.0
    }

    /// Both traces in one table, the write's requests first: side, node, rpc, start_ts,
    /// at_ms (from the write's first request), key (what it is), shared (true where the
    /// request carries the record's key). Cluster bookkeeping (heartbeats) is left out.
    pub fn frame(&self) -> Result<DataFrame, LabError> {
        let rows: Vec<(&str, &TraceRow)> = self
            .write_rows
            .iter()
            .map(|r| ("write", r))
            .chain(self.read_rows.iter().map(|r| ("read", r)))
            .filter(|(_, r)| {
                !r.keys.first().is_some_and(|k| {
                    matches!(decode_key(k), KeyMeaning::Other { what } if what.starts_with("system key"))
                })
            })
            .collect();
        let t0 = rows.iter().map(|(_, r)| r.at_us()).min().unwrap_or(0);
        let meaning = |r: &TraceRow| match r.keys.first() {
            Some(k) => decode_key(k).to_string(),
            None => KeyMeaning::Timestamp.to_string(),
        };
        frame(vec![
            Column::new(
                "side".into(),
                rows.iter().map(|(s, _)| s.to_string()).collect::<Vec<_>>(),
            ),
            Column::new(
                "node".into(),
                rows.iter().map(|(_, r)| r.node.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "rpc".into(),
                rows.iter().map(|(_, r)| r.rpc.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "start_ts".into(),
                // PD's RPCs belong to no transaction yet: an empty cell, not a 0.
                rows.iter()
                    .map(|(_, r)| (r.start_ts != 0).then_some(r.start_ts))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "at_ms".into(),
                rows.iter()
                    .map(|(_, r)| (r.at_us().saturating_sub(t0)) as f64 / 1000.0)
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "key".into(),
                rows.iter().map(|(_, r)| meaning(r)).collect::<Vec<_>>(),
            ),
            Column::new(
                "shared".into(),
                rows.iter()
                    .map(|(_, r)| r.keys.contains(&self.key))
                    .collect::<Vec<_>>(),
            ),
        ])
    }

    /// What this run showed, in sentences built from its numbers.
    pub fn explain(&self) -> String {
        let gap = self.ts_gap_ms();
        let order = if gap > 0 {
            format!(
                "{gap} ms later on PD's clock (about the time between running the two cells: a \
                 gap between two statements, not a latency)"
            )
        } else if gap == 0 {
            "in the same millisecond on PD's clock, with a higher logical counter".into()
        } else {
            format!("{} ms *earlier* on PD's clock", -gap)
        };
        let later = self.read.start_ts > self.write.start_ts;
        let after = self.read_after_write_ms();
        let arrival = if after >= 0.0 {
            format!(
                "its {} reached the storage node {after:.1} ms after {}'s {} had been served",
                self.read.rpc, self.write.node, self.write.rpc
            )
        } else {
            format!(
                "its {} reached the storage node {:.1} ms *before* the write's {} was served",
                self.read.rpc, -after, self.write.rpc
            )
        };
        format!(
            "➜ {w} wrote `{rec}` ({wrpc}) in a transaction with start_ts {wts}; the record's key is `{key}`.\n\
             ➜ {r} then read that same key ({rrpc}) in a transaction with start_ts {rts}: {cmp} the write's, {order}; {arrival}.\n\
             ➜ {r} never heard from {w}: it found the record because its snapshot timestamp came \
             from the same oracle {}, and the key was already committed in storage.",
            if later {
                "after the write's"
            } else {
                "but NOT after the write's"
            },
            w = self.write.node,
            r = self.read.node,
            rec = self.record,
            wrpc = self.write.rpc,
            rrpc = self.read.rpc,
            wts = self.write.start_ts,
            rts = self.read.start_ts,
            key = self.key,
            cmp = if later {
                "larger than"
            } else {
                "not larger than"
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record key as the storage node prints it: `/*` ns id `*` db id `*note\0*` + id 2.
    const NOTE_2: &str =
        r"/*\x00\x00\x00\x00*\x00\x00\x00\x00*note\x00*\x02\x80\x00\x00\x00\x00\x00\x00\x02";
    const NOTE_3: &str =
        r"/*\x00\x00\x00\x00*\x00\x00\x00\x00*note\x00*\x02\x80\x00\x00\x00\x00\x00\x00\x03";
    const TABLE: &str = r"/*\x00\x00\x00\x00*\x00\x00\x00\x00!tbnote";

    fn row(node: &str, rpc: &str, ts_ms: u64, at_us: u64, keys: &[&str]) -> TraceRow {
        TraceRow {
            at_ms: at_us / 1000,
            at_us,
            peer: "127.0.0.1:1".into(),
            node: node.into(),
            rpc: rpc.into(),
            start_ts: (ts_ms << 18) + 3,
            n_keys: keys.len(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            ok: true,
            error: None,
            us: 200,
            raft: None,
        }
    }

    fn write() -> Vec<TraceRow> {
        vec![
            row("node-a", "PdTso", 0, 1_000, &[]),
            row("node-a", "KvGet", 1_000, 1_300, &[TABLE]),
            row("node-a", "KvPrewrite", 1_000, 2_000, &[NOTE_2]),
        ]
    }

    #[test]
    fn the_same_key_is_found_on_both_sides_with_the_later_timestamp() {
        let read = vec![
            row("node-b", "KvGet", 1_004, 9_000, &[TABLE]),
            row("node-b", "KvGet", 1_004, 9_500, &[NOTE_2]),
        ];
        let h = Handoff::new(&write(), &read).unwrap();
        assert_eq!(h.record, "note:2");
        assert_eq!((h.writer(), h.reader()), ("node-a", "node-b"));
        assert_eq!(h.write.rpc, "KvPrewrite");
        assert_eq!(
            h.read.at_us, 9_500,
            "the read of the record, not of the table"
        );
        assert_eq!(h.ts_gap_ms(), 4);
        assert!((h.read_after_write_ms() - 7.3).abs() < 1e-9);
        let text = h.explain();
        assert!(
            text.contains("larger than the write's, 4 ms later"),
            "{text}"
        );
        assert!(text.contains("7.3 ms after node-a's KvPrewrite"), "{text}");
        let f = h.frame().unwrap();
        assert_eq!(f.height(), 5);
        let shared: Vec<bool> = f
            .column("shared")
            .unwrap()
            .bool()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(shared, [false, false, true, false, true]);
    }

    #[test]
    fn an_earlier_read_is_said_to_be_earlier() {
        let read = vec![row("node-b", "KvGet", 990, 500, &[NOTE_2])];
        let h = Handoff::new(&write(), &read).unwrap();
        assert_eq!(h.ts_gap_ms(), -10);
        let text = h.explain();
        assert!(
            text.contains("not larger than") && text.contains("10 ms *earlier*"),
            "{text}"
        );
        assert!(text.contains("*before*"), "{text}");
    }

    #[test]
    fn a_read_of_another_record_or_no_write_is_a_clear_error() {
        let other = vec![row("node-b", "KvGet", 1_004, 9_000, &[NOTE_3])];
        let e = Handoff::new(&write(), &other).unwrap_err().to_string();
        assert!(
            e.contains("never fetches what the write wrote (note:2)"),
            "{e}"
        );
        assert!(e.contains("storage_trace(true)"), "{e}");
        let e = Handoff::new(&write()[..2], &other).unwrap_err().to_string();
        assert!(e.contains("no request that writes a record"), "{e}");
    }
}
