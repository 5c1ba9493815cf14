//! How a write transaction committed, read off the storage trace: in **one phase** (a single
//! `KvPrewrite` that commits at once, TiKV's 1PC, possible when every key lies in one region)
//! or in **two** (a `KvPrewrite` per region, then `KvCommit`). The TiKV client decides: it asks
//! for 1PC only when one request holds all of the transaction's keys.
//!
//! Notebook 02 puts a one-region write beside a two-region one.
//!
//! A statement's stretch of the trace can hold more than its own transaction, and those
//! requests are left out of the count:
//! - a request answered with an error changed nothing. Typically it is a region error
//!   ("region epoch does not match" right after a split), which the client answers by
//!   refreshing its region cache and sending the request again;
//! - the nodes' own bookkeeping runs alongside. Each `surreal` node refreshes its membership
//!   record (`/!nd…`) every few seconds, a one-key transaction of its own. Transactions whose
//!   keys are all root-level (`/!…`) are the cluster's, never a statement's on a table.

use std::collections::BTreeMap;

use crate::infra::trace::TraceRow;

/// The commit steps one transaction sent to storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitShape {
    /// `KvPrewrite` requests (one per region written).
    pub prewrites: usize,
    /// `KvCommit` requests seen (async commit may send them after the client got its answer).
    pub commits: usize,
    /// Requests answered with an error (the client retried them), not counted above.
    pub refused: usize,
    /// Other transactions in the same stretch of trace (the nodes' membership refreshes).
    pub bookkeeping: usize,
}

/// Whether a transaction's keys (those the trace shows) are all root-level: a node's own
/// bookkeeping, such as its membership record, rather than a statement's data.
fn root_level_only(keys: &[&String]) -> bool {
    !keys.is_empty() && keys.iter().all(|k| k.starts_with("/!"))
}

impl CommitShape {
    /// Counts the commit steps of the statement's transactions among one statement's trace
    /// rows: the `KvPrewrite` and `KvCommit` requests that succeeded, of every transaction that
    /// wrote more than root-level keys.
    pub fn from_trace(rows: &[TraceRow]) -> CommitShape {
        let steps = |r: &&TraceRow| r.rpc == "KvPrewrite" || r.rpc == "KvCommit";
        let refused = rows.iter().filter(steps).filter(|r| !r.ok).count();
        let mut txns: BTreeMap<u64, Vec<&TraceRow>> = BTreeMap::new();
        for r in rows.iter().filter(steps).filter(|r| r.ok) {
            txns.entry(r.start_ts).or_default().push(r);
        }
        let (mut prewrites, mut commits, mut bookkeeping) = (0, 0, 0);
        for txn in txns.values() {
            let keys: Vec<&String> = txn
                .iter()
                .filter(|r| r.rpc == "KvPrewrite")
                .flat_map(|r| &r.keys)
                .collect();
            if root_level_only(&keys) {
                bookkeeping += 1;
                continue;
            }
            prewrites += txn.iter().filter(|r| r.rpc == "KvPrewrite").count();
            commits += txn.iter().filter(|r| r.rpc == "KvCommit").count();
        }
        CommitShape {
            prewrites,
            commits,
            refused,
            bookkeeping,
        }
    }

    /// One prewrite and no commit: the transaction committed in one phase.
    pub fn one_phase(&self) -> bool {
        self.prewrites == 1 && self.commits == 0
    }

    /// "one phase: 1 prewrite, 0 commits", or "two phases: 2 prewrites, 1 commit".
    pub fn describe(&self) -> String {
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        let phases = if self.one_phase() {
            "one phase"
        } else {
            "two phases"
        };
        let late = if !self.one_phase() && self.commits == 0 {
            " (the commit requests had not reached the trace yet)"
        } else {
            ""
        };
        let mut left_out = Vec::new();
        if self.refused > 0 {
            left_out.push(format!(
                "{} refused and sent again (a region error)",
                plural(self.refused, "request")
            ));
        }
        if self.bookkeeping > 0 {
            left_out.push(format!(
                "{} of the nodes' own bookkeeping",
                plural(self.bookkeeping, "transaction")
            ));
        }
        let left_out = if left_out.is_empty() {
            String::new()
        } else {
            format!("; not counted: {}", left_out.join(", "))
        };
        format!(
            "{phases}: {}, {}{late}{left_out}",
            plural(self.prewrites, "prewrite"),
            plural(self.commits, "commit"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(rpc: &str) -> TraceRow {
        traced(rpc, 7, "/*\\x00*user\\x00*\\x03ada\\x00", true)
    }

    fn traced(rpc: &str, start_ts: u64, key: &str, ok: bool) -> TraceRow {
        serde_json::from_value(serde_json::json!({
            "at_ms": 1, "peer": "127.0.0.1:1", "rpc": rpc, "start_ts": start_ts, "n_keys": 1,
            "keys": [key], "ok": ok, "error": if ok { None } else { Some("region epoch does not match") },
            "us": 10
        }))
        .unwrap()
    }

    #[test]
    fn one_prewrite_alone_is_one_phase_and_a_commit_makes_two() {
        let one = CommitShape::from_trace(&[row("KvGet"), row("KvPrewrite")]);
        assert!(one.one_phase());
        assert_eq!(one.describe(), "one phase: 1 prewrite, 0 commits");
        let two = CommitShape::from_trace(&[row("KvPrewrite"), row("KvPrewrite"), row("KvCommit")]);
        assert!(!two.one_phase());
        assert_eq!(two.describe(), "two phases: 2 prewrites, 1 commit");
    }

    /// Seen in a test run of notebook 02: a node's membership refresh and a prewrite refused
    /// with a region error, in the same stretch of trace as a one-region UPDATE.
    #[test]
    fn refused_requests_and_the_nodes_bookkeeping_are_not_counted() {
        let rows = [
            traced("KvPrewrite", 5, "/!nd\\x08\\x88", false),
            traced("KvPrewrite", 6, "/!nd\\x08\\x88", true),
            traced("KvPrewrite", 7, "/*\\x00*user\\x00*\\x03ada\\x00", false),
            traced("KvPrewrite", 7, "/*\\x00*user\\x00*\\x03ada\\x00", true),
        ];
        let shape = CommitShape::from_trace(&rows);
        assert!(shape.one_phase(), "{}", shape.describe());
        assert_eq!(
            shape.describe(),
            "one phase: 1 prewrite, 0 commits; not counted: 2 requests refused and sent again \
             (a region error), 1 transaction of the nodes' own bookkeeping"
        );
    }
}
