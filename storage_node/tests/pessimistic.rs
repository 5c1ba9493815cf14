//! Pessimistic transactions through SurrealDB's own TiKV client (`surrealdb-tikv-client`
//! 0.5.0): `begin_pessimistic`, `get_for_update`, `batch_get_for_update`, `lock_keys`, each
//! test against a real storage node over gRPC. SurrealDB itself only runs optimistic
//! transactions; these pin down what a TiKV client expects of KvPessimisticLock,
//! KvPessimisticRollback and a flagged prewrite: locks that make a second locker wait,
//! conflicts it can retry, locks that expire when their owner dies, readers that are never
//! blocked, and no lost update under contention.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Mode, TestNode, is_write_conflict, options};
use storage_node::Key;
use storage_node::proto::kvrpcpb::Op;
use storage_node::proto::kvrpcpb::prewrite_request::PessimisticAction;
use storage_node::txn::actions::prewrite::{Mutation, PrewriteArgs};
use tikv_client::{
    Backoff, CheckLevel, Error, RetryOptions, TransactionClient, TransactionOptions,
};

/// A pessimistic transaction in one of the three commit modes.
fn pessimistic(mode: Mode) -> TransactionOptions {
    let o = TransactionOptions::new_pessimistic().drop_check(CheckLevel::None);
    match mode {
        Mode::OnePc => o.use_async_commit().try_one_pc(),
        Mode::AsyncCommit => o.use_async_commit(),
        Mode::TwoPc => o,
    }
}

/// A pessimistic transaction that gives up at the first lock it cannot resolve (the
/// server still waits up to its default lock-wait timeout first).
fn impatient() -> TransactionOptions {
    pessimistic(Mode::TwoPc).retry_options(RetryOptions {
        lock_backoff: Backoff::no_backoff(),
        ..RetryOptions::default_pessimistic()
    })
}

/// True when a lock request was refused because of a newer commit (PessimisticRetry): the
/// client wraps it in `PessimisticLockError`.
fn is_conflict(e: &Error) -> bool {
    match e {
        Error::PessimisticLockError { inner, .. } => is_conflict(inner),
        e => is_write_conflict(e),
    }
}

/// True when the client gave up because a key stayed locked.
fn is_lock_error(e: &Error) -> bool {
    match e {
        Error::ResolveLockError(_) => true,
        Error::KeyError(ke) => ke.locked.is_some(),
        Error::PessimisticLockError { inner, .. } | Error::UndeterminedError(inner) => {
            is_lock_error(inner)
        }
        Error::MultipleKeyErrors(es) | Error::ExtractedErrors(es) => es.iter().any(is_lock_error),
        _ => false,
    }
}

async fn put(client: &TransactionClient, k: &[u8], v: &[u8]) {
    let mut t = client
        .begin_with_options(options(Mode::TwoPc))
        .await
        .unwrap();
    t.put(k.to_vec(), v.to_vec()).await.unwrap();
    t.commit().await.unwrap();
}

async fn read(client: &TransactionClient, k: &[u8]) -> Option<Vec<u8>> {
    let mut t = client
        .begin_with_options(options(Mode::TwoPc).read_only())
        .await
        .unwrap();
    t.get(k.to_vec()).await.unwrap()
}

fn lock_count(node: &TestNode) -> u64 {
    node.node.storage.engine().counts().unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_read_for_update_and_commit_in_every_commit_mode() {
    let node = TestNode::start().await;
    let client = node.client().await;
    for mode in [Mode::TwoPc, Mode::AsyncCommit, Mode::OnePc] {
        let k = |s: &str| format!("{mode:?}/{s}").into_bytes();
        put(&client, &k("acct"), b"v0").await;
        put(&client, &k("a"), b"va").await;
        let mut t = client.begin_with_options(pessimistic(mode)).await.unwrap();
        assert_eq!(
            t.get_for_update(k("acct")).await.unwrap(),
            Some(b"v0".to_vec()),
            "{mode:?}: the value at for_update_ts"
        );
        let pairs: Vec<_> = t
            .batch_get_for_update(vec![k("a"), k("absent")])
            .await
            .unwrap()
            .into_iter()
            .map(|p| (Vec::<u8>::from(p.0), p.1))
            .collect();
        assert_eq!(
            pairs,
            vec![(k("a"), b"va".to_vec())],
            "{mode:?}: absent keys are left out"
        );
        t.lock_keys(vec![k("guard")]).await.unwrap();
        t.put(k("acct"), b"v1".to_vec()).await.unwrap();
        assert_eq!(
            lock_count(&node),
            4,
            "{mode:?}: acct, a, absent, guard are locked"
        );
        // Heartbeats work on a pessimistic primary.
        assert!(t.send_heart_beat().await.unwrap() >= 20_000, "{mode:?}");
        // A snapshot reader is not blocked by the pessimistic locks (with a 20 s TTL it
        // would otherwise fail after its backoff) and sees the committed value.
        let started = Instant::now();
        assert_eq!(read(&client, &k("acct")).await, Some(b"v0".to_vec()));
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{mode:?}: reader waited"
        );
        t.commit().await.unwrap();
        assert_eq!(
            read(&client, &k("acct")).await,
            Some(b"v1".to_vec()),
            "{mode:?}"
        );
        // Secondaries commit in the background; their locks go shortly after.
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock_count(&node) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(lock_count(&node), 0, "{mode:?}: no lock left behind");
        assert_eq!(read(&client, &k("a")).await, Some(b"va".to_vec()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_locker_waits_for_the_first_and_then_reads_its_commit() {
    let node = TestNode::start().await;
    let client = Arc::new(node.client().await);
    put(&client, b"k", b"0").await;
    let mut a = client
        .begin_with_options(pessimistic(Mode::TwoPc))
        .await
        .unwrap();
    assert_eq!(
        a.get_for_update(b"k".to_vec()).await.unwrap(),
        Some(b"0".to_vec())
    );
    a.put(b"k".to_vec(), b"1".to_vec()).await.unwrap();

    let b = {
        let client = client.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut b = client
                .begin_with_options(pessimistic(Mode::TwoPc))
                .await
                .unwrap();
            // Woken when A commits, B learns of the newer commit (a PessimisticRetry
            // conflict) and locks again at a fresh for_update_ts, as TiDB would.
            let mut conflicts = 0;
            let seen = loop {
                match b.get_for_update(b"k".to_vec()).await {
                    Ok(v) => break v.unwrap(),
                    Err(e) if is_conflict(&e) => conflicts += 1,
                    Err(e) => panic!("unexpected error {e:?}"),
                }
            };
            let waited = started.elapsed();
            b.put(b"k".to_vec(), [seen.clone(), b"+1".to_vec()].concat())
                .await
                .unwrap();
            b.commit().await.unwrap();
            (seen, waited, conflicts)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.is_finished(), "B must wait while A holds the lock");
    a.commit().await.unwrap();
    let (seen, waited, conflicts) = b.await.unwrap();
    assert_eq!(seen, b"1".to_vec(), "B read A's committed value");
    assert!(waited >= Duration::from_millis(300), "B waited {waited:?}");
    assert!(
        conflicts <= 1,
        "one retry after the wake-up, got {conflicts}"
    );
    assert_eq!(
        read(&client, b"k").await,
        Some(b"1+1".to_vec()),
        "no lost update"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_locker_that_will_not_wait_longer_gets_the_lock_error() {
    let node = TestNode::start().await;
    let client = node.client().await;
    let mut a = client
        .begin_with_options(pessimistic(Mode::TwoPc))
        .await
        .unwrap();
    a.lock_keys(vec![b"k".to_vec()]).await.unwrap();
    let mut b = client.begin_with_options(impatient()).await.unwrap();
    let started = Instant::now();
    let err = b
        .get_for_update(b"k".to_vec())
        .await
        .expect_err("k is locked");
    let waited = started.elapsed();
    assert!(
        is_lock_error(&err),
        "expected the client's lock error, got {err:?}"
    );
    // The server waited its lock-wait timeout (1 s) before answering KeyIsLocked.
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "waited {waited:?}"
    );
    // B's transaction is still usable once A is gone.
    a.rollback().await.unwrap();
    b.put(b"k".to_vec(), b"b".to_vec()).await.unwrap();
    b.commit().await.unwrap();
    assert_eq!(read(&client, b"k").await, Some(b"b".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_removes_the_locks_and_another_txn_locks_at_once() {
    let node = TestNode::start().await;
    let client = node.client().await;
    put(&client, b"k1", b"v").await;
    let (_, writes_before) = node.node.storage.engine().counts().unwrap();
    let mut a = client
        .begin_with_options(pessimistic(Mode::TwoPc))
        .await
        .unwrap();
    a.lock_keys(vec![b"k1".to_vec(), b"k2".to_vec()])
        .await
        .unwrap();
    a.get_for_update(b"k3".to_vec()).await.unwrap();
    a.put(b"k1".to_vec(), b"a".to_vec()).await.unwrap();
    assert_eq!(lock_count(&node), 3);
    a.rollback().await.unwrap();
    assert_eq!(lock_count(&node), 0, "every pessimistic lock is gone");
    let (_, writes_after) = node.node.storage.engine().counts().unwrap();
    assert_eq!(
        writes_after, writes_before,
        "a pessimistic rollback leaves no record"
    );

    let mut b = client.begin_with_options(impatient()).await.unwrap();
    let started = Instant::now();
    assert_eq!(
        b.get_for_update(b"k1".to_vec()).await.unwrap(),
        Some(b"v".to_vec())
    );
    b.lock_keys(vec![b"k2".to_vec(), b"k3".to_vec()])
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(500), "no waiting");
    b.put(b"k1".to_vec(), b"b".to_vec()).await.unwrap();
    b.commit().await.unwrap();
    assert_eq!(read(&client, b"k1").await, Some(b"b".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_lock_of_a_crashed_holder_expires_and_is_taken_over() {
    let node = TestNode::start().await;
    let client = node.client().await;
    put(&client, b"k", b"before").await;
    // The holder locks and buffers a write, then vanishes without a rollback: dropping the
    // transaction stops its heartbeat and sends nothing, as a crash would.
    let mut dead = client
        .begin_with_options(pessimistic(Mode::TwoPc))
        .await
        .unwrap();
    dead.get_for_update(b"k".to_vec()).await.unwrap();
    dead.put(b"k".to_vec(), b"dead".to_vec()).await.unwrap();
    drop(dead);
    assert_eq!(lock_count(&node), 1);

    // The client puts a 20 s TTL (its MAX_TTL) on pessimistic locks; until then B waits,
    // backs off and retries; afterwards it resolves the lock and takes it.
    let started = Instant::now();
    let mut b = client
        .begin_with_options(pessimistic(Mode::TwoPc))
        .await
        .unwrap();
    let mut failures = 0;
    let seen = loop {
        match b.get_for_update(b"k".to_vec()).await {
            Ok(v) => break v,
            Err(e) if is_lock_error(&e) && started.elapsed() < Duration::from_secs(60) => {
                failures += 1;
            }
            Err(e) => panic!("lock never taken over: {e:?}"),
        }
    };
    let waited = started.elapsed();
    eprintln!("took over after {waited:?} ({failures} lock errors)");
    assert!(
        waited >= Duration::from_secs(15),
        "the live lock was respected ({waited:?})"
    );
    assert_eq!(
        seen,
        Some(b"before".to_vec()),
        "the dead txn's write never happened"
    );
    b.put(b"k".to_vec(), b"after".to_vec()).await.unwrap();
    b.commit().await.unwrap();
    assert_eq!(read(&client, b"k").await, Some(b"after".to_vec()));
    assert_eq!(lock_count(&node), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn optimistic_and_pessimistic_writers_conflict_correctly() {
    let node = TestNode::start().await;
    let client = node.client().await;

    // A pessimistic holder keeps an optimistic writer out, and then commits.
    put(&client, b"k", b"0").await;
    let mut p = client
        .begin_with_options(pessimistic(Mode::TwoPc))
        .await
        .unwrap();
    p.get_for_update(b"k".to_vec()).await.unwrap();
    let mut o = client
        .begin_with_options(options(Mode::TwoPc))
        .await
        .unwrap();
    o.put(b"k".to_vec(), b"o".to_vec()).await.unwrap();
    let err = o.commit().await.expect_err("k is pessimistically locked");
    assert!(is_lock_error(&err), "optimistic commit: {err:?}");
    let _ = o.rollback().await;
    p.put(b"k".to_vec(), b"p".to_vec()).await.unwrap();
    p.commit().await.unwrap();
    assert_eq!(read(&client, b"k").await, Some(b"p".to_vec()));

    // An optimistic txn that started before a pessimistic commit loses to it.
    let mut o = client
        .begin_with_options(options(Mode::TwoPc))
        .await
        .unwrap();
    o.put(b"k".to_vec(), b"o".to_vec()).await.unwrap();
    let mut p = client
        .begin_with_options(pessimistic(Mode::TwoPc))
        .await
        .unwrap();
    p.get_for_update(b"k".to_vec()).await.unwrap();
    p.put(b"k".to_vec(), b"p2".to_vec()).await.unwrap();
    p.commit().await.unwrap();
    let err = o.commit().await.expect_err("first committer wins");
    assert!(
        is_write_conflict(&err),
        "optimistic after pessimistic: {err:?}"
    );
    assert_eq!(read(&client, b"k").await, Some(b"p2".to_vec()));

    // An optimistic commit between a pessimistic txn's start and its lock is *read* by the
    // lock (read committed at for_update_ts) and then safely overwritten: no conflict.
    let mut p = client
        .begin_with_options(pessimistic(Mode::TwoPc))
        .await
        .unwrap();
    put(&client, b"k", b"o3").await;
    assert_eq!(
        p.get(b"k".to_vec()).await.unwrap(),
        Some(b"p2".to_vec()),
        "snapshot read"
    );
    assert_eq!(
        p.get_for_update(b"k".to_vec()).await.unwrap(),
        Some(b"o3".to_vec()),
        "locking read sees the newest commit"
    );
    p.put(b"k".to_vec(), b"p3".to_vec()).await.unwrap();
    p.commit().await.unwrap();
    assert_eq!(read(&client, b"k").await, Some(b"p3".to_vec()));

    // An optimistic transaction's prewritten lock in the way of a pessimistic locker: the
    // locker waits for it and then reads its commit. (The optimistic side is driven through
    // the storage API so that its prewrite certainly comes first.)
    let storage = node.node.storage.clone();
    let o_start = storage.tso().next().unwrap();
    let out = storage
        .prewrite(PrewriteArgs {
            mutations: vec![Mutation {
                op: Op::Put,
                key: Key::from_raw(b"k"),
                value: b"o4".to_vec(),
                pessimistic_action: PessimisticAction::SkipPessimisticCheck,
            }],
            primary: Key::from_raw(b"k"),
            start_ts: o_start,
            lock_ttl: 3_000,
            txn_size: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(out.locked.is_empty());
    let mut p = client
        .begin_with_options(pessimistic(Mode::TwoPc))
        .await
        .unwrap();
    let locker = tokio::spawn(async move {
        let v = loop {
            match p.get_for_update(b"k".to_vec()).await {
                Ok(v) => break v,
                Err(e) if is_conflict(&e) => continue,
                Err(e) => panic!("{e:?}"),
            }
        };
        p.rollback().await.unwrap();
        v
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !locker.is_finished(),
        "the locker waits for the optimistic lock"
    );
    let commit_ts = storage.tso().next().unwrap();
    storage
        .commit(vec![Key::from_raw(b"k")], o_start, commit_ts)
        .await
        .unwrap();
    assert_eq!(locker.await.unwrap(), Some(b"o4".to_vec()));
    assert_eq!(lock_count(&node), 0);
}

/// A tiny deterministic generator (tests must not depend on a seed they cannot print).
fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pessimistic_bank_transfers_conserve_money_and_lose_no_transfer() {
    const ACCOUNTS: u64 = 5;
    const START: i64 = 100;
    const TASKS: u64 = 6;
    const TRANSFERS: u64 = 12;
    let node = TestNode::start().await;
    let client = Arc::new(node.client().await);
    let acct = |i: u64| format!("acct{i}").into_bytes();
    for i in 0..ACCOUNTS {
        put(&client, &acct(i), START.to_string().as_bytes()).await;
    }
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut seed = task + 1;
            let mut done = Vec::new();
            let mut retries = 0;
            for n in 0..TRANSFERS {
                let from = next(&mut seed) % ACCOUNTS;
                let to = (from + 1 + next(&mut seed) % (ACCOUNTS - 1)) % ACCOUNTS;
                let amount = (next(&mut seed) % 20) as i64 + 1;
                loop {
                    let mut t = client
                        .begin_with_options(pessimistic(Mode::TwoPc))
                        .await
                        .unwrap();
                    let attempt = async {
                        // Lock in key order: two transfers never wait for each other in a
                        // cycle (there is no deadlock detector).
                        let (lo, hi) = (from.min(to), from.max(to));
                        let mut balance = [0i64; 2];
                        for (slot, i) in [lo, hi].into_iter().enumerate() {
                            let v = t.get_for_update(acct(i)).await?.expect("account exists");
                            balance[slot] = String::from_utf8(v).unwrap().parse().unwrap();
                        }
                        let (from_bal, to_bal) = if from == lo {
                            (balance[0], balance[1])
                        } else {
                            (balance[1], balance[0])
                        };
                        t.put(acct(from), (from_bal - amount).to_string()).await?;
                        t.put(acct(to), (to_bal + amount).to_string()).await?;
                        // The transfer's own record: visible iff the transfer committed.
                        t.put(format!("log/{task}/{n}"), format!("{from}>{to}:{amount}"))
                            .await?;
                        t.commit().await
                    };
                    match attempt.await {
                        Ok(_) => break,
                        Err(_) => {
                            retries += 1;
                            let _ = t.rollback().await;
                            tokio::time::sleep(Duration::from_millis(next(&mut seed) % 10)).await;
                        }
                    }
                }
                done.push((from, to, amount));
            }
            (done, retries)
        }));
    }
    let mut expected = [START; ACCOUNTS as usize];
    let mut retries = 0;
    let mut committed = 0;
    for t in tasks {
        let (done, r) = t.await.unwrap();
        retries += r;
        for (from, to, amount) in done {
            expected[from as usize] -= amount;
            expected[to as usize] += amount;
            committed += 1;
        }
    }
    let mut snap = client
        .begin_with_options(options(Mode::TwoPc).read_only())
        .await
        .unwrap();
    let mut total = 0;
    for i in 0..ACCOUNTS {
        let v: i64 = String::from_utf8(snap.get(acct(i)).await.unwrap().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(v, expected[i as usize], "account {i} ({retries} retries)");
        total += v;
    }
    assert_eq!(total, START * ACCOUNTS as i64, "money is conserved");
    let logs = snap
        .scan(b"log/".to_vec()..b"log0".to_vec(), 10_000)
        .await
        .unwrap()
        .count();
    assert_eq!(logs, committed, "every committed transfer is visible, once");
    eprintln!("{committed} transfers, {retries} retries");
}
