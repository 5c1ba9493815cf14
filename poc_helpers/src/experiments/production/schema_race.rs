//! Schema changes propagate at once: `DEFINE FIELD … ASSERT` on node A, then at once a write
//! that violates it on node B, which had just written to the same table without the rule.
//! Over shared storage a node re-reads the table's definitions inside every transaction
//! (notebook 02's waterfall shows those reads), so B cannot act on a stale schema — if that
//! holds, no violating write is accepted.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::vocab::error::LabError;
use crate::vocab::frames::frame;

/// One attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaAttempt {
    /// The table (new for every attempt).
    pub table: String,
    /// ms from node A's acknowledgement of the `DEFINE FIELD` to node B's answer to the
    /// violating write: B ran its whole transaction inside this window.
    pub gap_ms: f64,
    /// Whether node B accepted the violating write (a stale schema).
    pub accepted: bool,
    /// Node B's error when it refused.
    pub error: Option<String>,
}

/// Every attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaRace {
    /// The node that defined the field.
    pub definer: String,
    /// The node that wrote the violation.
    pub writer: String,
    /// The attempts, in order.
    pub attempts: Vec<SchemaAttempt>,
}

impl SchemaRace {
    /// Violating writes that were accepted.
    pub fn accepted_violations(&self) -> usize {
        self.attempts.iter().filter(|a| a.accepted).count()
    }
    /// Refusals by the field's assertion (SurrealDB 3.3.5 says "… but field must conform to:
    /// $value > 0").
    pub fn refused_by_assert(&self) -> usize {
        self.attempts
            .iter()
            .filter(|a| {
                a.error
                    .as_deref()
                    .is_some_and(|e| e.contains("must conform") || e.contains("ASSERT"))
            })
            .count()
    }
    /// The largest gap between the definition and the violating write, ms.
    pub fn max_gap_ms(&self) -> f64 {
        self.attempts.iter().map(|a| a.gap_ms).fold(0.0, f64::max)
    }

    /// One row: attempts, accepted_violations, refused_by_assert, median and max gap.
    pub fn frame(&self) -> Result<DataFrame, LabError> {
        let gaps: Vec<f64> = self.attempts.iter().map(|a| a.gap_ms).collect();
        frame(vec![
            Column::new("define_on".into(), vec![self.definer.clone()]),
            Column::new("write_on".into(), vec![self.writer.clone()]),
            Column::new("attempts".into(), vec![self.attempts.len() as u64]),
            Column::new(
                "accepted_violations".into(),
                vec![self.accepted_violations() as u64],
            ),
            Column::new(
                "refused_by_assert".into(),
                vec![self.refused_by_assert() as u64],
            ),
            Column::new(
                "median_gap_ms".into(),
                vec![(super::quantile(&gaps, 0.5) * 100.0).round() / 100.0],
            ),
            Column::new(
                "max_gap_ms".into(),
                vec![(self.max_gap_ms() * 100.0).round() / 100.0],
            ),
        ])
    }

    /// The answer in sentences, from this run.
    pub fn explain(&self) -> String {
        format!(
            "{} of {} violating writes on {} were accepted right after {} defined the rule \
             ({} refused by the field's ASSERT; node-b answered at most {:.2} ms after the definition).",
            self.accepted_violations(),
            self.attempts.len(),
            self.writer,
            self.definer,
            self.refused_by_assert(),
            self.max_gap_ms()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accepted_violations() {
        let a = |accepted: bool| {
            SchemaAttempt {
            table: "t".into(),
            gap_ms: 0.4,
            accepted,
            error: (!accepted).then(|| "Found -1 for field `v`, with record `t:bad`, but field must conform to: $value > 0".into()),
        }
        };
        let r = SchemaRace {
            definer: "node-a".into(),
            writer: "node-b".into(),
            attempts: vec![a(false), a(true)],
        };
        assert_eq!((r.accepted_violations(), r.refused_by_assert()), (1, 1));
        assert!(r.explain().starts_with("1 of 2 violating writes on node-b"));
    }
}
