//! MVCC: how versions, locks and commit records are laid out and read back.
//!
//! - [`keys`]: user key + timestamp → engine key (memcomparable, newest first).
//! - [`records`]: the `Lock` and `Write` records of Percolator.
//! - [`reader`]: snapshot reads at a timestamp (point get, scans, lock checks).
//! - [`txn`]: the write buffer a command fills and applies only on success.

pub mod keys;
pub mod reader;
pub mod records;
pub mod txn;

pub use reader::{MvccReader, ScanArgs, ScanEntry, TxnCommitRecord};
pub use records::{Lock, LockType, Write, WriteType};
pub use txn::MvccTxn;
