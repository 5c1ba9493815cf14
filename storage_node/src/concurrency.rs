//! Keeps reads consistent while commit timestamps are being made durable.
//!
//! TiKV's `ConcurrencyManager` solves this problem with in-memory locks; we solve it the same
//! way in a single process. The problem: one-phase commit (and async commit's prewrite) take a
//! commit timestamp `c` from the TSO *inside* the storage node, then spend an fsync making the
//! write visible. A reader that meanwhile got a later start ts `t > c` from the TSO would not
//! see the write on its first read and would see it on a second — a torn snapshot, which the
//! TiKV client detects and answers by panicking the `surreal` process.
//!
//! The fix: allocate `c` and register "keys K become visible at `c`" atomically (readers can
//! only obtain `t > c` after the registration exists); a reader at `t` touching any of K waits
//! until the registration is released, which happens right after the engine commit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::pd::tso::Tso;
use crate::txn_types::{Key, TimeStamp};

/// Commits allocated but not yet visible: commit ts → the keys they write.
type Pending = BTreeMap<TimeStamp, Arc<Vec<Key>>>;

/// The in-flight commit registry.
pub struct ConcurrencyManager {
    tso: Arc<Tso>,
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
    /// A manager drawing timestamps from `tso`.
    pub fn new(tso: Arc<Tso>) -> Self {
        ConcurrencyManager {
            tso,
            pending: Mutex::new(BTreeMap::new()),
            released: watch::channel(0).0,
        }
    }

    /// A fresh timestamp for ordinary use (no registration).
    pub fn tso(&self) -> &Tso {
        &self.tso
    }

    /// Allocates a commit ts for `keys` and registers it until [`release`](Self::release).
    pub fn allocate_commit_ts(&self, keys: Vec<Key>) -> std::io::Result<TimeStamp> {
        // Hold the registry lock across the allocation: any reader that receives a later
        // timestamp checks the registry after this entry is in it.
        let mut pending = self.pending.lock().unwrap();
        let ts = self.tso.next()?;
        pending.insert(ts, Arc::new(keys));
        Ok(ts)
    }

    /// Marks commits as visible (their engine transaction committed or was abandoned).
    pub fn release(&self, commit_ts: &[TimeStamp]) {
        if commit_ts.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().unwrap();
        for ts in commit_ts {
            pending.remove(ts);
        }
        drop(pending);
        self.released.send_modify(|n| *n += 1);
    }

    /// Waits until no pending commit at or below `read_ts` writes anything `read` touches.
    pub async fn wait_readable(&self, read_ts: TimeStamp, read: ReadSet<'_>) {
        loop {
            // Subscribe before checking, so a release between the check and the wait is seen.
            let mut rx = self.released.subscribe();
            rx.borrow_and_update();
            let blocked = {
                let pending = self.pending.lock().unwrap();
                pending
                    .range(..=read_ts)
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

    #[tokio::test]
    async fn a_reader_above_a_pending_commit_waits_for_its_release() {
        let dir = tempfile::tempdir().unwrap();
        let cm = Arc::new(ConcurrencyManager::new(Arc::new(
            Tso::open(dir.path()).unwrap(),
        )));
        let k = Key::from_raw(b"k");
        let c = cm.allocate_commit_ts(vec![k.clone()]).unwrap();
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
        cm.release(&[c]);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
