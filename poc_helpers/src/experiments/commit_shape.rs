//! How a write transaction committed, read off the storage trace: in **one phase** (a single
//! `KvPrewrite` that commits at once, TiKV's 1PC, possible when every key lies in one region)
//! or in **two** (a `KvPrewrite` per region, then `KvCommit`). The TiKV client decides: it asks
//! for 1PC only when one request holds all of the transaction's keys.
//!
//! Notebook 02 puts a one-region write beside a two-region one.

use crate::infra::trace::TraceRow;

/// The commit steps one transaction sent to storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitShape {
    /// `KvPrewrite` requests (one per region written).
    pub prewrites: usize,
    /// `KvCommit` requests seen (async commit may send them after the client got its answer).
    pub commits: usize,
}

impl CommitShape {
    /// Counts the commit steps among one statement's trace rows.
    pub fn from_trace(rows: &[TraceRow]) -> CommitShape {
        let count = |rpc: &str| rows.iter().filter(|r| r.rpc == rpc).count();
        CommitShape {
            prewrites: count("KvPrewrite"),
            commits: count("KvCommit"),
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
        format!(
            "{phases}: {}, {}{late}",
            plural(self.prewrites, "prewrite"),
            plural(self.commits, "commit"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(rpc: &str) -> TraceRow {
        serde_json::from_value(serde_json::json!({
            "at_ms": 1, "peer": "127.0.0.1:1", "rpc": rpc, "start_ts": 7, "n_keys": 1,
            "keys": [], "ok": true, "error": null, "us": 10
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
}
