//! A client that dies between prewrite and commit leaves locks behind. The next reader must
//! resolve them correctly: a 2PC transaction whose primary was never committed is rolled
//! back; an async-commit transaction whose locks all exist *is* committed (its client may
//! already have reported success) and must be rolled forward, never lost.
//!
//! The crash is simulated with the client's own `after-prewrite` failpoint. Failpoints are
//! process-global, so this file holds a single test.

mod common;

use common::{Mode, TestNode, options};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locks_of_a_client_that_died_after_prewrite_are_resolved() {
    let scenario = fail::FailScenario::setup();
    let node = TestNode::start().await;
    let client = node.client().await;
    for mode in [Mode::AsyncCommit, Mode::TwoPc] {
        let k1 = format!("crash-{mode:?}-1").into_bytes();
        let k2 = format!("crash-{mode:?}-2").into_bytes();
        fail::cfg("after-prewrite", "return").unwrap();
        let mut t = client.begin_with_options(options(mode)).await.unwrap();
        t.put(k1.clone(), b"v".to_vec()).await.unwrap();
        t.put(k2.clone(), b"v".to_vec()).await.unwrap();
        assert!(
            t.commit().await.is_err(),
            "the failpoint stops the client after prewrite"
        );
        fail::remove("after-prewrite");
        let (locks, _) = node.node.storage.engine().counts().unwrap();
        assert_eq!(locks, 2, "{mode:?}: both keys are left locked");

        // A reader now meets the locks; the default lock TTL is 3 s, after which it may
        // clean them up. The client retries for ~1.5 s with backoff, so retry a few times.
        let started = std::time::Instant::now();
        let seen = loop {
            let mut r = client
                .begin_with_options(options(mode).read_only())
                .await
                .unwrap();
            match r.batch_get(vec![k1.clone(), k2.clone()]).await {
                Ok(pairs) => break pairs.map(|p| p.1).collect::<Vec<_>>(),
                Err(e) if started.elapsed().as_secs() < 20 => {
                    eprintln!("{mode:?}: still locked ({e}); retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                Err(e) => panic!("{mode:?}: locks never resolved: {e:?}"),
            }
        };
        match mode {
            // Every lock exists, so the transaction committed: both values are there.
            Mode::AsyncCommit => assert_eq!(
                seen,
                vec![b"v".to_vec(), b"v".to_vec()],
                "async commit rolled forward"
            ),
            // The primary never committed: rolled back, nothing visible.
            _ => assert!(seen.is_empty(), "2PC rolled back, got {seen:?}"),
        }
        let (locks, _) = node.node.storage.engine().counts().unwrap();
        assert_eq!(locks, 0, "{mode:?}: no lock left behind");
    }
    scenario.teardown();
}
