//! The concurrent duplicate: two nodes create a user with the same email at the same moment,
//! and a UNIQUE index on `email` must let exactly one of them in.
//!
//! # Why this is a distributed question
//!
//! A unique index is a key in storage (`user_email` + the email → the record). Each node checks
//! it inside its own transaction, on its own snapshot. When both transactions start before
//! either commits, *both* snapshots say "the email is free", and both write the same index key.
//! Nothing on the nodes can stop that — they never talk to each other — so the storage tier's
//! commit check has to: the second commit of one key is a write–write conflict, and SurrealDB
//! reports the retryable `TransactionConflict`. If instead the winner committed before the
//! loser looked, the loser's snapshot already holds the entry and the index itself refuses the
//! value ("… already contains …"). Which one a run shows depends on timing; both keep exactly
//! one user, and a retry of a conflicted create meets the index error, because by then the
//! email *is* taken. [`UniqueRaceReport::explain`] says which happened, from the errors seen.

use serde::{Deserialize, Serialize};

use crate::experiments::conflicts::TxnOutcome;

/// What the loser of the race was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoserSaw {
    /// Nobody lost: both committed (a duplicate got in — the index failed).
    NoLoser,
    /// The retryable `TransactionConflict`: both wrote the index key; storage refused one.
    Conflict,
    /// The unique index refused the value: the winner's entry was already visible.
    Duplicate,
    /// Anything else (a timeout, a node down).
    Other,
}

/// The race, the loser's retry, and the rows afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UniqueRaceReport {
    /// The email both users asked for.
    pub email: String,
    /// The index that guards it (`user_email`).
    pub index: String,
    /// How each node's `CREATE user` ended, in the order raced.
    pub outcomes: Vec<TxnOutcome>,
    /// The loser's one retry, if there was a loser.
    pub retry: Option<TxnOutcome>,
    /// Users with that email, as each node counts them afterwards.
    pub rows_per_node: Vec<(String, usize)>,
}

/// True when the error is the unique index refusing a value already present.
pub fn is_duplicate(o: &TxnOutcome) -> bool {
    let m = o.message.as_deref().unwrap_or("").to_ascii_lowercase();
    !o.committed()
        && !o.conflicted()
        && (m.contains("already contains") || m.contains("already exists"))
}

/// SurrealDB's own words in an outcome's message: the part after the lab's "node-b (port …)
/// rejected `…`:" prefix, when there is one.
pub fn said(o: &TxnOutcome) -> String {
    let m = o.message.as_deref().unwrap_or("");
    match m.find("`: ") {
        Some(k) => m[k + 3..].to_string(),
        None => m.to_string(),
    }
}

/// What one failed outcome was.
pub fn classify(o: &TxnOutcome) -> LoserSaw {
    if o.conflicted() {
        LoserSaw::Conflict
    } else if is_duplicate(o) {
        LoserSaw::Duplicate
    } else if o.committed() {
        LoserSaw::NoLoser
    } else {
        LoserSaw::Other
    }
}

impl UniqueRaceReport {
    /// Transactions that committed (must be 1).
    pub fn winners(&self) -> usize {
        self.outcomes.iter().filter(|o| o.committed()).count()
    }

    /// The first outcome that did not commit.
    pub fn loser(&self) -> Option<&TxnOutcome> {
        self.outcomes.iter().find(|o| !o.committed())
    }

    /// What the loser was told.
    pub fn loser_saw(&self) -> LoserSaw {
        self.loser().map(classify).unwrap_or(LoserSaw::NoLoser)
    }

    /// What the loser's retry was told (`NoLoser` when it committed).
    pub fn retry_saw(&self) -> Option<LoserSaw> {
        self.retry.as_ref().map(classify)
    }

    /// The claim: one winner, a loser told "conflict" or "duplicate", and exactly one user with
    /// the email on every node.
    pub fn claim_holds(&self) -> bool {
        self.winners() == 1
            && matches!(self.loser_saw(), LoserSaw::Conflict | LoserSaw::Duplicate)
            && !self.rows_per_node.is_empty()
            && self.rows_per_node.iter().all(|(_, n)| *n == 1)
    }

    /// The outcomes as a table (node, outcome, code, kind, ms, message), the retry last.
    pub fn outcomes_frame(
        &self,
    ) -> Result<polars::prelude::DataFrame, crate::vocab::error::LabError> {
        let mut rows = self.outcomes.clone();
        if let Some(r) = &self.retry {
            let mut r = r.clone();
            r.node = format!("{} (retry)", r.node);
            rows.push(r);
        }
        crate::experiments::conflicts::outcomes_frame(&rows)
    }

    /// Which error the loser got and why, from this run's outcomes.
    pub fn explain(&self) -> String {
        let Some(loser) = self.loser() else {
            return format!(
                "Both CREATEs committed: {} users share {} — the unique index did not hold.",
                self.winners(),
                self.email
            );
        };
        let winner = self
            .outcomes
            .iter()
            .find(|o| o.committed())
            .map(|o| o.node.clone())
            .unwrap_or_else(|| "no node".into());
        let what = match classify(loser) {
            LoserSaw::Conflict => format!(
                "{} got TransactionConflict, not an index error: both transactions started before \
                 either committed, each looked up {} in its own snapshot and found {} free, and \
                 both wrote the same index entry. The nodes cannot see each other's uncommitted \
                 work; the storage tier refused the second commit of that one key, exactly as it \
                 refuses a second write to a counter. At that moment SurrealDB does not know the \
                 email is taken, only that someone changed what it wrote, so it says \"retryable\".",
                loser.node, self.index, self.email
            ),
            LoserSaw::Duplicate => format!(
                "{} got the unique index's own error (\"{}\"): {}'s commit landed before {} read \
                 the index, so its snapshot already held the entry. The two were not close enough \
                 in time to overlap; a tighter race ends in TransactionConflict instead.",
                loser.node,
                said(loser),
                winner,
                loser.node
            ),
            _ => format!(
                "{} failed for another reason: \"{}\".",
                loser.node,
                said(loser)
            ),
        };
        let retry = match (&self.retry, self.retry_saw()) {
            (Some(r), Some(LoserSaw::Duplicate)) => format!(
                " Retried once, {} is told the email is taken (\"{}\"): a real duplicate, which no \
                 number of retries fixes. A conflict means \"run it again\"; a unique-index error \
                 means \"tell the user\".",
                r.node,
                said(r)
            ),
            (Some(r), Some(other)) => format!(" Its retry on {} ended as {other:?}.", r.node),
            _ => String::new(),
        };
        let counts = self
            .rows_per_node
            .iter()
            .map(|(n, c)| format!("{n} counts {c}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{winner} won: its user with {} committed. {what}{retry} Afterwards {counts} user(s) \
             with that email.",
            self.email
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(node: &str, outcome: &str, message: Option<&str>) -> TxnOutcome {
        TxnOutcome {
            node: node.into(),
            outcome: outcome.into(),
            code: None,
            kind: None,
            ms: 3.0,
            message: message.map(str::to_string),
        }
    }

    fn report(loser: TxnOutcome, rows: usize) -> UniqueRaceReport {
        UniqueRaceReport {
            email: "ada@example.com".into(),
            index: "user_email".into(),
            outcomes: vec![outcome("node-a", "committed", None), loser],
            retry: Some(outcome(
                "node-b",
                "failed",
                Some("Database index `user_email` already contains 'ada@example.com'"),
            )),
            rows_per_node: vec![("node-a".into(), rows), ("node-b".into(), rows)],
        }
    }

    #[test]
    fn a_conflicted_loser_is_explained_as_a_race_on_the_index_key() {
        let r = report(
            outcome(
                "node-b",
                "conflict",
                Some("Transaction conflict: can be retried"),
            ),
            1,
        );
        assert_eq!(r.loser_saw(), LoserSaw::Conflict);
        assert_eq!(r.retry_saw(), Some(LoserSaw::Duplicate));
        assert!(r.claim_holds());
        let e = r.explain();
        assert!(e.starts_with("node-a won"), "{e}");
        assert!(
            e.contains("got TransactionConflict, not an index error"),
            "{e}"
        );
        assert!(e.contains("no number of retries"), "{e}");
        assert_eq!(r.outcomes_frame().unwrap().height(), 3);
    }

    #[test]
    fn a_duplicate_loser_and_a_broken_index_read_differently() {
        let dup = report(
            outcome(
                "node-b",
                "failed",
                Some("Database index `user_email` already contains 'x'"),
            ),
            1,
        );
        assert_eq!(dup.loser_saw(), LoserSaw::Duplicate);
        assert!(
            dup.explain().contains("unique index's own error"),
            "{}",
            dup.explain()
        );
        let wrapped = outcome(
            "node-b",
            "failed",
            Some("node-b rejected `CREATE …`: Database index x"),
        );
        assert_eq!(said(&wrapped), "Database index x");
        assert!(dup.claim_holds());
        let two = report(outcome("node-b", "committed", None), 2);
        assert_eq!(two.winners(), 2);
        assert!(!two.claim_holds());
        assert!(two.explain().contains("did not hold"));
        let timeout = report(outcome("node-b", "failed", Some("query timed out")), 1);
        assert_eq!(timeout.loser_saw(), LoserSaw::Other);
        assert!(!timeout.claim_holds());
    }
}
