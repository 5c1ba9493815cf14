//! What replication costs a write: the same one-record write on a one-store lab (one replica:
//! the leader alone is a majority) and on a three-store lab (three replicas: the leader must
//! also hear from a follower), measured in the same run, and explained from the three-replica
//! write's waterfall, whose Raft steps say where the time went (the leader's log fsync, the
//! wait for a quorum, the apply).
//!
//! [`ReplicaCost`] holds both latency samples and their waterfalls; its sentences are computed
//! from them, so they say what this run did, whichever way it went. The measuring is a facade
//! call (`Cluster::replica_write_cost`).

use polars::prelude::{Column, DataFrame};

use crate::experiments::production::quantile;
use crate::experiments::waterfall::Waterfall;
use crate::vocab::error::LabError;
use crate::vocab::frames::frame;

/// One lab's latencies for the repeated write.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteSample {
    /// The lab's name.
    pub lab: String,
    /// Replicas of its region (PD's map).
    pub replicas: usize,
    /// Every write's round trip at the client, ms, in order.
    pub ms: Vec<f64>,
    /// One more such write, traced (`None` when the lab records no storage trace).
    pub waterfall: Option<Waterfall>,
}

/// A write's Raft steps, summed over its replicated RPCs, ms.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RaftMs {
    /// RPCs that went through Raft.
    pub writes: usize,
    /// Waiting in the region's queue and running the Percolator action on the leader.
    pub execute: f64,
    /// The leader's log append and fsync.
    pub persist: f64,
    /// Waiting for a quorum: a follower's append, fsync and ack (zero with one replica).
    pub quorum: f64,
    /// Applying to the storage engine, then answering.
    pub apply: f64,
}

impl RaftMs {
    /// All four steps, ms.
    pub fn total(&self) -> f64 {
        self.execute + self.persist + self.quorum + self.apply
    }
}

impl WriteSample {
    /// The median round trip, ms.
    pub fn p50(&self) -> f64 {
        quantile(&self.ms, 0.50)
    }

    /// The 99th percentile round trip, ms.
    pub fn p99(&self) -> f64 {
        quantile(&self.ms, 0.99)
    }

    /// The traced write's Raft steps (`None` without a waterfall).
    pub fn raft(&self) -> Option<RaftMs> {
        let w = self.waterfall.as_ref()?;
        let mut r = RaftMs::default();
        for s in w.steps.iter().filter_map(|s| s.raft) {
            r.writes += 1;
            r.execute += (s.queued_us + s.execute_us) as f64 / 1000.0;
            r.persist += s.persist_us as f64 / 1000.0;
            r.quorum += s.commit_us as f64 / 1000.0;
            r.apply += s.apply_us as f64 / 1000.0;
        }
        Some(r)
    }
}

/// The same write on one replica and on three, side by side.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaCost {
    /// The lab with one replica per region.
    pub one: WriteSample,
    /// The lab with three.
    pub many: WriteSample,
}

impl ReplicaCost {
    /// Three-replica p50 ÷ one-replica p50.
    pub fn p50_ratio(&self) -> f64 {
        self.many.p50() / self.one.p50().max(1e-9)
    }

    /// Three-replica p99 ÷ one-replica p99.
    pub fn p99_ratio(&self) -> f64 {
        self.many.p99() / self.one.p99().max(1e-9)
    }

    /// The traced three-replica write's quorum wait as a share of the difference in medians
    /// (`None` without a trace, or when three replicas were not slower at the median).
    pub fn quorum_share(&self) -> Option<f64> {
        let diff = self.many.p50() - self.one.p50();
        let r = self.many.raft()?;
        (diff > 0.0).then(|| r.quorum / diff)
    }

    /// The quorum share as a phrase for a sentence: "6% of the difference in medians", or why
    /// there is none.
    pub fn quorum_share_phrase(&self) -> String {
        match self.quorum_share() {
            Some(s) => format!("{:.0}% of the difference in medians", s * 100.0),
            None if self.many.raft().is_none() => "no trace of the three-replica write".into(),
            None => "three replicas were not slower at the median".into(),
        }
    }

    /// One row per lab: lab, replicas, writes, p50_ms, p99_ms, and the traced write's Raft
    /// steps (null where the lab records no trace): raft_writes, fsync_ms, quorum_ms, apply_ms.
    pub fn frame(&self) -> Result<DataFrame, LabError> {
        let both = [&self.one, &self.many];
        let r2 = |x: f64| (x * 100.0).round() / 100.0;
        let raft = |f: fn(&RaftMs) -> f64| -> Vec<Option<f64>> {
            both.iter().map(|s| s.raft().map(|r| r2(f(&r)))).collect()
        };
        frame(vec![
            Column::new(
                "lab".into(),
                both.iter().map(|s| s.lab.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "replicas".into(),
                both.iter().map(|s| s.replicas as u32).collect::<Vec<_>>(),
            ),
            Column::new(
                "writes".into(),
                both.iter().map(|s| s.ms.len() as u32).collect::<Vec<_>>(),
            ),
            Column::new(
                "p50_ms".into(),
                both.iter().map(|s| r2(s.p50())).collect::<Vec<_>>(),
            ),
            Column::new(
                "p99_ms".into(),
                both.iter().map(|s| r2(s.p99())).collect::<Vec<_>>(),
            ),
            Column::new(
                "raft_writes".into(),
                both.iter()
                    .map(|s| s.raft().map(|r| r.writes as u32))
                    .collect::<Vec<_>>(),
            ),
            Column::new("fsync_ms".into(), raft(|r| r.persist)),
            Column::new("quorum_ms".into(), raft(|r| r.quorum)),
            Column::new("apply_ms".into(), raft(|r| r.apply)),
        ])
    }

    /// What this run showed, in sentences computed from it.
    pub fn explain(&self) -> String {
        let (one, many) = (&self.one, &self.many);
        let mut out = vec![format!(
            "The same one-record UPSERT, {} times on each lab, interleaved: {} replica(s) p50 {:.2} ms, p99 {:.2} ms; {} replicas p50 {:.2} ms, p99 {:.2} ms.",
            one.ms.len().min(many.ms.len()),
            one.replicas,
            one.p50(),
            one.p99(),
            many.replicas,
            many.p50(),
            many.p99(),
        )];
        let ratio = self.p50_ratio();
        let diff = many.p50() - one.p50();
        out.push(format!(
            "The three-replica median is {ratio:.2}× the one-replica median ({}), and its p99 {:.2}×.",
            if diff >= 0.0 {
                format!("{diff:.2} ms slower")
            } else {
                format!("{:.2} ms faster", -diff)
            },
            self.p99_ratio()
        ));
        if let Some(r) = many.raft() {
            out.push(format!(
                "The traced three-replica write went through Raft {} time(s): on the leader {:.2} ms to queue and execute, {:.2} ms to append to its log and fsync it, {:.2} ms waiting for a quorum (a follower appends the entry, fsyncs it and acks), {:.2} ms to apply: {:.2} ms of its {:.2} ms round trip.",
                r.writes,
                r.execute,
                r.persist,
                r.quorum,
                r.apply,
                r.total(),
                many.waterfall.as_ref().map_or(0.0, |w| w.client_ms),
            ));
            if diff > 0.0 {
                let share = r.quorum / diff;
                out.push(if share >= 0.5 {
                    format!(
                        "Its quorum wait alone ({:.2} ms) is {:.0}% of the difference in medians: most of the extra cost of three replicas is waiting for a second store's fsynced ack, which one replica never does.",
                        r.quorum,
                        share * 100.0
                    )
                } else {
                    format!(
                        "Its quorum wait ({:.2} ms) is only {:.0}% of the difference in medians ({diff:.2} ms): most of the extra cost lies outside the Raft steps.",
                        r.quorum,
                        share * 100.0
                    )
                });
            } else {
                out.push(format!(
                    "The quorum wait ({:.2} ms) did not show as a slower median in this run: the difference between the medians is within what the machine's noise moves.",
                    r.quorum
                ));
            }
        }
        if let (Some(w1), Some(w3)) = (&one.waterfall, &many.waterfall) {
            let (s1, s3) = (w1.storage_ms(), w3.storage_ms());
            out.push(format!(
                "In the two traced writes the storage tier's service time (all their RPCs, timestamps from PD included) was {s1:.2} ms on one store ({} RPCs) and {s3:.2} ms on three ({} RPCs), of round trips of {:.2} and {:.2} ms; the rest of each round trip is SurrealDB, the TiKV client, gRPC and waiting for a core, which the three-store lab shares among more processes.",
                w1.steps.len(),
                w3.steps.len(),
                w1.client_ms,
                w3.client_ms
            ));
        }
        out.push(match one.raft() {
            Some(r) => format!(
                "The one-replica write's quorum step took {:.2} ms, Raft's own bookkeeping: its leader is the whole majority, so an entry commits as soon as its own fsync ({:.2} ms) ends, with no other store to hear from.",
                r.quorum, r.persist
            ),
            None => format!(
                "The one-replica lab records no trace, so its steps are not shown; with {} replica(s) the leader is the whole majority, and an entry commits when its own fsync ends.",
                one.replicas
            ),
        });
        out.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::waterfall::WaterfallStep;
    use crate::infra::trace::RaftSteps;
    use crate::vocab::key_meaning::KeyMeaning;

    fn traced(commit_us: u64) -> Waterfall {
        Waterfall {
            node: "node-a".into(),
            statement: "UPSERT repl_cost:1 SET n = -1".into(),
            storage: "shared".into(),
            client_ms: 4.0,
            server_ms: Some(3.0),
            steps: vec![WaterfallStep {
                rpc: "KvPrewrite".into(),
                meaning: KeyMeaning::Timestamp,
                n_keys: 1,
                start_ms: 1.0,
                ms: 2.0,
                raft: Some(RaftSteps {
                    queued_us: 10,
                    execute_us: 90,
                    persist_us: 500,
                    commit_us,
                    apply_us: 100,
                }),
            }],
        }
    }

    fn sample(replicas: usize, ms: Vec<f64>, commit_us: Option<u64>) -> WriteSample {
        WriteSample {
            lab: format!("lab{replicas}"),
            replicas,
            ms,
            waterfall: commit_us.map(traced),
        }
    }

    #[test]
    fn the_ratio_and_the_quorum_share_come_from_the_samples() {
        let one: Vec<f64> = (1..=100).map(|i| 2.0 + i as f64 / 100.0).collect();
        let many: Vec<f64> = one.iter().map(|x| x + 1.0).collect();
        let c = ReplicaCost {
            one: sample(1, one, Some(0)),
            many: sample(3, many, Some(800)),
        };
        assert!((c.one.p50() - 2.5).abs() < 1e-9);
        assert!((c.many.p50() - 3.5).abs() < 1e-9);
        assert!((c.p50_ratio() - 1.4).abs() < 1e-9);
        let r = c.many.raft().unwrap();
        assert_eq!(r.writes, 1);
        assert!((r.quorum - 0.8).abs() < 1e-9 && (r.persist - 0.5).abs() < 1e-9);
        let text = c.explain();
        assert!(
            text.contains("1.40× the one-replica median (1.00 ms slower)"),
            "{text}"
        );
        assert!(text.contains("0.80 ms waiting for a quorum"), "{text}");
        assert!(text.contains("80% of the difference"), "{text}");
        assert!(
            text.contains("most of the extra cost of three replicas is waiting"),
            "{text}"
        );
        assert!(text.contains("quorum step took 0.00 ms"), "{text}");
        assert!(text.contains("service time"), "{text}");
        let f = c.frame().unwrap();
        assert_eq!(f.height(), 2);
        assert_eq!(f.width(), 9);
    }

    /// The run that caught the first version of `explain`: a quorum wait far smaller than the
    /// difference in medians must not be called the main cost.
    #[test]
    fn a_small_quorum_share_is_not_called_the_cause() {
        let c = ReplicaCost {
            one: sample(1, vec![4.0; 20], Some(4)),
            many: sample(3, vec![6.7; 20], Some(160)),
        };
        let text = c.explain();
        assert!(
            text.contains("is only 6% of the difference in medians (2.70 ms)"),
            "{text}"
        );
        assert!(
            !text.contains("most of the extra cost of three replicas is waiting"),
            "{text}"
        );
    }

    #[test]
    fn a_faster_replicated_median_and_a_missing_trace_are_told_as_they_are() {
        let c = ReplicaCost {
            one: sample(1, vec![3.0; 10], None),
            many: sample(3, vec![2.5; 10], Some(400)),
        };
        let text = c.explain();
        assert!(text.contains("0.50 ms faster"), "{text}");
        assert!(text.contains("did not show as a slower median"), "{text}");
        assert!(text.contains("records no trace"), "{text}");
        assert_eq!(c.one.raft(), None);
    }
}
