//! Sentences computed from a run: the answers notebook 04 used to state in prose.
//!
//! Prose written on one machine contradicts the learner's run on another ("tens of
//! milliseconds", "writes sit to the right"). These functions put this run's numbers into the
//! reasoning instead — Little's law for a closed loop, where the two latency distributions lie,
//! where throughput stops growing — so the notebook prints an answer that is true where it ran.

use super::report::{SweepReport, WorkloadReport, is_instance};
use crate::present::charts::SPEC_RSS_MB;
use crate::present::exercise::{Check, check};

/// The three answers notebook 04 offers for the 100-client p99, in ms.
pub const P99_CHOICES_MS: [f64; 3] = [1.0, 10.0, 100.0];

/// The choice nearest to `ms` on a log scale (10 ms is as near to 1 ms as 100 ms is to 10 ms).
pub fn nearest_choice(ms: f64) -> f64 {
    P99_CHOICES_MS
        .into_iter()
        .min_by(|a, b| {
            (ms.ln() - a.ln())
                .abs()
                .total_cmp(&(ms.ln() - b.ln()).abs())
        })
        .expect("three choices")
}

fn times(a: f64, b: f64) -> String {
    // Within 5 % the two are the same for any reader of a chart: say so, not "1.0× slower".
    if (a / b - 1.0).abs() < 0.05 {
        "about as fast as".to_string()
    } else if a >= b {
        format!("{:.1}× slower than", a / b)
    } else {
        format!("{:.1}× faster than", b / a)
    }
}

impl WorkloadReport {
    /// The p99 answer with its reasoning: the measured p99, the nearest of the offered answers,
    /// and Little's law (clients = throughput × mean latency) applied to this run's numbers.
    pub fn explain_p99(&self) -> String {
        let t = self.total();
        let n = self.spec.concurrency as f64;
        let little_ms = n / t.ops_per_s * 1000.0;
        let closed = self.spec.think_time.is_zero();
        let mut s = format!(
            "Your p99 at {n:.0} clients was {:.1} ms (p50 {:.1} ms), closest to the \"{:.0} ms\" \
             answer.",
            t.p99_ms,
            t.p50_ms,
            nearest_choice(t.p99_ms)
        );
        if closed {
            s.push_str(&format!(
                " Why: these clients are a closed loop, so {n:.0} operations are always in \
                 flight. Little's law says clients in the system = throughput × mean latency; \
                 {n:.0} clients at {:.0} ops/s means a mean latency of {n:.0} ÷ {:.0} = {little_ms:.1} ms \
                 (measured mean: {:.1} ms), and the p99 lies above the mean.",
                t.ops_per_s, t.ops_per_s, t.mean_ms
            ));
            s.push_str(&match self.cpu_share_pct() {
                Some(cpu) if cpu >= super::scaling::SATURATED_PCT => format!(
                    " The lab's processes kept {cpu:.0} % of this machine's CPU busy meanwhile: \
                     most of an operation's time was waiting for a turn on a core, so the run \
                     measures the cluster's capacity shared by {n:.0} clients, not what one \
                     user's query costs."
                ),
                Some(cpu) => format!(
                    " The lab's processes used {cpu:.0} % of this machine's CPU meanwhile, so \
                     something besides the cores limited the run too (notebook 02's waterfall \
                     shows where one statement's time goes)."
                ),
                None => String::new(),
            });
        }
        s
    }

    /// The share of the machine's CPU every sampled process (lab and load generator) used
    /// together during the run, in % of all cores; `None` without CPU samples.
    pub fn cpu_share_pct(&self) -> Option<f64> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let per = crate::infra::sampler::mean_cpu(&self.resources);
        (!per.is_empty()).then(|| per.iter().map(|(_, pct)| pct).sum::<f64>() / cores)
    }

    /// One line for a takeaway: how many operations, how many failed, how many conflicted.
    pub fn outcome_line(&self) -> String {
        let t = self.total();
        let failed = t.timeouts + t.connection + t.other;
        let mut s = format!(
            "{} clients on {} node(s) completed {} operations: {failed} failed (timeouts, lost \
             connections, other errors), {} retryable transaction conflict(s)",
            self.spec.concurrency,
            self.nodes.len(),
            t.ops,
            t.conflicts
        );
        s.push_str(if t.conflicts == 0 {
            " (none of the clients wrote the same record at the same moment)."
        } else {
            " (two clients writing one record at once: notebook 05 shows why one must retry)."
        });
        s
    }

    /// Where reads and writes lie in the latency histogram, and whether they overlap.
    pub fn explain_histogram(&self) -> String {
        let (Some(r), Some(w)) = (self.row("all", "read"), self.row("all", "write")) else {
            return "This run has only one kind of operation, so there is nothing to compare."
                .into();
        };
        let overlap = if r.p99_ms > w.p50_ms {
            format!(
                "The two overlap: the slowest 1 % of reads (p99 {:.1} ms) took longer than a \
                 typical write (p50 {:.1} ms), because under this load most of any operation's \
                 time is queueing, which reads and writes share.",
                r.p99_ms, w.p50_ms
            )
        } else {
            format!(
                "They barely overlap: even the slowest 1 % of reads (p99 {:.1} ms) beat a typical \
                 write (p50 {:.1} ms), so the commit, not the queue, sets a write's time here.",
                r.p99_ms, w.p50_ms
            )
        };
        format!(
            "Reads: p50 {:.1} ms, p99 {:.1} ms ({} ops). Writes: p50 {:.1} ms, p99 {:.1} ms ({} ops). \
             The median write was {} the median read — {} on the chart. {overlap}",
            r.p50_ms,
            r.p99_ms,
            r.ops,
            w.p50_ms,
            w.p99_ms,
            w.ops,
            times(w.p50_ms, r.p50_ms),
            if (w.p50_ms / r.p50_ms - 1.0).abs() < 0.05 {
                "at about the same place"
            } else if w.p50_ms >= r.p50_ms {
                "to the right"
            } else {
                "to the left"
            },
        )
    }

    /// Peak memory per process against the spec's 200 MB, with the private share of the largest.
    pub fn explain_memory(&self) -> String {
        let peaks = self.peak_rss();
        let anon = self.peak_anon();
        let Some((p, mb)) = peaks
            .iter()
            .filter(|(p, _)| is_instance(p))
            .max_by(|a, b| a.1.total_cmp(&b.1))
        else {
            return "No memory samples of lab processes in this run.".into();
        };
        let private = anon.iter().find(|(q, _)| q == p).map(|(_, m)| *m);
        let mut s = format!(
            "The largest lab process was {p} at a peak of {mb:.0} MB, {:.0} % of the spec's \
             {SPEC_RSS_MB:.0} MB per instance.",
            mb / SPEC_RSS_MB * 100.0
        );
        if let Some(private) = private {
            s.push_str(&format!(
                " Of it, {private:.0} MB ({:.0} %) was private memory; the other {:.0} MB is the \
                 binary's code and mapped files, which the operating system shares between \
                 processes running the same binary.",
                private / mb * 100.0,
                mb - private
            ));
        }
        s
    }

    /// The exercise check of notebook 04: a write-only run at the baseline's concurrency,
    /// compared with the baseline (a mixed run), after a prediction was made.
    pub fn check_write_only(&self, base: &WorkloadReport, predicted_slower: Option<bool>) -> Check {
        let reads = self.row("all", "read").map_or(0, |r| r.ops);
        let writes = self.row("all", "write").map_or(0, |r| r.ops);
        let Some(predicted) = predicted_slower else {
            return check(
                false,
                "",
                "first write down your prediction: set `i_predict_slower` to Some(true) or Some(false)",
            );
        };
        if reads > 0 || writes == 0 {
            return check(
                false,
                "",
                format!(
                    "your run did {reads} reads and {writes} writes; make it write-only: WorkloadPlan::write_only()"
                ),
            );
        }
        if self.spec.concurrency != base.spec.concurrency {
            return check(
                false,
                "",
                format!(
                    "compare like with like: use .concurrency({}) as the baseline did (yours: {})",
                    base.spec.concurrency, self.spec.concurrency
                ),
            );
        }
        let (mine, theirs) = (self.total().p50_ms, base.total().p50_ms);
        let slower = mine > theirs;
        check(
            true,
            format!(
                "write-only p50 {mine:.1} ms vs {theirs:.1} ms for the 90 %-read mix at {} clients: \
                 {}. You predicted {}: {}. Every write is a transaction whose commit the storage \
                 node makes durable on disk; a read is one snapshot lookup.",
                self.spec.concurrency,
                times(mine, theirs),
                if predicted { "slower" } else { "not slower" },
                if predicted == slower {
                    "right"
                } else {
                    "the run says otherwise"
                },
            ),
            "",
        )
    }
}

impl SweepReport {
    /// `(peak, knee)`: the level with the most throughput (a tie goes to fewer clients), and the
    /// first level whose throughput came within 10 % of that peak — where the machine saturated.
    /// `None` for an empty sweep.
    pub fn knee(&self) -> Option<(usize, usize)> {
        let tp = |r: &WorkloadReport| r.total().ops_per_s;
        let peak = self
            .runs
            .iter()
            .reduce(|a, b| if tp(b) > tp(a) { b } else { a })?;
        let knee = self.runs.iter().find(|r| tp(r) >= 0.9 * tp(peak))?;
        Some((peak.spec.concurrency, knee.spec.concurrency))
    }

    /// One line for a takeaway: where throughput stopped growing on this machine.
    pub fn knee_line(&self) -> String {
        let Some((peak, knee)) = self.knee() else {
            return "The sweep ran no levels.".into();
        };
        let at = |n: usize| {
            self.runs
                .iter()
                .find(|r| r.spec.concurrency == n)
                .map_or(f64::NAN, |r| r.total().ops_per_s)
        };
        let failed: u64 = self
            .runs
            .iter()
            .map(|r| {
                let t = r.total();
                t.timeouts + t.connection + t.other
            })
            .sum();
        let conflicts: u64 = self.runs.iter().map(|r| r.total().conflicts).sum();
        let reached = if knee == peak {
            format!(
                "Throughput peaked at {:.0} ops/s with {peak} clients",
                at(peak)
            )
        } else {
            format!(
                "Throughput came within 10 % of its peak ({:.0} ops/s with {peak} clients) at \
                 {knee} clients",
                at(peak)
            )
        };
        format!(
            "{reached} on this machine; more clients past that only waited longer. Over the whole \
             sweep: {failed} failed operation(s), {conflicts} retryable conflict(s)."
        )
    }

    /// Where throughput stopped growing, and what latency did after that (Little's law).
    pub fn explain(&self) -> String {
        let pts: Vec<(usize, f64, f64, f64)> = self
            .runs
            .iter()
            .map(|r| {
                let t = r.total();
                (r.spec.concurrency, t.ops_per_s, t.p99_ms, t.mean_ms)
            })
            .collect();
        let (Some(first), Some(last), Some((peak, knee))) = (pts.first(), pts.last(), self.knee())
        else {
            return "The sweep ran no levels.".into();
        };
        let at = |n: usize| pts.iter().find(|p| p.0 == n).expect("a level of the sweep");
        let (peak, knee) = (at(peak), at(knee));
        let mut s = format!(
            "Throughput went from {:.0} ops/s at {} client(s) to a peak of {:.0} ops/s at {}; \
             it first came within 10 % of that peak at {} clients.",
            first.1, first.0, peak.1, peak.0, knee.0
        );
        if last.0 > knee.0 {
            s.push_str(&format!(
                " From {} to {} clients, throughput changed {:.1}× while p99 changed {:.1}×: \
                 past the knee, added clients mostly queue. Little's law predicts the mean at \
                 {} clients: {} ÷ {:.0} ops/s = {:.1} ms (measured {:.1} ms).",
                knee.0,
                last.0,
                last.1 / knee.1,
                last.2 / knee.2,
                last.0,
                last.0,
                last.1,
                last.0 as f64 / last.1 * 1000.0,
                last.3
            ));
        }
        s
    }
}

/// Which setup was faster at each concurrency level, from two `(clients, ops/s)` series.
pub fn compare_throughput(a: (&str, &[(f64, f64)]), b: (&str, &[(f64, f64)])) -> String {
    let ratios: Vec<(f64, f64)> =
        a.1.iter()
            .zip(b.1)
            .filter(|(x, y)| x.0 == y.0 && y.1 > 0.0)
            .map(|(x, y)| (x.0, x.1 / y.1))
            .collect();
    if ratios.is_empty() {
        return "No common concurrency levels to compare.".into();
    }
    let a_wins = ratios.iter().filter(|r| r.1 > 1.0).count();
    let (lo, hi) = ratios.iter().fold((f64::MAX, f64::MIN), |(lo, hi), r| {
        (lo.min(r.1), hi.max(r.1))
    });
    let winner = if a_wins * 2 > ratios.len() { a.0 } else { b.0 };
    format!(
        "{} had more throughput at {a_wins} of {} levels, {} at the other {}; the ratio {} ÷ {} \
         ranged from {lo:.2} to {hi:.2}. Overall, {winner} was faster on this machine.",
        a.0,
        ratios.len(),
        b.0,
        ratios.len() - a_wins,
        a.0,
        b.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::workload::WorkloadPlan;
    use crate::experiments::workload::report::OpSummary;
    use crate::experiments::workload::spec_check::tests::{report, summary};

    #[test]
    fn nearest_choice_is_on_a_log_scale() {
        assert_eq!(nearest_choice(3.0), 1.0);
        assert_eq!(nearest_choice(3.3), 10.0);
        assert_eq!(nearest_choice(40.0), 100.0);
        assert_eq!(nearest_choice(126.0), 100.0);
    }

    #[test]
    fn the_p99_answer_applies_littles_law_to_this_run() {
        let mut all: OpSummary = summary("all", "all", 35.0, 126.0, 2500.0);
        all.mean_ms = 39.0;
        let r = report(100, vec![all]);
        let s = r.explain_p99();
        assert!(s.contains("126.0 ms"), "{s}");
        assert!(s.contains("\"100 ms\""), "{s}");
        assert!(s.contains("100 ÷ 2500 = 40.0 ms"), "{s}");
    }

    #[test]
    fn the_histogram_sentence_follows_the_data_not_a_fixed_direction() {
        let r = report(
            100,
            vec![
                summary("all", "read", 4.0, 30.0, 900.0),
                summary("all", "write", 8.0, 40.0, 100.0),
            ],
        );
        let s = r.explain_histogram();
        assert!(
            s.contains("2.0× slower than") && s.contains("to the right") && s.contains("overlap:"),
            "{s}"
        );
        // Reversed data, reversed sentence.
        let r = report(
            100,
            vec![
                summary("all", "read", 8.0, 9.0, 900.0),
                summary("all", "write", 4.0, 40.0, 100.0),
            ],
        );
        let s = r.explain_histogram();
        assert!(
            s.contains("2.0× faster than") && s.contains("to the left"),
            "{s}"
        );
    }

    #[test]
    fn the_sweep_sentence_finds_the_knee() {
        let s = SweepReport {
            runs: [
                (1, 400.0, 2.0),
                (10, 1800.0, 8.0),
                (50, 2000.0, 40.0),
                (100, 2000.0, 90.0),
            ]
            .into_iter()
            .map(|(n, tp, p99)| report(n, vec![summary("all", "all", p99 / 2.0, p99, tp)]))
            .collect(),
        };
        let e = s.explain();
        assert!(e.contains("peak of 2000 ops/s at 50"), "{e}");
        assert!(e.contains("within 10 % of that peak at 10 clients"), "{e}");
        assert!(e.contains("100 ÷ 2000 ops/s = 50.0 ms"), "{e}");
        let k = s.knee_line();
        assert!(
            k.contains("(2000 ops/s with 50 clients) at 10 clients"),
            "{k}"
        );
        assert!(
            k.contains("0 failed operation(s), 0 retryable conflict(s)"),
            "{k}"
        );
    }

    #[test]
    fn the_outcome_line_counts_failures_and_conflicts_apart() {
        let mut all = summary("all", "all", 3.0, 9.0, 1000.0);
        all.conflicts = 4;
        all.timeouts = 1;
        let r = report(100, vec![all]);
        let s = r.outcome_line();
        assert!(s.contains("1 failed") && s.contains("4 retryable"), "{s}");
        assert!(s.contains("notebook 05"), "{s}");
    }

    #[test]
    fn comparing_throughput_names_the_winner_by_the_data() {
        let two = [(1.0, 100.0), (10.0, 300.0)];
        let one = [(1.0, 200.0), (10.0, 600.0)];
        let s = compare_throughput(("2 nodes", &two), ("1 node", &one));
        assert!(
            s.contains("at 0 of 2 levels") && s.ends_with("1 node was faster on this machine."),
            "{s}"
        );
        let s = compare_throughput(("2 nodes", &one), ("1 node", &two));
        assert!(s.ends_with("2 nodes was faster on this machine."), "{s}");
    }

    #[test]
    fn the_write_only_exercise_needs_a_prediction_a_write_only_plan_and_the_same_clients() {
        let base = report(
            50,
            vec![
                summary("all", "read", 2.0, 9.0, 900.0),
                summary("all", "all", 2.5, 9.0, 1000.0),
            ],
        );
        let mut mine = report(
            50,
            vec![
                summary("all", "write", 6.0, 20.0, 300.0),
                summary("all", "all", 6.0, 20.0, 300.0),
            ],
        );
        mine.spec = WorkloadPlan::write_only().concurrency(50);
        assert!(!mine.check_write_only(&base, None).solved);
        let c = mine.check_write_only(&base, Some(true));
        assert!(c.solved, "{c}");
        assert!(
            c.why.contains("2.4× slower than") && c.why.contains("right"),
            "{c}"
        );
        assert!(
            mine.check_write_only(&base, Some(false))
                .why
                .contains("the run says otherwise")
        );
        // Still mixed: not solved, and the hint says how to fix it.
        let mixed = base.clone();
        assert!(
            mixed
                .check_write_only(&base, Some(true))
                .why
                .contains("write_only")
        );
        mine.spec = WorkloadPlan::write_only().concurrency(10);
        assert!(
            mine.check_write_only(&base, Some(true))
                .why
                .contains(".concurrency(50)")
        );
    }
}
