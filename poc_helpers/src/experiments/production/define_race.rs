//! Define before you write (SurrealDB issue 6136): two nodes `CREATE` a record into the same
//! table at the same moment. When the table was never defined, each transaction also writes
//! the table's definition — the same catalog key — so at most one of them can commit; once
//! `DEFINE TABLE` has run, the two writes touch different record keys and both commit.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::vocab::error::LabError;
use crate::vocab::frames::frame;

/// One round: the same `CREATE` from each node at once into a fresh table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaceRound {
    /// The table (new for every round).
    pub table: String,
    /// Whether `DEFINE TABLE` ran before the race.
    pub defined: bool,
    /// Each node's outcome: `(node, None)` committed, `(node, Some(error))` refused.
    pub outcomes: Vec<(String, Option<String>)>,
}

impl RaceRound {
    /// Transactions refused with a transaction conflict.
    pub fn conflicts(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|(_, e)| e.as_deref().is_some_and(is_conflict))
            .count()
    }
    /// Transactions refused for another reason.
    pub fn other_errors(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|(_, e)| e.as_deref().is_some_and(|e| !is_conflict(e)))
            .count()
    }
}

/// SurrealDB's conflict messages ("Transaction conflict", "write conflict", …).
pub fn is_conflict(message: &str) -> bool {
    message.to_ascii_lowercase().contains("conflict")
}

/// One catalog-key write the storage trace saw during a traced round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogWrite {
    /// The node that sent it.
    pub node: String,
    /// `KvPrewrite`, `KvCommit`, …
    pub rpc: String,
    /// The transaction's start timestamp.
    pub start_ts: u64,
    /// What the key is (`table definition `race_u1``).
    pub key: String,
    /// Whether the storage tier accepted it.
    pub ok: bool,
    /// The storage tier's error (e.g. a write conflict).
    pub error: Option<String>,
}

/// The race's report: every round of both kinds and the traced catalog writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefineRace {
    /// Rounds into a table nobody defined.
    pub undefined: Vec<RaceRound>,
    /// Rounds into a table defined first.
    pub defined: Vec<RaceRound>,
    /// Definition keys written during the first undefined round (needs `.storage_trace(true)`).
    pub catalog_undefined: Vec<CatalogWrite>,
    /// Definition keys written during the first defined round's race.
    pub catalog_defined: Vec<CatalogWrite>,
}

impl DefineRace {
    fn rounds(&self, defined: bool) -> &[RaceRound] {
        if defined {
            &self.defined
        } else {
            &self.undefined
        }
    }
    /// Conflicts over all rounds of one kind.
    pub fn conflicts(&self, defined: bool) -> usize {
        self.rounds(defined).iter().map(RaceRound::conflicts).sum()
    }
    /// Committed transactions over all rounds of one kind.
    pub fn committed(&self, defined: bool) -> usize {
        self.rounds(defined)
            .iter()
            .flat_map(|r| &r.outcomes)
            .filter(|(_, e)| e.is_none())
            .count()
    }
    /// Other errors over all rounds of one kind.
    pub fn other_errors(&self, defined: bool) -> usize {
        self.rounds(defined)
            .iter()
            .map(RaceRound::other_errors)
            .sum()
    }

    /// Definition keys that both nodes wrote in the traced undefined round: the contended keys.
    pub fn shared_catalog_keys(&self) -> Vec<String> {
        shared_keys(&self.catalog_undefined)
    }

    /// One row per race kind: rounds, transactions, committed, conflicts, other errors.
    pub fn summary_frame(&self) -> Result<DataFrame, LabError> {
        let kinds = [false, true];
        frame(vec![
            Column::new(
                "table".into(),
                kinds
                    .map(|d| if d { "defined first" } else { "never defined" })
                    .to_vec(),
            ),
            Column::new(
                "rounds".into(),
                kinds.map(|d| self.rounds(d).len() as u64).to_vec(),
            ),
            Column::new(
                "transactions".into(),
                kinds
                    .map(|d| {
                        self.rounds(d)
                            .iter()
                            .map(|r| r.outcomes.len() as u64)
                            .sum::<u64>()
                    })
                    .to_vec(),
            ),
            Column::new(
                "committed".into(),
                kinds.map(|d| self.committed(d) as u64).to_vec(),
            ),
            Column::new(
                "conflicts".into(),
                kinds.map(|d| self.conflicts(d) as u64).to_vec(),
            ),
            Column::new(
                "other_errors".into(),
                kinds.map(|d| self.other_errors(d) as u64).to_vec(),
            ),
        ])
    }

    /// The traced catalog writes of both kinds: race, node, rpc, start_ts, key, ok, error.
    pub fn catalog_frame(&self) -> Result<DataFrame, LabError> {
        let rows: Vec<(&str, &CatalogWrite)> = self
            .catalog_undefined
            .iter()
            .map(|w| ("never defined", w))
            .chain(self.catalog_defined.iter().map(|w| ("defined first", w)))
            .collect();
        frame(vec![
            Column::new(
                "race".into(),
                rows.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
            ),
            Column::new(
                "node".into(),
                rows.iter().map(|(_, w)| w.node.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "rpc".into(),
                rows.iter().map(|(_, w)| w.rpc.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "start_ts".into(),
                rows.iter().map(|(_, w)| w.start_ts).collect::<Vec<_>>(),
            ),
            Column::new(
                "key".into(),
                rows.iter().map(|(_, w)| w.key.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "ok".into(),
                rows.iter().map(|(_, w)| w.ok).collect::<Vec<_>>(),
            ),
            Column::new(
                "error".into(),
                rows.iter()
                    .map(|(_, w)| w.error.clone().unwrap_or_default())
                    .collect::<Vec<_>>(),
            ),
        ])
    }

    /// The answer in sentences, from this run's numbers.
    pub fn explain(&self) -> String {
        let (cu, cd) = (self.conflicts(false), self.conflicts(true));
        let shared = self.shared_catalog_keys();
        let keys = if shared.is_empty() {
            "the trace showed no definition key written by both nodes".to_string()
        } else {
            format!("both nodes wrote {}", shared.join(", "))
        };
        format!(
            "Never-defined table: {cu} conflict(s) in {} rounds ({} of {} transactions committed); \
             in the traced round {keys}. Defined first: {cd} conflict(s) in {} rounds ({} of {} \
             committed): the two CREATEs wrote different record keys and nothing else.",
            self.undefined.len(),
            self.committed(false),
            self.undefined.len() * 2,
            self.defined.len(),
            self.committed(true),
            self.defined.len() * 2,
        )
    }
}

/// Keys written (prewritten or committed) by more than one node.
fn shared_keys(writes: &[CatalogWrite]) -> Vec<String> {
    let mut by_key: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
        Default::default();
    for w in writes {
        by_key.entry(&w.key).or_default().insert(&w.node);
    }
    by_key
        .into_iter()
        .filter(|(_, nodes)| nodes.len() > 1)
        .map(|(k, _)| k.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(node: &str, key: &str) -> CatalogWrite {
        CatalogWrite {
            node: node.into(),
            rpc: "KvPrewrite".into(),
            start_ts: 1,
            key: key.into(),
            ok: true,
            error: None,
        }
    }

    #[test]
    fn conflicts_are_counted_apart_from_other_errors_and_shared_keys_found() {
        let round = RaceRound {
            table: "t".into(),
            defined: false,
            outcomes: vec![
                ("node-a".into(), None),
                (
                    "node-b".into(),
                    Some("Transaction conflict: resource busy".into()),
                ),
            ],
        };
        let report = DefineRace {
            undefined: vec![round.clone()],
            defined: vec![RaceRound {
                defined: true,
                outcomes: vec![
                    ("node-a".into(), None),
                    ("node-b".into(), Some("Parse error".into())),
                ],
                ..round
            }],
            catalog_undefined: vec![
                w("node-a", "table definition `t`"),
                w("node-b", "table definition `t`"),
                w("node-a", "record `t:1`"),
            ],
            catalog_defined: vec![],
        };
        assert_eq!((report.conflicts(false), report.conflicts(true)), (1, 0));
        // Whatever the case of the word: TiKV says "write conflict", SurrealDB "Transaction conflict".
        assert!(is_conflict("Failed to commit: Write Conflict on key"));
        assert_eq!(report.other_errors(true), 1);
        assert_eq!(
            report.shared_catalog_keys(),
            vec!["table definition `t`".to_string()]
        );
        assert!(
            report.explain().contains("1 conflict(s) in 1 rounds"),
            "{}",
            report.explain()
        );
        assert_eq!(report.summary_frame().unwrap().height(), 2);
    }
}
