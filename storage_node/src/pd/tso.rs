//! The timestamp oracle (TSO): strictly increasing timestamps for the whole cluster.
//!
//! A TSO timestamp is `(physical_ms << 18) + logical`: wall-clock milliseconds plus a counter
//! for the many timestamps handed out within one millisecond. Transactions take their start
//! ts and commit ts from here, and SurrealDB also uses them as versionstamps — so they must
//! never go backwards, not even across a restart with a clock that jumped back.
//!
//! Like PD, we persist a *window*: before handing out any timestamp with physical time `p`,
//! the file `tso` must already say "timestamps up to `p + WINDOW` may have been used". After
//! a restart we start above the saved limit. One fsync every `WINDOW` instead of one per
//! request.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::txn_types::TimeStamp;

/// How far ahead of the current physical time the persisted limit is pushed (PD uses 3 s).
const WINDOW_MS: u64 = 3_000;
/// Logical values per millisecond: 2^18.
const MAX_LOGICAL: u64 = 1 << TimeStamp::LOGICAL_BITS;
/// The file holding the persisted limit, inside the data directory.
pub const TSO_FILE: &str = "tso";

struct State {
    physical: u64,
    logical: u64,
    /// Every timestamp handed out has physical < `saved_limit`.
    saved_limit: u64,
}

/// The timestamp oracle.
pub struct Tso {
    state: Mutex<State>,
    file: PathBuf,
}

impl Tso {
    /// Opens the oracle, continuing above whatever an earlier run may have handed out.
    pub fn open(dir: &Path) -> std::io::Result<Tso> {
        let file = dir.join(TSO_FILE);
        let saved = match std::fs::read(&file) {
            Ok(bytes) => {
                let arr: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                    std::io::Error::other(format!(
                        "{} is damaged (expected 8 bytes); restore it or use a fresh --data-dir",
                        file.display()
                    ))
                })?;
                u64::from_be_bytes(arr)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        let tso = Tso {
            state: Mutex::new(State {
                physical: saved,
                logical: 0,
                saved_limit: saved,
            }),
            file,
        };
        // Everything below `saved` may have been used: the first timestamp must be above it,
        // so start at `saved` with the logical counter already exhausted.
        tso.state.lock().unwrap().logical = MAX_LOGICAL - 1;
        Ok(tso)
    }

    /// Allocates `count` consecutive timestamps and returns the last one (the PD wire format:
    /// the client hands out `last - count + 1 ..= last`).
    pub fn allocate(&self, count: u64) -> std::io::Result<TimeStamp> {
        assert!(count > 0 && count < MAX_LOGICAL);
        let mut s = self.state.lock().unwrap();
        let now = now_ms();
        if now > s.physical {
            s.physical = now;
            s.logical = 0;
        }
        if s.logical + count >= MAX_LOGICAL {
            // This millisecond is used up; borrow the next one (the clock catches up soon).
            s.physical += 1;
            s.logical = 0;
        }
        s.logical += count;
        if s.physical >= s.saved_limit {
            let limit = s.physical + WINDOW_MS;
            persist(&self.file, limit)?;
            s.saved_limit = limit;
        }
        Ok(TimeStamp::compose(s.physical, s.logical))
    }

    /// One fresh timestamp.
    pub fn next(&self) -> std::io::Result<TimeStamp> {
        self.allocate(1)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn persist(file: &Path, limit: u64) -> std::io::Result<()> {
    // Write-then-rename so a crash leaves either the old or the new limit, never half a file.
    let tmp = file.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&limit.to_be_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)?;
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_increase_and_batches_end_at_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let tso = Tso::open(dir.path()).unwrap();
        let mut last = 0;
        for count in [1, 5, 64, 1, 3] {
            let ts = tso.allocate(count).unwrap().into_inner();
            assert!(ts - count + 1 > last, "batch overlaps the previous one");
            last = ts;
        }
    }

    #[test]
    fn restart_continues_above_everything_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let before = {
            let tso = Tso::open(dir.path()).unwrap();
            (0..1000).map(|_| tso.next().unwrap()).max().unwrap()
        };
        let tso = Tso::open(dir.path()).unwrap();
        let after = tso.next().unwrap();
        assert!(after > before);
        // It even stays above the window a crashed process may have used.
        assert!(after.physical() >= before.physical());
    }

    #[test]
    fn a_clock_far_in_the_past_does_not_go_backwards() {
        let dir = tempfile::tempdir().unwrap();
        // A limit one hour in the future stands in for "the clock went back an hour".
        let future = now_ms() + 3_600_000;
        persist(&dir.path().join(TSO_FILE), future).unwrap();
        let tso = Tso::open(dir.path()).unwrap();
        assert!(tso.next().unwrap().physical() >= future);
    }
}
