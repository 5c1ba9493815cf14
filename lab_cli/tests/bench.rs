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
