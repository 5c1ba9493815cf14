//! Model-based test of the MVCC and transaction layers: random histories of transactions
//! (1PC, async commit, 2PC, aborted, stale/conflicting), snapshot reads and scans at past
//! timestamps, and GC, checked against a reference model that is obviously right: a map from
//! key to its list of (timestamp, value) versions.
//!
//! Pessimistic transactions join the histories: lock (reading the values at `for_update_ts`)
//! then prewrite with the `DoPessimisticCheck` flag and commit; lock then pessimistic
//! rollback (while an optimistic writer bumps into the locks); locking with a stale
//! `for_update_ts`, which must conflict exactly when a key changed after it; and a flagged
//! prewrite without any lock, which must fail and leave nothing behind. Reads run while
//! pessimistic locks are held and must not be blocked by them.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use storage_node::mvcc::{ScanArgs, ScanEntry};
use storage_node::proto::kvrpcpb::Op;
use storage_node::proto::kvrpcpb::prewrite_request::PessimisticAction;
use storage_node::storage::Storage;
use storage_node::txn::TxnError;
use storage_node::txn::actions::acquire_pessimistic_lock::{AcquireArgs, LockKey};
use storage_node::txn::actions::prewrite::{Mutation, PrewriteArgs};
use storage_node::{Key, TimeStamp};

/// Keys chosen to stress the encoding: prefixes of each other, a NUL suffix, 8-byte groups.
const KEYS: [&[u8]; 7] = [
    b"a",
    b"a\0",
    b"ab",
    b"abcdefgh",
    b"abcdefgh\0",
    b"b",
    b"\xff",
];

#[derive(Clone, Debug)]
enum Commit {
    OnePc,
    Async,
    TwoPc,
}

#[derive(Clone, Debug)]
enum Action {
    /// A transaction writing (Some) or deleting (None) some keys.
    Write(Commit, Vec<(usize, Option<u8>)>),
    /// Prewritten, then rolled back.
    Abort(Vec<usize>),
    /// A transaction whose start ts is an old one: it must conflict iff a key changed since.
    Stale(usize, Vec<(usize, Option<u8>)>),
    /// A point read at a past (or the current) timestamp.
    Get(usize, usize),
    /// A scan at a past timestamp.
    Scan {
        at: usize,
        lo: usize,
        hi: usize,
        limit: usize,
        reverse: bool,
    },
    /// GC at a past timestamp.
    Gc(usize),
    /// A pessimistic transaction: lock, read under the locks, prewrite (flagged), commit.
    Pessimistic(bool, Vec<(usize, Option<u8>)>),
    /// Pessimistic locks taken, an optimistic writer blocked by them, then rolled back.
    PessimisticAbort(Vec<usize>),
    /// Locking with a `for_update_ts` from the past (start ts below it): conflicts iff a
    /// key changed after `for_update_ts`; otherwise it commits over what it read.
    StalePessimistic(usize, usize, Vec<(usize, Option<u8>)>),
    /// A flagged prewrite whose keys were never locked.
    UnlockedPessimisticPrewrite(Vec<(usize, Option<u8>)>),
}

fn action() -> impl Strategy<Value = Action> {
    let muts = prop::collection::vec(
        (0..KEYS.len(), prop::option::weighted(0.8, any::<u8>())),
        1..4,
    );
    let commit = prop_oneof![
        Just(Commit::OnePc),
        Just(Commit::Async),
        Just(Commit::TwoPc)
    ];
    prop_oneof![
        4 => (commit, muts.clone()).prop_map(|(c, m)| Action::Write(c, dedup(m))),
        1 => prop::collection::vec(0..KEYS.len(), 1..3).prop_map(|ks| Action::Abort(dedup_keys(ks))),
        2 => (any::<usize>(), muts.clone()).prop_map(|(at, m)| Action::Stale(at, dedup(m))),
        4 => (any::<usize>(), 0..KEYS.len()).prop_map(|(at, k)| Action::Get(at, k)),
        3 => (any::<usize>(), 0..KEYS.len() + 1, 0..KEYS.len() + 1, 1..6usize, any::<bool>())
            .prop_map(|(at, lo, hi, limit, reverse)| Action::Scan { at, lo, hi, limit, reverse }),
        1 => any::<usize>().prop_map(Action::Gc),
        3 => (any::<bool>(), muts.clone()).prop_map(|(a, m)| Action::Pessimistic(a, dedup(m))),
        1 => prop::collection::vec(0..KEYS.len(), 1..3)
            .prop_map(|ks| Action::PessimisticAbort(dedup_keys(ks))),
        2 => (any::<usize>(), any::<usize>(), muts.clone())
            .prop_map(|(at, fu, m)| Action::StalePessimistic(at, fu, dedup(m))),
        1 => muts.prop_map(|m| Action::UnlockedPessimisticPrewrite(dedup(m))),
    ]
}

fn dedup(m: Vec<(usize, Option<u8>)>) -> Vec<(usize, Option<u8>)> {
    let map: BTreeMap<usize, Option<u8>> = m.into_iter().collect();
    map.into_iter().collect()
}

fn dedup_keys(mut ks: Vec<usize>) -> Vec<usize> {
    ks.sort();
    ks.dedup();
    ks
}

/// Every version of one key: (commit ts, value or None for a deletion).
type Versions = Vec<(TimeStamp, Option<Vec<u8>>)>;

/// The reference: every version of every key, plus every write-record timestamp (rollbacks
/// included), which is what conflict detection looks at.
#[derive(Default)]
struct Model {
    versions: BTreeMap<Vec<u8>, Versions>,
    records: BTreeMap<Vec<u8>, Vec<TimeStamp>>,
    /// Every start ts used, so a stale transaction never reuses another's identity.
    used_start_ts: std::collections::BTreeSet<TimeStamp>,
    safe_point: TimeStamp,
}

impl Model {
    fn get(&self, k: &[u8], ts: TimeStamp) -> Option<Vec<u8>> {
        self.versions
            .get(k)?
            .iter()
            .filter(|(c, _)| *c <= ts)
            .max_by_key(|(c, _)| *c)?
            .1
            .clone()
    }
    fn changed_after(&self, k: &[u8], ts: TimeStamp) -> bool {
        self.records
            .get(k)
            .is_some_and(|r| r.iter().any(|c| *c > ts))
    }
    fn commit(&mut self, muts: &[(Vec<u8>, Option<Vec<u8>>)], ts: TimeStamp) {
        for (k, v) in muts {
            self.versions
                .entry(k.clone())
                .or_default()
                .push((ts, v.clone()));
            self.records.entry(k.clone()).or_default().push(ts);
        }
    }
}

fn keys(muts: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<Key> {
    muts.iter().map(|(k, _)| Key::from_raw(k)).collect()
}

fn args(start_ts: TimeStamp, muts: &[(Vec<u8>, Option<Vec<u8>>)], commit: &Commit) -> PrewriteArgs {
    let primary = Key::from_raw(&muts[0].0);
    PrewriteArgs {
        mutations: muts
            .iter()
            .map(|(k, v)| Mutation {
                op: if v.is_some() { Op::Put } else { Op::Del },
                key: Key::from_raw(k),
                value: v.clone().unwrap_or_default(),
                pessimistic_action: PessimisticAction::SkipPessimisticCheck,
            })
            .collect(),
        primary: primary.clone(),
        start_ts,
        lock_ttl: 3000,
        txn_size: muts.len() as u64,
        use_async_commit: matches!(commit, Commit::Async | Commit::OnePc),
        secondaries: keys(muts).into_iter().filter(|k| *k != primary).collect(),
        try_one_pc: matches!(commit, Commit::OnePc),
        for_update_ts: TimeStamp::zero(),
    }
}

/// The prewrite of a pessimistic transaction: every key must hold its pessimistic lock.
fn pessimistic_args(
    start_ts: TimeStamp,
    for_update_ts: TimeStamp,
    muts: &[(Vec<u8>, Option<Vec<u8>>)],
    commit: &Commit,
) -> PrewriteArgs {
    let mut a = args(start_ts, muts, commit);
    for m in &mut a.mutations {
        m.pessimistic_action = PessimisticAction::DoPessimisticCheck;
    }
    a.for_update_ts = for_update_ts;
    a
}

/// KvPessimisticLock on `keys` (no waiting), returning the values at `for_update_ts`.
async fn lock(
    s: &Storage,
    start_ts: TimeStamp,
    for_update_ts: TimeStamp,
    keys: &[Key],
) -> Result<Vec<Option<Vec<u8>>>, TxnError> {
    let args = AcquireArgs {
        keys: keys
            .iter()
            .map(|k| LockKey {
                key: k.clone(),
                should_not_exist: false,
            })
            .collect(),
        primary: keys[0].clone(),
        start_ts,
        lock_ttl: 20_000,
        for_update_ts,
        return_values: true,
        ..Default::default()
    };
    s.acquire_pessimistic_lock(args, None).await
}

/// Prewrites and commits a pessimistic transaction whose keys are locked.
async fn commit_pessimistic(
    s: &Storage,
    start_ts: TimeStamp,
    for_update_ts: TimeStamp,
    muts: &[(Vec<u8>, Option<Vec<u8>>)],
    commit: &Commit,
) -> Result<TimeStamp, TxnError> {
    let out = s
        .prewrite(pessimistic_args(start_ts, for_update_ts, muts, commit))
        .await?;
    if let Some(e) = out.locked.into_iter().next() {
        return Err(e);
    }
    let commit_ts = match commit {
        Commit::Async => out.min_commit_ts,
        _ => s.tso().next().unwrap(),
    };
    s.commit(keys(muts), start_ts, commit_ts).await?;
    Ok(commit_ts)
}

/// A hand-picked start ts stands for one the oracle handed out in the past, so the oracle
/// must already be beyond it: otherwise a later commit ts could equal the start ts (a
/// history no real TSO produces, which the store rightly refuses).
fn pass_oracle_beyond(s: &Storage, start_ts: TimeStamp) {
    while s.tso().next().unwrap() <= start_ts {}
}

/// The locks left in the store (every action must finish what it starts).
fn lock_count(s: &Storage) -> u64 {
    s.engine().counts().unwrap().0
}

/// Runs one transaction through prewrite and commit; returns its commit ts or the error.
async fn run_txn(
    s: &Storage,
    start_ts: TimeStamp,
    muts: &[(Vec<u8>, Option<Vec<u8>>)],
    commit: &Commit,
) -> Result<TimeStamp, TxnError> {
    let out = s.prewrite(args(start_ts, muts, commit)).await?;
    if let Some(e) = out.locked.into_iter().next() {
        return Err(e);
    }
    let keys = keys(muts);
    match commit {
        Commit::OnePc => Ok(out.one_pc_commit_ts),
        Commit::Async => {
            s.commit(keys, start_ts, out.min_commit_ts).await?;
            Ok(out.min_commit_ts)
        }
        Commit::TwoPc => {
            let commit_ts = s.tso().next().unwrap();
            s.commit(keys, start_ts, commit_ts).await?;
            Ok(commit_ts)
        }
    }
}

fn to_muts(muts: &[(usize, Option<u8>)]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    muts.iter()
        .map(|(k, v)| (KEYS[*k].to_vec(), v.map(|b| vec![b])))
        .collect()
}

async fn check_history(actions: Vec<Action>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let s: Arc<Storage> = Storage::open(dir.path()).unwrap();
    let mut model = Model::default();
    // Timestamps observed so far; reads and stale transactions pick among them.
    let mut stamps = vec![s.tso().next().unwrap()];
    let pick = |stamps: &Vec<TimeStamp>, i: usize, floor: TimeStamp| -> TimeStamp {
        let candidates: Vec<TimeStamp> = stamps.iter().copied().filter(|t| *t >= floor).collect();
        candidates[i % candidates.len()]
    };
    for action in actions {
        match action {
            Action::Write(commit, muts) => {
                let muts: Vec<_> = muts
                    .iter()
                    .map(|(k, v)| (KEYS[*k].to_vec(), v.map(|b| vec![b])))
                    .collect();
                let start_ts = s.tso().next().unwrap();
                model.used_start_ts.insert(start_ts);
                let commit_ts = run_txn(&s, start_ts, &muts, &commit)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{commit:?} failed: {e}")))?;
                prop_assert!(commit_ts > start_ts);
                model.commit(&muts, commit_ts);
                stamps.push(commit_ts);
            }
            Action::Abort(ks) => {
                let muts: Vec<_> = ks
                    .iter()
                    .map(|k| (KEYS[*k].to_vec(), Some(vec![0])))
                    .collect();
                let start_ts = s.tso().next().unwrap();
                model.used_start_ts.insert(start_ts);
                let out = s
                    .prewrite(args(start_ts, &muts, &Commit::TwoPc))
                    .await
                    .unwrap();
                prop_assert!(out.locked.is_empty());
                s.rollback(keys(&muts), start_ts).await.unwrap();
                for (k, _) in &muts {
                    model.records.entry(k.clone()).or_default().push(start_ts);
                }
            }
            Action::Stale(at, muts) => {
                let muts: Vec<_> = muts
                    .iter()
                    .map(|(k, v)| (KEYS[*k].to_vec(), v.map(|b| vec![b])))
                    .collect();
                // A start ts from the past that no other transaction used.
                let old = pick(&stamps, at, model.safe_point);
                let start_ts = old.next();
                if model.used_start_ts.contains(&start_ts)
                    || model.records.values().flatten().any(|t| *t == start_ts)
                {
                    continue;
                }
                model.used_start_ts.insert(start_ts);
                pass_oracle_beyond(&s, start_ts);
                let should_conflict = muts.iter().any(|(k, _)| model.changed_after(k, start_ts));
                match run_txn(&s, start_ts, &muts, &Commit::TwoPc).await {
                    Ok(commit_ts) => {
                        prop_assert!(
                            !should_conflict,
                            "a stale write at {start_ts} committed over a newer version"
                        );
                        model.commit(&muts, commit_ts);
                        stamps.push(commit_ts);
                    }
                    Err(TxnError::WriteConflict { .. }) => {
                        prop_assert!(should_conflict, "spurious conflict at {start_ts}");
                        s.rollback(keys(&muts), start_ts).await.unwrap();
                        for (k, _) in &muts {
                            model.records.entry(k.clone()).or_default().push(start_ts);
                        }
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e}"))),
                }
            }
            Action::Get(at, k) => {
                let ts = pick(&stamps, at, model.safe_point);
                let got = s
                    .get(&Key::from_raw(KEYS[k]), ts, &[])
                    .await
                    .unwrap()
                    .expect("no lock survives a finished transaction");
                prop_assert_eq!(got, model.get(KEYS[k], ts), "get {:?} at {}", KEYS[k], ts);
            }
            Action::Scan {
                at,
                lo,
                hi,
                limit,
                reverse,
            } => {
                let ts = pick(&stamps, at, model.safe_point);
                let mut sorted: Vec<&[u8]> = KEYS.to_vec();
                sorted.sort();
                let lo_key: &[u8] = if lo == sorted.len() { b"" } else { sorted[lo] };
                let hi_key: &[u8] = if hi == sorted.len() { b"" } else { sorted[hi] };
                let scan = ScanArgs {
                    lower: Key::from_raw(lo_key),
                    upper: Key::from_raw(hi_key),
                    ts,
                    limit,
                    key_only: false,
                    reverse,
                    bypass: Vec::new(),
                };
                let got: Vec<(Vec<u8>, Vec<u8>)> = s
                    .scan(&scan)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|e| match e {
                        ScanEntry::Pair(k, v) => (k.into_raw(), v),
                        ScanEntry::Locked(l) => panic!("unexpected lock {l:?}"),
                    })
                    .collect();
                let mut expected: Vec<(Vec<u8>, Vec<u8>)> = sorted
                    .iter()
                    .filter(|k| **k >= lo_key && (hi_key.is_empty() || **k < hi_key))
                    .filter_map(|k| model.get(k, ts).map(|v| (k.to_vec(), v)))
                    .collect();
                if reverse {
                    expected.reverse();
                }
                expected.truncate(limit);
                prop_assert_eq!(
                    got,
                    expected,
                    "scan [{:?}, {:?}) at {} reverse={}",
                    lo_key,
                    hi_key,
                    ts,
                    reverse
                );
            }
            Action::Gc(at) => {
                let sp = pick(&stamps, at, model.safe_point);
                s.update_gc_safe_point(sp).await.unwrap();
                model.safe_point = model.safe_point.max(sp);
            }
            Action::Pessimistic(use_async, muts) => {
                let muts = to_muts(&muts);
                let commit = if use_async {
                    Commit::Async
                } else {
                    Commit::TwoPc
                };
                let start_ts = s.tso().next().unwrap();
                model.used_start_ts.insert(start_ts);
                let for_update_ts = s.tso().next().unwrap();
                let ks = keys(&muts);
                let values = lock(&s, start_ts, for_update_ts, &ks)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("lock failed: {e}")))?;
                for ((k, _), v) in muts.iter().zip(&values) {
                    prop_assert_eq!(v, &model.get(k, for_update_ts), "locked value of {:?}", k);
                }
                // Snapshot reads are not blocked by pessimistic locks, and see the same.
                let now = s.tso().next().unwrap();
                for (k, _) in &muts {
                    let got = s.get(&Key::from_raw(k), now, &[]).await.unwrap();
                    prop_assert_eq!(got, Ok(model.get(k, now)), "read under a lock");
                }
                let commit_ts = commit_pessimistic(&s, start_ts, for_update_ts, &muts, &commit)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("pessimistic {commit:?}: {e}")))?;
                prop_assert!(commit_ts > for_update_ts);
                model.commit(&muts, commit_ts);
                stamps.push(commit_ts);
            }
            Action::PessimisticAbort(ks) => {
                let ks: Vec<Key> = ks.iter().map(|k| Key::from_raw(KEYS[*k])).collect();
                let start_ts = s.tso().next().unwrap();
                model.used_start_ts.insert(start_ts);
                let for_update_ts = s.tso().next().unwrap();
                lock(&s, start_ts, for_update_ts, &ks).await.unwrap();
                // An optimistic writer of one of the keys meets the lock.
                let other = s.tso().next().unwrap();
                let muts = vec![(ks[0].as_raw().to_vec(), Some(vec![1]))];
                let out = s
                    .prewrite(args(other, &muts, &Commit::TwoPc))
                    .await
                    .unwrap();
                prop_assert!(out.locked.len() == 1, "a pessimistic lock blocks writers");
                let removed = s
                    .pessimistic_rollback(ks.clone(), start_ts, for_update_ts)
                    .await
                    .unwrap();
                prop_assert_eq!(removed, ks.len());
                prop_assert_eq!(lock_count(&s), 0);
                // No rollback record: the model's history is unchanged.
            }
            Action::StalePessimistic(at, fu, muts) => {
                let muts = to_muts(&muts);
                let old = pick(&stamps, at, model.safe_point);
                let start_ts = old.next();
                if model.used_start_ts.contains(&start_ts)
                    || model.records.values().flatten().any(|t| *t == start_ts)
                {
                    continue;
                }
                model.used_start_ts.insert(start_ts);
                pass_oracle_beyond(&s, start_ts);
                // A later stamp, or the start ts itself when none is later.
                let later: Vec<TimeStamp> =
                    stamps.iter().copied().filter(|t| *t >= start_ts).collect();
                let for_update_ts = later
                    .get(fu % later.len().max(1))
                    .copied()
                    .unwrap_or(start_ts);
                let should_conflict = muts
                    .iter()
                    .any(|(k, _)| model.changed_after(k, for_update_ts));
                match lock(&s, start_ts, for_update_ts, &keys(&muts)).await {
                    Ok(values) => {
                        prop_assert!(
                            !should_conflict,
                            "a lock at {for_update_ts} was granted over a newer commit"
                        );
                        for ((k, _), v) in muts.iter().zip(&values) {
                            prop_assert_eq!(v, &model.get(k, for_update_ts));
                        }
                        let commit_ts =
                            commit_pessimistic(&s, start_ts, for_update_ts, &muts, &Commit::TwoPc)
                                .await
                                .map_err(|e| {
                                    TestCaseError::fail(format!("stale pessimistic: {e}"))
                                })?;
                        model.commit(&muts, commit_ts);
                        stamps.push(commit_ts);
                    }
                    Err(TxnError::WriteConflict { .. }) => {
                        prop_assert!(should_conflict, "spurious conflict at {for_update_ts}");
                        prop_assert_eq!(lock_count(&s), 0, "a refused request locks nothing");
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e}"))),
                }
            }
            Action::UnlockedPessimisticPrewrite(muts) => {
                let muts = to_muts(&muts);
                let start_ts = s.tso().next().unwrap();
                model.used_start_ts.insert(start_ts);
                let for_update_ts = s.tso().next().unwrap();
                let result = s
                    .prewrite(pessimistic_args(
                        start_ts,
                        for_update_ts,
                        &muts,
                        &Commit::TwoPc,
                    ))
                    .await;
                prop_assert!(
                    matches!(result, Err(TxnError::PessimisticLockNotFound { .. })),
                    "flagged prewrite without locks: {:?}",
                    result
                );
                prop_assert_eq!(lock_count(&s), 0);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn storage_matches_the_reference_model(actions in prop::collection::vec(action(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check_history(actions))?;
    }
}
