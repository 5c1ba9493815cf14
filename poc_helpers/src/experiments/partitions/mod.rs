//! Partitions the way the fault-tolerance tutorials teach them (CockroachDB's, Jepsen's): not
//! only "a node loses its storage" but the three things an *application* meets on a real
//! network, each as a report that explains itself from the run's own numbers.
//!
//! * **A client loses its node** ([`ClientCutReport`]): the link from the application to
//!   node-a is cut while node-a itself is healthy. Queries through that link fail; the same data
//!   is served by node-b at once, because no node owns any data. (Run by
//!   `Cluster::client_cut_drill`, a short sequence of ordinary facade calls.)
//! * **A slow link** ([`LatencyReport`]): latency with jitter on one link, with the same short
//!   workload run before and during it. The median moves by about the added round trip; the
//!   p99 collects the unlucky draws of the jitter. (Run by `Cluster::latency_drill`: two
//!   workload runs around an `add_latency`.)
//! * **Dropped connections** ([`drops::DropReport`]): a fraction of *new* connections is reset
//!   on accept, like a flaky load balancer. Clients that open a connection per job see the
//!   reset, retry, and every write that was acknowledged is there afterwards. (Run inside the
//!   actor by `drops::run`, because it opens connections of its own.)
//!
//! Every `explain()` builds its sentences from the report's numbers, so a notebook never prints
//! a direction its own run contradicts.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::experiments::workload::WorkloadReport;
use crate::present::charts::Chart;
use crate::present::timeline;
use crate::vocab::error::LabError;
use crate::vocab::frames::frame;

pub mod drops;

/// What a client saw when its link to one node was cut, and who served the data meanwhile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientCutReport {
    /// The node whose client link was cut (`node-a`).
    pub cut: String,
    /// The node the client turned to (`node-b`).
    pub other: String,
    /// The record written through the cut node before the cut.
    pub record: String,
    /// What the client got from the cut node: the error's first line.
    pub error: String,
    /// `connection` (the link reset the session) or `timeout` (no answer in time), or `other`.
    pub error_class: String,
    /// How long the client waited before it learned the node was unreachable, ms.
    pub failed_after_ms: f64,
    /// HTTP status of the cut node's `/health`, asked directly (around the proxy): the node
    /// itself is fine, only the application's path to it is broken.
    pub health_status: Option<u16>,
    /// Rows of `record` the other node returned during the cut (1: the data is there).
    pub other_rows: usize,
    /// The other node's round trip for that read, ms.
    pub other_ms: f64,
    /// After healing, seconds until the cut node served the client again.
    pub back_after_s: f64,
    /// Failed attempts during that wait.
    pub failed_attempts: u32,
}

impl ClientCutReport {
    /// The claim: the cut node failed for the client, was itself healthy, and the other node
    /// served the same record during the cut.
    pub fn claim_holds(&self) -> bool {
        !self.error.is_empty() && self.other_rows == 1
    }

    /// One paragraph from this run's numbers.
    pub fn explain(&self) -> String {
        let seen = match self.error_class.as_str() {
            "connection" => {
                "learned that its connection had been reset (the session broke at once)"
            }
            "timeout" => {
                "gave up: no answer came back before the query timeout (its client library kept \
                 trying to reconnect through the cut link)"
            }
            _ => "got an error",
        };
        let health = match self.health_status {
            Some(200) => format!(
                "Yet {} itself was healthy: its /health, asked directly rather than through the \
                 cut link, answered 200.",
                self.cut
            ),
            Some(s) => format!("Asked directly, its /health answered {s}."),
            None => format!(
                "Its /health did not answer either, so {} itself was in trouble.",
                self.cut
            ),
        };
        let other = if self.other_rows == 1 {
            format!(
                "{} returned {} in {:.1} ms during the cut: the record lives in the shared \
                 storage, not in {}, so any node can serve it.",
                self.other, self.record, self.other_ms, self.cut
            )
        } else {
            format!(
                "{} returned {} row(s) for {} during the cut.",
                self.other, self.other_rows, self.record
            )
        };
        format!(
            "Through the cut link, the client asked {} for {} and after {:.0} ms {seen}: \
             \"{}\". {health} {other} After healing, {} served the client again within {:.2} s \
             ({} failed attempt(s) while its session reconnected).",
            self.cut,
            self.record,
            self.failed_after_ms,
            self.error,
            self.cut,
            self.back_after_s,
            self.failed_attempts
        )
    }
}

/// Latency with jitter on one link: the same workload before and during it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    /// The link that was slowed, e.g. `client→node-a`.
    pub link: String,
    /// Added one-way delay, ms.
    pub latency_ms: f64,
    /// Jitter around it (uniform ±), ms.
    pub jitter_ms: f64,
    /// The run on the healthy link.
    pub before: WorkloadReport,
    /// The run with the latency on.
    pub during: WorkloadReport,
}

/// Width of one chart bucket, ms of load.
const BUCKET_MS: f64 = 500.0;

impl LatencyReport {
    /// (p50, p99) of successful operations, before and during: `((b50, b99), (d50, d99))`.
    pub fn percentiles(&self) -> ((f64, f64), (f64, f64)) {
        let (b, d) = (self.before.total(), self.during.total());
        ((b.p50_ms, b.p99_ms), (d.p50_ms, d.p99_ms))
    }

    /// How far the median moved, ms.
    pub fn p50_shift_ms(&self) -> f64 {
        let ((b50, _), (d50, _)) = self.percentiles();
        d50 - b50
    }

    /// How far the p99 moved, ms.
    pub fn p99_shift_ms(&self) -> f64 {
        let ((_, b99), (_, d99)) = self.percentiles();
        d99 - b99
    }

    /// The smallest delay a round trip can gain: it crosses the link twice, each time by at
    /// least `latency − jitter`.
    pub fn min_added_ms(&self) -> f64 {
        2.0 * (self.latency_ms - self.jitter_ms).max(0.0)
    }

    /// The claim: the median moved by at least the smallest added round trip, and the p99 moved
    /// up too.
    pub fn claim_holds(&self) -> bool {
        self.p50_shift_ms() >= self.min_added_ms() && self.p99_shift_ms() > 0.0
    }

    /// One row per phase: phase, ops, ops_per_s, p50_ms, p95_ms, p99_ms, max_ms, errors.
    pub fn summary_frame(&self) -> Result<DataFrame, LabError> {
        let phases = [
            ("before (healthy link)", &self.before),
            ("during (latency on)", &self.during),
        ];
        let r1 = |x: f64| (x * 10.0).round() / 10.0;
        let col = |name: &str, f: &dyn Fn(&WorkloadReport) -> f64| {
            Column::new(
                name.into(),
                phases.iter().map(|(_, r)| r1(f(r))).collect::<Vec<_>>(),
            )
        };
        frame(vec![
            Column::new(
                "phase".into(),
                phases
                    .iter()
                    .map(|(p, _)| p.to_string())
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "ops".into(),
                phases
                    .iter()
                    .map(|(_, r)| r.total().ops)
                    .collect::<Vec<_>>(),
            ),
            col("ops_per_s", &|r| r.total().ops_per_s),
            col("p50_ms", &|r| r.total().p50_ms),
            col("p95_ms", &|r| r.total().p95_ms),
            col("p99_ms", &|r| r.total().p99_ms),
            col("max_ms", &|r| r.total().max_ms),
            Column::new(
                "errors".into(),
                phases
                    .iter()
                    .map(|(_, r)| r.total().errors)
                    .collect::<Vec<_>>(),
            ),
        ])
    }

    /// The window's label on the chart: `latency 25 ± 15 ms on client→node-a`.
    pub fn window_label(&self) -> String {
        format!(
            "latency {:.0} ± {:.0} ms on {}",
            self.latency_ms, self.jitter_ms, self.link
        )
    }

    /// p50 and p99 per 500 ms of load, the run before and the run during placed end to end,
    /// with the latency's window shaded: the lines step up where the band begins.
    pub fn chart(&self) -> Result<Chart, LabError> {
        let offset = self.before.measured_s;
        let mut p50 = bucket_percentiles(&samples(&self.before), 0.5, 0.0);
        let mut p99 = bucket_percentiles(&samples(&self.before), 0.99, 0.0);
        p50.extend(bucket_percentiles(&samples(&self.during), 0.5, offset));
        p99.extend(bucket_percentiles(&samples(&self.during), 0.99, offset));
        timeline::timeline(
            &format!("Latency before and during {}", self.window_label()),
            "seconds of load (the healthy run, then the slowed run)",
            "latency per 0.5 s (ms)",
            &[
                ("p50 per 0.5 s".to_string(), p50),
                ("p99 per 0.5 s".to_string(), p99),
            ],
            &[(self.window_label(), offset, offset + self.during.measured_s)],
        )
    }

    /// This drill's healthy baseline next to `direct`, the same workload on a lab without
    /// fault proxies: what the proxies on a read's path (client→node and node→storage) cost.
    pub fn compare_direct(&self, direct: &WorkloadReport) -> String {
        let (p, d) = (self.before.total(), direct.total());
        let ratio = p.p50_ms / d.p50_ms;
        format!(
            "Healthy baseline through the fault proxies: p50 {:.2} ms, p99 {:.2} ms, {:.0} ops/s. \
             The same workload on a lab without proxies: p50 {:.2} ms, p99 {:.2} ms, {:.0} ops/s. \
             The median through the proxies was {ratio:.2}× the direct one, {}: the drill's \
             \"before\" is the real baseline of this lab, and the added latency above is \
             measured against it.",
            p.p50_ms,
            p.p99_ms,
            p.ops_per_s,
            d.p50_ms,
            d.p99_ms,
            d.ops_per_s,
            if (ratio - 1.0).abs() <= 0.15 {
                "within 15 % of it, so a healthy proxy costs next to nothing"
            } else if ratio > 1.0 {
                "so the proxies added a measurable cost on this machine (`lab bench --links` \
                 measures it in detail)"
            } else {
                "faster, which is run-to-run noise: the proxied path cannot be shorter"
            }
        )
    }

    /// What the numbers say, in sentences computed from this run.
    pub fn explain(&self) -> String {
        let ((b50, b99), (d50, d99)) = self.percentiles();
        explain_shift(&Shift {
            link: self.link.clone(),
            latency_ms: self.latency_ms,
            jitter_ms: self.jitter_ms,
            before: (b50, b99, self.before.total().ops_per_s),
            during: (d50, d99, self.during.total().ops_per_s),
            clients: self.during.spec.concurrency,
        })
    }
}

/// The numbers [`LatencyReport::explain`] reads, apart from the reports (so it can be tested).
#[derive(Debug, Clone, PartialEq)]
pub struct Shift {
    /// The slowed link.
    pub link: String,
    /// Added one-way delay, ms.
    pub latency_ms: f64,
    /// Jitter, ms.
    pub jitter_ms: f64,
    /// (p50 ms, p99 ms, ops/s) on the healthy link.
    pub before: (f64, f64, f64),
    /// (p50 ms, p99 ms, ops/s) with the latency on.
    pub during: (f64, f64, f64),
    /// Concurrent clients.
    pub clients: usize,
}

/// The latency experiment's sentences: what moved, by how much, and why.
pub fn explain_shift(s: &Shift) -> String {
    let ((b50, b99, tb), (d50, d99, td)) = (s.before, s.during);
    let (l, j) = (s.latency_ms, s.jitter_ms);
    let (s50, s99) = (d50 - b50, d99 - b99);
    let mean_added = 2.0 * l;
    let median = if (s50 - mean_added).abs() <= j {
        format!("The median moved by about that average ({s50:+.1} ms).")
    } else if s50 > mean_added {
        format!(
            "The median moved by {s50:+.1} ms, more than that average: {} clients share a few \
             WebSocket sessions, and a chunk never overtakes the one in front of it, so requests \
             queue behind delayed ones.",
            s.clients
        )
    } else {
        format!(
            "The median moved by {s50:+.1} ms, less than that average (each crossing draws its \
             delay afresh, and replies that arrive together share one delayed chunk)."
        )
    };
    let tail = if s99 > s50 {
        format!(
            "The p99 moved further ({s99:+.1} ms against {s50:+.1} ms): the tail collects the \
             unlucky draws, requests that drew close to {:.0} ms on both crossings or waited \
             behind such a request.",
            l + j
        )
    } else if b99 > 2.0 * b50 {
        format!(
            "The p99 moved by {s99:+.1} ms, no more than the median: before the latency the tail \
             ({b99:.1} ms) was already far above the median ({b50:.1} ms), so this machine's own \
             hiccups mattered more than the jitter."
        )
    } else {
        format!(
            "The p99 moved by {s99:+.1} ms, no more than the median: in this run the jitter's \
             spread did not reach the tail."
        )
    };
    format!(
        "Before: p50 {b50:.1} ms, p99 {b99:.1} ms. With {l:.0} ± {j:.0} ms added on {} in each \
         direction: p50 {d50:.1} ms, p99 {d99:.1} ms. A round trip crosses the link twice, so it \
         gains {mean_added:.0} ms on average, anywhere between {:.0} and {:.0} ms. {median} {tail} \
         Throughput went from {tb:.0} to {td:.0} ops/s: each of the {} clients waits for its \
         answer before sending the next request, so slower answers mean fewer operations \
         (Little's law: clients ÷ mean latency).",
        s.link,
        2.0 * (l - j).max(0.0),
        2.0 * (l + j),
        s.clients
    )
}

/// `(t_ms, ms)` of the successful operations of a run with `keep_samples`.
fn samples(r: &WorkloadReport) -> Vec<(f64, f64)> {
    r.samples
        .iter()
        .filter(|s| s.error.is_none())
        .map(|s| (s.t_ms, s.ms))
        .collect()
}

/// The `q` quantile of each 500 ms bucket of `(t_ms, ms)` samples, as `(t_s, ms)` points
/// at each bucket's middle, shifted by `offset_s`. Empty buckets are left out.
pub fn bucket_percentiles(samples: &[(f64, f64)], q: f64, offset_s: f64) -> Vec<(f64, f64)> {
    let mut buckets: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
    for (t, ms) in samples {
        buckets
            .entry((t.max(0.0) / BUCKET_MS) as u64)
            .or_default()
            .push(*ms);
    }
    buckets
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(|a, b| a.total_cmp(b));
            // Nearest rank: the smallest value with at least q of the bucket at or below it.
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            let t = offset_s + (k as f64 + 0.5) * BUCKET_MS / 1000.0;
            (t, v[rank - 1])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_percentiles_take_the_nearest_rank_per_bucket() {
        // Bucket 0: 1..=100 ms; bucket 1 (500–999 ms): a single 7 ms sample.
        let mut s: Vec<(f64, f64)> = (1..=100).map(|k| (k as f64, k as f64)).collect();
        s.push((700.0, 7.0));
        let p99 = bucket_percentiles(&s, 0.99, 10.0);
        assert_eq!(p99, vec![(10.25, 99.0), (10.75, 7.0)]);
        let p50 = bucket_percentiles(&s, 0.5, 0.0);
        assert_eq!(p50[0], (0.25, 50.0));
    }

    fn cut(error_class: &str, other_rows: usize) -> ClientCutReport {
        ClientCutReport {
            cut: "node-a".into(),
            other: "node-b".into(),
            record: "note:cut".into(),
            error: "connection to node-a lost".into(),
            error_class: error_class.into(),
            failed_after_ms: 3.0,
            health_status: Some(200),
            other_rows,
            other_ms: 1.5,
            back_after_s: 0.4,
            failed_attempts: 1,
        }
    }

    #[test]
    fn the_cut_explanation_follows_what_was_seen() {
        let r = cut("connection", 1);
        assert!(r.claim_holds());
        let e = r.explain();
        assert!(
            e.contains("had been reset") && e.contains("answered 200"),
            "{e}"
        );
        assert!(e.contains("any node can serve it"), "{e}");
        let t = cut("timeout", 0);
        assert!(!t.claim_holds());
        let e = t.explain();
        assert!(
            e.contains("no answer") && !e.contains("any node can serve it"),
            "{e}"
        );
    }

    fn shift(d50: f64, d99: f64) -> Shift {
        Shift {
            link: "client→node-a".into(),
            latency_ms: 25.0,
            jitter_ms: 15.0,
            before: (2.0, 6.0, 900.0),
            during: (d50, d99, 70.0),
            clients: 4,
        }
    }

    #[test]
    fn the_latency_explanation_reads_the_direction_from_the_numbers() {
        // +50 ms median (the average added round trip), +90 ms p99: the tail moved further.
        let e = explain_shift(&shift(52.0, 96.0));
        assert!(e.contains("between 20 and 80 ms"), "{e}");
        assert!(e.contains("about that average (+50.0 ms)"), "{e}");
        assert!(
            e.contains("p99 moved further (+90.0 ms") && e.contains("close to 40 ms"),
            "{e}"
        );
        assert!(e.contains("from 900 to 70 ops/s"), "{e}");
        // A median far above the average and a p99 that moved less: other sentences.
        let e = explain_shift(&shift(90.0, 60.0));
        assert!(
            e.contains("more than that average") && e.contains("queue"),
            "{e}"
        );
        assert!(
            e.contains("no more than the median") && e.contains("far above"),
            "{e}"
        );
        let mut calm = shift(90.0, 60.0);
        calm.before = (40.0, 48.0, 100.0);
        let e = explain_shift(&calm);
        assert!(
            e.contains("did not reach the tail") && e.contains("+12.0 ms"),
            "{e}"
        );
    }
}
