//! `lab bench` against real processes: `--storage-only` (the disk's fdatasync, the storage node's
//! service times and three statements on two set-ups) and `--compare-server` (two `surreal`
//! binaries side by side), each printed with ratios to its baseline. A few samples only: this
//! checks that the measurements run and report, not how fast anything is.

use std::process::Command;

/// Runs `lab` with `args` (and no fixed base port), returning its exit status and all it printed.
fn lab(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(args)
        .env_remove("LAB_BASE_PORT")
        .output()
        .expect("run lab");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// The labs a benchmark left under `<out>/labs` (it must leave none).
fn labs_left(out: &std::path::Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(out.join("labs"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

#[test]
fn the_storage_part_of_the_benchmark_reports_every_baseline_and_ratio() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let (ok, text) = lab(&["bench", "--storage-only", "--samples", "3", "--out", dir]);
    assert!(ok, "{text}");
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
    let left = labs_left(out.path());
    assert!(left.is_empty(), "labs left behind: {left:?}");
}

/// `lab bench --compare-server`, with the lab's own server on both sides (the real use compares
/// a jemalloc build or the official binary; any `surreal` 3.x exercises the same path): every
/// measure is printed with its ratio, no run had errors, and no lab is left running.
#[test]
fn comparing_two_servers_prints_every_measure_as_a_ratio_and_leaves_nothing_running() {
    let out = tempfile::tempdir().unwrap();
    let same = poc_helpers::infra::binary::locate_surreal(None).expect("the lab's surreal");
    let (ok, text) = lab(&[
        "bench",
        "--compare-server",
        same.path.to_str().unwrap(),
        "--reps",
        "1",
        "--duration",
        "0.5",
        "--warmup",
        "0.2",
        "--concurrency",
        "4",
        "--records",
        "100",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
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
    let left = labs_left(out.path());
    assert!(left.is_empty(), "labs left behind: {left:?}");
}

#[test]
fn comparing_with_a_server_that_is_not_there_names_the_fix() {
    let (ok, text) = lab(&["bench", "--compare-server", "/nonexistent/surreal"]);
    assert!(!ok, "{text}");
    for expected in [
        "/nonexistent/surreal",
        "set by --compare-server",
        "scripts/measure-allocators.sh",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
}
