//! `lab bench --storage-only` against real processes: the disk's fdatasync, the storage node's
//! service times and three statements on two set-ups, printed with ratios to their baselines.
//! A few samples only: this checks that the measurement runs and reports, not how fast it is.

use std::process::Command;

#[test]
fn the_storage_part_of_the_benchmark_reports_every_baseline_and_ratio() {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["bench", "--storage-only", "--samples", "3", "--out"])
        .arg(out.path())
        .env_remove("LAB_BASE_PORT")
        .output()
        .expect("run lab bench");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    for expected in [
        "fdatasync (4 KiB in place)",
        "fdatasync (4 KiB appended)",
        "fdatasync (7 pages in place)",
        "KvPrewrite",
        "KvGet",
        "PdTso",
        "× fdatasync",
        "RETURN 1",
        "SELECT * FROM probe:1",
        "UPDATE probe:1 SET n += 1",
        "shared÷skv",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    let csv = std::fs::read_to_string(out.path().join("storage.csv")).unwrap();
    assert!(
        csv.contains("statement,\"UPDATE probe:1 SET n += 1\",surrealkv-1"),
        "{csv}"
    );
    // The labs it started are gone.
    let labs = out.path().join("labs");
    let left: Vec<_> = std::fs::read_dir(&labs)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "labs left behind: {left:?}");
}

/// `lab bench --compare-server`, with the lab's own server on both sides (the real use compares
/// a jemalloc build or the official binary; any `surreal` 3.x exercises the same path): every
/// measure is printed with its ratio, no run had errors, and no lab is left running.
#[test]
fn comparing_two_servers_prints_every_measure_as_a_ratio_and_leaves_nothing_running() {
    let out = tempfile::tempdir().unwrap();
    let same = poc_helpers::infra::binary::locate_surreal(None).expect("the lab's surreal");
    let o = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["bench", "--compare-server"])
        .arg(&same.path)
        .args(["--reps", "1", "--duration", "0.5", "--warmup", "0.2"])
        .args(["--concurrency", "4", "--records", "100", "--out"])
        .arg(out.path())
        .env_remove("LAB_BASE_PORT")
        .output()
        .expect("run lab bench --compare-server");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    for expected in [
        "rep 1/1 · lab server",
        "rep 1/1 · other server",
        "other ÷ lab",
        "idle RSS MB/node",
        "idle private MB/node",
        "ops/s",
        "p99 ms",
        "peak RSS MB/node",
        "peak private MB/node",
        "private MB/node 5 s after",
        "private MB/node 20 s after",
        "errors in all runs: 0",
        "every run, in order:",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    // Every measure has a number for both binaries (no NaN from an empty sample).
    assert!(!text.contains("NaN"), "{text}");
    let labs = out.path().join("labs");
    let left: Vec<_> = std::fs::read_dir(&labs)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "labs left behind: {left:?}");
}

#[test]
fn comparing_with_a_server_that_is_not_there_names_the_fix() {
    let o = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["bench", "--compare-server", "/nonexistent/surreal"])
        .output()
        .expect("run lab bench --compare-server");
    let text = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{text}");
    for expected in [
        "/nonexistent/surreal",
        "set by --compare-server",
        "scripts/measure-allocators.sh",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
}
