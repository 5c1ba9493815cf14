//! Test scaffolding for the action tests: a temp-dir engine and TiKV-style `must_*` helpers.
//!
//! Each helper runs one command the way the scheduler does (its own redb write transaction;
//! the command's changes are applied only if it succeeded; then commit) and panics with the
//! action's error if it fails, so a test reads as a history:
//! `must_prewrite_put(&e, b"k", b"v", b"k", 10); must_commit(&e, b"k", 10, 20);
//! must_get(&e, b"k", 25, b"v")`. The `_err` variants return the error for the test to match.
//! Timestamps are `impl Into<TimeStamp>`, so plain literals work; keys are byte strings.

use std::sync::Arc;

use crate::concurrency::ConcurrencyManager;
use crate::engine::Engine;
use crate::mvcc::reader::{MvccReader, TxnCommitRecord};
use crate::mvcc::{Lock, Write, WriteType, keys};
use crate::pd::tso::Tso;
use crate::proto::kvrpcpb::Op;
use crate::proto::kvrpcpb::prewrite_request::PessimisticAction;
use crate::proto::kvrpcpb::write_conflict::Reason;
use crate::raftstore::command::{EngineTables, WriteBatch};
use crate::txn::actions::acquire_pessimistic_lock::{
    AcquireArgs, LockKey, acquire_pessimistic_lock,
};
use crate::txn::actions::check_txn_status::{self, CheckTxnStatusArgs};
use crate::txn::actions::prewrite::{Mutation, PrewriteArgs, PrewriteOutcome, prewrite};
use crate::txn::actions::{cleanup, commit};
use crate::txn::{TxnError, TxnStatus, WriteContext};
use crate::txn_types::{Key, TimeStamp};

/// The lock TTL of the helpers' prewrites (TiKV's client default).
pub const DEFAULT_TTL: u64 = 3_000;
/// The lock TTL of the helpers' pessimistic locks (the TiKV client's `MAX_TTL`).
pub const PESSIMISTIC_TTL: u64 = 20_000;

/// A table of a read snapshot.
type SnapTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// A throw-away engine with its timestamp oracle and commit registry.
pub struct TestEngine {
    engine: Engine,
    cm: ConcurrencyManager,
    _dir: tempfile::TempDir,
}

impl Default for TestEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEngine {
    /// A fresh, empty engine in a temporary directory.
    pub fn new() -> TestEngine {
        let dir = tempfile::tempdir().expect("temp dir");
        let (engine, _) = Engine::open(dir.path()).expect("engine opens");
        let tso = Arc::new(Tso::open(dir.path()).expect("tso opens"));
        TestEngine {
            engine,
            cm: ConcurrencyManager::new(tso),
            _dir: dir,
        }
    }

    /// Runs one command as a batch of one, like the scheduler, but without Raft: the scratch
    /// view the command wrote (only on success) is committed directly, then the commit
    /// timestamps it allocated are released. The actions' tests are about Percolator, not
    /// replication.
    pub fn run<R>(
        &self,
        command: impl FnOnce(&mut WriteContext<'_>) -> Result<R, TxnError>,
    ) -> Result<R, TxnError> {
        let wtxn = self.engine.begin_write().expect("write txn");
        let (result, allocated) = {
            let mut ctx = WriteContext {
                tables: EngineTables::open(&wtxn).expect("engine tables"),
                cm: &self.cm,
                allocated: Vec::new(),
                batch: WriteBatch::default(),
                failed: false,
            };
            let result = command(&mut ctx);
            assert!(!ctx.failed, "an engine write failed half-way");
            (result, std::mem::take(&mut ctx.allocated))
        };
        wtxn.commit().expect("engine commit");
        self.cm.release(&allocated);
        result
    }

    /// Runs `f` over a reader of a fresh snapshot (what a KvGet would see).
    pub fn read<R>(&self, f: impl FnOnce(&MvccReader<'_, SnapTable, SnapTable>) -> R) -> R {
        let snap = self.engine.snapshot().expect("snapshot");
        f(&MvccReader::new(&snap.lock, &snap.write))
    }

    /// A fresh timestamp from the oracle (wall-clock based, far above small literals).
    pub fn tso(&self) -> TimeStamp {
        self.cm.tso().next().expect("tso")
    }

    /// Number of write records of `key`, of any type (what GC removes).
    pub fn write_count(&self, key: &[u8]) -> usize {
        let snap = self.engine.snapshot().expect("snapshot");
        let key = Key::from_raw(key);
        let (from, to) = (keys::first_version(&key), keys::past_versions(&key));
        snap.write
            .range::<&[u8]>(from.as_slice()..to.as_slice())
            .expect("range")
            .count()
    }
}

/// The typed key of a literal.
pub fn k(raw: &[u8]) -> Key {
    Key::from_raw(raw)
}

/// The typed timestamp of a literal.
pub fn ts(t: impl Into<TimeStamp>) -> TimeStamp {
    t.into()
}

/// Unwraps a command's result, panicking with its error.
pub fn must_succeed<R>(r: Result<R, TxnError>) -> R {
    r.unwrap_or_else(|e| panic!("expected success, got {e:?}"))
}

/// Unwraps a command's error, panicking if it succeeded.
pub fn must_err<R: std::fmt::Debug>(r: Result<R, TxnError>) -> TxnError {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e,
    }
}

/// Panics unless `err` is a write conflict for `reason`: the check most failure-path tests end
/// with, in one place so each test says only which reason it expects.
#[track_caller]
pub fn must_conflict(err: &TxnError, reason: Reason) {
    assert!(
        matches!(err, TxnError::WriteConflict { reason: r, .. } if *r == reason),
        "expected a {reason:?} write conflict, got {err:?}"
    );
}

/// A 2PC prewrite request of `(op, key, value)` mutations.
pub fn prewrite_args(
    mutations: &[(Op, &[u8], &[u8])],
    primary: &[u8],
    start_ts: impl Into<TimeStamp>,
    ttl: u64,
) -> PrewriteArgs {
    PrewriteArgs {
        mutations: mutations
            .iter()
            .map(|(op, key, value)| Mutation {
                op: *op,
                key: k(key),
                value: value.to_vec(),
                pessimistic_action: PessimisticAction::SkipPessimisticCheck,
            })
            .collect(),
        primary: k(primary),
        start_ts: start_ts.into(),
        lock_ttl: ttl,
        txn_size: mutations.len() as u64,
        ..Default::default()
    }
}

/// Runs a prewrite; a `KeyIsLocked` report counts as failure, as it does for the client.
pub fn try_prewrite(e: &TestEngine, args: PrewriteArgs) -> Result<PrewriteOutcome, TxnError> {
    let mut outcome = e.run(|ctx| prewrite(ctx, args))?;
    if !outcome.locked.is_empty() {
        return Err(outcome.locked.swap_remove(0));
    }
    Ok(outcome)
}

/// Prewrites `key = value` (2PC) and expects success.
pub fn must_prewrite_put(
    e: &TestEngine,
    key: &[u8],
    value: &[u8],
    primary: &[u8],
    start_ts: impl Into<TimeStamp>,
) {
    must_prewrite_put_ttl(e, key, value, primary, start_ts, DEFAULT_TTL);
}

/// Prewrites `key = value` (2PC) with a lock TTL and expects success.
pub fn must_prewrite_put_ttl(
    e: &TestEngine,
    key: &[u8],
    value: &[u8],
    primary: &[u8],
    start_ts: impl Into<TimeStamp>,
    ttl: u64,
) {
    let args = prewrite_args(&[(Op::Put, key, value)], primary, start_ts, ttl);
    must_succeed(try_prewrite(e, args));
}

/// Prewrites a deletion of `key` (2PC) and expects success.
pub fn must_prewrite_delete(
    e: &TestEngine,
    key: &[u8],
    primary: &[u8],
    start_ts: impl Into<TimeStamp>,
) {
    let args = prewrite_args(&[(Op::Del, key, b"")], primary, start_ts, DEFAULT_TTL);
    must_succeed(try_prewrite(e, args));
}

/// Prewrites `key = value` (2PC) and expects an error, which it returns.
pub fn must_prewrite_put_err(
    e: &TestEngine,
    key: &[u8],
    value: &[u8],
    primary: &[u8],
    start_ts: impl Into<TimeStamp>,
) -> TxnError {
    let args = prewrite_args(&[(Op::Put, key, value)], primary, start_ts, DEFAULT_TTL);
    must_err(try_prewrite(e, args))
}

/// Prewrites `key = value` with async commit (`key` is the primary when `secondaries` is
/// non-empty) and returns the lock's min commit ts.
pub fn must_prewrite_put_async(
    e: &TestEngine,
    key: &[u8],
    value: &[u8],
    primary: &[u8],
    secondaries: &[&[u8]],
    start_ts: impl Into<TimeStamp>,
    ttl: u64,
) -> TimeStamp {
    let mut args = prewrite_args(&[(Op::Put, key, value)], primary, start_ts, ttl);
    args.use_async_commit = true;
    args.secondaries = secondaries.iter().map(|s| k(s)).collect();
    must_succeed(try_prewrite(e, args)).min_commit_ts
}

/// Commits `key` of `start_ts` at `commit_ts` and expects success.
pub fn must_commit(
    e: &TestEngine,
    key: &[u8],
    start_ts: impl Into<TimeStamp>,
    commit_ts: impl Into<TimeStamp>,
) {
    let (start_ts, commit_ts) = (start_ts.into(), commit_ts.into());
    must_succeed(e.run(|ctx| commit::commit(ctx, &[k(key)], start_ts, commit_ts)));
}

/// Commits `key` and expects an error, which it returns.
pub fn must_commit_err(
    e: &TestEngine,
    key: &[u8],
    start_ts: impl Into<TimeStamp>,
    commit_ts: impl Into<TimeStamp>,
) -> TxnError {
    let (start_ts, commit_ts) = (start_ts.into(), commit_ts.into());
    must_err(e.run(|ctx| commit::commit(ctx, &[k(key)], start_ts, commit_ts)))
}

/// Rolls back `key` of `start_ts` (KvBatchRollback) and expects success.
pub fn must_rollback(e: &TestEngine, key: &[u8], start_ts: impl Into<TimeStamp>) {
    let start_ts = start_ts.into();
    must_succeed(e.run(|ctx| cleanup::rollback(ctx, &[k(key)], start_ts)));
}

/// Rolls back `key` and expects an error, which it returns.
pub fn must_rollback_err(e: &TestEngine, key: &[u8], start_ts: impl Into<TimeStamp>) -> TxnError {
    let start_ts = start_ts.into();
    must_err(e.run(|ctx| cleanup::rollback(ctx, &[k(key)], start_ts)))
}

/// KvCleanup through `key`; returns the commit ts, zero when rolled back.
pub fn cleanup(
    e: &TestEngine,
    key: &[u8],
    start_ts: impl Into<TimeStamp>,
    current_ts: impl Into<TimeStamp>,
) -> Result<TimeStamp, TxnError> {
    let (start_ts, current_ts) = (start_ts.into(), current_ts.into());
    e.run(|ctx| cleanup::cleanup(ctx, &k(key), start_ts, current_ts))
}

/// KvCheckTxnStatus of the transaction `lock_ts` through its primary.
pub fn check_txn_status(
    e: &TestEngine,
    primary: &[u8],
    lock_ts: impl Into<TimeStamp>,
    caller_start_ts: impl Into<TimeStamp>,
    current_ts: impl Into<TimeStamp>,
    rollback_if_not_exist: bool,
) -> Result<TxnStatus, TxnError> {
    let args = CheckTxnStatusArgs {
        primary: k(primary),
        lock_ts: lock_ts.into(),
        caller_start_ts: caller_start_ts.into(),
        current_ts: current_ts.into(),
        rollback_if_not_exist,
        force_sync_commit: false,
        resolving_pessimistic_lock: false,
    };
    e.run(|ctx| check_txn_status::check_txn_status(ctx, &args))
}

/// A snapshot read of `key` at `ts`; panics if a lock is in the way.
fn read_value(e: &TestEngine, key: &[u8], ts: TimeStamp) -> Option<Vec<u8>> {
    e.read(|r| match r.get(&k(key), ts, &[]).expect("read") {
        Ok(value) => value,
        Err(lock) => panic!("read of {} at {ts} is blocked by {lock:?}", k(key)),
    })
}

/// Asserts a snapshot read of `key` at `ts` sees `value`.
pub fn must_get(e: &TestEngine, key: &[u8], ts: impl Into<TimeStamp>, value: &[u8]) {
    let got = read_value(e, key, ts.into());
    assert_eq!(got, Some(value.to_vec()), "read of {}", k(key));
}

/// Asserts a snapshot read of `key` at `ts` sees no value (and no lock in the way).
pub fn must_get_none(e: &TestEngine, key: &[u8], ts: impl Into<TimeStamp>) {
    let got = read_value(e, key, ts.into());
    assert_eq!(got, None, "read of {}", k(key));
}

/// Asserts `key` is locked by `start_ts` and returns the lock.
pub fn must_locked(e: &TestEngine, key: &[u8], start_ts: impl Into<TimeStamp>) -> Lock {
    let lock = e.read(|r| r.load_lock(&k(key)).expect("read"));
    let lock = lock.unwrap_or_else(|| panic!("{} is not locked", k(key)));
    assert_eq!(lock.start_ts, start_ts.into(), "lock owner of {}", k(key));
    lock
}

/// Asserts `key` has no lock.
pub fn must_unlocked(e: &TestEngine, key: &[u8]) {
    let lock = e.read(|r| r.load_lock(&k(key)).expect("read"));
    assert_eq!(lock, None, "{} should not be locked", k(key));
}

/// Asserts the write record of `key` at `commit_ts` exists with this type and writer.
pub fn must_written(
    e: &TestEngine,
    key: &[u8],
    start_ts: impl Into<TimeStamp>,
    commit_ts: impl Into<TimeStamp>,
    write_type: WriteType,
) -> Write {
    let commit_ts = commit_ts.into();
    let found = e.read(|r| r.seek_write(&k(key), commit_ts).expect("read"));
    let (at, write) = found.unwrap_or_else(|| panic!("no write record of {}", k(key)));
    assert_eq!(at, commit_ts, "newest record of {} at or below", k(key));
    assert_eq!(write.write_type, write_type);
    assert_eq!(write.start_ts, start_ts.into());
    write
}

/// What `key`'s write records say about transaction `start_ts`.
pub fn commit_record(
    e: &TestEngine,
    key: &[u8],
    start_ts: impl Into<TimeStamp>,
) -> TxnCommitRecord {
    let start_ts = start_ts.into();
    e.read(|r| r.txn_commit_record(&k(key), start_ts).expect("read"))
}

/// Asserts transaction `start_ts` is recorded as rolled back on `key`.
pub fn must_rolled_back(e: &TestEngine, key: &[u8], start_ts: impl Into<TimeStamp>) {
    assert_eq!(commit_record(e, key, start_ts), TxnCommitRecord::RolledBack);
}

/// Asserts transaction `start_ts` is recorded as committed on `key` at `commit_ts`.
pub fn must_committed(
    e: &TestEngine,
    key: &[u8],
    start_ts: impl Into<TimeStamp>,
    commit_ts: impl Into<TimeStamp>,
) {
    assert_eq!(
        commit_record(e, key, start_ts),
        TxnCommitRecord::Committed(commit_ts.into())
    );
}

/// A pessimistic lock request for `keys` that asks for the values.
pub fn acquire_args(
    keys: &[&[u8]],
    primary: &[u8],
    start_ts: impl Into<TimeStamp>,
    for_update_ts: impl Into<TimeStamp>,
) -> AcquireArgs {
    AcquireArgs {
        keys: keys
            .iter()
            .map(|key| LockKey {
                key: k(key),
                should_not_exist: false,
            })
            .collect(),
        primary: k(primary),
        start_ts: start_ts.into(),
        lock_ttl: PESSIMISTIC_TTL,
        for_update_ts: for_update_ts.into(),
        return_values: true,
        ..Default::default()
    }
}

/// Locks `key` pessimistically and expects success; returns its value at `for_update_ts`.
pub fn must_acquire_pessimistic_lock(
    e: &TestEngine,
    key: &[u8],
    primary: &[u8],
    start_ts: impl Into<TimeStamp>,
    for_update_ts: impl Into<TimeStamp>,
) -> Option<Vec<u8>> {
    let args = acquire_args(&[key], primary, start_ts, for_update_ts);
    must_succeed(e.run(|ctx| acquire_pessimistic_lock(ctx, &args))).swap_remove(0)
}

/// Locks `key` pessimistically and expects an error, which it returns.
pub fn must_acquire_pessimistic_lock_err(
    e: &TestEngine,
    key: &[u8],
    primary: &[u8],
    start_ts: impl Into<TimeStamp>,
    for_update_ts: impl Into<TimeStamp>,
) -> TxnError {
    let args = acquire_args(&[key], primary, start_ts, for_update_ts);
    must_err(e.run(|ctx| acquire_pessimistic_lock(ctx, &args)))
}

/// Asserts `key` holds a pessimistic lock of `start_ts` at `for_update_ts`; returns it.
pub fn must_pessimistic_locked(
    e: &TestEngine,
    key: &[u8],
    start_ts: impl Into<TimeStamp>,
    for_update_ts: impl Into<TimeStamp>,
) -> Lock {
    let lock = must_locked(e, key, start_ts);
    assert!(lock.is_pessimistic(), "{} holds {lock:?}", k(key));
    assert_eq!(lock.for_update_ts, for_update_ts.into(), "for_update_ts");
    lock
}

/// A pessimistic transaction's prewrite: every mutation must hold its pessimistic lock.
pub fn pessimistic_prewrite_args(
    mutations: &[(Op, &[u8], &[u8])],
    primary: &[u8],
    start_ts: impl Into<TimeStamp>,
    for_update_ts: impl Into<TimeStamp>,
) -> PrewriteArgs {
    let mut args = prewrite_args(mutations, primary, start_ts, DEFAULT_TTL);
    for m in &mut args.mutations {
        m.pessimistic_action = PessimisticAction::DoPessimisticCheck;
    }
    args.for_update_ts = for_update_ts.into();
    args
}

/// Prewrites `key = value` in a pessimistic transaction (2PC) and expects success.
pub fn must_pessimistic_prewrite_put(
    e: &TestEngine,
    key: &[u8],
    value: &[u8],
    primary: &[u8],
    start_ts: impl Into<TimeStamp>,
    for_update_ts: impl Into<TimeStamp>,
) {
    let args =
        pessimistic_prewrite_args(&[(Op::Put, key, value)], primary, start_ts, for_update_ts);
    must_succeed(try_prewrite(e, args));
}

/// Prewrites `key = value` in a pessimistic transaction and expects an error.
pub fn must_pessimistic_prewrite_put_err(
    e: &TestEngine,
    key: &[u8],
    value: &[u8],
    primary: &[u8],
    start_ts: impl Into<TimeStamp>,
    for_update_ts: impl Into<TimeStamp>,
) -> TxnError {
    let args =
        pessimistic_prewrite_args(&[(Op::Put, key, value)], primary, start_ts, for_update_ts);
    must_err(try_prewrite(e, args))
}
