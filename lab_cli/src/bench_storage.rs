//! `lab bench`'s first part: where a single statement's time goes, measured in one invocation
//! against two baselines, so the storage node's own share is always visible.
//!
//! ```text
//! fdatasync of the data disk   the floor any durable commit pays (4 KiB + fdatasync, in place
//!                              and appended)
//! storage node service times   KvGet, one-phase KvPrewrite, PdTso (from the storage trace)
//! client round trips           RETURN 1, a single-record SELECT and UPDATE, 1 client, in turn,
//!                              on 1 node over the storage node and on 1 node on SurrealKV
//! ```
//!
//! Every statement runs through `Cluster::sql_waterfall`, so each round trip comes with the
//! storage RPCs it caused; the table prints p50s and ratios (prewrite ÷ fdatasync, shared ÷
//! SurrealKV), never absolute pass/fail thresholds.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use poc_helpers::experiments::waterfall::Waterfall;
use poc_helpers::facade::Cluster;
use poc_helpers::vocab::config::{Engine, StorageMode};
use poc_helpers::vocab::error::LabError;

use crate::bench::median;

/// The statements timed at one client, on both set-ups.
pub const STATEMENTS: [&str; 3] = [
    "RETURN 1",
    "SELECT * FROM probe:1",
    "UPDATE probe:1 SET n += 1",
];

/// One statement on one set-up: p50 of the round trip and of its storage share.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementTiming {
    /// `shared-1` or `surrealkv-1`.
    pub setup: String,
    /// The statement.
    pub statement: String,
    /// p50 of the client round trip, ms.
    pub p50_ms: f64,
    /// Storage RPCs per run (the median count).
    pub rpcs: f64,
    /// p50 of the storage node's service time per run, ms.
    pub storage_p50_ms: f64,
}

/// Everything the storage part of the benchmark measured.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageBench {
    /// Runs per statement and set-up.
    pub samples: usize,
    /// p50 of append 4 KiB + fdatasync on the lab's disk, µs.
    pub append_sync_p50_us: f64,
    /// p50 of overwrite 4 KiB in place + fdatasync on the lab's disk, µs: the baseline.
    pub fdatasync_p50_us: f64,
    /// p50 of 7 scattered 4 KiB pages in place + one fdatasync, µs: a redb commit's floor.
    pub commit_floor_p50_us: f64,
    /// The same, each sample after the disk sat idle for [`IDLE_BEFORE_SYNC`], µs. On some
    /// virtual disks the first fdatasync after a pause costs several times one that follows
    /// another at once, and the bench's statements arrive one after another with such pauses:
    /// this floor is measured the way the storage node's writes meet the disk.
    pub commit_floor_idle_p50_us: f64,
    /// p50 service times inside the storage node, µs, by RPC (`KvGet`, `KvPrewrite`, `PdTso`).
    pub service_p50_us: Vec<(String, f64)>,
    /// p50 of each Raft step of a write (queue + execute, log append + fsync, quorum, apply),
    /// µs: where a write's service time goes.
    pub raft_p50_us: Vec<(String, f64)>,
    /// The statements' round trips.
    pub statements: Vec<StatementTiming>,
}

/// How a probe writes its 4 KiB block before each `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncProbe {
    /// At the end of the file: the size changes, so the file system also syncs metadata.
    Append,
    /// In place, in a ring over a preallocated 1 MiB file: what a B-tree store mostly does.
    Overwrite,
    /// Seven blocks in place at scattered offsets, then one fdatasync: the shape of one redb
    /// commit of a tiny transaction (its header and six copy-on-write B-tree pages, as `strace`
    /// of the storage node shows), so the one-phase prewrite has a like-for-like floor.
    Scattered,
}

/// The pause before each sample of the idle commit floor: about what separates two of the
/// bench's statements (a client round trip, then the trace read back).
pub const IDLE_BEFORE_SYNC: std::time::Duration = std::time::Duration::from_millis(20);

/// p50 of `write 4 KiB + fdatasync` on a file in `dir`, µs: the disk's durable-write floor.
/// With `idle`, each sample waits that long first (untimed).
pub fn fdatasync_p50_us(
    dir: &Path,
    samples: usize,
    probe: SyncProbe,
    idle: Option<std::time::Duration>,
) -> std::io::Result<f64> {
    use std::io::{Seek, SeekFrom};
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fdatasync-probe.bin");
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)?;
    const RING: u64 = 256; // 256 × 4 KiB = 1 MiB
    let block = [7u8; 4096];
    if probe != SyncProbe::Append {
        f.write_all(&vec![0u8; (RING * 4096) as usize])?;
        f.sync_all()?;
    }
    let mut us = Vec::with_capacity(samples);
    for k in 0..samples as u64 {
        if let Some(idle) = idle {
            std::thread::sleep(idle);
        }
        let t = Instant::now();
        match probe {
            SyncProbe::Append => {
                f.seek(SeekFrom::End(0))?;
                f.write_all(&block)?;
            }
            SyncProbe::Overwrite => {
                f.seek(SeekFrom::Start((k % RING) * 4096))?;
                f.write_all(&block)?;
            }
            SyncProbe::Scattered => {
                for page in [0, 4, 16, 6, 10, 7, 11] {
                    f.seek(SeekFrom::Start(((k * 13 + page) % RING) * 4096))?;
                    f.write_all(&block)?;
                }
            }
        }
        f.sync_data()?;
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(median(&us))
}

/// Runs the storage part: the fdatasync floor, then [`STATEMENTS`] `samples` times each on a
/// 1-node lab over the storage node (traced) and on a 1-node SurrealKV lab.
pub fn run(lab_root: &Path, samples: usize) -> Result<StorageBench, LabError> {
    let samples = samples.max(1);
    let sync = |probe, idle| {
        fdatasync_p50_us(lab_root, samples.max(50), probe, idle).map_err(|e| LabError::Io {
            action: "measuring fdatasync in".into(),
            path: lab_root.display().to_string(),
            message: e.to_string(),
            fix: "check that the lab root is writable (--out)".into(),
        })
    };
    let append_sync_p50_us = sync(SyncProbe::Append, None)?;
    let fdatasync_p50_us = sync(SyncProbe::Overwrite, None)?;
    let commit_floor_p50_us = sync(SyncProbe::Scattered, None)?;
    let commit_floor_idle_p50_us = sync(SyncProbe::Scattered, Some(IDLE_BEFORE_SYNC))?;
    let mut statements = Vec::new();
    let mut service: Vec<(String, Vec<f64>)> = Vec::new();
    let mut raft: Vec<(String, Vec<f64>)> = Vec::new();
    for (setup, storage) in [
        ("shared-1", StorageMode::Shared),
        ("surrealkv-1", StorageMode::Isolated(Engine::SurrealKv)),
    ] {
        let cluster = Cluster::builder()
            .name(&format!("bench-storage-{setup}"))
            .lab_root(lab_root)
            .ephemeral_ports()
            .nodes(1)
            .storage(storage)
            .storage_trace(setup == "shared-1")
            .echo(false)
            .start()?;
        cluster.sql("a", "UPSERT probe:1 SET n = 0")?;
        for statement in STATEMENTS {
            // One unmeasured run warms the connection and the statement's path.
            cluster.sql_waterfall("a", statement)?;
            let runs: Vec<Waterfall> = (0..samples)
                .map(|_| cluster.sql_waterfall("a", statement))
                .collect::<Result<_, _>>()?;
            for w in &runs {
                for s in &w.steps {
                    match service.iter_mut().find(|(rpc, _)| *rpc == s.rpc) {
                        Some((_, v)) => v.push(s.ms * 1000.0),
                        None => service.push((s.rpc.clone(), vec![s.ms * 1000.0])),
                    }
                }
                for (step, ms) in w.raft_breakdown() {
                    match raft.iter_mut().find(|(name, _)| *name == step) {
                        Some((_, v)) => v.push(ms * 1000.0),
                        None => raft.push((step, vec![ms * 1000.0])),
                    }
                }
            }
            let col =
                |f: &dyn Fn(&Waterfall) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
            statements.push(StatementTiming {
                setup: setup.to_string(),
                statement: statement.to_string(),
                p50_ms: col(&|w| w.client_ms),
                rpcs: col(&|w| w.steps.len() as f64),
                storage_p50_ms: col(&|w| w.storage_ms()),
            });
        }
        cluster.cleanup()?;
    }
    Ok(StorageBench {
        samples,
        append_sync_p50_us,
        fdatasync_p50_us,
        commit_floor_p50_us,
        commit_floor_idle_p50_us,
        service_p50_us: service
            .into_iter()
            .map(|(rpc, v)| (rpc, median(&v)))
            .collect(),
        raft_p50_us: raft
            .into_iter()
            .map(|(step, v)| (step, median(&v)))
            .collect(),
        statements,
    })
}

/// The two tables `lab bench` prints: service times against the fdatasync floor, and each
/// statement on shared storage against the same statement on SurrealKV.
pub fn table(b: &StorageBench) -> String {
    let mut s = format!(
        "where a statement's time goes ({} run(s) per statement, 1 client, p50s)\n",
        b.samples
    );
    s.push_str(&format!(
        "  {:<28} {:>9.0} µs   1.00× (the disk's durable-write floor)\n",
        "fdatasync (4 KiB in place)", b.fdatasync_p50_us
    ));
    s.push_str(&format!(
        "  {:<28} {:>9.0} µs   {:.2}× fdatasync (the size changes: metadata is synced too)\n",
        "fdatasync (4 KiB appended)",
        b.append_sync_p50_us,
        b.append_sync_p50_us / b.fdatasync_p50_us.max(1e-9)
    ));
    s.push_str(&format!(
        "  {:<28} {:>9.0} µs   {:.2}× fdatasync (7 pages + 1 fdatasync: one small redb commit)\n",
        "fdatasync (7 pages in place)",
        b.commit_floor_p50_us,
        b.commit_floor_p50_us / b.fdatasync_p50_us.max(1e-9)
    ));
    s.push_str(&format!(
        "  {:<28} {:>9.0} µs   {:.2}× the commit floor (the same, each after {} ms idle, as the statements meet the disk)\n",
        "fdatasync (7 pages, idle)",
        b.commit_floor_idle_p50_us,
        b.commit_floor_idle_p50_us / b.commit_floor_p50_us.max(1e-9),
        IDLE_BEFORE_SYNC.as_millis()
    ));
    let mut service = b.service_p50_us.clone();
    service.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (rpc, us) in &service {
        s.push_str(&format!(
            "  {:<28} {:>9.0} µs   {:.2}× fdatasync, {:.2}× the commit floor, {:.2}× the idle one (service time)\n",
            rpc,
            us,
            us / b.fdatasync_p50_us.max(1e-9),
            us / b.commit_floor_p50_us.max(1e-9),
            us / b.commit_floor_idle_p50_us.max(1e-9)
        ));
    }
    if !b.raft_p50_us.is_empty() {
        s.push_str("  a write's Raft steps (p50 of each):\n");
        for (step, us) in &b.raft_p50_us {
            s.push_str(&format!(
                "    {:<34} {:>7.0} µs   {:.2}× the commit floor\n",
                step,
                us,
                us / b.commit_floor_p50_us.max(1e-9)
            ));
        }
    }
    s.push_str(&format!(
        "\n  {:<28} {:>10} {:>6} {:>12} {:>9} {:>12} {:>9}\n",
        "statement", "shared ms", "RPCs", "storage ms", "storage%", "surrealkv ms", "shared÷skv"
    ));
    for t in b.statements.iter().filter(|t| t.setup == "shared-1") {
        let local = b
            .statements
            .iter()
            .find(|l| l.setup == "surrealkv-1" && l.statement == t.statement);
        let local_ms = local.map(|l| l.p50_ms).unwrap_or(f64::NAN);
        s.push_str(&format!(
            "  {:<28} {:>10.2} {:>6.0} {:>12.3} {:>8.0}% {:>12.2} {:>8.2}×\n",
            t.statement,
            t.p50_ms,
            t.rpcs,
            t.storage_p50_ms,
            t.storage_p50_ms / t.p50_ms.max(1e-9) * 100.0,
            local_ms,
            t.p50_ms / local_ms
        ));
    }
    s
}

/// `storage.csv`: one row per (setup, statement), then the service times.
pub fn csv(b: &StorageBench) -> String {
    let mut s = String::from("kind,name,setup,p50,unit,rpcs,storage_p50_ms\n");
    for (name, us) in [
        ("fdatasync-in-place", b.fdatasync_p50_us),
        ("fdatasync-append", b.append_sync_p50_us),
        ("commit-floor-7-pages", b.commit_floor_p50_us),
        ("commit-floor-7-pages-idle", b.commit_floor_idle_p50_us),
    ] {
        s.push_str(&format!("disk,{name},,{us:.1},us,,\n"));
    }
    for (rpc, us) in &b.service_p50_us {
        s.push_str(&format!("service,{rpc},shared-1,{us:.1},us,,\n"));
    }
    for t in &b.statements {
        s.push_str(&format!(
            "statement,\"{}\",{},{:.3},ms,{:.0},{:.3}\n",
            t.statement, t.setup, t.p50_ms, t.rpcs, t.storage_p50_ms
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StorageBench {
        let t = |setup: &str, statement: &str, ms: f64, rpcs: f64, st: f64| StatementTiming {
            setup: setup.into(),
            statement: statement.into(),
            p50_ms: ms,
            rpcs,
            storage_p50_ms: st,
        };
        StorageBench {
            samples: 5,
            append_sync_p50_us: 300.0,
            fdatasync_p50_us: 200.0,
            commit_floor_p50_us: 400.0,
            commit_floor_idle_p50_us: 800.0,
            service_p50_us: vec![("KvGet".into(), 10.0), ("KvPrewrite".into(), 400.0)],
            raft_p50_us: vec![("log append + fsync".into(), 150.0)],
            statements: vec![
                t("shared-1", "SELECT * FROM probe:1", 2.0, 5.0, 0.05),
                t("surrealkv-1", "SELECT * FROM probe:1", 0.5, 0.0, 0.0),
            ],
        }
    }

    #[test]
    fn the_table_prints_ratios_against_the_baselines() {
        let text = table(&sample());
        assert!(
            text.contains("KvPrewrite") && text.contains("2.00× fdatasync"),
            "{text}"
        );
        assert!(text.contains("0.05× fdatasync"), "{text}");
        assert!(text.contains("1.50× fdatasync (the size changes"), "{text}");
        assert!(
            text.contains("2.00× fdatasync, 1.00× the commit floor"),
            "{text}"
        );
        // shared 2.0 ms ÷ SurrealKV 0.5 ms; storage 0.05 of 2.0 ms.
        assert!(text.contains("4.00×") && text.contains("2%"), "{text}");
        assert!(
            text.contains("log append + fsync") && text.contains("0.38× the commit floor"),
            "a write's Raft steps, against the floor: {text}"
        );
        // Slowest service first.
        assert!(text.find("KvPrewrite") < text.find("KvGet"), "{text}");
    }

    #[test]
    fn fdatasync_is_measured_on_the_given_disk() {
        let dir = tempfile::tempdir().unwrap();
        for probe in [
            SyncProbe::Append,
            SyncProbe::Overwrite,
            SyncProbe::Scattered,
        ] {
            assert!(fdatasync_p50_us(dir.path(), 5, probe, None).unwrap() > 0.0);
        }
        assert!(
            !dir.path().join("fdatasync-probe.bin").exists(),
            "the probe file is removed"
        );
    }
}
