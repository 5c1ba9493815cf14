//! Two of three stores die under a steady writer: what a lost majority costs. The claim (Raft's,
//! and so TiKV's and the lab's three-store tier's): a write commits only once a **majority** of
//! the region's replicas has it in its log. With two of three stores down no write can commit,
//! so SurrealDB's statements **fail** (an outage, not a pause); nothing acknowledged before is
//! lost; and restarting one store restores a majority, so writes resume.
//!
//! [`MajorityLoss`] is the evidence: every write's start, latency, outcome and error around the
//! two kills and the restart, and what a read-back found afterwards. Its sentences are computed
//! from those numbers, so they say what this run did, on any machine. The drill itself is a
//! timed sequence of ordinary facade calls (`Cluster::majority_loss`).

use polars::prelude::{Column, DataFrame};

use crate::experiments::store_failover::{FailoverWrite, distinct_errors, writes_timeline};
use crate::present::charts::Chart;
use crate::vocab::error::LabError;
use crate::vocab::frames::frame;

/// A failed write's error as the learner needs it, the same for every write it hit: SurrealDB's
/// message for a rejected statement (without the statement, which differs per write, and without
/// the gRPC library's debug dump after `, source:`), else [`LabError::brief`].
pub fn error_gist(e: &LabError) -> String {
    match e {
        LabError::Query { message, .. } => {
            let cut = message.find(", source:").unwrap_or(message.len());
            message[..cut].trim().to_string()
        }
        other => other.brief(),
    }
}

/// What happened when two of the three stores were killed and one came back.
#[derive(Debug, Clone, PartialEq)]
pub struct MajorityLoss {
    /// The two stores killed (the region's leader first).
    pub killed: [u64; 2],
    /// The store that kept running alone.
    pub survivor: u64,
    /// The killed store restarted first (which gives the tier its majority back).
    pub restarted: u64,
    /// Replicas of the region before the kills.
    pub replicas: usize,
    /// When the second kill returned, seconds from the drill's start.
    pub kill_at_s: f64,
    /// When the first restart returned, seconds from the drill's start.
    pub restart_at_s: f64,
    /// Every write, in order.
    pub writes: Vec<FailoverWrite>,
    /// Acknowledged writes missing when read back (must be none).
    pub lost: Vec<String>,
    /// Writes the client saw fail that were in the table afterwards: an error after a timeout
    /// does not say the write did not happen (its proposal may sit in a log and commit later).
    pub failed_but_stored: Vec<String>,
    /// Seconds from restarting the second killed store until PD saw it `Up` again.
    pub rejoin_s: Option<f64>,
}

/// Which part of the drill a write started in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// All three stores up.
    Healthy,
    /// Two of three down: no majority.
    MajorityLost,
    /// One store restarted: a majority again.
    Restarted,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::Healthy => "3 of 3 up",
            Phase::MajorityLost => "1 of 3 up",
            Phase::Restarted => "2 of 3 up",
        }
    }
}

impl MajorityLoss {
    /// The phase a write started in.
    pub fn phase(&self, w: &FailoverWrite) -> Phase {
        if w.at_s < self.kill_at_s {
            Phase::Healthy
        } else if w.at_s < self.restart_at_s {
            Phase::MajorityLost
        } else {
            Phase::Restarted
        }
    }

    fn in_phase(&self, p: Phase) -> impl Iterator<Item = &FailoverWrite> {
        self.writes.iter().filter(move |w| self.phase(w) == p)
    }

    /// Acknowledged writes, all phases.
    pub fn acknowledged(&self) -> usize {
        self.writes.iter().filter(|w| w.ok).count()
    }

    /// Writes started while two stores were down.
    pub fn tried_while_down(&self) -> usize {
        self.in_phase(Phase::MajorityLost).count()
    }

    /// Writes started while two stores were down that failed.
    pub fn failed_while_down(&self) -> usize {
        self.in_phase(Phase::MajorityLost).filter(|w| !w.ok).count()
    }

    /// Writes started while two stores were down that were acknowledged (must be none: a
    /// commit needs a majority).
    pub fn acknowledged_while_down(&self) -> usize {
        self.in_phase(Phase::MajorityLost).filter(|w| w.ok).count()
    }

    /// The distinct errors of the writes that failed while two stores were down, as the
    /// learner sees them (`LabError::brief`).
    pub fn errors_while_down(&self) -> Vec<String> {
        distinct_errors(self.in_phase(Phase::MajorityLost))
    }

    /// How long a write took to fail while two stores were down, ms: (fastest, slowest).
    pub fn failure_ms(&self) -> Option<(f64, f64)> {
        let ms: Vec<f64> = self
            .in_phase(Phase::MajorityLost)
            .filter(|w| !w.ok)
            .map(|w| w.ms)
            .collect();
        (!ms.is_empty()).then(|| {
            (
                ms.iter().copied().fold(f64::INFINITY, f64::min),
                ms.iter().copied().fold(0.0, f64::max),
            )
        })
    }

    /// Seconds from the restart until the end of the first acknowledged write after it.
    pub fn resumed_after_s(&self) -> Option<f64> {
        self.in_phase(Phase::Restarted)
            .find(|w| w.ok)
            .map(|w| w.at_s + w.ms / 1000.0 - self.restart_at_s)
    }

    /// The claim: writes failed while two were down and none was acknowledged then; writes
    /// resumed after one store came back; nothing acknowledged was lost.
    pub fn claim_holds(&self) -> bool {
        self.failed_while_down() > 0
            && self.acknowledged_while_down() == 0
            && self.resumed_after_s().is_some()
            && self.lost.is_empty()
    }

    /// What this run showed, in sentences computed from it.
    pub fn explain(&self) -> String {
        let [leader, other] = self.killed;
        let mut out = vec![format!(
            "The region had {} replicas. Stores {leader} (the leader) and {other} were killed {:.1} s into the run; store {} ran on alone.",
            self.replicas, self.kill_at_s, self.survivor
        )];
        let tried = self.tried_while_down();
        let failed = self.failed_while_down();
        let acked = self.acknowledged_while_down();
        out.push(match (tried, acked, self.failure_ms()) {
            (0, _, _) => "No write was tried while two stores were down.".into(),
            (_, 0, Some((fast, slow))) => format!(
                "While two of three were down, all {tried} write(s) failed, each after {} (one store of three is not a majority, so nothing could commit). The error the application saw: {}",
                if (slow - fast) < 1.0 {
                    format!("{fast:.0} ms")
                } else {
                    format!("{fast:.0} to {slow:.0} ms")
                },
                self.errors_while_down().join(" | ")
            ),
            (_, acked, _) => format!(
                "While two of three were down, {acked} of {tried} write(s) were ACKNOWLEDGED, {failed} failed: a commit without a majority, which Raft must never allow."
            ),
        });
        out.push(match self.resumed_after_s() {
            Some(s) => format!(
                "Store {} was restarted {:.1} s into the run; with two of three up again, the first write succeeded {s:.2} s after the restart.",
                self.restarted, self.restart_at_s
            ),
            None => format!(
                "Store {} was restarted {:.1} s into the run, but no write succeeded afterwards within the limit.",
                self.restarted, self.restart_at_s
            ),
        });
        out.push(if self.lost.is_empty() {
            format!(
                "All {} acknowledged writes were read back: each was in the fsynced logs of a majority before it was acknowledged, and the restarted store's log still held it.",
                self.acknowledged()
            )
        } else {
            format!(
                "{} acknowledged write(s) were LOST: {:?}.",
                self.lost.len(),
                self.lost
            )
        });
        if !self.failed_but_stored.is_empty() {
            out.push(format!(
                "{} write(s) reported as failed were in the table afterwards ({}): their proposal reached the surviving leader's log before the client gave up, and committed once a majority was back. A failed write after a timeout is of unknown outcome; retry only what is idempotent.",
                self.failed_but_stored.len(),
                self.failed_but_stored.join(", ")
            ));
        }
        if let Some(s) = self.rejoin_s {
            out.push(format!(
                "Then store {other_restarted} was restarted too, and reported to PD again {s:.2} s later: three of three again.",
                other_restarted = if self.restarted == leader {
                    other
                } else {
                    leader
                }
            ));
        }
        out.join("\n")
    }

    /// One row per write: at_s, phase, ms, ok, error.
    pub fn frame(&self) -> Result<DataFrame, LabError> {
        let w = &self.writes;
        frame(vec![
            Column::new("at_s".into(), w.iter().map(|w| w.at_s).collect::<Vec<_>>()),
            Column::new(
                "phase".into(),
                w.iter().map(|w| self.phase(w).label()).collect::<Vec<_>>(),
            ),
            Column::new("ms".into(), w.iter().map(|w| w.ms).collect::<Vec<_>>()),
            Column::new("ok".into(), w.iter().map(|w| w.ok).collect::<Vec<_>>()),
            Column::new(
                "error".into(),
                w.iter().map(|w| w.error.clone()).collect::<Vec<_>>(),
            ),
        ])
    }

    /// One row per phase: phase, writes, acknowledged, failed, slowest_ms.
    pub fn phases_frame(&self) -> Result<DataFrame, LabError> {
        let phases = [Phase::Healthy, Phase::MajorityLost, Phase::Restarted];
        let count = |p: Phase, ok: Option<bool>| {
            self.in_phase(p)
                .filter(|w| ok.is_none_or(|ok| w.ok == ok))
                .count() as u32
        };
        frame(vec![
            Column::new(
                "stores up".into(),
                phases.iter().map(|p| p.label()).collect::<Vec<_>>(),
            ),
            Column::new(
                "writes".into(),
                phases.iter().map(|p| count(*p, None)).collect::<Vec<_>>(),
            ),
            Column::new(
                "acknowledged".into(),
                phases
                    .iter()
                    .map(|p| count(*p, Some(true)))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "failed".into(),
                phases
                    .iter()
                    .map(|p| count(*p, Some(false)))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "slowest_ms".into(),
                phases
                    .iter()
                    .map(|p| {
                        (self.in_phase(*p).map(|w| w.ms).fold(0.0, f64::max) * 10.0).round() / 10.0
                    })
                    .collect::<Vec<_>>(),
            ),
        ])
    }

    /// Write latency over time, the majority loss shaded from the kills to the restart.
    pub fn chart(&self) -> Result<Chart, LabError> {
        writes_timeline(
            "Writes while two of three stores are down",
            &self.writes,
            (
                format!("stores {} and {} down", self.killed[0], self.killed[1]),
                self.kill_at_s,
                self.restart_at_s.max(self.kill_at_s + 0.05),
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(at_s: f64, ms: f64, ok: bool) -> FailoverWrite {
        FailoverWrite {
            at_s,
            ms,
            ok,
            error: (!ok).then(|| "storage unavailable: region has no leader".into()),
        }
    }

    fn run(down: Vec<FailoverWrite>, after: Vec<FailoverWrite>) -> MajorityLoss {
        let mut writes = vec![write(0.0, 3.0, true), write(0.5, 4.0, true)];
        writes.extend(down);
        writes.extend(after);
        MajorityLoss {
            killed: [2, 3],
            survivor: 1,
            restarted: 3,
            replicas: 3,
            kill_at_s: 1.0,
            restart_at_s: 4.0,
            writes,
            lost: vec![],
            failed_but_stored: vec![],
            rejoin_s: Some(0.3),
        }
    }

    #[test]
    fn the_error_gist_drops_the_statement_and_the_debug_dump() {
        let e = LabError::Query {
            node: "node-a".into(),
            port: 1,
            statement: "CREATE majority:33 SET n = 33".into(),
            message: "There was a problem with a transaction: gRPC api error: code: 'The service is currently unavailable', message: \"tcp connect error\", source: tonic::transport::Error(Transport, ConnectError(..))".into(),
            kind: "Internal".into(),
            detail: None,
            code: -32000,
            fix: "retry".into(),
        };
        assert_eq!(
            error_gist(&e),
            "There was a problem with a transaction: gRPC api error: code: 'The service is currently unavailable', message: \"tcp connect error\""
        );
        let other = LabError::config("stores", "one store", "start the lab with `.stores(3)`");
        assert_eq!(error_gist(&other), other.brief());
    }

    #[test]
    fn an_outage_then_a_resume_is_told_from_the_numbers() {
        let r = run(
            vec![write(1.0, 1500.0, false), write(2.6, 1400.0, false)],
            vec![write(4.0, 250.0, true), write(4.3, 5.0, true)],
        );
        assert!(r.claim_holds(), "{}", r.explain());
        assert_eq!(r.failed_while_down(), 2);
        assert_eq!(r.acknowledged_while_down(), 0);
        assert_eq!(r.failure_ms(), Some((1400.0, 1500.0)));
        assert!((r.resumed_after_s().unwrap() - 0.25).abs() < 1e-9);
        let text = r.explain();
        assert!(
            text.contains("all 2 write(s) failed, each after 1400 to 1500 ms"),
            "{text}"
        );
        assert!(text.contains("region has no leader"), "{text}");
        assert!(
            text.contains("first write succeeded 0.25 s after the restart"),
            "{text}"
        );
        assert!(
            text.contains("All 4 acknowledged writes were read back"),
            "{text}"
        );
        assert!(text.contains("store 2 was restarted too"), "{text}");
        let phases = r.phases_frame().unwrap();
        assert_eq!(phases.height(), 3);
        assert_eq!(r.frame().unwrap().height(), 6);
        assert!(r.chart().is_ok());
    }

    /// The injected bug a commit without a majority would show: a write acknowledged while two
    /// of three stores were down breaks the claim and is named, not hidden.
    #[test]
    fn a_write_acknowledged_without_a_majority_breaks_the_claim() {
        let r = run(
            vec![write(1.0, 1500.0, false), write(2.6, 3.0, true)],
            vec![write(4.0, 5.0, true)],
        );
        assert!(!r.claim_holds());
        assert!(r.explain().contains("ACKNOWLEDGED"), "{}", r.explain());
    }

    #[test]
    fn losses_no_resume_and_unknown_outcomes_are_named() {
        let mut r = run(
            vec![write(1.0, 1500.0, false)],
            vec![write(4.0, 9000.0, false)],
        );
        assert!(!r.claim_holds(), "no write resumed");
        assert!(r.explain().contains("no write succeeded afterwards"));
        r.writes.push(write(5.0, 4.0, true));
        assert!(r.claim_holds());
        r.lost = vec!["majority:1".into()];
        assert!(!r.claim_holds(), "a lost write breaks the claim");
        assert!(r.explain().contains("LOST"));
        r.failed_but_stored = vec!["majority:2".into()];
        assert!(r.explain().contains("unknown outcome"), "{}", r.explain());
        let none = run(vec![], vec![write(4.0, 5.0, true)]);
        assert!(
            !none.claim_holds(),
            "no failed write: the outage was not shown"
        );
    }
}
