//! Profiling helper: runs one workload on a fresh lab and prints where the time goes — the
//! report, the mean CPU of every process, and the storage RPCs one read and one write cause.
//!
//! ```text
//! cargo run --release -p poc_helpers --example profile_load -- [shared|surrealkv] [nodes] [mixed|raw|read|write] [clients] [secs] [sessions]
//! ```
use std::time::Duration;

use poc_helpers::prelude::*;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let storage = match arg(0, "shared").as_str() {
        "surrealkv" => StorageMode::Isolated(Engine::SurrealKv),
        "memory" => StorageMode::Isolated(Engine::Memory),
        _ => StorageMode::Shared,
    };
    let nodes: usize = arg(1, "2").parse().unwrap();
    let kind = match arg(2, "mixed").as_str() {
        "raw" => WorkloadPlan::read_after_write(),
        "read" => WorkloadPlan::read_only(),
        "write" => WorkloadPlan::write_only(),
        _ => WorkloadPlan::mixed(90),
    };
    let clients: usize = arg(3, "10").parse().unwrap();
    let secs: f64 = arg(4, "3").parse().unwrap();
    let sessions: usize = arg(5, "0").parse().unwrap();
    let trace = storage == StorageMode::Shared;
    let root = tempfile_dir();
    let cluster = Cluster::builder()
        .name("profile")
        .lab_root(&root)
        .ephemeral_ports()
        .nodes(nodes)
        .storage(storage)
        .storage_trace(trace)
        .echo(false)
        .start()
        .expect("lab starts");
    println!("{}", cluster.status().unwrap());
    let spec = kind
        .concurrency(clients)
        .records(2000)
        .sessions_per_node(sessions)
        .duration(Duration::from_secs_f64(secs));
    let mark = if trace {
        cluster.storage_trace_mark().unwrap()
    } else {
        0
    };
    let report = cluster.run_workload(spec).expect("workload");
    if trace {
        // Storage RPCs during the run, by type: count, mean and total service time, the
        // longest, and the top key ranges of the slowest type.
        let path = cluster.lab_dir().join("storage-trace.jsonl");
        let rows = poc_helpers::infra::trace::read_since(&path, mark).unwrap_or_default();
        let mut by: std::collections::BTreeMap<String, (u64, u64, u64)> = Default::default();
        for r in &rows {
            let e = by.entry(r.rpc.clone()).or_default();
            e.0 += 1;
            e.1 += r.us;
            e.2 = e.2.max(r.us);
        }
        for (rpc, (n, total, max)) in &by {
            println!(
                "  rpc {rpc:<20} n={n:>7} mean={:>6} us total={:>8} ms max={max} us",
                total / n,
                total / 1000
            );
        }
        let mut slow: Vec<_> = rows
            .iter()
            .filter(|r| r.us > 2000 && r.rpc != "KvPrewrite" && r.rpc != "KvCommit")
            .collect();
        slow.sort_by_key(|r| std::cmp::Reverse(r.us));
        for r in slow.iter().take(5) {
            println!(
                "  slow {} {} us keys={:?} err={:?}",
                r.rpc, r.us, r.keys, r.error
            );
        }
    }
    println!("{report}");
    println!("{}", report.summary_frame().expect("summary table"));
    for (p, cpu) in poc_helpers::infra::sampler::mean_cpu(&report.resources) {
        println!("  cpu {p:<8} {cpu:6.1} %");
    }
    for (p, mb) in report.peak_rss() {
        println!("  rss {p:<8} {mb:6.1} MB");
    }
    for (class, msg) in &report.error_examples {
        println!("  error {class:?}: {msg}");
    }
    if trace {
        for q in [
            "SELECT * FROM ONLY bench:7",
            "UPSERT bench:7 SET v = 'x', n = 1 RETURN NONE",
            "SELECT * FROM ONLY bench:8",
        ] {
            let (r, df) = cluster.sql_traced("a", q).unwrap();
            println!("{q}: {:.2} ms", r.ms);
            println!("{df}");
        }
    }
    cluster.cleanup().unwrap();
    let _ = std::fs::remove_dir_all(&root);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("profile-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
