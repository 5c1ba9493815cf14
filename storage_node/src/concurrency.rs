//! Keeps reads consistent while commit timestamps chosen by the store become visible.
//!
//! One-phase commit (and async commit's prewrite) choose a commit timestamp `c` *inside* the
//! store, then spend a Raft round and an fsync making the write visible. Two readers must not
//! be fooled meanwhile:
//!
//! - a reader that already read those keys at `t` must not later find a commit at `c ≤ t` it
//!   did not see — so `c` is above every read timestamp this store has served: TiKV's
//!   **max_ts**, raised by every read, and `c = max(max_ts + 1, floor)`;
//! - a reader arriving at `t ≥ c` before the write is applied would miss it on its first read
//!   and see it on a second — a torn snapshot, which the TiKV client answers by panicking the
//!   `surreal` process. So `c` is registered ("keys K become visible at `c`") in the same
//!   critical section that chose it, and a reader at `t` touching K waits for its release,
//!   right after the apply (TiKV's in-memory locks).
//!
//! A store that just became a region's leader cannot know the timestamps its predecessor
//! served; it raises max_ts to a fresh TSO timestamp first ([`ConcurrencyManager::sync_max_ts`],
//! TiKV's "max ts synced") and executes no write of the region until then.
//!
//! Where `c` comes from ([`CommitTsSource`]): a store whose timestamp oracle lives in its own
//! process (the one-process storage node) simply takes a fresh oracle timestamp, which is above
//! every read anyone could have served; a store whose PD is another process cannot ask it
//! inside the critical section and uses max_ts, as TiKV does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::pd::tso::Tso;
use crate::txn_types::{Key, TimeStamp};

/// Where fresh timestamps come from: PD's oracle, in this process ([`Tso`]) or across the
/// network (a store process asks its PD). A store needs one only to sync max_ts after it
/// becomes a leader, and (with [`CommitTsSource::Oracle`]) for commit timestamps.
pub trait TimestampOracle: Send + Sync {
    /// One fresh timestamp, above every one handed out before.
    fn next(&self) -> std::io::Result<TimeStamp>;
}

impl TimestampOracle for Tso {
    fn next(&self) -> std::io::Result<TimeStamp> {
        Tso::next(self)
    }
}

/// A registered commit: its timestamp, and a sequence number (two transactions may share a
/// commit timestamp).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CommitHandle {
    /// The commit timestamp.
    pub ts: TimeStamp,
    seq: u64,
}

/// Commits allocated but not yet visible: (commit ts, seq) → the keys they write.
type Pending = BTreeMap<CommitHandle, Arc<Vec<Key>>>;

/// How a store chooses commit timestamps for one-phase and async commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitTsSource {
    /// A fresh timestamp from the oracle in this process (it is above every timestamp handed
    /// out, so above every read served anywhere).
    Oracle,
    /// `max(max_ts + 1, floor)`: TiKV's way, for a store whose PD is another process.
    MaxTs,
}

/// The in-flight commit registry and the store's max_ts.
pub struct ConcurrencyManager {
    tso: Arc<dyn TimestampOracle>,
    source: CommitTsSource,
    /// The largest timestamp this store served a read at (a `TimeStamp` as its wire value).
    max_ts: AtomicU64,
    next_seq: AtomicU64,
    pending: Mutex<Pending>,
    // Bumped on every release; readers wait for a change instead of polling.
    released: watch::Sender<u64>,
}

/// What a read touches.
pub enum ReadSet<'a> {
    /// Point reads of these keys.
    Keys(&'a [Key]),
    /// A scan of `[lower, upper)`; empty `upper` means unbounded.
    Range(&'a Key, &'a Key),
}

impl ReadSet<'_> {
    fn overlaps(&self, keys: &[Key]) -> bool {
        match self {
            ReadSet::Keys(read) => read.iter().any(|r| keys.contains(r)),
            ReadSet::Range(lo, hi) => keys.iter().any(|k| k >= *lo && (hi.is_empty() || k < *hi)),
        }
    }
}

impl ConcurrencyManager {
    /// A manager whose commit timestamps come from `tso`, in this process.
    pub fn new(tso: Arc<dyn TimestampOracle>) -> Self {
        Self::with_source(tso, CommitTsSource::Oracle)
    }

    /// A manager choosing commit timestamps from `source`; `tso` syncs max_ts.
    pub fn with_source(tso: Arc<dyn TimestampOracle>, source: CommitTsSource) -> Self {
        ConcurrencyManager {
            tso,
            source,
            max_ts: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
            pending: Mutex::new(BTreeMap::new()),
            released: watch::channel(0).0,
        }
    }

    /// A fresh timestamp for ordinary use (no registration).
    pub fn tso(&self) -> &dyn TimestampOracle {
        self.tso.as_ref()
    }

    /// The largest read timestamp seen (or synced from the TSO).
    pub fn max_ts(&self) -> TimeStamp {
        TimeStamp::new(self.max_ts.load(Ordering::SeqCst))
    }

    /// Raises max_ts to `ts` (a read at `ts`, or a caller's start ts). `TimeStamp::max()` is a
    /// "read the latest" marker, not a timestamp anyone holds, and is ignored (as in TiKV).
    pub fn update_max_ts(&self, ts: TimeStamp) {
        if ts != TimeStamp::max() {
            self.max_ts.fetch_max(ts.into_inner(), Ordering::SeqCst);
        }
    }

    /// Raises max_ts to a fresh timestamp from the oracle: every timestamp handed out so far,
    /// and so every read any previous leader served, is below it. A new leader does this
    /// before it chooses any commit timestamp.
    pub fn sync_max_ts(&self) -> std::io::Result<TimeStamp> {
        let ts = self.tso.next()?;
        self.update_max_ts(ts);
        Ok(ts)
    }

    /// Chooses a commit ts for `keys` — above every read served here and at least `floor` —
    /// and registers it until [`release`](Self::release).
    pub fn allocate_commit_ts(
        &self,
        keys: Vec<Key>,
        floor: TimeStamp,
    ) -> std::io::Result<CommitHandle> {
        // Under the registry lock: a reader raises max_ts *before* it checks the registry, so
        // either it checks after this entry exists (and waits for it), or its timestamp was
        // already in max_ts when we read it (and `ts` is above it). With the oracle here, any
        // reader that receives a later timestamp checks the registry after this entry is in it.
        let mut pending = self.pending.lock().unwrap();
        let ts = match self.source {
            CommitTsSource::Oracle => self.tso.next()?,
            CommitTsSource::MaxTs => TimeStamp::new(self.max_ts.load(Ordering::SeqCst) + 1),
        }
        .max(floor);
        let handle = CommitHandle {
            ts,
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
        };
        pending.insert(handle, Arc::new(keys));
        Ok(handle)
    }

    /// Marks commits as visible (their batch was applied, or will never be).
    pub fn release(&self, handles: &[CommitHandle]) {
        if handles.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().unwrap();
        for h in handles {
            pending.remove(h);
        }
        drop(pending);
        self.released.send_modify(|n| *n += 1);
    }

    /// Records a read at `read_ts` in max_ts, then waits until no pending commit at or below
    /// `read_ts` writes anything `read` touches.
    pub async fn wait_readable(&self, read_ts: TimeStamp, read: ReadSet<'_>) {
        self.update_max_ts(read_ts);
        loop {
            // Subscribe before checking, so a release between the check and the wait is seen.
            let mut rx = self.released.subscribe();
            rx.borrow_and_update();
            let blocked = {
                let pending = self.pending.lock().unwrap();
                pending
                    .iter()
                    .take_while(|(h, _)| h.ts <= read_ts)
                    .any(|(_, keys)| read.overlaps(keys))
            };
            if !blocked {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_max_ts_a_commit_lands_above_every_read_served_and_its_floor() {
        let dir = tempfile::tempdir().unwrap();
        let tso = Arc::new(Tso::open(dir.path()).unwrap());
        let cm = ConcurrencyManager::with_source(tso.clone(), CommitTsSource::MaxTs);
        let read = tso.next().unwrap();
        cm.update_max_ts(read);
        cm.update_max_ts(TimeStamp::max()); // "latest" markers do not count
        let h = cm
            .allocate_commit_ts(vec![Key::from_raw(b"k")], TimeStamp::new(5))
            .unwrap();
        assert_eq!(h.ts, read.next(), "just above the read");
        let floor = tso.next().unwrap().next();
        let h2 = cm
            .allocate_commit_ts(vec![Key::from_raw(b"k")], floor)
            .unwrap();
        assert_eq!(h2.ts, floor, "never below its floor");
        // A new leader syncs from the oracle: above everything handed out before.
        let handed_out = tso.next().unwrap();
        assert!(cm.sync_max_ts().unwrap() > handed_out);
        assert!(cm.max_ts() > handed_out);
    }

    #[tokio::test]
    async fn a_reader_above_a_pending_commit_waits_for_its_release() {
        let dir = tempfile::tempdir().unwrap();
        let cm = Arc::new(ConcurrencyManager::new(Arc::new(
            Tso::open(dir.path()).unwrap(),
        )));
        let k = Key::from_raw(b"k");
        let h = cm
            .allocate_commit_ts(vec![k.clone()], TimeStamp::new(1))
            .unwrap();
        let c = h.ts;
        let t = cm.tso().next().unwrap();
        assert!(t > c);
        // Unrelated keys and older readers are not held up.
        cm.wait_readable(t, ReadSet::Keys(&[Key::from_raw(b"other")]))
            .await;
        let before_c = TimeStamp::new(c.into_inner() - 1);
        cm.wait_readable(before_c, ReadSet::Keys(&[k])).await;
        let waiter = {
            let cm = cm.clone();
            let (a, z) = (Key::from_raw(b"a"), Key::from_raw(b"z"));
            tokio::spawn(async move { cm.wait_readable(t, ReadSet::Range(&a, &z)).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "the reader must wait for the commit to become visible"
        );
        cm.release(&[h]);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
