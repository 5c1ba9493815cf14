//! Export and restore: `/export` through one node while another keeps writing, imported into
//! a fresh lab. SurrealDB 3.3.5 reads a whole export in one read transaction
//! (`Datastore::export_with_config`), so the file should be a snapshot: every write
//! acknowledged before the export began is in it, and of the writes made during it, a prefix
//! of the writer's sequence with no gaps. [`BackupReport`] checks both, and compares the
//! restored records with the source's by count and checksum.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::vocab::error::LabError;
use crate::vocab::frames::frame;

/// One export-and-restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupReport {
    /// The node the export went through.
    pub exporter: String,
    /// The node the writer used meanwhile.
    pub writer: String,
    /// Records written before the writer started.
    pub seeded: u64,
    /// Records acknowledged (seed included) before the export request was sent.
    pub acked_before_export: u64,
    /// Records acknowledged (seed included) when the writer stopped.
    pub acked_total: u64,
    /// Size of the exported script, bytes.
    pub export_bytes: u64,
    /// Seconds the export took.
    pub export_s: f64,
    /// Seconds the import into the fresh lab took.
    pub import_s: f64,
    /// Record keys (0, 1, 2 …) found in the restored lab, sorted.
    pub restored_keys: Vec<u64>,
    /// Checksum of the source's records with those keys.
    pub source_checksum: u64,
    /// Checksum of the restored records.
    pub restored_checksum: u64,
}

impl BackupReport {
    /// Records restored.
    pub fn restored(&self) -> u64 {
        self.restored_keys.len() as u64
    }
    /// Export rate, records per second.
    pub fn export_rate(&self) -> f64 {
        self.restored() as f64 / self.export_s.max(1e-9)
    }
    /// Import rate, records per second.
    pub fn import_rate(&self) -> f64 {
        self.restored() as f64 / self.import_s.max(1e-9)
    }
    /// True when the restored keys are 0 … n-1: a prefix of the writer's sequence, no gaps.
    pub fn is_prefix(&self) -> bool {
        self.restored_keys
            .iter()
            .enumerate()
            .all(|(i, k)| *k == i as u64)
    }
    /// True when every write acknowledged before the export began was restored.
    pub fn has_everything_acked_before(&self) -> bool {
        self.is_prefix() && self.restored() >= self.acked_before_export
    }
    /// True when the restored records equal the source's, record for record.
    pub fn checksum_matches(&self) -> bool {
        self.source_checksum == self.restored_checksum
    }

    /// One row with the counts, the rates and the checks.
    pub fn frame(&self) -> Result<DataFrame, LabError> {
        let r1 = |x: f64| (x * 10.0).round() / 10.0;
        frame(vec![
            Column::new("export_via".into(), vec![self.exporter.clone()]),
            Column::new("writes_via".into(), vec![self.writer.clone()]),
            Column::new("acked_before_export".into(), vec![self.acked_before_export]),
            Column::new("restored".into(), vec![self.restored()]),
            Column::new("acked_at_end".into(), vec![self.acked_total]),
            Column::new("export_kb".into(), vec![self.export_bytes / 1024]),
            Column::new(
                "export_s".into(),
                vec![(self.export_s * 1000.0).round() / 1000.0],
            ),
            Column::new("export_rec_per_s".into(), vec![r1(self.export_rate())]),
            Column::new(
                "import_s".into(),
                vec![(self.import_s * 1000.0).round() / 1000.0],
            ),
            Column::new("import_rec_per_s".into(), vec![r1(self.import_rate())]),
            Column::new("no_gaps".into(), vec![self.is_prefix()]),
            Column::new("checksum_match".into(), vec![self.checksum_matches()]),
        ])
    }

    /// The answer in sentences, from this run.
    pub fn explain(&self) -> String {
        let yes = |b: bool| if b { "yes" } else { "no" };
        format!(
            "The export through {} held {} records: {} were acknowledged before it began and {} by \
             the time the writer on {} stopped. Keys without a gap: {}; every record acknowledged \
             before the export restored: {}; checksum of the restored records equal to the \
             source's: {}. Export {:.0} records/s ({:.3} s), import {:.0} records/s ({:.3} s).",
            self.exporter,
            self.restored(),
            self.acked_before_export,
            self.acked_total,
            self.writer,
            yes(self.is_prefix()),
            yes(self.has_everything_acked_before()),
            yes(self.checksum_matches()),
            self.export_rate(),
            self.export_s,
            self.import_rate(),
            self.import_s,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_or_a_missing_acknowledged_write_is_caught() {
        let mut r = BackupReport {
            exporter: "node-b".into(),
            writer: "node-a".into(),
            seeded: 3,
            acked_before_export: 4,
            acked_total: 6,
            export_bytes: 2048,
            export_s: 0.5,
            import_s: 1.0,
            restored_keys: vec![0, 1, 2, 3, 4],
            source_checksum: 7,
            restored_checksum: 7,
        };
        assert!(r.is_prefix() && r.has_everything_acked_before() && r.checksum_matches());
        assert_eq!(r.export_rate(), 10.0);
        r.restored_keys = vec![0, 1, 2, 4, 5];
        assert!(!r.is_prefix());
        r.restored_keys = vec![0, 1, 2];
        assert!(!r.has_everything_acked_before());
    }
}
