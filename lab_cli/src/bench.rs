//! `lab bench`: the same workloads against three set-ups, in one invocation, so the numbers can
//! be compared with each other and with the spec.
//!
//! ```text
//! (a) shared-2     2 surreal nodes over the embedded storage node   the distributed lab
//! (b) surrealkv-1  1 surreal node on local surrealkv                 the baseline
//! (c) shared-1     1 surreal node over the embedded storage node     what the storage tier costs
//! (d) shared-2x3   2 surreal nodes over PD + 3 replicated stores     what replication costs
//! ```
//!
//! Each set-up is a fresh lab on ephemeral ports. Every workload runs at every concurrency level
//! `--reps` times (each run with its own warm-up); the table shows the **median** of the
//! repetitions for throughput and latencies, the **peak** RSS over all of them, each node's
//! start-to-ready time, and the ratios to the baseline (b) at the same workload and concurrency.
//! Results go to `target/bench/`: `bench.csv` (the medians), `runs.csv` (every repetition) and
//! SVG charts. The goals of issue 6 and the spec's performance requirements are checked at the end.
//!
//! Why medians: on a 2-core laptop a single run can lose a few hundred ms to a compiler or a
//! browser; the median of three ignores one such outlier, the mean does not.

use std::path::{Path, PathBuf};
use std::time::Duration;

use poc_helpers::experiments::workload::spec_check::{
    self, CrossNodeReads, Growth, SPEC_CONCURRENCY, SpecCheck,
};
use poc_helpers::experiments::workload::{WorkloadPlan, WorkloadReport};
use poc_helpers::facade::Cluster;
use poc_helpers::present::charts::{self, Chart};
use poc_helpers::vocab::config::{Engine, StorageMode};
use poc_helpers::vocab::error::LabError;

/// What `lab bench` was asked to do.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Repetitions per (set-up, workload, concurrency).
    pub reps: usize,
    /// Measured window per run.
    pub duration: Duration,
    /// Warm-up per run.
    pub warmup: Duration,
    /// Concurrency levels.
    pub levels: Vec<usize>,
    /// Workloads by name: mixed, raw, read, write.
    pub workloads: Vec<String>,
    /// Set-ups by name: shared-2, surrealkv-1, shared-1.
    pub setups: Vec<String>,
    /// Records per workload.
    pub records: u64,
    /// SDK sessions per node (0 = the workload default).
    pub sessions: usize,
    /// Output directory.
    pub out: PathBuf,
}

impl BenchOptions {
    /// The full benchmark: 3 repetitions of 3 s (+1 s warm-up) at 1, 10, 100 and 200 clients.
    pub fn full(out: PathBuf) -> Self {
        BenchOptions {
            reps: 3,
            duration: Duration::from_secs(3),
            warmup: Duration::from_secs(1),
            levels: vec![1, 10, 100, 200],
            workloads: ["mixed", "raw", "raw-paced", "read", "write"]
                .map(String::from)
                .to_vec(),
            setups: SETUPS.iter().map(|s| s.name.to_string()).collect(),
            records: 10_000,
            sessions: 0,
            out,
        }
    }

    /// `--quick`: one short repetition, two workloads, to iterate on the code (~1 min).
    pub fn quick(out: PathBuf) -> Self {
        BenchOptions {
            reps: 1,
            duration: Duration::from_millis(1500),
            warmup: Duration::from_millis(500),
            levels: vec![1, 10, 100],
            workloads: ["mixed", "raw", "raw-paced"].map(String::from).to_vec(),
            records: 2_000,
            ..Self::full(out)
        }
    }

    /// Runs in total.
    pub fn runs_count(&self) -> u64 {
        self.runs()
    }

    fn runs(&self) -> u64 {
        (self.setups.len() * self.workloads.len() * self.levels.len() * self.reps) as u64
    }
}

/// One set-up of the comparison.
pub struct Setup {
    /// Short name used in tables, files and `--setups`.
    pub name: &'static str,
    /// What it is, for people.
    pub label: &'static str,
    nodes: usize,
    shared: bool,
    /// Stores of the shared tier (1: the one-process storage node).
    stores: usize,
}

/// The set-ups, in the order they run.
pub const SETUPS: [Setup; 4] = [
    Setup {
        name: "shared-2",
        label: "(a) 2 nodes · embedded storage node",
        nodes: 2,
        shared: true,
        stores: 1,
    },
    Setup {
        name: "surrealkv-1",
        label: "(b) 1 node · surrealkv (baseline)",
        nodes: 1,
        shared: false,
        stores: 1,
    },
    Setup {
        name: "shared-1",
        label: "(c) 1 node · embedded storage node",
        nodes: 1,
        shared: true,
        stores: 1,
    },
    Setup {
        name: "shared-2x3",
        label: "(d) 2 nodes · PD + 3 stores, Raft-replicated",
        nodes: 2,
        shared: true,
        stores: 3,
    },
];

/// Think time of the paced read-after-write workload (`raw-paced`).
pub const PACED_THINK_TIME: Duration = Duration::from_millis(500);

/// The set-up whose numbers the others are divided by.
pub const BASELINE: &str = "surrealkv-1";

/// The workload called `name` (as `--workloads` spells it).
pub fn workload_plan(name: &str) -> Result<WorkloadPlan, LabError> {
    Ok(match name {
        "mixed" => WorkloadPlan::mixed(90),
        "raw" => WorkloadPlan::read_after_write(),
        // Paced clients: each writes and reads back one record every ~0.5 s, like app users.
        "raw-paced" => WorkloadPlan::read_after_write().think_time(PACED_THINK_TIME),
        "read" => WorkloadPlan::read_only(),
        "write" => WorkloadPlan::write_only(),
        // `mixed80`: another read share, e.g. the storage-node issue's 80/20 benchmark.
        other
            if other
                .strip_prefix("mixed")
                .and_then(|p| p.parse::<u8>().ok())
                .is_some_and(|p| p <= 100) =>
        {
            WorkloadPlan::mixed(other["mixed".len()..].parse().unwrap_or(90))
        }
        other => {
            return Err(LabError::InvalidConfig {
                setting: "workloads".into(),
                reason: format!("`{other}` is not a workload"),
                fix: "use a comma-separated list of: mixed, mixedNN (NN % reads, e.g. mixed80), raw, raw-paced, read, write".into(),
            });
        }
    })
}

/// The medians (and peaks) of one (set-up, workload, concurrency).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Set-up name.
    pub setup: String,
    /// Workload name (mixed, raw, read, write).
    pub workload: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Median ops/s.
    pub ops_per_s: f64,
    /// Median latencies, ms.
    pub p50_ms: f64,
    /// Median p95, ms.
    pub p95_ms: f64,
    /// Median p99, ms.
    pub p99_ms: f64,
    /// Median max, ms.
    pub max_ms: f64,
    /// Median p99 of the read half of read-after-write (raw only), ms.
    pub raw_read_p99_ms: Option<f64>,
    /// Errors summed over the repetitions, retryable conflicts included.
    pub errors: u64,
    /// Of those, retryable transaction conflicts.
    pub conflicts: u64,
    /// Read-after-write reads that missed their write, summed.
    pub stale_reads: u64,
    /// Peak RSS per process over the repetitions, MB.
    pub peak_rss: Vec<(String, f64)>,
    /// Peak private memory (RSS without the shared binary code) per process, MB.
    pub peak_anon: Vec<(String, f64)>,
    /// Slowest node start-to-ready of the set-up, ms.
    pub ready_ms: f64,
    /// Throughput ÷ baseline's at the same workload and concurrency.
    pub ops_ratio: Option<f64>,
    /// p99 ÷ baseline's.
    pub p99_ratio: Option<f64>,
}

/// The median of the values (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Folds the repetitions of one (set-up, workload, concurrency) into a row.
pub fn aggregate(
    setup: &str,
    workload: &str,
    clients: usize,
    ready_ms: f64,
    reps: &[WorkloadReport],
) -> Row {
    let med = |f: fn(&WorkloadReport) -> f64| median(&reps.iter().map(f).collect::<Vec<_>>());
    let peaks = |per_rep: &dyn Fn(&WorkloadReport) -> Vec<(String, f64)>| {
        let mut out: Vec<(String, f64)> = Vec::new();
        for r in reps {
            for (p, mb) in per_rep(r) {
                match out.iter_mut().find(|(q, _)| *q == p) {
                    Some((_, peak)) => *peak = peak.max(mb),
                    None => out.push((p, mb)),
                }
            }
        }
        out
    };
    let peak_rss = peaks(&|r| r.peak_rss());
    let peak_anon = peaks(&|r| r.peak_anon());
    let raw_read: Vec<f64> = reps
        .iter()
        .filter_map(|r| r.row("all", "raw_read").map(|x| x.p99_ms))
        .collect();
    Row {
        setup: setup.into(),
        workload: workload.into(),
        clients,
        ops_per_s: med(|r| r.total().ops_per_s),
        p50_ms: med(|r| r.total().p50_ms),
        p95_ms: med(|r| r.total().p95_ms),
        p99_ms: med(|r| r.total().p99_ms),
        max_ms: med(|r| r.total().max_ms),
        raw_read_p99_ms: (!raw_read.is_empty()).then(|| median(&raw_read)),
        errors: reps.iter().map(|r| r.total().errors).sum(),
        conflicts: reps.iter().map(|r| r.total().conflicts).sum(),
        stale_reads: reps.iter().filter_map(|r| r.raw).map(|c| c.missed).sum(),
        peak_rss,
        peak_anon,
        ready_ms,
        ops_ratio: None,
        p99_ratio: None,
    }
}

/// Fills in the ratios to the baseline set-up at the same workload and concurrency.
pub fn add_ratios(rows: &mut [Row]) {
    let base: Vec<Row> = rows
        .iter()
        .filter(|r| r.setup == BASELINE)
        .cloned()
        .collect();
    for r in rows.iter_mut() {
        if let Some(b) = base
            .iter()
            .find(|b| b.workload == r.workload && b.clients == r.clients)
        {
            r.ops_ratio = Some(r.ops_per_s / b.ops_per_s);
            r.p99_ratio = Some(r.p99_ms / b.p99_ms);
        }
    }
}

/// One goal or requirement and whether the benchmark met it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// What is checked.
    pub what: String,
    /// The measured value, formatted.
    pub measured: String,
    /// Met, not met, or not measured (`None`) in this run.
    pub met: Option<bool>,
}

/// Checks the issue's goals and the spec's PR-001…PR-004 against the rows. `ready` is every
/// (set-up, process, ms) start-to-ready time.
pub fn verdicts(rows: &[Row], ready: &[(String, String, f64)]) -> Vec<Verdict> {
    let mut out = Vec::new();
    let find = |setup: &str, workload: &str, clients: usize| {
        rows.iter()
            .find(|r| r.setup == setup && r.workload == workload && r.clients == clients)
    };
    let node_ready = ready
        .iter()
        .filter(|(_, p, _)| p.starts_with("node-"))
        .map(|(_, _, ms)| *ms)
        .fold(f64::NAN, f64::max);
    let v = |what: &str, measured: String, met: Option<bool>| Verdict {
        what: what.into(),
        measured,
        met,
    };
    out.push(v(
        "goal: node ready < 1 s",
        format!("slowest node {node_ready:.0} ms"),
        (!node_ready.is_nan()).then_some(node_ready < 1000.0),
    ));
    let raw = find("shared-2", "raw", 100);
    out.push(v(
        "goal: cross-node read-after-write p99 < 10 ms @100 clients (read on the other node, closed loop)",
        raw.and_then(|r| r.raw_read_p99_ms.map(|ms| (r, ms)))
            .map(|(r, ms)| {
                // Little's law: with closed-loop clients the mean latency is clients ÷ throughput,
                // so a p99 below the mean of the measured throughput is impossible.
                format!(
                    "raw_read p99 {ms:.2} ms (all ops p99 {:.2} ms; Little's law: {} clients at {:.0} ops/s ⇒ mean ≥ {:.1} ms)",
                    r.p99_ms,
                    r.clients,
                    r.ops_per_s,
                    r.clients as f64 / r.ops_per_s * 1000.0
                )
            })
            .unwrap_or_else(|| "not measured (needs shared-2, raw, 100)".into()),
        raw.and_then(|r| r.raw_read_p99_ms).map(|ms| ms < 10.0),
    ));
    let paced = find("shared-2", "raw-paced", 100);
    out.push(v(
        "  the same with paced clients (each pair followed by 500 ms think time)",
        paced
            .and_then(|r| r.raw_read_p99_ms.map(|ms| (r, ms)))
            .map(|(r, ms)| format!("raw_read p99 {ms:.2} ms at {:.0} ops/s", r.ops_per_s))
            .unwrap_or_else(|| "not measured (needs shared-2, raw-paced, 100)".into()),
        paced.and_then(|r| r.raw_read_p99_ms).map(|ms| ms < 10.0),
    ));
    let ratio = find("shared-2", "mixed", 100).and_then(|r| r.ops_ratio);
    out.push(v(
        "goal: 2 shared nodes ≥ 0.5× one surrealkv node (mixed 90/10 @100 clients)",
        ratio
            .map(|x| format!("{x:.2}×"))
            .unwrap_or_else(|| "not measured (needs shared-2, surrealkv-1, mixed, 100)".into()),
        ratio.map(|x| x >= 0.5),
    ));
    let peak_of = |anon: bool, pred: &dyn Fn(&str) -> bool| {
        rows.iter()
            .flat_map(|r| {
                if anon {
                    r.peak_anon.iter()
                } else {
                    r.peak_rss.iter()
                }
            })
            .filter(|(p, _)| pred(p))
            .map(|(_, mb)| *mb)
            .fold(f64::NAN, f64::max)
    };
    let node_rss = peak_of(false, &|p| p.starts_with("node-"));
    let node_anon = peak_of(true, &|p| p.starts_with("node-"));
    let storage_rss = peak_of(false, &|p| p == "storage");
    out.push(v(
        "goal: RSS < 100 MB per surreal node",
        format!(
            "peak {node_rss:.0} MB, of which ≤ {node_anon:.0} MB private (the rest is the binary's code, shared by the nodes)"
        ),
        (!node_rss.is_nan()).then_some(node_rss < 100.0),
    ));
    out.push(v(
        "goal: RSS < 150 MB for the storage node",
        format!("peak {storage_rss:.0} MB"),
        (!storage_rss.is_nan()).then_some(storage_rss < 150.0),
    ));
    // The spec's four requirements: judged by the same functions as notebook 04's SpecCheck,
    // from this run's medians, so a requirement never gets two verdicts.
    for r in spec_check(rows, ready).rows {
        out.push(v(
            &format!("spec {}: {}", r.id, r.requirement),
            format!("{} (limit {}): {}", r.measured, r.limit, r.why),
            r.met,
        ));
    }
    out
}

/// PR-001…PR-004 from the benchmark's rows, with the definitions notebook 04 uses
/// (`poc_helpers::experiments::workload::spec_check`): start-up of every node, the cross-node
/// reads of `raw-paced` on shared-2 at 100 clients, the `mixed` sweep of shared-2 against the
/// baseline's, and the peak memory of shared-2's processes.
pub fn spec_check(rows: &[Row], ready: &[(String, String, f64)]) -> SpecCheck {
    let find = |setup: &str, workload: &str, clients: usize| {
        rows.iter()
            .find(|r| r.setup == setup && r.workload == workload && r.clients == clients)
    };
    let node_ready: Vec<(String, f64)> = ready
        .iter()
        .filter(|(_, p, _)| p.starts_with("node-"))
        .map(|(s, p, ms)| (format!("{p} ({s})"), *ms))
        .collect();
    let reads = find("shared-2", "raw-paced", SPEC_CONCURRENCY).and_then(|r| {
        r.raw_read_p99_ms.map(|p99_ms| CrossNodeReads {
            p99_ms,
            how: format!(
                "the read half of raw-paced on shared-2: {} paced clients, each read on the \
                 other node than its write, median of the repetitions",
                r.clients
            ),
        })
    });
    let growth = |setup: &str| {
        let (one, many) = (
            find(setup, "mixed", 1)?,
            find(setup, "mixed", SPEC_CONCURRENCY)?,
        );
        Some(Growth {
            p50_at_1: one.p50_ms,
            p99_at_100: many.p99_ms,
            ops_per_s_at_100: many.ops_per_s,
            failed_at_100: many.errors.saturating_sub(many.conflicts),
            conflicts_at_100: many.conflicts,
        })
    };
    let shared: Vec<&Row> = rows.iter().filter(|r| r.setup == "shared-2").collect();
    let peaks: Vec<(String, f64)> = shared.iter().flat_map(|r| r.peak_rss.clone()).collect();
    let anon: Vec<(String, f64)> = shared.iter().flat_map(|r| r.peak_anon.clone()).collect();
    SpecCheck {
        rows: vec![
            spec_check::pr001(&node_ready),
            spec_check::pr002(reads),
            spec_check::pr003(growth("shared-2"), growth(BASELINE)),
            spec_check::pr004(&peaks, &anon, shared.len()),
        ],
    }
}

/// The process columns of the table, in a fixed order.
const RSS_COLUMNS: [&str; 3] = ["node-a", "node-b", "storage"];

/// The results table as text (one line per row).
pub fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<12} {:<9} {:>5} {:>8} {:>7} {:>7} {:>7} {:>7} {:>8} {:>5} {:>5} {:>5} {:>7} {:>5} {:>7} {:>5} {:>5}\n",
        "setup",
        "load",
        "conc",
        "ops/s",
        "p50ms",
        "p95ms",
        "p99ms",
        "maxms",
        "rawR99",
        "errs",
        "rssA",
        "rssB",
        "rssStor",
        "prvA",
        "readyms",
        "×ops",
        "×p99"
    );
    let opt = |x: Option<f64>, prec: usize| match x {
        Some(v) if v.is_finite() => format!("{v:.prec$}"),
        _ => "-".into(),
    };
    for r in rows {
        let rss = |p: &str| {
            opt(
                r.peak_rss.iter().find(|(q, _)| q == p).map(|(_, mb)| *mb),
                0,
            )
        };
        s.push_str(&format!(
            "{:<12} {:<9} {:>5} {:>8.0} {:>7.2} {:>7.2} {:>7.2} {:>7.1} {:>8} {:>5} {:>5} {:>5} {:>7} {:>5} {:>7.0} {:>5} {:>5}\n",
            r.setup,
            r.workload,
            r.clients,
            r.ops_per_s,
            r.p50_ms,
            r.p95_ms,
            r.p99_ms,
            r.max_ms,
            opt(r.raw_read_p99_ms, 2),
            r.errors + r.stale_reads,
            rss(RSS_COLUMNS[0]),
            rss(RSS_COLUMNS[1]),
            rss(RSS_COLUMNS[2]),
            opt(
                r.peak_anon
                    .iter()
                    .find(|(q, _)| q == "node-a")
                    .map(|(_, mb)| *mb),
                0
            ),
            r.ready_ms,
            opt(r.ops_ratio, 2),
            opt(r.p99_ratio, 2),
        ));
    }
    s
}

/// The rows as CSV (header + one line per row).
pub fn csv(rows: &[Row]) -> String {
    let mut s = String::from(
        "setup,workload,clients,ops_per_s,p50_ms,p95_ms,p99_ms,max_ms,raw_read_p99_ms,errors,stale_reads,rss_node_a_mb,rss_node_b_mb,rss_storage_mb,anon_node_a_mb,anon_node_b_mb,ready_ms,ops_ratio,p99_ratio\n",
    );
    let o = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_default();
    for r in rows {
        let rss = |p: &str| o(r.peak_rss.iter().find(|(q, _)| q == p).map(|(_, mb)| *mb));
        let anon = |p: &str| o(r.peak_anon.iter().find(|(q, _)| q == p).map(|(_, mb)| *mb));
        s.push_str(&format!(
            "{},{},{},{:.1},{:.3},{:.3},{:.3},{:.3},{},{},{},{},{},{},{},{},{:.0},{},{}\n",
            r.setup,
            r.workload,
            r.clients,
            r.ops_per_s,
            r.p50_ms,
            r.p95_ms,
            r.p99_ms,
            r.max_ms,
            o(r.raw_read_p99_ms),
            r.errors,
            r.stale_reads,
            rss("node-a"),
            rss("node-b"),
            rss("storage"),
            anon("node-a"),
            anon("node-b"),
            r.ready_ms,
            o(r.ops_ratio),
            o(r.p99_ratio)
        ));
    }
    s
}

/// Chart series of one workload: (set-up, [(clients, value)]).
type Series = Vec<(String, Vec<(f64, f64)>)>;

/// What a benchmark produced: the table's rows, the goals' verdicts and the files written.
pub type BenchOutcome = (Vec<Row>, Vec<Verdict>, Vec<PathBuf>);

/// Runs the benchmark; `progress` is told about every run (the CLI draws a bar with it).
pub fn run(
    opts: &BenchOptions,
    lab_root: &Path,
    progress: &dyn Fn(u64, u64, &str),
) -> Result<BenchOutcome, LabError> {
    let total = opts.runs();
    let mut done = 0;
    let mut rows = Vec::new();
    let mut every_run = String::from(
        "setup,workload,clients,rep,ops,ops_per_s,p50_ms,p95_ms,p99_ms,max_ms,errors,setup_ms\n",
    );
    let mut ready: Vec<(String, String, f64)> = Vec::new();
    let mut charts_out: Vec<Chart> = Vec::new();
    // Per workload: (setup, [(clients, ops/s)]) and (setup, [(clients, p99)]).
    let mut throughput: Vec<(String, Series)> = Vec::new();
    let mut p99s: Vec<(String, Series)> = Vec::new();
    for setup in SETUPS
        .iter()
        .filter(|s| opts.setups.iter().any(|n| n == s.name))
    {
        progress(done, total, &format!("{}: starting the lab", setup.name));
        let storage = if setup.shared {
            StorageMode::Shared
        } else {
            StorageMode::Isolated(Engine::SurrealKv)
        };
        let cluster = Cluster::builder()
            .name(&format!("bench-{}", setup.name))
            .lab_root(lab_root)
            .ephemeral_ports()
            .nodes(setup.nodes)
            .storage(storage)
            .stores(setup.stores)
            .echo(false)
            .start()?;
        let mut setup_ready = 0.0f64;
        for inst in cluster.instances()? {
            if let Some(ms) = inst.ready_ms {
                ready.push((setup.name.to_string(), inst.node.clone(), ms));
                if inst.node.starts_with("node-") {
                    setup_ready = setup_ready.max(ms);
                }
            }
        }
        for wname in &opts.workloads {
            let base = workload_plan(wname)?
                .records(opts.records)
                .sessions_per_node(opts.sessions)
                .duration(opts.duration)
                .warmup(opts.warmup);
            let mut tp = Vec::new();
            let mut p99 = Vec::new();
            for &clients in &opts.levels {
                let mut reps = Vec::with_capacity(opts.reps);
                for rep in 0..opts.reps {
                    progress(
                        done,
                        total,
                        &format!(
                            "{} · {wname} · {clients} clients · rep {}/{}",
                            setup.name,
                            rep + 1,
                            opts.reps
                        ),
                    );
                    let report = cluster.run_workload(base.clone().concurrency(clients))?;
                    let t = report.total();
                    every_run.push_str(&format!(
                        "{},{wname},{clients},{},{},{:.1},{:.3},{:.3},{:.3},{:.3},{},{:.0}\n",
                        setup.name,
                        rep + 1,
                        t.ops,
                        t.ops_per_s,
                        t.p50_ms,
                        t.p95_ms,
                        t.p99_ms,
                        t.max_ms,
                        t.errors,
                        report.setup_ms
                    ));
                    done += 1;
                    reps.push(report);
                }
                let row = aggregate(setup.name, wname, clients, setup_ready, &reps);
                tp.push((clients as f64, row.ops_per_s));
                p99.push((clients as f64, row.raw_read_p99_ms.unwrap_or(row.p99_ms)));
                // Pictures of the most telling runs: memory under the heaviest mixed load, and
                // the latency distribution of read-after-write across nodes at 100 clients.
                let last = reps.last().expect("at least one repetition");
                if setup.name == "shared-2"
                    && clients == *opts.levels.iter().max().unwrap()
                    && wname == "mixed"
                {
                    charts_out.push(last.rss_chart()?);
                }
                if setup.name == "shared-2"
                    && wname == "raw"
                    && (clients == 100 || opts.levels.len() == 1)
                {
                    charts_out.push(last.latency_chart()?);
                }
                rows.push(row);
            }
            push_series(&mut throughput, wname, setup.label, tp);
            push_series(&mut p99s, wname, setup.label, p99);
        }
        cluster.cleanup()?;
    }
    add_ratios(&mut rows);
    let verdicts = verdicts(&rows, &ready);
    for (wname, series) in &throughput {
        charts_out.push(charts::throughput_vs_concurrency(
            &format!("Throughput vs concurrency — {wname}"),
            series,
        )?);
    }
    for (wname, series) in &p99s {
        let what = if wname.starts_with("raw") {
            "read-back p99"
        } else {
            "p99"
        };
        charts_out.push(charts::percentiles_vs_concurrency(
            &format!("{what} vs concurrency — {wname}"),
            series,
            &[(charts::SPEC_LATENCY_LABEL.into(), charts::SPEC_LATENCY_MS)],
        )?);
    }
    let mut files = Vec::new();
    std::fs::create_dir_all(&opts.out).map_err(|e| io_error(&opts.out, e))?;
    for (name, text) in [("bench.csv", csv(&rows)), ("runs.csv", every_run)] {
        let path = opts.out.join(name);
        std::fs::write(&path, text).map_err(|e| io_error(&path, e))?;
        files.push(path);
    }
    let ready_csv: String = std::iter::once("setup,process,ready_ms\n".to_string())
        .chain(ready.iter().map(|(s, p, ms)| format!("{s},{p},{ms:.0}\n")))
        .collect();
    let path = opts.out.join("ready.csv");
    std::fs::write(&path, ready_csv).map_err(|e| io_error(&path, e))?;
    files.push(path);
    for chart in charts_out {
        let path = opts.out.join(format!("{}.svg", file_name(&chart.title)));
        chart.save(&path).map_err(|e| io_error(&path, e))?;
        files.push(path);
    }
    Ok((rows, verdicts, files))
}

fn push_series(
    all: &mut Vec<(String, Series)>,
    workload: &str,
    setup: &str,
    points: Vec<(f64, f64)>,
) {
    match all.iter_mut().find(|(w, _)| w == workload) {
        Some((_, series)) => series.push((setup.to_string(), points)),
        None => all.push((workload.to_string(), vec![(setup.to_string(), points)])),
    }
}

/// A chart title as a file name: lowercase words joined by `-`.
fn file_name(title: &str) -> String {
    title
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join("-")
}

fn io_error(path: &Path, e: std::io::Error) -> LabError {
    LabError::Io {
        action: "writing".into(),
        path: path.display().to_string(),
        message: e.to_string(),
        fix: "check that the output directory (--out) is writable".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(setup: &str, workload: &str, clients: usize, ops: f64, p99: f64) -> Row {
        Row {
            setup: setup.into(),
            workload: workload.into(),
            clients,
            ops_per_s: ops,
            p50_ms: p99 / 4.0,
            p95_ms: p99 / 2.0,
            p99_ms: p99,
            max_ms: p99 * 2.0,
            raw_read_p99_ms: (workload == "raw").then_some(p99 / 2.0),
            errors: 0,
            conflicts: 0,
            stale_reads: 0,
            peak_rss: vec![("node-a".into(), 80.0), ("storage".into(), 60.0)],
            peak_anon: vec![("node-a".into(), 30.0)],
            ready_ms: 700.0,
            ops_ratio: None,
            p99_ratio: None,
        }
    }

    #[test]
    fn workload_names_include_other_read_shares() {
        let kind = |n: &str| workload_plan(n).map(|w| w.kind);
        assert_eq!(kind("mixed").unwrap(), WorkloadPlan::mixed(90).kind);
        assert_eq!(kind("mixed80").unwrap(), WorkloadPlan::mixed(80).kind);
        assert!(kind("mixed101").is_err());
        assert!(kind("mixedx").is_err());
        assert!(kind("nope").unwrap_err().to_string().contains("mixed80"));
    }

    #[test]
    fn medians_ignore_one_outlier() {
        assert_eq!(median(&[3.0, 100.0, 4.0]), 4.0);
        assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[f64::NAN, 2.0]), 2.0);
    }

    #[test]
    fn ratios_compare_with_the_baseline_at_the_same_point() {
        let mut rows = vec![
            row("shared-2", "mixed", 100, 3000.0, 8.0),
            row("surrealkv-1", "mixed", 100, 4000.0, 4.0),
            row("shared-2", "mixed", 10, 1000.0, 2.0),
        ];
        add_ratios(&mut rows);
        assert_eq!(rows[0].ops_ratio, Some(0.75));
        assert_eq!(rows[0].p99_ratio, Some(2.0));
        assert_eq!(rows[1].ops_ratio, Some(1.0));
        assert_eq!(rows[2].ops_ratio, None, "no baseline at 10 clients");
    }

    #[test]
    fn goals_are_marked_met_or_not() {
        let mut rows = vec![
            row("shared-2", "mixed", 100, 3000.0, 8.0),
            row("surrealkv-1", "mixed", 100, 4000.0, 4.0),
            row("shared-2", "raw", 100, 2000.0, 30.0),
        ];
        add_ratios(&mut rows);
        let ready = vec![("shared-2".to_string(), "node-a".to_string(), 1200.0)];
        let v = verdicts(&rows, &ready);
        let get = |needle: &str| v.iter().find(|x| x.what.contains(needle)).unwrap().clone();
        assert_eq!(get("ready < 1 s").met, Some(false));
        assert_eq!(
            get("read-after-write").met,
            Some(false),
            "raw_read p99 is 15 ms"
        );
        assert_eq!(get("0.5×").met, Some(true));
        assert_eq!(get("100 MB per surreal node").met, Some(true));
        assert_eq!(get("PR-001").met, Some(true));
        // No raw-paced row and no 1-client rows: PR-002 and PR-003 are not measured, not met.
        assert_eq!(get("PR-002").met, None);
        assert_eq!(get("PR-003").met, None);
        assert_eq!(get("PR-004").met, Some(true));
        // The table and the CSV carry every row.
        assert_eq!(table(&rows).lines().count(), 4);
        assert_eq!(csv(&rows).lines().count(), 4);
        assert!(
            csv(&rows)
                .lines()
                .nth(1)
                .unwrap()
                .starts_with("shared-2,mixed,100,3000.0")
        );
    }

    #[test]
    fn pr003_is_judged_against_the_baseline_as_in_notebook_04() {
        // One surrealkv node: p50 0.25 ms at 1 client, p99 20 ms at 100 (80×); shared-2 may
        // reach 2 × 80 = 160 × its own 1-client p50 of 0.5 ms, 80 ms.
        let rows = |shared_p99_at_100: f64| {
            vec![
                row("shared-2", "mixed", 1, 400.0, 2.0),
                row("shared-2", "mixed", 100, 2000.0, shared_p99_at_100),
                row("surrealkv-1", "mixed", 1, 900.0, 1.0),
                row("surrealkv-1", "mixed", 100, 5000.0, 20.0),
            ]
        };
        let pr003 = |rows: &[Row]| spec_check(rows, &[]).row("PR-003").cloned().unwrap();
        assert_eq!(pr003(&rows(60.0)).met, Some(true));
        assert_eq!(pr003(&rows(90.0)).met, Some(false));
        let mut failed = rows(60.0);
        failed[1].errors = 3;
        failed[1].conflicts = 1;
        let r = pr003(&failed);
        assert_eq!(
            r.met,
            Some(false),
            "2 operations failed beyond the conflict"
        );
        assert!(r.why.contains("2 operation(s) failed"), "{}", r.why);
    }

    #[test]
    fn chart_titles_make_file_names() {
        assert_eq!(
            file_name("Throughput vs concurrency — mixed"),
            "throughput-vs-concurrency-mixed"
        );
    }
}
