//! A store dies under a steady writer: what replication buys. The claim (TiKV's, and the
//! lab's three-store tier's): when the store that leads a region dies, the two survivors elect
//! a new leader, SurrealDB's TiKV client retries its region errors meanwhile, and the
//! application sees a **pause, not an outage**, with every acknowledged write still there.
//!
//! [`StoreFailover`] is the evidence: every write's start, latency and outcome around the
//! kill, PD's leader before and after, and a count of acknowledged writes missing afterwards.
//! Its sentences are computed from those numbers, so they say what this run did, on any
//! machine. The drill itself is a timed sequence of ordinary facade calls
//! (`Cluster::store_failover`).

use polars::prelude::{Column, DataFrame};

use crate::present::charts::Chart;
use crate::present::timeline::timeline;
use crate::vocab::error::LabError;
use crate::vocab::frames::frame;

/// One write of the drill.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverWrite {
    /// When it started, seconds from the drill's start.
    pub at_s: f64,
    /// How long it took, ms.
    pub ms: f64,
    /// Whether SurrealDB acknowledged it.
    pub ok: bool,
    /// The error's first line, for failed writes.
    pub error: Option<String>,
}

/// Who led one region at one moment, as PD's map said.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaderSample {
    /// When PD was asked, seconds from the drill's start.
    pub at_s: f64,
    /// The region.
    pub region: u64,
    /// The store PD named as its leader (`None`: no leader known).
    pub leader: Option<u64>,
}

/// How often the drill asks PD for the map while it writes.
pub const LEADER_SAMPLE_S: f64 = 0.2;

/// What happened when the leader's store was killed.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreFailover {
    /// Whether the leader's store was cut off from the others (a partition) rather than
    /// killed; it was healed rather than restarted at the end.
    pub partitioned: bool,
    /// The store that led the region, and was killed (or cut off).
    pub killed_store: u64,
    /// The store PD named as leader afterwards (`None`: none within the limit).
    pub new_leader: Option<u64>,
    /// Replicas of the region before the kill.
    pub replicas: usize,
    /// When the kill happened, seconds from the drill's start.
    pub kill_at_s: f64,
    /// Every write, in order.
    pub writes: Vec<FailoverWrite>,
    /// Acknowledged writes missing when read back after the failover (should be none).
    pub lost: Vec<String>,
    /// Seconds from restarting the killed store until PD saw it `Up` again.
    pub rejoin_s: Option<f64>,
    /// Every region's leader, sampled from PD about every [`LEADER_SAMPLE_S`] during the run.
    pub leaders: Vec<LeaderSample>,
}

impl StoreFailover {
    /// Writes started after the kill.
    fn after(&self) -> impl Iterator<Item = &FailoverWrite> {
        self.writes.iter().filter(move |w| w.at_s >= self.kill_at_s)
    }

    /// Writes started before the kill.
    fn before(&self) -> impl Iterator<Item = &FailoverWrite> {
        self.writes.iter().filter(move |w| w.at_s < self.kill_at_s)
    }

    /// Acknowledged writes.
    pub fn acknowledged(&self) -> usize {
        self.writes.iter().filter(|w| w.ok).count()
    }

    /// Writes that failed after the kill (the application saw an error, not a pause).
    pub fn failed_after_kill(&self) -> usize {
        self.after().filter(|w| !w.ok).count()
    }

    /// The distinct errors of the writes that failed after the kill, as SurrealDB's error
    /// reached the client (first line each).
    pub fn after_kill_errors(&self) -> Vec<String> {
        distinct_errors(self.after())
    }

    /// The slowest write before the kill, ms: the healthy baseline.
    pub fn slowest_before_ms(&self) -> f64 {
        self.before().map(|w| w.ms).fold(0.0, f64::max)
    }

    /// The slowest write after the kill, ms: the pause the election cost.
    pub fn pause_ms(&self) -> f64 {
        self.after().map(|w| w.ms).fold(0.0, f64::max)
    }

    /// Seconds from the kill until the end of the first acknowledged write after it.
    pub fn first_ack_after_kill_s(&self) -> Option<f64> {
        self.after()
            .find(|w| w.ok)
            .map(|w| w.at_s + w.ms / 1000.0 - self.kill_at_s)
    }

    /// Seconds from the kill until PD's map first named another leader for a region the killed
    /// store led (as sampled: to within [`LEADER_SAMPLE_S`]).
    pub fn leader_moved_s(&self) -> Option<f64> {
        let led: Vec<u64> = self
            .leaders
            .iter()
            .filter(|s| s.at_s < self.kill_at_s && s.leader == Some(self.killed_store))
            .map(|s| s.region)
            .collect();
        self.leaders
            .iter()
            .find(|s| {
                s.at_s >= self.kill_at_s
                    && led.contains(&s.region)
                    && s.leader.is_some_and(|l| l != self.killed_store)
            })
            .map(|s| s.at_s - self.kill_at_s)
    }

    /// One row per sample and region: at_s, region, leader_store.
    pub fn leaders_frame(&self) -> Result<DataFrame, LabError> {
        let l = &self.leaders;
        frame(vec![
            Column::new("at_s".into(), l.iter().map(|s| s.at_s).collect::<Vec<_>>()),
            Column::new(
                "region".into(),
                l.iter().map(|s| s.region).collect::<Vec<_>>(),
            ),
            Column::new(
                "leader_store".into(),
                l.iter().map(|s| s.leader).collect::<Vec<_>>(),
            ),
        ])
    }

    /// Each region's leader over time (store id; 0 while PD knows none), the kill shaded: the
    /// storage tier's side of the write chart.
    pub fn leader_chart(&self) -> Result<Chart, LabError> {
        let mut regions: Vec<u64> = self.leaders.iter().map(|s| s.region).collect();
        regions.sort_unstable();
        regions.dedup();
        let series: Vec<(String, Vec<(f64, f64)>)> = regions
            .iter()
            .map(|r| {
                let points = self
                    .leaders
                    .iter()
                    .filter(|s| s.region == *r)
                    .map(|s| (s.at_s, s.leader.unwrap_or(0) as f64))
                    .collect();
                (format!("region {r}: leader store"), points)
            })
            .collect();
        let end = self.kill_at_s + self.leader_moved_s().unwrap_or(0.0);
        let windows = vec![(
            format!("store {} {}", self.killed_store, self.fault_word()),
            self.kill_at_s,
            end.max(self.kill_at_s + 0.05),
        )];
        timeline(
            "Who leads each region, as PD saw it",
            "seconds",
            "leader store (0 = none)",
            &series,
            &windows,
        )
    }

    /// What happened to the leader's store, in a word for charts.
    fn fault_word(&self) -> &'static str {
        if self.partitioned {
            "cut off"
        } else {
            "killed"
        }
    }

    /// The claim: a new leader, writes resumed, nothing acknowledged lost.
    pub fn claim_holds(&self) -> bool {
        self.new_leader.is_some_and(|l| l != self.killed_store)
            && self.first_ack_after_kill_s().is_some()
            && self.lost.is_empty()
    }

    /// What this run showed, in sentences computed from it.
    pub fn explain(&self) -> String {
        let mut out = Vec::new();
        let (fault, others, event) = if self.partitioned {
            (
                "cut off from the other stores (a partition)",
                "other two",
                "the cut",
            )
        } else {
            ("killed", "two survivors", "the kill")
        };
        out.push(format!(
            "The region had {} replicas; store {} led it and was {fault} {:.1} s into the run.",
            self.replicas, self.killed_store, self.kill_at_s
        ));
        if self.partitioned {
            out.push(format!(
                "Store {} kept running and kept talking to PD and to the SurrealDB nodes, but alone it is a minority of one: its leadership lapsed once it heard from no quorum, and nothing it was asked to write could commit.",
                self.killed_store
            ));
        }
        out.push(match self.new_leader {
            Some(l) if l != self.killed_store => {
                format!("The {others} elected a new leader: PD now names store {l}.")
            }
            _ => "PD named no new leader within the limit: the survivors did not elect one.".into(),
        });
        if let Some(s) = self.leader_moved_s() {
            out.push(format!(
                "PD's map named the new leader {s:.2} s after {event} (sampled every {LEADER_SAMPLE_S} s): the new leader reports to PD the moment it is elected, which is how clients find it."
            ));
        }
        let failed = self.failed_after_kill();
        out.push(match self.first_ack_after_kill_s() {
            Some(s) => format!(
                "Writes resumed {s:.2} s after {event}. The slowest write took {:.0} ms, against {:.0} ms at most before {event}; {}.",
                self.pause_ms(),
                self.slowest_before_ms(),
                if failed == 0 {
                    "no write failed: SurrealDB's TiKV client retried the region errors itself, so the application saw a pause, not an error".to_string()
                } else {
                    format!(
                        "{failed} write(s) failed meanwhile, so the pause outlasted the client's own retries: an application must retry these (the error: {})",
                        self.after_kill_errors().join(" | ")
                    )
                }
            ),
            None => format!("No write succeeded after {event}: the tier lost its majority."),
        });
        out.push(if self.lost.is_empty() {
            format!(
                "All {} acknowledged writes were read back: a write is acknowledged only once a majority of stores has it in its fsynced log, and the survivors were a majority.",
                self.acknowledged()
            )
        } else {
            format!(
                "{} acknowledged write(s) were LOST: {:?}.",
                self.lost.len(),
                self.lost
            )
        });
        if self.partitioned {
            out.push(format!(
                "Healed, store {} hears from the others again and catches up from the leader's log (the storage node's own tests check that part).",
                self.killed_store
            ));
        } else if let Some(s) = self.rejoin_s {
            out.push(format!(
                "Restarted, store {} reported to PD again {s:.2} s later; it then catches up from the leader's log (the storage node's own tests check that part).",
                self.killed_store
            ));
        }
        out.join("\n")
    }

    /// One row per write: at_s, ms, ok, error.
    pub fn writes_frame(&self) -> Result<DataFrame, LabError> {
        let w = &self.writes;
        frame(vec![
            Column::new("at_s".into(), w.iter().map(|w| w.at_s).collect::<Vec<_>>()),
            Column::new("ms".into(), w.iter().map(|w| w.ms).collect::<Vec<_>>()),
            Column::new("ok".into(), w.iter().map(|w| w.ok).collect::<Vec<_>>()),
            Column::new(
                "error".into(),
                w.iter().map(|w| w.error.clone()).collect::<Vec<_>>(),
            ),
        ])
    }

    /// Write latency over time, the kill shaded from the kill to the first acknowledged write.
    pub fn chart(&self) -> Result<Chart, LabError> {
        let end = self.kill_at_s + self.first_ack_after_kill_s().unwrap_or(0.0);
        writes_timeline(
            if self.partitioned {
                "Writes while the leader's store is cut off"
            } else {
                "Writes while the leader's store dies"
            },
            &self.writes,
            (
                format!("store {} {}", self.killed_store, self.fault_word()),
                self.kill_at_s,
                end.max(self.kill_at_s + 0.05),
            ),
        )
    }
}

/// The distinct errors among `writes`, in the order they first appeared.
pub(crate) fn distinct_errors<'a>(writes: impl Iterator<Item = &'a FailoverWrite>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for e in writes.filter_map(|w| w.error.clone()) {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    seen
}

/// A drill's writes over time, acknowledged and failed apart, with the fault's window shaded:
/// the picture every storage drill draws (this one and the majority-loss drill).
pub(crate) fn writes_timeline(
    title: &str,
    writes: &[FailoverWrite],
    window: (String, f64, f64),
) -> Result<Chart, LabError> {
    let points = |ok: bool| -> Vec<(f64, f64)> {
        writes
            .iter()
            .filter(|w| w.ok == ok)
            .map(|w| (w.at_s, w.ms))
            .collect()
    };
    let mut series = vec![("acknowledged write (ms)".to_string(), points(true))];
    let failed = points(false);
    if !failed.is_empty() {
        series.push(("failed write (ms)".to_string(), failed));
    }
    timeline(title, "seconds", "write latency (ms)", &series, &[window])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(at_s: f64, ms: f64, ok: bool) -> FailoverWrite {
        FailoverWrite {
            at_s,
            ms,
            ok,
            error: (!ok).then(|| "region unavailable".into()),
        }
    }

    fn run(after: Vec<FailoverWrite>, lost: Vec<String>) -> StoreFailover {
        let mut writes = vec![write(0.0, 3.0, true), write(0.1, 5.0, true)];
        writes.extend(after);
        StoreFailover {
            partitioned: false,
            killed_store: 2,
            new_leader: Some(3),
            replicas: 3,
            kill_at_s: 1.0,
            writes,
            lost,
            rejoin_s: Some(0.8),
            leaders: vec![
                LeaderSample {
                    at_s: 0.5,
                    region: 2,
                    leader: Some(2),
                },
                LeaderSample {
                    at_s: 1.2,
                    region: 2,
                    leader: None,
                },
                LeaderSample {
                    at_s: 1.4,
                    region: 2,
                    leader: Some(3),
                },
            ],
        }
    }

    #[test]
    fn a_pause_without_errors_is_told_as_a_pause() {
        let r = run(vec![write(1.0, 700.0, true), write(1.8, 4.0, true)], vec![]);
        assert!(r.claim_holds());
        assert_eq!(r.failed_after_kill(), 0);
        assert_eq!(r.pause_ms(), 700.0);
        assert!((r.first_ack_after_kill_s().unwrap() - 0.7).abs() < 1e-9);
        let text = r.explain();
        assert!(text.contains("resumed 0.70 s after the kill"), "{text}");
        assert!(text.contains("700 ms, against 5 ms"), "{text}");
        assert!(text.contains("no write failed"), "{text}");
        assert!(
            text.contains("All 4 acknowledged writes were read back"),
            "{text}"
        );
        assert_eq!(r.writes_frame().unwrap().height(), 4);
        assert!(r.chart().is_ok());
        assert!((r.leader_moved_s().unwrap() - 0.4).abs() < 1e-9);
        assert!(text.contains("new leader 0.40 s after the kill"), "{text}");
        assert_eq!(r.leaders_frame().unwrap().height(), 3);
        assert!(r.leader_chart().is_ok());
    }

    #[test]
    fn failures_and_losses_are_named_not_hidden() {
        let r = run(
            vec![write(1.0, 2000.0, false), write(3.0, 4.0, true)],
            vec!["failover:1".into()],
        );
        assert!(!r.claim_holds(), "a lost write breaks the claim");
        let text = r.explain();
        assert!(text.contains("1 write(s) failed"), "{text}");
        assert!(text.contains("(the error: region unavailable)"), "{text}");
        assert!(text.contains("LOST"), "{text}");
        let none = StoreFailover {
            new_leader: None,
            ..run(vec![write(1.0, 9000.0, false)], vec![])
        };
        assert!(!none.claim_holds());
        assert!(
            none.explain().contains("No write succeeded"),
            "{}",
            none.explain()
        );
        assert!(
            none.explain().contains("no new leader"),
            "{}",
            none.explain()
        );
    }
}
