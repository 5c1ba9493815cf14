//! The load generator against real processes: two `surreal` nodes over the embedded storage
//! node, on ephemeral ports. Runs are short (a few hundred operations) and nothing here asserts
//! on speed — only that the reports are complete and consistent, and that read-after-write
//! across nodes sees every write.

mod common;

use std::time::Duration;

use poc_helpers::prelude::*;

/// A small, quick spec: no warm-up, few records, stop after `ops` operations.
fn quick(spec: WorkloadPlan, ops: u64) -> WorkloadPlan {
    spec.records(200)
        .warmup(Duration::ZERO)
        .duration(Duration::from_secs(20))
        .max_ops(ops)
        .sample_every(Duration::from_millis(50))
}

#[test]
fn workloads_on_two_shared_nodes_produce_sane_reports() {
    let (_root, builder) = common::shared_lab("load");
    let cluster = builder.echo(false).start().expect("lab starts");

    // Read-after-write across nodes: every read must see the value written just before.
    let raw = cluster
        .run_workload(
            quick(WorkloadPlan::read_after_write().concurrency(8), 300).keep_samples(true),
        )
        .expect("read-after-write runs");
    let check = raw.raw.expect("read-after-write reports its check");
    assert!(check.cross_node, "two nodes: reads go to the other node");
    assert!(check.pairs > 0, "{raw}");
    assert_eq!(check.missed, 0, "a read missed its write: {raw}");
    assert_eq!(check.seen, check.pairs);
    let total = raw.total();
    assert!(total.ops >= 300 && total.ops_per_s > 0.0, "{raw}");
    assert_eq!(total.errors, 0, "{:?}", raw.error_examples);
    assert!(total.p50_ms <= total.p95_ms && total.p95_ms <= total.p99_ms);
    assert!(total.p99_ms <= total.max_ms);
    // Rows per node: both nodes wrote and both read (round-robin writer, the other node reads).
    for node in ["node-a", "node-b"] {
        for op in ["raw_write", "raw_read"] {
            let row = raw
                .row(node, op)
                .unwrap_or_else(|| panic!("no {node}/{op} row"));
            assert!(row.ops > 0, "{node}/{op}");
        }
    }
    // Samples were kept, one per operation, and the frames have their columns.
    assert_eq!(raw.samples.len() as u64, total.ops);
    assert_eq!(raw.samples_frame().unwrap().height() as u64, total.ops);
    let summary = raw.summary_frame().unwrap();
    for col in [
        "node",
        "op",
        "ops",
        "ops_per_s",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "errors",
    ] {
        assert!(summary.column(col).is_ok(), "summary lacks {col}");
    }
    assert_eq!(summary.height(), raw.rows.len());

    // The sampler saw every lab process (both nodes, the storage node) and the client.
    let processes: Vec<String> = raw.peak_rss().into_iter().map(|(p, _)| p).collect();
    for p in ["node-a", "node-b", "storage", "client"] {
        assert!(
            processes.contains(&p.to_string()),
            "no samples for {p}: {processes:?}"
        );
    }
    assert!(raw.peak_rss().iter().all(|(_, mb)| *mb > 1.0));

    // Charts render with their titles.
    let chart = raw.latency_chart().expect("latency chart");
    assert!(chart.svg.contains("read-after-write") && chart.svg.contains("raw_read"));
    let chart = raw.rss_chart().expect("rss chart");
    assert!(chart.svg.contains("spec PR-004: 200 MB") && chart.svg.contains("storage"));

    // A mixed workload pinned to node-b only touches node-b; errors (if any) are classified.
    let mixed = cluster
        .run_workload(quick(
            WorkloadPlan::mixed(80)
                .concurrency(4)
                .nodes(NodePolicy::Pinned(1)),
            200,
        ))
        .expect("mixed runs");
    assert!(
        mixed.row("node-b", "read").is_some_and(|r| r.ops > 0),
        "{mixed}"
    );
    assert!(mixed.row("node-a", "read").is_none() && mixed.row("node-a", "write").is_none());
    let t = mixed.total();
    assert_eq!(t.errors, t.conflicts + t.timeouts + t.connection + t.other);
    assert!(mixed.raw.is_none());

    // A small sweep reuses the pools and the prepared records.
    let sweep = cluster
        .run_sweep(
            quick(WorkloadPlan::read_only().nodes(NodePolicy::Random), 100),
            &[1, 4],
        )
        .expect("sweep runs");
    assert_eq!(sweep.runs.len(), 2);
    assert!(
        sweep
            .runs
            .iter()
            .all(|r| r.total().ops >= 100 && r.total().errors == 0)
    );
    let df = sweep.summary_frame().unwrap();
    assert_eq!(df.height(), 2);
    assert!(df.column("rss_storage_mb").is_ok());
    assert!(df.column("conflicts").is_ok() && df.column("failed").is_ok());
    assert!(sweep.percentiles_chart().unwrap().svg.contains("p99"));
    assert!(
        sweep
            .throughput_chart()
            .unwrap()
            .svg
            .contains("throughput (operations/s)")
    );

    // Scale-out: the same load on the first node alone, then on both. Only the serving nodes
    // take operations; every process's CPU share is in the table.
    let scale = cluster
        .run_scale_out(quick(WorkloadPlan::read_only(), 100), &[1, 2])
        .expect("scale-out runs");
    assert_eq!(scale.runs[0].nodes, ["node-a"]);
    assert!(
        scale.runs[0].row("node-b", "read").is_none(),
        "node-b served a 1-node run"
    );
    for node in ["node-a", "node-b"] {
        assert!(
            scale.runs[1].row(node, "read").is_some_and(|r| r.ops > 0),
            "{node} idle"
        );
    }
    let df = scale.frame().unwrap();
    assert!(df.column("cpu_storage_pct").is_ok() && df.column("cpu_client_pct").is_ok());
    assert!(
        scale.explain().contains("query node(s)"),
        "{}",
        scale.explain()
    );
    let refused = cluster.run_scale_out(quick(WorkloadPlan::read_only(), 10), &[3]);
    assert!(refused.unwrap_err().to_string().contains("add_node"));

    // Sampling on demand, outside a workload.
    let idle = cluster
        .sample_resources(Duration::from_millis(150), Duration::from_millis(50))
        .expect("sampling");
    let names = idle.column("process").unwrap().str().unwrap();
    for p in ["node-a", "node-b", "storage"] {
        assert!(names.iter().any(|n| n == Some(p)), "no idle sample for {p}");
    }
    cluster.cleanup().expect("cleanup");
}

#[test]
fn bad_workload_settings_are_refused_before_anything_runs() {
    let (_root, builder) = common::lab("load-bad");
    let cluster = builder.nodes(1).echo(false).start().expect("lab starts");
    let e = cluster
        .run_workload(WorkloadPlan::read_only().nodes(NodePolicy::Pinned(3)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("pin a node between 0 and 0"), "{e}");
    cluster.stop_node("a").unwrap();
    let e = cluster
        .run_workload(WorkloadPlan::read_only())
        .unwrap_err()
        .to_string();
    assert!(e.contains("node-a"), "{e}");
    cluster.cleanup().unwrap();
}
