//! `lab bench --compare-server PATH`: the lab's `surreal` against another build of it, in one
//! invocation, so that a difference between two binaries is a ratio, not two runs on two days.
//!
//! Why this exists: the official release binary uses jemalloc (with SurrealDB's allocation
//! tracking), while the lab's source build uses glibc's malloc, tuned with `MALLOC_ARENA_MAX=1`
//! (`poc_helpers::infra::node::tuning_env`). The allocator decides how much memory a node holds
//! when idle, at peak, and after a burst, which the notebooks chart against the spec's 200 MB
//! (PR-004). `scripts/measure-allocators.sh` builds ours with jemalloc and runs this.
//!
//! Each repetition starts a fresh 2-node lab over the embedded storage node per binary, in
//! alternating order (A B, B A, …) so that a machine that warms up or gets busier over the run
//! does not favour one binary. Per node it records:
//!
//! ```text
//! idle     RSS and private memory (RssAnon) after the nodes have settled, before any load
//! load     throughput, p99, and the peak RSS / private memory while the workload runs
//! after    private memory 5 s and 20 s after the load stopped: what the allocator kept
//! ```
//!
//! The table shows the median over repetitions of each, and the other binary ÷ the lab's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use poc_helpers::experiments::workload::WorkloadPlan;
use poc_helpers::facade::Cluster;
use poc_helpers::infra::binary::locate_surreal;
use poc_helpers::infra::sampler::{self, ResourceSample};
use poc_helpers::vocab::config::StorageMode;
use poc_helpers::vocab::error::LabError;

use crate::bench::median;

/// How long the nodes settle after start before the idle sample (their first membership
/// heartbeats and connection pools are done by then; their memory is flat from here on).
const SETTLE: Duration = Duration::from_secs(3);
/// When the "after" samples are taken, counted from the end of the load: right after (what a
/// learner sees in the status table after a load cell) and once both allocators' own delays for
/// returning freed memory have passed (jemalloc's default decay is 10 s).
const AFTER: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(20)];
/// Sampling window and interval for the idle and after samples.
const WINDOW: Duration = Duration::from_secs(1);
const EVERY: Duration = Duration::from_millis(250);

/// One binary's numbers from one repetition, per node averaged over the lab's nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerRun {
    /// `lab` or `other`.
    pub server: &'static str,
    pub idle_rss_mb: f64,
    pub idle_anon_mb: f64,
    pub ops_per_s: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub peak_rss_mb: f64,
    pub peak_anon_mb: f64,
    pub after_anon_mb: f64,
    pub later_anon_mb: f64,
}

/// The two binaries, checked before anything starts.
pub struct Servers {
    pub lab: PathBuf,
    pub other: PathBuf,
}

impl Servers {
    /// The lab's server as the lab finds it (`SURREAL_BIN`, setup's link, …) and `other`; both
    /// must run and report SurrealDB 3.x, else the error names the fix.
    pub fn locate(other: &Path) -> Result<Servers, LabError> {
        let lab = locate_surreal(None)?.path;
        let other = match locate_surreal(Some(other)) {
            Ok(found) => found.path,
            // The resolver's own message speaks of the builder and SURREAL_BIN: say it in the
            // terms of this command instead.
            Err(LabError::BinaryUnusable {
                name, path, reason, ..
            }) => {
                return Err(LabError::BinaryUnusable {
                    name,
                    path,
                    reason: reason.replace("the builder's `.surreal_bin(..)`", "--compare-server"),
                    fix: "pass --compare-server the path of a working `surreal` 3.x, or run \
                          scripts/measure-allocators.sh, which builds one with jemalloc"
                        .into(),
                });
            }
            Err(e) => return Err(e),
        };
        Ok(Servers { lab, other })
    }
}

/// The order of the binaries in repetition `rep` (0-based): A B, then B A, and so on.
pub fn order(rep: usize) -> [&'static str; 2] {
    if rep.is_multiple_of(2) {
        ["lab", "other"]
    } else {
        ["other", "lab"]
    }
}

/// Runs `reps` repetitions of `plan` on both binaries; `progress` gets a line per step.
pub fn run(
    servers: &Servers,
    plan: &WorkloadPlan,
    reps: usize,
    lab_root: &Path,
    progress: &dyn Fn(&str),
) -> Result<Vec<ServerRun>, LabError> {
    let mut runs = Vec::new();
    for rep in 0..reps {
        for server in order(rep) {
            progress(&format!("rep {}/{reps} · {server} server", rep + 1));
            let bin = if server == "lab" {
                &servers.lab
            } else {
                &servers.other
            };
            runs.push(one_run(server, bin, plan, lab_root)?);
        }
    }
    Ok(runs)
}

fn one_run(
    server: &'static str,
    bin: &Path,
    plan: &WorkloadPlan,
    lab_root: &Path,
) -> Result<ServerRun, LabError> {
    let cluster = Cluster::builder()
        .name(&format!("bench-server-{server}"))
        .lab_root(lab_root)
        .surreal_bin(bin)
        .ephemeral_ports()
        .nodes(2)
        .storage(StorageMode::Shared)
        .echo(false)
        .start()?;
    let result = (|| -> Result<ServerRun, LabError> {
        let nodes: Vec<(String, u32)> = cluster
            .instances()?
            .into_iter()
            .filter(|i| i.node.starts_with("node-"))
            .filter_map(|i| Some((i.node, i.pid?)))
            .collect();
        std::thread::sleep(SETTLE);
        let idle = sampler::sample_for(nodes.clone(), WINDOW, EVERY);
        let report = cluster.run_workload(plan.clone())?;
        std::thread::sleep(AFTER[0]);
        let after = sampler::sample_for(nodes.clone(), WINDOW, EVERY);
        std::thread::sleep(AFTER[1] - AFTER[0] - WINDOW);
        let later = sampler::sample_for(nodes.clone(), WINDOW, EVERY);
        let is_node = |p: &str| p.starts_with("node-");
        let t = report.total();
        Ok(ServerRun {
            server,
            idle_rss_mb: per_node_mean(&idle, |s| Some(s.rss_mb)),
            idle_anon_mb: per_node_mean(&idle, |s| s.anon_mb),
            ops_per_s: t.ops_per_s,
            p99_ms: t.p99_ms,
            errors: t.errors,
            peak_rss_mb: mean_of(report.peak_rss(), is_node),
            peak_anon_mb: mean_of(report.peak_anon(), is_node),
            after_anon_mb: per_node_mean(&after, |s| s.anon_mb),
            later_anon_mb: per_node_mean(&later, |s| s.anon_mb),
        })
    })();
    // Stop the nodes whatever happened: no orphan processes.
    let cleaned = cluster.cleanup();
    let run = result?;
    cleaned?;
    Ok(run)
}

/// Each node's median of `value` over the window, then the mean over nodes (NaN if none).
fn per_node_mean(rows: &[ResourceSample], value: impl Fn(&ResourceSample) -> Option<f64>) -> f64 {
    let mut nodes: Vec<&str> = rows.iter().map(|r| r.process.as_str()).collect();
    nodes.sort();
    nodes.dedup();
    let per_node: Vec<f64> = nodes
        .iter()
        .map(|n| {
            let v: Vec<f64> = rows
                .iter()
                .filter(|r| r.process == *n)
                .filter_map(&value)
                .collect();
            median(&v)
        })
        .collect();
    mean(&per_node)
}

fn mean_of(peaks: Vec<(String, f64)>, keep: impl Fn(&str) -> bool) -> f64 {
    mean(
        &peaks
            .into_iter()
            .filter(|(p, _)| keep(p))
            .map(|(_, mb)| mb)
            .collect::<Vec<_>>(),
    )
}

fn mean(v: &[f64]) -> f64 {
    let v: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The measures of the table: (label, value of a run).
type Measure = (&'static str, fn(&ServerRun) -> f64);
const MEASURES: [Measure; 8] = [
    ("idle RSS MB/node", |r| r.idle_rss_mb),
    ("idle private MB/node", |r| r.idle_anon_mb),
    ("ops/s", |r| r.ops_per_s),
    ("p99 ms", |r| r.p99_ms),
    ("peak RSS MB/node", |r| r.peak_rss_mb),
    ("peak private MB/node", |r| r.peak_anon_mb),
    ("private MB/node 5 s after", |r| r.after_anon_mb),
    ("private MB/node 20 s after", |r| r.later_anon_mb),
];

/// Per measure: (label, median for the lab's binary, median for the other, other ÷ lab).
pub fn summary(runs: &[ServerRun]) -> Vec<(&'static str, f64, f64, f64)> {
    MEASURES
        .iter()
        .map(|(label, f)| {
            let of = |server: &str| {
                median(
                    &runs
                        .iter()
                        .filter(|r| r.server == server)
                        .map(f)
                        .collect::<Vec<_>>(),
                )
            };
            let (lab, other) = (of("lab"), of("other"));
            (*label, lab, other, other / lab)
        })
        .collect()
}

/// The printed table, with the errors of every run (a run with errors is not a fair comparison).
pub fn table(servers: &Servers, runs: &[ServerRun]) -> String {
    let mut out = format!(
        "lab    {}\nother  {}\n\n{:<27} {:>10} {:>10} {:>14}\n",
        servers.lab.display(),
        servers.other.display(),
        "median over repetitions",
        "lab",
        "other",
        "other ÷ lab"
    );
    for (label, lab, other, ratio) in summary(runs) {
        out.push_str(&format!(
            "{label:<27} {lab:>10.1} {other:>10.1} {ratio:>14.2}\n"
        ));
    }
    let errors: u64 = runs.iter().map(|r| r.errors).sum();
    out.push_str(&format!(
        "errors in all runs: {errors}\n\nevery run, in order:\n"
    ));
    for r in runs {
        let values: Vec<String> = MEASURES
            .iter()
            .map(|(_, f)| format!("{:.1}", f(r)))
            .collect();
        out.push_str(&format!(
            "  {:<6} {}  errors {}\n",
            r.server,
            values.join(" "),
            r.errors
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(server: &'static str, idle: f64, ops: f64) -> ServerRun {
        ServerRun {
            server,
            idle_rss_mb: idle,
            idle_anon_mb: idle / 2.0,
            ops_per_s: ops,
            p99_ms: 10.0,
            errors: 0,
            peak_rss_mb: idle * 2.0,
            peak_anon_mb: idle,
            after_anon_mb: idle,
            later_anon_mb: idle,
        }
    }

    #[test]
    fn repetitions_alternate_which_binary_goes_first() {
        assert_eq!(order(0), ["lab", "other"]);
        assert_eq!(order(1), ["other", "lab"]);
        assert_eq!(order(2), ["lab", "other"]);
    }

    #[test]
    fn the_ratio_is_the_other_binary_over_the_labs_of_the_medians() {
        let runs = [
            run("lab", 100.0, 1000.0),
            run("other", 50.0, 1100.0),
            run("other", 60.0, 900.0),
            run("lab", 120.0, 1000.0),
            run("lab", 80.0, 3000.0),
            run("other", 55.0, 1000.0),
        ];
        let s = summary(&runs);
        let idle = s.iter().find(|m| m.0 == "idle RSS MB/node").unwrap();
        assert_eq!((idle.1, idle.2), (100.0, 55.0));
        assert!((idle.3 - 0.55).abs() < 1e-9);
        let ops = s.iter().find(|m| m.0 == "ops/s").unwrap();
        assert_eq!((ops.1, ops.2, ops.3), (1000.0, 1000.0, 1.0));
    }

    #[test]
    fn per_node_values_are_each_nodes_median_then_the_mean_over_nodes() {
        let sample = |process: &str, mb: f64| ResourceSample {
            t_ms: 0.0,
            process: process.into(),
            pid: 1,
            rss_mb: mb,
            anon_mb: Some(mb / 2.0),
            cpu_pct: 0.0,
        };
        let rows = [
            sample("node-a", 10.0),
            sample("node-a", 90.0),
            sample("node-a", 20.0),
            sample("node-b", 40.0),
        ];
        assert_eq!(per_node_mean(&rows, |s| Some(s.rss_mb)), 30.0);
        assert_eq!(per_node_mean(&rows, |s| s.anon_mb), 15.0);
        assert!(per_node_mean(&[], |s| Some(s.rss_mb)).is_nan());
    }
}
