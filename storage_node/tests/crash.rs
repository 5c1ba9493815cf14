//! Crash safety: SIGKILL the storage-node *process* in the middle of a write load, restart it
//! on the same data directory and port, and check that every write a client saw acknowledged
//! is there — and that the same client (like a running `surreal` node) carries on without
//! being restarted. The second run does the same while regions split under the load (a tiny
//! `--split-keys`): splits before, during and after the kill, and every region is back after
//! the restart.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Mode, options};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the binary (with `extra` flags) and waits for its `ready` line.
fn spawn_node(dir: &std::path::Path, port: u16, extra: &[&str]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_storage-node"))
        .args(["--addr", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .args(["--log", "warn"])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn storage-node");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("storage-node ready on"),
        "unexpected first line: {line:?}"
    );
    child
}

/// How many regions PD's HTTP page lists.
fn region_count(port: u16) -> u64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /pd/api/v1/regions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str::<serde_json::Value>(body).unwrap()["count"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill_and_clients_reconnect() {
    crash_run(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill_while_regions_split() {
    crash_run(&["--split-keys", "150"]).await;
}

/// The crash scenario: returns after checking every acknowledged write (and, with splits,
/// that the regions survived the restart).
async fn crash_run(extra: &[&str]) {
    let splitting = !extra.is_empty();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut node = spawn_node(dir.path(), port, extra);
    let client = Arc::new(
        tikv_client::TransactionClient::new(vec![format!("127.0.0.1:{port}")])
            .await
            .unwrap(),
    );

    // Writers in every commit mode record each key whose commit returned Ok.
    let acked: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for (w, mode) in [Mode::OnePc, Mode::AsyncCommit, Mode::TwoPc, Mode::OnePc]
        .into_iter()
        .enumerate()
    {
        let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let key = format!("w{w}-{i:06}").into_bytes();
                let Ok(mut t) = client.begin_with_options(options(mode)).await else {
                    continue;
                };
                if t.put(key.clone(), b"x".to_vec()).await.is_err() {
                    continue;
                }
                let ok = tokio::time::timeout(Duration::from_secs(15), t.commit()).await;
                if let Ok(Ok(_)) = ok {
                    acked.lock().unwrap().push(key);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_kill = acked.lock().unwrap().len();
    let regions_before_kill = if splitting { region_count(port) } else { 1 };
    node.kill().unwrap(); // SIGKILL: no chance to flush anything
    node.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut node = spawn_node(dir.path(), port, extra);
    // Keep writing through the restart for a moment, then stop.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        before_kill > 20,
        "the load was running before the kill ({before_kill} acks)"
    );
    assert!(
        acked.len() > before_kill,
        "the same client kept committing after the restart"
    );

    // The same client reads every acknowledged key back (lock resolution included).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut missing;
    loop {
        missing = Vec::new();
        let mut snap = client
            .begin_with_options(options(Mode::TwoPc).read_only())
            .await
            .unwrap();
        let mut ok = true;
        for chunk in acked.chunks(256) {
            match snap.batch_get(chunk.to_vec()).await {
                Ok(found) => {
                    let found: std::collections::HashSet<Vec<u8>> =
                        found.map(|p| p.0.into()).collect();
                    missing.extend(chunk.iter().filter(|k| !found.contains(*k)).cloned());
                }
                Err(_) => ok = false,
            }
        }
        if ok || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "acknowledged before the kill: {before_kill}, in total: {}, missing: {}",
        acked.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        String::from_utf8_lossy(&missing[0])
    );
    if splitting {
        // Regions split under the load, and the restarted store holds them all again (its
        // split records were durable before anything depended on them).
        let after = region_count(port);
        eprintln!("regions before the kill: {regions_before_kill}, at the end: {after}");
        assert!(
            regions_before_kill >= 2,
            "the load split the region before the kill"
        );
        assert!(
            after >= regions_before_kill,
            "a split was lost in the crash"
        );
    }
    node.kill().unwrap();
    node.wait().unwrap();
}
