//! Scale-out, measured: the same closed-loop workload served by 1, 2, 3 … query nodes of one lab
//! over the same storage, with the CPU share of every process sampled meanwhile.
//!
//! Distribution is said to pay off in scale-out: add a query node, serve more. Whether it does on
//! the learner's machine depends on where the time goes. Query nodes, the storage tier and the
//! load generator all run on the same cores here, so an added node can only add throughput if
//! the machine had cores to spare. The report therefore puts each process's share of the
//! machine's CPU next to the throughput, and [`ScaleOutReport::explain`] reads the verdict off
//! those figures instead of assuming one.
//!
//! A process's share is its mean CPU over the run (`sysinfo`'s per-core percentage, the first
//! sample of each process left out, see [`crate::infra::sampler`]) divided by the machine's
//! cores: 100 % is every core busy with that process.

use polars::prelude::{Column, DataFrame};
use serde::{Deserialize, Serialize};

use super::report::WorkloadReport;
use crate::infra::sampler::mean_cpu;
use crate::present::charts::{self, Chart};
use crate::present::display;
use crate::vocab::error::LabError;
use crate::vocab::frames::frame;

/// The machine counts as saturated when the lab's processes together use this share of it: the
/// rest goes to what the sampler does not count (the kernel's own process, the operating
/// system, the notebook server), so a run rarely gets far above it.
pub const SATURATED_PCT: f64 = 75.0;
/// Throughput must grow at least this much from the fewest to the most nodes to count as
/// "scaled out": less is within the run-to-run noise of a few-second run.
pub const SCALED_FACTOR: f64 = 1.2;

/// One run per node count, in order (see [`crate::facade::Cluster::run_scale_out`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleOutReport {
    /// The runs, fewest nodes first; `runs[i].nodes` are the nodes that served run `i`.
    pub runs: Vec<WorkloadReport>,
    /// CPU cores of the machine the runs shared.
    pub cores: usize,
}

impl ScaleOutReport {
    /// Query nodes that served each run.
    fn node_counts(&self) -> Vec<usize> {
        self.runs.iter().map(|r| r.nodes.len()).collect()
    }

    /// `(process, % of the machine's CPU)` of one run, every sampled process, in sample order.
    pub fn cpu_shares(&self, run: &WorkloadReport) -> Vec<(String, f64)> {
        let cores = self.cores.max(1) as f64;
        mean_cpu(&run.resources)
            .into_iter()
            .map(|(p, pct)| (p, pct / cores))
            .collect()
    }

    /// `process`'s share of the machine's CPU in `run` (0 when it was not sampled).
    fn share_of(&self, run: &WorkloadReport, process: &str) -> f64 {
        self.cpu_shares(run)
            .into_iter()
            .find(|(p, _)| p == process)
            .map_or(0.0, |(_, s)| s)
    }

    /// All sampled processes' share of the machine's CPU together in `run`.
    fn total_share(&self, run: &WorkloadReport) -> f64 {
        self.cpu_shares(run).iter().map(|(_, s)| s).sum()
    }

    /// Every process of any run, in first-seen order (node-a, node-b, …, storage, client).
    fn processes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.runs {
            for (p, _) in mean_cpu(&r.resources) {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// One row per run: query_nodes, ops_per_s, speedup (÷ the first run), p50_ms and p99_ms of
    /// every operation, conflicts, failed, then `cpu_<process>_pct` (share of the machine) and
    /// `cpu_all_pct`.
    pub fn frame(&self) -> Result<DataFrame, LabError> {
        let first = self.runs.first().map_or(f64::NAN, |r| r.total().ops_per_s);
        let f = |g: &dyn Fn(&WorkloadReport) -> f64| {
            self.runs
                .iter()
                .map(|r| (g(r) * 10.0).round() / 10.0)
                .collect::<Vec<_>>()
        };
        let mut cols = vec![
            Column::new(
                "query_nodes".into(),
                self.node_counts()
                    .iter()
                    .map(|n| *n as u32)
                    .collect::<Vec<_>>(),
            ),
            Column::new("ops_per_s".into(), f(&|r| r.total().ops_per_s)),
            Column::new(
                "speedup".into(),
                self.runs
                    .iter()
                    .map(|r| (r.total().ops_per_s / first * 100.0).round() / 100.0)
                    .collect::<Vec<_>>(),
            ),
            Column::new("p50_ms".into(), f(&|r| r.total().p50_ms)),
            Column::new("p99_ms".into(), f(&|r| r.total().p99_ms)),
            Column::new(
                "conflicts".into(),
                self.runs
                    .iter()
                    .map(|r| r.total().conflicts)
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "failed".into(),
                self.runs
                    .iter()
                    .map(|r| {
                        let t = r.total();
                        t.timeouts + t.connection + t.other
                    })
                    .collect::<Vec<_>>(),
            ),
        ];
        for p in self.processes() {
            cols.push(Column::new(
                format!("cpu_{p}_pct").into(),
                f(&|r| self.share_of(r, &p)),
            ));
        }
        cols.push(Column::new(
            "cpu_all_pct".into(),
            f(&|r| self.total_share(r)),
        ));
        frame(cols)
    }

    /// Share of the machine's CPU per process (and all together) against the number of query
    /// nodes: where the cores went as nodes were added.
    pub fn cpu_chart(&self) -> Result<Chart, LabError> {
        let counts = self.node_counts();
        let mut series: Vec<(String, Vec<(f64, f64)>)> = self
            .processes()
            .into_iter()
            .map(|p| {
                let pts = self
                    .runs
                    .iter()
                    .zip(&counts)
                    .map(|(r, n)| (*n as f64, self.share_of(r, &p)))
                    .collect();
                (p, pts)
            })
            .collect();
        series.push((
            "all lab processes".into(),
            self.runs
                .iter()
                .zip(&counts)
                .map(|(r, n)| (*n as f64, self.total_share(r)))
                .collect(),
        ));
        charts::lines(
            &format!(
                "CPU share per process vs query nodes ({} cores; 100 % = all of them)",
                self.cores
            ),
            "query nodes serving the load",
            "% of the machine's CPU",
            &series,
            &[],
        )
    }

    /// What the runs say about scale-out on this machine, from their throughput and CPU shares.
    pub fn explain(&self) -> String {
        let (Some(first), Some(last)) = (self.runs.first(), self.runs.last()) else {
            return "No runs to compare.".into();
        };
        let all = |r: &WorkloadReport| self.total_share(r);
        let speedup = last.total().ops_per_s / first.total().ops_per_s;
        let shares = self.cpu_shares(last);
        let share_of = |pred: &dyn Fn(&str) -> bool| {
            shares
                .iter()
                .filter(|(p, _)| pred(p))
                .map(|(_, s)| s)
                .sum::<f64>()
        };
        let nodes = share_of(&|p| p.starts_with("node-"));
        let client = share_of(&|p| p == "client");
        let storage = share_of(&|p| !p.starts_with("node-") && p != "client");
        let (n1, n2) = (first.nodes.len(), last.nodes.len());
        let mut s = format!(
            "Throughput went from {:.0} ops/s with {n1} query node(s) to {:.0} ops/s with {n2} \
             ({speedup:.2}×), p99 from {:.1} to {:.1} ms. The lab's processes used {:.0} % of \
             this machine's {} cores with {n1} node(s) and {:.0} % with {n2}; with {n2}, the \
             query nodes took {nodes:.0} %, the storage tier {storage:.0} % and the load \
             generator {client:.0} %. ",
            first.total().ops_per_s,
            last.total().ops_per_s,
            first.total().p99_ms,
            last.total().p99_ms,
            all(first),
            self.cores,
            all(last),
        );
        let best = self
            .runs
            .iter()
            .max_by(|a, b| a.total().ops_per_s.total_cmp(&b.total().ops_per_s))
            .expect("at least one run");
        if !std::ptr::eq(best, first) && !std::ptr::eq(best, last) {
            s.push_str(&format!(
                "The best was {} nodes at {:.0} ops/s ({:.2}× one node's). ",
                best.nodes.len(),
                best.total().ops_per_s,
                best.total().ops_per_s / first.total().ops_per_s
            ));
        }
        let saturated = all(first) >= SATURATED_PCT;
        s.push_str(&match (speedup >= SCALED_FACTOR, saturated) {
            (true, _) => "Adding query nodes added capacity: the nodes were the bottleneck and \
                           the machine still had cores for them. That is scale-out working, \
                           because no node holds data of its own."
                .to_string(),
            (false, true) => format!(
                "Adding query nodes added little or no capacity ({speedup:.2}×): with {n1} \
                 node(s) the lab's processes already kept {:.0} % of the machine busy (with the \
                 operating system and the notebook's own processes, that is about all of it), so \
                 each added node mostly took CPU from the storage tier and the load generator. \
                 Query nodes and storage compete for the same cores here; scale-out needs \
                 machines to scale onto, and a real deployment gives each node its own.",
                all(first)
            ),
            (false, false) => format!(
                "Adding query nodes added little or no capacity ({speedup:.2}×) although the \
                 machine was only {:.0} % busy with {n1} node(s): the bottleneck is not the query nodes' CPU but what \
                 every request shares, the storage tier ({storage:.0} % with {n2} nodes) and \
                 its commit path.",
                all(first)
            ),
        });
        s
    }

    /// One line for a takeaway: throughput and CPU from the fewest to the most nodes.
    pub fn takeaway_line(&self) -> String {
        let (Some(first), Some(last)) = (self.runs.first(), self.runs.last()) else {
            return "No scale-out runs.".into();
        };
        let all = |r: &WorkloadReport| self.total_share(r);
        let speedup = last.total().ops_per_s / first.total().ops_per_s;
        format!(
            "Scale-out on this machine: {} → {} query nodes over the same storage changed \
             throughput {speedup:.2}× ({:.0} → {:.0} ops/s), with the lab's processes using \
             {:.0} % → {:.0} % of its {} cores. {}",
            first.nodes.len(),
            last.nodes.len(),
            first.total().ops_per_s,
            last.total().ops_per_s,
            all(first),
            all(last),
            self.cores,
            if speedup >= SCALED_FACTOR {
                "Added nodes added capacity."
            } else {
                "Added nodes added little or no capacity here: section 4 says what limited it."
            }
        )
    }

    /// The table with a caption, for notebooks.
    pub fn evcxr_display(&self) {
        display::print_html(&format!(
            "<p><b>Scale-out: the same load on 1 … {} query nodes over the same storage</b></p>{}",
            self.runs.last().map_or(0, |r| r.nodes.len()),
            display::result_html(&self.frame())
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::workload::spec_check::tests::{report, summary};
    use crate::infra::sampler::ResourceSample;

    /// A run on `nodes` nodes at `ops` ops/s whose processes used `cpu` (% of one core each).
    fn run(nodes: usize, ops: f64, cpu: &[(&str, f64)]) -> WorkloadReport {
        let mut r = report(100, vec![summary("all", "all", 10.0, 30.0, ops)]);
        r.nodes = (0..nodes)
            .map(|i| format!("node-{}", (b'a' + i as u8) as char))
            .collect();
        // Two samples per process: the first reads 0 and is left out of the mean.
        for (t, first) in [(0.0, true), (250.0, false)] {
            for (p, pct) in cpu {
                r.resources.push(ResourceSample {
                    t_ms: t,
                    process: p.to_string(),
                    pid: 1,
                    rss_mb: 50.0,
                    anon_mb: None,
                    cpu_pct: if first { 0.0 } else { *pct },
                });
            }
        }
        r
    }

    #[test]
    fn a_saturated_machine_is_named_as_the_limit() {
        let report = ScaleOutReport {
            cores: 2,
            runs: vec![
                run(
                    1,
                    1000.0,
                    &[("node-a", 80.0), ("storage", 70.0), ("client", 40.0)],
                ),
                run(
                    3,
                    1050.0,
                    &[
                        ("node-a", 30.0),
                        ("node-b", 30.0),
                        ("node-c", 30.0),
                        ("storage", 70.0),
                        ("client", 40.0),
                    ],
                ),
            ],
        };
        let s = report.explain();
        // 190 % of one core on 2 cores is 95 % of the machine.
        assert!(s.contains("used 95 % of this machine's 2 cores"), "{s}");
        assert!(
            s.contains("added little or no capacity (1.05×): with 1 node(s) the lab's processes"),
            "{s}"
        );
        assert!(s.contains("query nodes took 45 %"), "{s}");
        let df = report.frame().unwrap();
        assert_eq!(df.height(), 2);
        assert!(df.column("cpu_storage_pct").is_ok());
        assert!(df.column("cpu_all_pct").is_ok());
        assert!(
            report
                .cpu_chart()
                .unwrap()
                .svg
                .contains("all lab processes")
        );
        // A middle run that beat both ends is named.
        let mut three = report.clone();
        three
            .runs
            .insert(1, run(2, 1300.0, &[("node-a", 60.0), ("node-b", 60.0)]));
        assert!(
            three
                .explain()
                .contains("The best was 2 nodes at 1300 ops/s (1.30×"),
            "{}",
            three.explain()
        );
        let t = report.takeaway_line();
        assert!(
            t.contains("1.05×") && t.contains("little or no capacity"),
            "{t}"
        );
    }

    #[test]
    fn spare_cores_and_more_throughput_read_as_scale_out() {
        let report = ScaleOutReport {
            cores: 8,
            runs: vec![
                run(
                    1,
                    1000.0,
                    &[("node-a", 100.0), ("storage", 50.0), ("client", 30.0)],
                ),
                run(
                    2,
                    1900.0,
                    &[("node-a", 100.0), ("node-b", 100.0), ("storage", 90.0)],
                ),
            ],
        };
        let s = report.explain();
        assert!(s.contains("(1.90×)"), "{s}");
        assert!(s.contains("Adding query nodes added capacity"), "{s}");
    }

    #[test]
    fn an_idle_machine_without_gain_points_at_storage() {
        let report = ScaleOutReport {
            cores: 8,
            runs: vec![
                run(1, 1000.0, &[("node-a", 50.0), ("storage", 100.0)]),
                run(
                    2,
                    1010.0,
                    &[("node-a", 25.0), ("node-b", 25.0), ("storage", 100.0)],
                ),
            ],
        };
        assert!(
            report.explain().contains("the storage tier"),
            "{}",
            report.explain()
        );
    }
}
