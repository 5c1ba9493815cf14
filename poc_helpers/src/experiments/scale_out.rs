//! Scaling out, measured: what the storage tier did while a node joined a running lab
//! ([`NodeJoin`], from the storage trace of the join), and the check of notebook 02's exercise
//! (write on an added node, read on node-a). Plain data in, sentences and verdicts out, so both
//! are unit-tested without processes.
//!
//! The claim being measured: over shared storage a new query node needs no copy of anything.
//! It registers itself (a few system keys) and from then on reads whatever it is asked for from
//! storage, like every other node. If a join ever copied data, the trace would show record
//! writes during the join, and [`NodeJoin::record_writes`] would not be zero.

use serde::{Deserialize, Serialize};

use crate::experiments::waterfall::{KeyMeaning, decode_key};
use crate::infra::trace::TraceRow;
use crate::present::exercise::{Check, check};
use crate::vocab::oplog::OpRecord;

/// What the storage node served while one node joined (the trace from just before
/// `add_node` until it returned).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeJoin {
    /// The node that joined, e.g. `node-c`.
    pub node: String,
    /// Storage requests in the window, from every node.
    pub requests: usize,
    /// Of those, the ones the new node sent.
    pub by_new_node: usize,
    /// Writes (prewrites, commits) the new node sent: its registration in the membership.
    pub new_node_writes: usize,
    /// Requests from any node in the window that wrote a *record* (a row of a table): a copy
    /// of data would show up here.
    pub record_writes: usize,
    /// Requests per node in the window, busiest first: the nodes already running keep sending
    /// their own background requests while another joins.
    #[serde(default)]
    pub by_node: Vec<(String, usize)>,
}

fn is_write(rpc: &str) -> bool {
    rpc.contains("Prewrite") || rpc.contains("Commit")
}

impl NodeJoin {
    /// Summarises the trace rows of the join of `node`.
    pub fn from_trace(node: &str, rows: &[TraceRow]) -> NodeJoin {
        let writes_a_record = |r: &TraceRow| {
            is_write(&r.rpc)
                && r.keys
                    .iter()
                    .any(|k| matches!(decode_key(k), KeyMeaning::Record { .. }))
        };
        NodeJoin {
            node: node.to_string(),
            requests: rows.len(),
            by_new_node: rows.iter().filter(|r| r.node == node).count(),
            new_node_writes: rows
                .iter()
                .filter(|r| r.node == node && is_write(&r.rpc))
                .count(),
            record_writes: rows.iter().filter(|r| writes_a_record(r)).count(),
            by_node: {
                let mut counts: Vec<(String, usize)> = Vec::new();
                for r in rows {
                    match counts.iter_mut().find(|(n, _)| *n == r.node) {
                        Some((_, c)) => *c += 1,
                        None => counts.push((r.node.clone(), 1)),
                    }
                }
                counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                counts
            },
        }
    }

    /// What this run's join showed, in a sentence built from its numbers.
    pub fn explain(&self) -> String {
        let copied = match self.record_writes {
            0 => "none of them wrote a record: nothing was copied".to_string(),
            n => format!(
                "{n} of them wrote records (something else was writing during the join; \
                 a join itself copies nothing)"
            ),
        };
        let others: Vec<String> = self
            .by_node
            .iter()
            .filter(|(n, _)| *n != self.node)
            .map(|(n, c)| format!("{c} from {n}"))
            .collect();
        let others = if others.is_empty() {
            String::new()
        } else {
            format!(
                " The others ({}) are the running nodes' own background work, which goes on \
                 whether a node joins or not (heartbeats, membership checks, tasks that poll \
                 storage); a join adds only the new node's requests.",
                others.join(", ")
            )
        };
        format!(
            "➜ While {node} joined, the storage node served {req} requests, {mine} of them from \
             {node} ({w}: its registration in the membership; the rest its start-up reads); \
             {copied}.{others}",
            node = self.node,
            req = self.requests,
            mine = self.by_new_node,
            w = match self.new_node_writes {
                1 => "1 write".to_string(),
                n => format!("{n} writes"),
            },
        )
    }
}

/// Exercise 02-1's verdict: a node was added (`new_node`), `record` was written *on it*, and
/// node-a then read it and returned `rows_on_a` rows. `ops` is the lab's operation log, which
/// names the node that served every query, so the check sees where each step ran. Unsolved, it
/// names the first missing step.
pub fn write_on_new_node_read_on_a(
    new_node: Option<&str>,
    ops: &[OpRecord],
    record: &str,
    rows_on_a: usize,
) -> Check {
    let Some(new) = new_node else {
        return check(
            false,
            "",
            "step 1: add a node — replace `None` with `Some(cluster.add_node().expect(\"add a node\"))`",
        );
    };
    let new = if new.starts_with("node-") {
        new.to_string()
    } else {
        format!("node-{new}")
    };
    let mentions = |o: &OpRecord| o.ok && o.statement.contains(record);
    let written = ops.iter().any(|o| {
        mentions(o)
            && o.node == new
            && ["CREATE", "UPSERT", "INSERT", "UPDATE"].contains(&o.kind.as_str())
    });
    if !written {
        return check(
            false,
            "",
            format!(
                "step 2: create {record} on {new} — `cluster.sql(\"{new}\", \"CREATE {record} SET text = 'hi'\")`"
            ),
        );
    }
    let read_on_a = ops
        .iter()
        .rev()
        .find(|o| mentions(o) && o.node == "node-a" && o.kind == "SELECT");
    match read_on_a {
        None => check(
            false,
            "",
            format!(
                "step 3: read {record} on node-a — `cluster.sql(\"a\", \"SELECT * FROM {record}\")`"
            ),
        ),
        Some(read) if read.rows as usize != rows_on_a || rows_on_a != 1 => check(
            false,
            "",
            format!(
                "step 3: node-a's last read of {record} returned {} row(s) and rows_on_a is {rows_on_a}: \
                 set rows_on_a to that read's `.row_count()` (it should find the one record)",
                read.rows
            ),
        ),
        Some(_) => check(
            true,
            format!(
                "{new}, a node that did not exist when the lab started, wrote {record}, and node-a read it \
                 at once: the two never talked; the record went through storage."
            ),
            "",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTE_1: &str =
        r"/*\x00\x00\x00\x00*\x00\x00\x00\x00*note\x00*\x02\x80\x00\x00\x00\x00\x00\x00\x01";

    fn row(node: &str, rpc: &str, key: Option<&str>) -> TraceRow {
        TraceRow {
            at_ms: 1,
            at_us: 1_000,
            peer: "127.0.0.1:1".into(),
            node: node.into(),
            rpc: rpc.into(),
            start_ts: 1,
            n_keys: key.iter().count(),
            keys: key.iter().map(|k| k.to_string()).collect(),
            ok: true,
            error: None,
            us: 10,
            raft: None,
        }
    }

    #[test]
    fn a_join_that_only_registers_copies_nothing() {
        let rows = vec![
            row("node-c", "PdTso", None),
            row("node-c", "KvPrewrite", Some(r"/!nd\x01")),
            row("node-a", "KvGet", Some(r"/!nd\x02")),
            row("node-c", "KvScan", Some(r"/!nd")),
        ];
        let j = NodeJoin::from_trace("node-c", &rows);
        assert_eq!(
            (
                j.requests,
                j.by_new_node,
                j.new_node_writes,
                j.record_writes
            ),
            (4, 3, 1, 0)
        );
        let text = j.explain();
        assert!(
            text.contains("served 4 requests, 3 of them from node-c (1 write:"),
            "{text}"
        );
        assert!(text.contains("nothing was copied"), "{text}");
        assert!(text.contains("The others (1 from node-a)"), "{text}");
        assert_eq!(
            j.by_node,
            [("node-c".to_string(), 3), ("node-a".to_string(), 1)]
        );
    }

    #[test]
    fn a_record_written_during_the_join_is_counted_and_said() {
        let rows = vec![row("node-a", "KvPrewrite", Some(NOTE_1))];
        let j = NodeJoin::from_trace("node-c", &rows);
        assert_eq!(j.record_writes, 1);
        assert!(
            j.explain().contains("1 of them wrote records"),
            "{}",
            j.explain()
        );
    }

    fn op(node: &str, kind: &str, statement: &str, rows: u64) -> OpRecord {
        OpRecord {
            node: node.into(),
            port: 1,
            kind: kind.into(),
            statement: statement.into(),
            statements: 1,
            started_at_ms: 0.0,
            ms: 1.0,
            server_ms: None,
            rows,
            ok: true,
            error: None,
        }
    }

    #[test]
    fn the_exercise_check_names_the_first_missing_step() {
        let r = "note:3";
        let hint = |c: Check| {
            assert!(!c.solved, "{c}");
            c.why
        };
        assert!(hint(write_on_new_node_read_on_a(None, &[], r, 0)).starts_with("step 1"));
        let on_a = [op("node-a", "CREATE", "CREATE note:3", 1)];
        let h = hint(write_on_new_node_read_on_a(Some("node-c"), &on_a, r, 0));
        assert!(
            h.starts_with("step 2") && h.contains("node-c"),
            "written on node-a does not count: {h}"
        );
        let written = [op("node-c", "CREATE", "CREATE note:3 SET text = 'x'", 1)];
        assert!(hint(write_on_new_node_read_on_a(Some("c"), &written, r, 1)).starts_with("step 3"));
        let mut read = written.to_vec();
        read.push(op("node-a", "SELECT", "SELECT * FROM note:3", 1));
        let h = hint(write_on_new_node_read_on_a(Some("node-c"), &read, r, 0));
        assert!(h.contains("returned 1 row(s) and rows_on_a is 0"), "{h}");
        let ok = write_on_new_node_read_on_a(Some("node-c"), &read, r, 1);
        assert!(ok.solved && ok.why.contains("node-c"), "{ok}");
    }
}
