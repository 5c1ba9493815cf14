//! The Raft log on disk: an append-only file of entries, one fdatasync per write round.
//!
//! Why not the engine's redb file: a redb commit that makes a small log append durable costs
//! about three times the raw cost of writing a few pages and one fdatasync (it also persists
//! its allocator state, its page-tree roots and every page dirtied since the last durable
//! commit). TiKV keeps its Raft log apart from the data for the same reason (raft-engine); this
//! is the same idea at teaching scale:
//!
//! - **Segments** `raft-log/<seq>.log` of a fixed size, **filled with zeros when created**, so
//!   an append overwrites blocks that already exist: the file's size and extents never change
//!   and `fdatasync` has no metadata to write.
//! - **Records** `[len u32][crc32 u32][region u64][eraftpb::Entry]`. Reading stops at the first
//!   zero length, short record or bad checksum: a write torn by a crash is simply not there, and
//!   the next append overwrites it.
//! - A later record for the same region and index replaces the earlier one and everything
//!   after it (a new leader overwrote a suffix); `recover` applies that rule.
//! - When the active segment is full, a new one starts with every entry still live (those not
//!   yet compacted), and the older segments are deleted.
//!
//! The hard state, configuration and truncation point change rarely (elections, compactions)
//! and stay in the engine file; see [`super::peer_storage`].
//!
//! **What a round's sync costs** (measured on the 2-core lab VM, issue 22): the write and
//! fdatasync of a segment cost the same as the bench's 4 KiB in-place probe when both run
//! back to back (~120 µs each, one process, alternated). A write in a workload pays more
//! because the disk was idle before it: the same probe with 3 ms of idle before each sample
//! costs ~2×, with 17 ms (the bench's spacing between one client's writes) ~4×. That, not the
//! file's layout, is most of a one-client write's "log append + fsync" step.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::Entry;

/// Size of a new segment (filled with zeros up front). Small enough that creating one is a
/// short pause; large enough that it happens rarely (a write round appends a few hundred bytes).
pub const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

const HEADER: usize = 16;

/// Entries recovered for each region, in index order (overwrites applied).
pub type Recovered = BTreeMap<u64, Vec<Entry>>;

/// The active segment.
pub struct RaftLogFile {
    dir: PathBuf,
    seq: u64,
    file: File,
    offset: u64,
    capacity: u64,
    pending: Vec<u8>,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016}.log"))
}

fn segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        if let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Adds `entry` of `region_id` to `regions`, replacing its index and every later one.
fn place(regions: &mut Recovered, region_id: u64, entry: Entry) {
    let entries = regions.entry(region_id).or_default();
    while entries.last().is_some_and(|e| e.index >= entry.index) {
        entries.pop();
    }
    entries.push(entry);
}

/// Reads the records of one segment; returns where valid records end.
fn read_segment(path: &Path, regions: &mut Recovered) -> std::io::Result<u64> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut at = 0usize;
    while at + HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if len < 8 || at + 8 + len > bytes.len() {
            break;
        }
        let body = &bytes[at + 8..at + 8 + len];
        if crc32fast::hash(body) != crc {
            break;
        }
        let region_id = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
        let Ok(entry) = Entry::parse_from_bytes(&body[8..]) else {
            break;
        };
        place(regions, region_id, entry);
        at += 8 + len;
    }
    Ok(at as u64)
}

impl RaftLogFile {
    /// Opens (or creates) the log in `dir` and recovers every region's entries.
    pub fn open(dir: &Path, capacity: u64) -> std::io::Result<(RaftLogFile, Recovered)> {
        std::fs::create_dir_all(dir)?;
        let mut regions = Recovered::new();
        let seqs = segments(dir)?;
        let mut end = 0;
        for &seq in &seqs {
            end = read_segment(&segment_path(dir, seq), &mut regions)?;
        }
        let log = match seqs.last() {
            Some(&seq) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(segment_path(dir, seq))?;
                let capacity = file.metadata()?.len().max(capacity);
                RaftLogFile {
                    dir: dir.to_path_buf(),
                    seq,
                    file,
                    offset: end,
                    capacity,
                    pending: Vec::new(),
                }
            }
            None => Self::create(dir, 1, capacity)?,
        };
        Ok((log, regions))
    }

    fn create(dir: &Path, seq: u64, capacity: u64) -> std::io::Result<RaftLogFile> {
        let path = segment_path(dir, seq);
        let tmp = path.with_extension("new");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        let zeros = vec![0u8; 1 << 20];
        let mut left = capacity;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            file.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()?;
        Ok(RaftLogFile {
            dir: dir.to_path_buf(),
            seq,
            file,
            offset: 0,
            capacity,
            pending: Vec::new(),
        })
    }

    /// Queues `entry` of `region_id` for the next [`sync`](Self::sync). The record is encoded
    /// in place at the end of the queue (no copy of the entry through a buffer of its own).
    pub fn push(&mut self, region_id: u64, entry: &Entry) -> std::io::Result<()> {
        let at = self.pending.len();
        self.pending.extend_from_slice(&[0u8; 8]);
        self.pending.extend_from_slice(&region_id.to_le_bytes());
        if let Err(e) = entry.write_to_vec(&mut self.pending) {
            self.pending.truncate(at);
            return Err(std::io::Error::other(e.to_string()));
        }
        let body = &self.pending[at + 8..];
        let len = (body.len() as u32).to_le_bytes();
        let crc = crc32fast::hash(body).to_le_bytes();
        self.pending[at..at + 4].copy_from_slice(&len);
        self.pending[at + 4..at + 8].copy_from_slice(&crc);
        Ok(())
    }

    /// Whether records are queued.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes the queued records and makes them durable (one fdatasync). When they do not fit
    /// in the active segment, a new segment starts with `live()` — every entry not yet
    /// compacted, each region's in order — followed by the queued records.
    pub fn sync(&mut self, live: impl FnOnce() -> Vec<(u64, Entry)>) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        // Keep a zero length after the records, so a reader stops there.
        if self.offset + self.pending.len() as u64 + 4 > self.capacity {
            let pending = std::mem::take(&mut self.pending);
            for (region_id, e) in live() {
                self.push(region_id, &e)?;
            }
            let carried = std::mem::take(&mut self.pending);
            let old = self.seq;
            let size = self
                .capacity
                .max((carried.len() + pending.len()) as u64 * 2);
            *self = Self::create(&self.dir, old + 1, size)?;
            self.pending = carried;
            self.pending.extend_from_slice(&pending);
            self.write_pending()?;
            for seq in segments(&self.dir)? {
                if seq < self.seq {
                    std::fs::remove_file(segment_path(&self.dir, seq))?;
                }
            }
            return Ok(());
        }
        self.write_pending()
    }

    /// One positioned write and one fdatasync: only after it returns do the records count as
    /// persisted (the caller sends the messages that promise so, and commits, only then).
    fn write_pending(&mut self) -> std::io::Result<()> {
        self.file.write_all_at(&self.pending, self.offset)?;
        self.file.sync_data()?;
        self.offset += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("{index}/{term}").into_bytes().into(),
            ..Default::default()
        }
    }

    fn indexes(r: &Recovered, region: u64) -> Vec<(u64, u64)> {
        r.get(&region)
            .map(|es| es.iter().map(|e| (e.index, e.term)).collect())
            .unwrap_or_default()
    }

    #[test]
    fn entries_survive_a_reopen_and_a_new_leaders_overwrite_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, r) = RaftLogFile::open(dir.path(), 4096).unwrap();
        assert!(r.is_empty());
        for i in 1..=5 {
            log.push(7, &entry(i, 1)).unwrap();
        }
        log.push(8, &entry(1, 1)).unwrap();
        log.sync(Vec::new).unwrap();
        log.push(7, &entry(4, 2)).unwrap();
        log.sync(Vec::new).unwrap();
        drop(log);
        let (mut log, r) = RaftLogFile::open(dir.path(), 4096).unwrap();
        assert_eq!(indexes(&r, 7), vec![(1, 1), (2, 1), (3, 1), (4, 2)]);
        assert_eq!(indexes(&r, 8), vec![(1, 1)]);
        // Appends continue after what was recovered.
        log.push(7, &entry(5, 2)).unwrap();
        log.sync(Vec::new).unwrap();
        let (_, r) = RaftLogFile::open(dir.path(), 4096).unwrap();
        assert_eq!(indexes(&r, 7).last(), Some(&(5, 2)));
    }

    #[test]
    fn a_torn_write_is_not_there_and_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = RaftLogFile::open(dir.path(), 4096).unwrap();
        log.push(7, &entry(1, 1)).unwrap();
        log.sync(Vec::new).unwrap();
        let good_end = log.offset;
        log.push(7, &entry(2, 1)).unwrap();
        log.sync(Vec::new).unwrap();
        drop(log);
        // Damage the second record's body, as a crash in the middle of its write would.
        let path = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[good_end as usize + HEADER + 2] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (mut log, r) = RaftLogFile::open(dir.path(), 4096).unwrap();
        assert_eq!(indexes(&r, 7), vec![(1, 1)], "the torn record is ignored");
        log.push(7, &entry(2, 3)).unwrap();
        log.sync(Vec::new).unwrap();
        let (_, r) = RaftLogFile::open(dir.path(), 4096).unwrap();
        assert_eq!(indexes(&r, 7), vec![(1, 1), (2, 3)]);
    }

    #[test]
    fn a_full_segment_rolls_over_keeping_only_live_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = RaftLogFile::open(dir.path(), 1024).unwrap();
        for i in 1..=40 {
            log.push(7, &entry(i, 1)).unwrap();
            // Pretend everything below i - 3 was compacted.
            let live = || {
                (i.saturating_sub(3).max(1)..i)
                    .map(|j| (7, entry(j, 1)))
                    .collect()
            };
            log.sync(live).unwrap();
        }
        let segs = segments(dir.path()).unwrap();
        assert_eq!(segs.len(), 1, "older segments are deleted: {segs:?}");
        assert!(segs[0] > 1, "it rolled over");
        let (_, r) = RaftLogFile::open(dir.path(), 1024).unwrap();
        let got = indexes(&r, 7);
        assert_eq!(got.last(), Some(&(40, 1)));
        assert!(
            got.windows(2).all(|w| w[1].0 == w[0].0 + 1),
            "contiguous: {got:?}"
        );
        assert!(
            got.len() < 40,
            "compacted entries were not carried: {}",
            got.len()
        );
    }

    /// Copies what the file system holds for the log right now: the state a crash would
    /// leave (the process dies; nothing it still had in memory reaches the disk).
    fn crash_image(dir: &Path) -> tempfile::TempDir {
        let image = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), image.path().join(e.file_name())).unwrap();
        }
        image
    }

    #[test]
    fn after_a_crash_exactly_the_synced_entries_are_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = RaftLogFile::open(dir.path(), 1024).unwrap();
        for i in 1..=3 {
            log.push(7, &entry(i, 1)).unwrap();
        }
        log.sync(Vec::new).unwrap();
        // Queued, never synced: the process dies before its round's fdatasync.
        log.push(7, &entry(4, 1)).unwrap();
        log.push(8, &entry(1, 1)).unwrap();
        let image = crash_image(dir.path());
        let (mut back, r) = RaftLogFile::open(image.path(), 1024).unwrap();
        assert_eq!(indexes(&r, 7), vec![(1, 1), (2, 1), (3, 1)]);
        assert!(indexes(&r, 8).is_empty(), "an unsynced entry is not there");
        // The recovered log carries on where the synced records end, through a rollover
        // (a 1 KiB segment fills up), and a second crash keeps all of it.
        for i in 4..=60 {
            back.push(7, &entry(i, 2)).unwrap();
            back.sync(|| {
                (1..i)
                    .map(|j| (7, entry(j, if j < 4 { 1 } else { 2 })))
                    .collect()
            })
            .unwrap();
        }
        drop(log);
        let image2 = crash_image(image.path());
        let (_, r) = RaftLogFile::open(image2.path(), 1024).unwrap();
        let got = indexes(&r, 7);
        assert_eq!(got.len(), 60, "{got:?}");
        assert_eq!(got.last(), Some(&(60, 2)));
        assert!(segments(image2.path()).unwrap()[0] > 1, "it rolled over");
    }
}
