//! Where a statement's time goes: one SurrealQL statement turned into a **latency waterfall** —
//! every storage RPC it caused (its kind, its key decoded into namespace / database / table /
//! record, when it started relative to the client's send, how long the storage node served it)
//! and the time spent outside storage.
//!
//! # Reading a waterfall
//!
//! The client measures the whole round trip. SurrealDB reports its own execution time of the
//! statement. The storage node's trace gives each RPC's arrival (µs, same machine clock) and
//! service time. So the round trip splits into three honest parts:
//!
//! | part | how it is computed |
//! |---|---|
//! | storage service | the sum of the RPCs' service times inside the storage node |
//! | SurrealDB + TiKV client | SurrealDB's execution time minus storage service: parsing, planning, executing, and every RPC's trip through the TiKV client, gRPC and loopback |
//! | network + SDK | the client's round trip minus SurrealDB's execution time |
//!
//! # Why so many definition reads
//!
//! On TiKV, SurrealDB 3.3.5 reads the namespace, database and table *definitions* from storage
//! in every transaction before it touches a record: its definition cache serves local engines
//! only, because a cache on one node cannot see another node's `DEFINE`. The decoded keys make
//! that visible: [`Waterfall::definition_reads`] counts them (a table's field, index and event
//! definitions included).

use serde::{Deserialize, Serialize};

use crate::infra::trace::{RaftSteps, TraceRow};
use crate::present::charts::Chart;
use crate::present::gantt::{GanttBar, gantt};
use crate::vocab::error::LabError;
use crate::vocab::frames::frame;
pub use crate::vocab::key_meaning::{KeyMeaning, decode_key, unescape};
use polars::prelude::{Column, DataFrame};

/// One storage RPC of a statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaterfallStep {
    /// `PdTso`, `KvGet`, `KvPrewrite`, …
    pub rpc: String,
    /// What its (first) key is.
    pub meaning: KeyMeaning,
    /// Keys in the request.
    pub n_keys: usize,
    /// When it reached the storage node, ms after the client sent the statement.
    pub start_ms: f64,
    /// How long the storage node served it, ms.
    pub ms: f64,
    /// For a replicated write: its Raft steps inside the storage node.
    #[serde(default)]
    pub raft: Option<RaftSteps>,
}

/// One statement's waterfall (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waterfall {
    /// The node that ran it.
    pub node: String,
    /// The statement.
    pub statement: String,
    /// The lab's storage, e.g. `shared` or `surrealkv`.
    pub storage: String,
    /// The client's round trip, ms.
    pub client_ms: f64,
    /// SurrealDB's own execution time, ms (when it reported one).
    pub server_ms: Option<f64>,
    /// Every storage RPC, in arrival order.
    pub steps: Vec<WaterfallStep>,
}

impl Waterfall {
    /// Builds a waterfall from the trace rows of one node during one statement. `sent_us` is
    /// the client's wall clock (µs since the Unix epoch) when it sent the statement; rows of
    /// other nodes, and rows outside the round trip (background work), are left out.
    pub fn build(
        node: &str,
        statement: &str,
        storage: &str,
        sent_us: u64,
        client_ms: f64,
        server_ms: Option<f64>,
        rows: &[TraceRow],
    ) -> Waterfall {
        // A little slack: `sent_us` is read just before the query is handed to the SDK.
        let end_us = sent_us + (client_ms * 1000.0) as u64 + 500;
        let mut steps: Vec<WaterfallStep> = rows
            .iter()
            .filter(|r| r.node == node)
            .map(|r| (r.at_us(), r))
            .filter(|(at, _)| *at >= sent_us && *at <= end_us)
            .map(|(at, r)| WaterfallStep {
                rpc: r.rpc.clone(),
                meaning: match r.keys.first() {
                    Some(k) => decode_key(k),
                    None => KeyMeaning::Timestamp,
                },
                n_keys: r.n_keys,
                start_ms: (at - sent_us) as f64 / 1000.0,
                ms: r.us as f64 / 1000.0,
                raft: r.raft,
            })
            .filter(|s| !matches!(&s.meaning, KeyMeaning::Other { what } if what.starts_with("system key")))
            .collect();
        steps.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
        Waterfall {
            node: node.to_string(),
            statement: statement.to_string(),
            storage: storage.to_string(),
            client_ms,
            server_ms,
            steps,
        }
    }

    /// Time the storage node spent serving this statement's RPCs, ms.
    pub fn storage_ms(&self) -> f64 {
        // Folded from +0.0: an empty f64 sum is -0.0, which would print as "-0.00 ms".
        self.steps.iter().map(|s| s.ms).fold(0.0, |a, b| a + b)
    }

    /// RPCs that fetched a namespace, database or table definition.
    pub fn definition_reads(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.meaning.is_definition())
            .count()
    }

    /// RPCs that touched a record.
    pub fn record_rpcs(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s.meaning, KeyMeaning::Record { .. }))
            .count()
    }

    /// The round trip in three parts (see the module table): `(part, ms)`. Without a server
    /// time, everything outside storage is one part.
    pub fn breakdown(&self) -> Vec<(String, f64)> {
        let storage = self.storage_ms();
        let n = self.steps.len();
        // Without storage RPCs (a local engine), SurrealDB's time includes its own store.
        let inside = if n == 0 {
            "SurrealDB (parse, execute, its local store)"
        } else {
            "SurrealDB + TiKV client (parse, execute, RPC trips)"
        };
        match self.server_ms {
            Some(server) => vec![
                (format!("storage service ({n} RPCs)"), storage),
                (inside.into(), (server - storage).max(0.0)),
                (
                    "network + SDK (client round trip − SurrealDB time)".into(),
                    (self.client_ms - server).max(0.0),
                ),
            ],
            None => vec![
                (format!("storage service ({n} RPCs)"), storage),
                (
                    "everything else".into(),
                    (self.client_ms - storage).max(0.0),
                ),
            ],
        }
    }

    /// One row per RPC: rpc, key (decoded), group, n_keys, start_ms, ms.
    pub fn steps_frame(&self) -> Result<DataFrame, LabError> {
        let s = &self.steps;
        frame(vec![
            Column::new(
                "rpc".into(),
                s.iter().map(|x| x.rpc.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "key".into(),
                s.iter().map(|x| x.meaning.to_string()).collect::<Vec<_>>(),
            ),
            Column::new(
                "group".into(),
                s.iter().map(|x| x.meaning.group()).collect::<Vec<_>>(),
            ),
            Column::new(
                "n_keys".into(),
                s.iter().map(|x| x.n_keys as u64).collect::<Vec<_>>(),
            ),
            Column::new(
                "start_ms".into(),
                s.iter().map(|x| round3(x.start_ms)).collect::<Vec<_>>(),
            ),
            Column::new(
                "ms".into(),
                s.iter().map(|x| round3(x.ms)).collect::<Vec<_>>(),
            ),
        ])
    }

    /// The three parts as a table: part, ms, share_pct.
    pub fn breakdown_frame(&self) -> Result<DataFrame, LabError> {
        let parts = self.breakdown();
        let total = self.client_ms.max(1e-9);
        frame(vec![
            Column::new(
                "part".into(),
                parts.iter().map(|p| p.0.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "ms".into(),
                parts.iter().map(|p| round3(p.1)).collect::<Vec<_>>(),
            ),
            Column::new(
                "share_pct".into(),
                parts
                    .iter()
                    .map(|p| (p.1 / total * 1000.0).round() / 10.0)
                    .collect::<Vec<_>>(),
            ),
        ])
    }

    /// The bars of this waterfall for a chart, under `lane_prefix` (e.g. `shared ·`).
    pub fn bars(&self, lane_prefix: &str) -> Vec<GanttBar> {
        let mut bars = vec![GanttBar {
            lane: format!("{lane_prefix}client round trip"),
            start_ms: 0.0,
            ms: self.client_ms,
            group: "client round trip".into(),
        }];
        if let Some(server) = self.server_ms {
            // SurrealDB's time sits inside the round trip; the split of the rest between the
            // two directions is unknown, so it is drawn centred.
            bars.push(GanttBar {
                lane: format!("{lane_prefix}SurrealDB executes"),
                start_ms: ((self.client_ms - server) / 2.0).max(0.0),
                ms: server,
                group: "SurrealDB".into(),
            });
        }
        for (k, s) in self.steps.iter().enumerate() {
            bars.push(GanttBar {
                lane: format!("{lane_prefix}{:>2} {} {}", k + 1, s.rpc, s.meaning),
                start_ms: s.start_ms,
                ms: s.ms.max(0.001),
                group: s.meaning.group().into(),
            });
            // A replicated write's Raft steps, under its RPC, in the order they happen.
            if let Some(r) = s.raft {
                let mut at = s.start_ms;
                for (step, us) in raft_parts(&r) {
                    let ms = us as f64 / 1000.0;
                    bars.push(GanttBar {
                        lane: format!("{lane_prefix}    ↳ Raft: {step}"),
                        start_ms: at,
                        ms: ms.max(0.001),
                        group: "Raft (inside the storage node)".into(),
                    });
                    at += ms;
                }
            }
        }
        bars
    }

    /// The Raft steps of this statement's replicated writes, summed: `(step, ms)`.
    pub fn raft_breakdown(&self) -> Vec<(String, f64)> {
        let mut sums: Vec<(String, f64)> = Vec::new();
        for r in self.steps.iter().filter_map(|s| s.raft) {
            for (k, (step, us)) in raft_parts(&r).into_iter().enumerate() {
                if sums.len() <= k {
                    sums.push((step.to_string(), 0.0));
                }
                sums[k].1 += us as f64 / 1000.0;
            }
        }
        sums
    }

    /// The waterfall as a chart: one lane per RPC, coloured by what its key is.
    pub fn chart(&self) -> Result<Chart, LabError> {
        gantt(
            &format!("Where the time goes — {} on {}", self.statement, self.node),
            &self.bars(""),
        )
    }

    /// Several waterfalls stacked in one chart (e.g. the same statement on shared storage and
    /// on SurrealKV), each lane prefixed with its storage.
    pub fn compare_chart(title: &str, all: &[&Waterfall]) -> Result<Chart, LabError> {
        let bars: Vec<GanttBar> = all
            .iter()
            .flat_map(|w| w.bars(&format!("{} · ", w.storage)))
            .collect();
        gantt(title, &bars)
    }

    /// What this run shows, in sentences computed from its numbers.
    pub fn explain(&self) -> String {
        let parts = self.breakdown();
        let total = self.client_ms.max(1e-9);
        let mut s = format!(
            "`{}` on {} ({}) took {:.2} ms at the client.",
            self.statement, self.node, self.storage, self.client_ms
        );
        for (part, ms) in &parts {
            s.push_str(&format!(
                "\n  · {part}: {ms:.2} ms ({:.0}%)",
                ms / total * 100.0
            ));
        }
        if !self.steps.is_empty() {
            s.push_str(&format!(
                "\n{} of its {} storage RPCs fetched definitions (namespace, database, table, fields); {} touched the record itself.",
                self.definition_reads(),
                self.steps.len(),
                self.record_rpcs()
            ));
        }
        let raft = self.raft_breakdown();
        if !raft.is_empty() {
            let total: f64 = raft.iter().map(|(_, ms)| ms).sum();
            let (slowest, slowest_ms) = raft
                .iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .cloned()
                .unwrap_or_default();
            s.push_str(&format!(
                "\nIts writes went through Raft in the storage node: {}; the largest step was {slowest} ({slowest_ms:.2} ms of {total:.2} ms).",
                raft.iter()
                    .map(|(step, ms)| format!("{step} {ms:.2} ms"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        s
    }
}

/// The Raft steps in the order they happen, with their µs.
fn raft_parts(r: &RaftSteps) -> [(&'static str, u64); 4] {
    [
        ("queue + execute on the leader", r.queued_us + r.execute_us),
        ("log append + fsync", r.persist_us),
        ("wait for a quorum", r.commit_us),
        ("apply", r.apply_us),
    ]
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(rpc: &str, node: &str, at_us: u64, us: u64, key: Option<&str>) -> TraceRow {
        TraceRow {
            at_ms: at_us / 1000,
            at_us,
            peer: "127.0.0.1:1".into(),
            node: node.into(),
            rpc: rpc.into(),
            start_ts: 1,
            n_keys: key.is_some() as usize,
            keys: key.map(|k| vec![k.to_string()]).unwrap_or_default(),
            ok: true,
            error: None,
            us,
            raft: None,
        }
    }

    #[test]
    fn a_replicated_write_shows_its_raft_steps_under_its_rpc_and_in_the_explanation() {
        let t = 1_000_000;
        let mut prewrite = row(
            "KvPrewrite",
            "node-a",
            t + 200,
            700,
            Some(
                "/*\\x00\\x00\\x00\\x01*\\x00\\x00\\x00\\x00*note\\x00*\\x02\\x80\\x00\\x00\\x00\\x00\\x00\\x00\\x01",
            ),
        );
        prewrite.raft = Some(RaftSteps {
            queued_us: 10,
            execute_us: 40,
            persist_us: 500,
            commit_us: 0,
            apply_us: 50,
        });
        // The line as the storage node writes it deserialises into the same row.
        let line = serde_json::to_string(&prewrite).unwrap();
        assert_eq!(serde_json::from_str::<TraceRow>(&line).unwrap(), prewrite);
        let rows = vec![row("PdTso", "node-a", t + 100, 20, None), prewrite];
        let w = Waterfall::build("node-a", "UPDATE note:1", "shared", t, 2.0, None, &rows);
        let bars = w.bars("");
        let raft: Vec<_> = bars.iter().filter(|b| b.lane.contains("Raft:")).collect();
        assert_eq!(raft.len(), 4, "{bars:?}");
        assert!(raft[1].lane.contains("fsync"));
        assert!(
            (raft[1].start_ms - (0.2 + 0.05)).abs() < 1e-9,
            "after queue+execute"
        );
        assert!((raft[1].ms - 0.5).abs() < 1e-9);
        let text = w.explain();
        assert!(
            text.contains("the largest step was log append + fsync (0.50 ms of 0.60 ms)"),
            "{text}"
        );
        let read = Waterfall::build("node-a", "SELECT", "shared", t, 2.0, None, &rows[..1]);
        assert!(
            !read.explain().contains("Raft"),
            "no Raft sentence without writes"
        );
    }

    #[test]
    fn a_waterfall_keeps_this_nodes_rpcs_in_the_round_trip_and_splits_the_time() {
        let t = 1_000_000;
        let rows = vec![
            row("PdTso", "node-a", t + 100, 20, None),
            row("KvGet", "node-a", t + 300, 30, Some("/!nslab\\x00")),
            row("KvGet", "node-b", t + 350, 30, Some("/!nslab\\x00")), // another node
            row(
                "KvGet",
                "node-a",
                t + 600,
                40,
                Some(
                    "/*\\x00\\x00\\x00\\x01*\\x00\\x00\\x00\\x00*note\\x00*\\x02\\x80\\x00\\x00\\x00\\x00\\x00\\x00\\x01",
                ),
            ),
            row("KvGet", "node-a", t + 9_000, 30, Some("/!nslab\\x00")), // after the reply
        ];
        let w = Waterfall::build(
            "node-a",
            "SELECT * FROM note:1",
            "shared",
            t,
            2.0,
            Some(1.5),
            &rows,
        );
        let rpcs: Vec<&str> = w.steps.iter().map(|s| s.rpc.as_str()).collect();
        assert_eq!(rpcs, ["PdTso", "KvGet", "KvGet"]);
        assert_eq!((w.definition_reads(), w.record_rpcs()), (1, 1));
        assert!((w.steps[1].start_ms - 0.3).abs() < 1e-9);
        assert!((w.storage_ms() - 0.09).abs() < 1e-9);
        let parts = w.breakdown();
        assert!((parts[1].1 - 1.41).abs() < 1e-9, "{parts:?}");
        assert!((parts[2].1 - 0.5).abs() < 1e-9, "{parts:?}");
        let sum: f64 = parts.iter().map(|p| p.1).sum();
        assert!(
            (sum - w.client_ms).abs() < 1e-9,
            "the parts add up to the round trip"
        );
        assert!(
            w.explain().contains("1 of its 3 storage RPCs"),
            "{}",
            w.explain()
        );
        assert_eq!(w.steps_frame().unwrap().height(), 3);
        assert!(w.chart().unwrap().svg.contains("record `note:1`"));
    }
}
