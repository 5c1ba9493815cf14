//! `MvccTxn`: the changes one command wants to make, buffered until it has fully succeeded.
//!
//! TiKV commands read from a snapshot and write into an `MvccTxn` buffer; the buffer is only
//! applied when the whole command succeeded. That is what makes a prewrite all-or-nothing: if
//! the tenth key conflicts, the first nine locks were never written.

use crate::mvcc::records::{Lock, Write};
use crate::txn_types::{Key, TimeStamp};

/// One change to the engine.
#[derive(Clone, Debug)]
pub enum Modify {
    /// Write or replace the lock on a key.
    PutLock(Key, Lock),
    /// Remove the lock on a key.
    DeleteLock(Key),
    /// Write a write record at (key, commit ts).
    PutWrite(Key, TimeStamp, Write),
    /// Remove the write record at (key, commit ts) — GC and destroy-range only.
    DeleteWrite(Key, TimeStamp),
}

/// The buffered changes of one command.
#[derive(Default, Debug)]
pub struct MvccTxn {
    /// Changes in the order they were made.
    pub modifies: Vec<Modify>,
}

impl MvccTxn {
    /// Places (or replaces) a lock.
    pub fn put_lock(&mut self, key: &Key, lock: Lock) {
        self.modifies.push(Modify::PutLock(key.clone(), lock));
    }

    /// Removes a lock.
    pub fn unlock(&mut self, key: &Key) {
        self.modifies.push(Modify::DeleteLock(key.clone()));
    }

    /// Records a write at `commit_ts`.
    pub fn put_write(&mut self, key: &Key, commit_ts: TimeStamp, write: Write) {
        self.modifies
            .push(Modify::PutWrite(key.clone(), commit_ts, write));
    }

    /// Deletes a write record.
    pub fn delete_write(&mut self, key: &Key, commit_ts: TimeStamp) {
        self.modifies
            .push(Modify::DeleteWrite(key.clone(), commit_ts));
    }

    /// Whether the command removes any lock (lock waiters want to know).
    pub fn releases_locks(&self) -> bool {
        self.modifies
            .iter()
            .any(|m| matches!(m, Modify::DeleteLock(_)))
    }

    /// Whether the command changed anything.
    pub fn is_empty(&self) -> bool {
        self.modifies.is_empty()
    }
}
