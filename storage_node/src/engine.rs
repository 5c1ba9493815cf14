//! The engine: durable, ordered key-value tables in one redb file.
//!
//! TiKV sits on RocksDB with column families; we sit on [redb] with tables playing the same
//! roles: `lock` (CF_LOCK), `write` (CF_WRITE, values inline) and `meta` for the node's own
//! identity (format version, cluster id, GC safe point). redb gives us what Percolator needs
//! from an engine: atomic multi-table write transactions, crash safety with an fsync on
//! commit, and consistent read snapshots that never block the writer.
//!
//! Each region's Raft log is a file of its own beside this one (see [`crate::raftstore`]): an
//! entry counts as persisted once that file is fsync'd. Applying committed entries to `lock`
//! and `write` here skips the fsync: a crash before the next durable commit (one every second
//! or so) replays them from the log.

use std::path::{Path, PathBuf};

use redb::{
    Database, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};

use crate::raftstore::peer_storage::RAFT_STATE_TABLE;
use crate::txn_types::TimeStamp;

/// Locks of in-flight transactions, by raw user key.
pub const LOCK_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("lock");
/// Commit and rollback records, by versioned key (see `mvcc::keys`).
pub const WRITE_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("write");
/// The node's identity and bookkeeping.
pub const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Bumped whenever the on-disk layout changes meaning. A data directory written with another
/// format is refused instead of being misread or silently reset.
///
/// Format 2 adds the Raft state (`raft_state`, see [`crate::raftstore::peer_storage`]), the
/// applied index, and the Raft log beside this file (`raft-log/`, see
/// [`crate::raftstore::log_file`]). A format-1 directory is upgraded
/// in place: its data is exactly the state of a region whose log is empty at index 0.
pub const FORMAT_VERSION: u64 = 2;

/// The database file inside the data directory.
pub const DB_FILE: &str = "storage.redb";

const META_FORMAT: &str = "format_version";
const META_CLUSTER_ID: &str = "cluster_id";
/// A store's identity in a cluster whose PD runs elsewhere: PD's cluster id and the store id
/// (TiKV's `StoreIdent`), written at the store's first start.
const META_STORE_IDENT: &str = "store_ident";
/// The meta key of the GC safe point (8 bytes, big-endian); written by `Storage` through the
/// scheduler, so it commits in order with the writes it governs.
pub const META_GC_SAFE_POINT: &str = "gc_safe_point";

/// Why the engine could not be opened or used; each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The directory holds data in a layout this build does not understand.
    #[error(
        "data directory {dir} was written by storage-node format {found}, this build reads format {expected}; \
         start with an empty --data-dir (or move {dir} away) — the data is left untouched"
    )]
    IncompatibleFormat {
        /// The data directory.
        dir: PathBuf,
        /// Format found on disk.
        found: u64,
        /// Format this build writes.
        expected: u64,
    },
    /// Another process has the database open.
    #[error(
        "data directory {dir} is in use by another storage-node process; stop it first (or use another --data-dir)"
    )]
    InUse {
        /// The data directory.
        dir: PathBuf,
    },
    /// The file exists but is not a readable redb database.
    #[error(
        "cannot open {file}: {source}; the file may be corrupt or not a storage-node database. Nothing was changed: restore it or start with an empty --data-dir"
    )]
    Corrupt {
        /// The database file.
        file: PathBuf,
        /// What redb reported.
        source: redb::DatabaseError,
    },
    /// The directory belongs to a store of another cluster, or to another store.
    #[error(
        "data directory {dir} holds store {store_id} of cluster {cluster_id}, but this is store {wanted_store} of PD's cluster {wanted_cluster}; \
         point --pd at that store's PD and pass --store-id {store_id}, or start this store with an empty --data-dir"
    )]
    OtherStore {
        /// The data directory.
        dir: PathBuf,
        /// The cluster the data belongs to.
        cluster_id: u64,
        /// The store the data belongs to.
        store_id: u64,
        /// The cluster of the PD it was started against.
        wanted_cluster: u64,
        /// The store id it was started as.
        wanted_store: u64,
    },
    /// Any other failure of the underlying engine (I/O, full disk, …).
    #[error("storage engine error: {0}")]
    Redb(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for EngineError {
            fn from(e: $t) -> Self { EngineError::Redb(e.to_string()) }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::Error
);

/// A fresh cluster id. PD derives its id from the boot time plus randomness; any non-zero,
/// stable value works, because clients only compare it for equality.
pub fn new_cluster_id() -> u64 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        << 32)
        | u64::from(rand::random::<u32>())
}

/// Identity read from (or written to) a data directory.
#[derive(Clone, Copy, Debug)]
pub struct Identity {
    /// The PD cluster id clients check on every reconnect.
    pub cluster_id: u64,
    /// The last GC safe point accepted.
    pub gc_safe_point: TimeStamp,
}

/// The opened database.
pub struct Engine {
    db: Database,
    dir: PathBuf,
}

impl Engine {
    /// Opens (or initialises) the engine in `dir`, refusing data it cannot read.
    pub fn open(dir: &Path) -> Result<(Engine, Identity), EngineError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| EngineError::Redb(format!("cannot create {}: {e}", dir.display())))?;
        let file = dir.join(DB_FILE);
        let fresh = !file.exists();
        let db = match Database::create(&file) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(EngineError::InUse {
                    dir: dir.to_path_buf(),
                });
            }
            Err(source) => return Err(EngineError::Corrupt { file, source }),
        };
        let engine = Engine {
            db,
            dir: dir.to_path_buf(),
        };
        let identity = engine.init_identity(fresh)?;
        Ok((engine, identity))
    }

    fn init_identity(&self, fresh: bool) -> Result<Identity, EngineError> {
        let txn = self.db.begin_write()?;
        let identity = {
            // Creating the tables up front lets read snapshots open them unconditionally.
            txn.open_table(LOCK_TABLE)?;
            txn.open_table(WRITE_TABLE)?;
            txn.open_table(RAFT_STATE_TABLE)?;
            let mut meta = txn.open_table(META_TABLE)?;
            let read_u64 =
                |meta: &redb::Table<&str, &[u8]>, k: &str| -> Result<Option<u64>, EngineError> {
                    Ok(meta
                        .get(k)?
                        .map(|v| u64::from_be_bytes(v.value().try_into().unwrap_or([0; 8]))))
                };
            match read_u64(&meta, META_FORMAT)? {
                Some(1) => {
                    tracing::info!("upgrading data directory format 1 to {FORMAT_VERSION}");
                    meta.insert(META_FORMAT, FORMAT_VERSION.to_be_bytes().as_slice())?;
                }
                Some(found) if found != FORMAT_VERSION => {
                    return Err(EngineError::IncompatibleFormat {
                        dir: self.dir.clone(),
                        found,
                        expected: FORMAT_VERSION,
                    });
                }
                Some(_) => {}
                None if !fresh && meta.len()? > 0 => {
                    // Tables exist but no format stamp: someone else's redb file.
                    return Err(EngineError::IncompatibleFormat {
                        dir: self.dir.clone(),
                        found: 0,
                        expected: FORMAT_VERSION,
                    });
                }
                None => {
                    meta.insert(META_FORMAT, FORMAT_VERSION.to_be_bytes().as_slice())?;
                }
            }
            let cluster_id = match read_u64(&meta, META_CLUSTER_ID)? {
                Some(id) => id,
                None => {
                    let id = new_cluster_id();
                    meta.insert(META_CLUSTER_ID, id.to_be_bytes().as_slice())?;
                    id
                }
            };
            let gc_safe_point = TimeStamp::new(read_u64(&meta, META_GC_SAFE_POINT)?.unwrap_or(0));
            Identity {
                cluster_id,
                gc_safe_point,
            }
        };
        txn.commit()?;
        Ok(identity)
    }

    /// The (cluster id, store id) this data directory was tied to, if it ever joined a
    /// cluster as a store.
    pub fn bound_store(&self) -> Result<Option<(u64, u64)>, EngineError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META_TABLE)?;
        Ok(meta.get(META_STORE_IDENT)?.and_then(|v| {
            let b = v.value();
            let word = |i: usize| Some(u64::from_be_bytes(b.get(i..i + 8)?.try_into().ok()?));
            Some((word(0)?, word(8)?))
        }))
    }

    /// Ties this data directory to store `store_id` of PD's cluster `cluster_id` on first use,
    /// and refuses it afterwards for any other cluster or store: data of one cluster served
    /// under another's timestamps would break every guarantee.
    pub fn bind_store(&self, cluster_id: u64, store_id: u64) -> Result<(), EngineError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META_TABLE)?;
            let found = meta.get(META_STORE_IDENT)?.map(|v| {
                let b = v.value();
                let word = |i: usize| {
                    u64::from_be_bytes(
                        b.get(i..i + 8)
                            .and_then(|s| s.try_into().ok())
                            .unwrap_or([0; 8]),
                    )
                };
                (word(0), word(8))
            });
            match found {
                Some(ident) if ident == (cluster_id, store_id) => {}
                Some((found_cluster, found_store)) => {
                    return Err(EngineError::OtherStore {
                        dir: self.dir.clone(),
                        cluster_id: found_cluster,
                        store_id: found_store,
                        wanted_cluster: cluster_id,
                        wanted_store: store_id,
                    });
                }
                None => {
                    let mut ident = cluster_id.to_be_bytes().to_vec();
                    ident.extend_from_slice(&store_id.to_be_bytes());
                    meta.insert(META_STORE_IDENT, ident.as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// A consistent read view of locks and writes as of now.
    pub fn snapshot(&self) -> Result<Snapshot, EngineError> {
        let txn = self.db.begin_read()?;
        Ok(Snapshot {
            lock: txn.open_table(LOCK_TABLE)?,
            write: txn.open_table(WRITE_TABLE)?,
        })
    }

    /// Starts a write transaction (a batch's scratch view, see `txn::scheduler`).
    pub fn begin_write(&self) -> Result<redb::WriteTransaction, EngineError> {
        Ok(self.db.begin_write()?)
    }

    /// The database, for the raftstore's state writes and applies.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The data directory (the Raft log lives in it too).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes used on disk by the database file (for the lab's status table).
    pub fn size_on_disk(&self) -> u64 {
        std::fs::metadata(self.dir.join(DB_FILE))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Number of (locks, write records) — handy in tests and in the status line.
    pub fn counts(&self) -> Result<(u64, u64), EngineError> {
        let s = self.snapshot()?;
        Ok((s.lock.len()?, s.write.len()?))
    }
}

/// A read-only view of the lock and write tables at one instant.
pub struct Snapshot {
    /// The lock table.
    pub lock: ReadOnlyTable<&'static [u8], &'static [u8]>,
    /// The write table.
    pub write: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_survives_reopen_and_foreign_formats_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, first) = Engine::open(dir.path()).unwrap();
        drop(engine);
        let (engine, second) = Engine::open(dir.path()).unwrap();
        assert_eq!(first.cluster_id, second.cluster_id);
        // Pretend a future build wrote this directory.
        let txn = engine.begin_write().unwrap();
        txn.open_table(META_TABLE)
            .unwrap()
            .insert(META_FORMAT, 99u64.to_be_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
        drop(engine);
        let err = Engine::open(dir.path())
            .err()
            .expect("format 99 must be refused");
        assert!(err.to_string().contains("format 99"), "{err}");
    }

    #[test]
    fn a_format_1_directory_is_upgraded_in_place_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, first) = Engine::open(dir.path()).unwrap();
        // What a build before the raftstore left: format 1 and a lock, no Raft tables in use.
        let txn = engine.begin_write().unwrap();
        txn.open_table(META_TABLE)
            .unwrap()
            .insert(META_FORMAT, 1u64.to_be_bytes().as_slice())
            .unwrap();
        txn.open_table(LOCK_TABLE)
            .unwrap()
            .insert(b"k".as_slice(), b"lock".as_slice())
            .unwrap();
        txn.commit().unwrap();
        drop(engine);
        let (engine, again) = Engine::open(dir.path()).expect("format 1 is upgraded");
        assert_eq!(first.cluster_id, again.cluster_id);
        assert_eq!(engine.counts().unwrap(), (1, 0), "the data is kept");
        drop(engine);
        let (engine, _) = Engine::open(dir.path()).expect("and reads as format 2 afterwards");
        let txn = engine.db().begin_read().unwrap();
        let meta = txn.open_table(META_TABLE).unwrap();
        let v = meta.get(META_FORMAT).unwrap().unwrap().value().to_vec();
        assert_eq!(v, FORMAT_VERSION.to_be_bytes());
    }

    #[test]
    fn garbage_file_is_reported_not_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(DB_FILE),
            b"this is not a database, and it must survive",
        )
        .unwrap();
        let err = Engine::open(dir.path())
            .err()
            .expect("garbage must be refused");
        assert!(err.to_string().contains("corrupt"), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join(DB_FILE)).unwrap(),
            b"this is not a database, and it must survive"
        );
    }

    #[test]
    fn second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Engine::open(dir.path()).unwrap();
        let err = Engine::open(dir.path())
            .err()
            .expect("double open must fail");
        assert!(err.to_string().contains("in use"), "{err}");
    }
}
