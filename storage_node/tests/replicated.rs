//! The replicated tier as separate processes — PD plus three stores, each a real
//! `storage-node` process on loopback — driven by the TiKV client SurrealDB uses. Each test
//! states what replication promises and kills processes (SIGKILL) to challenge it:
//!
//! - the three stores bootstrap one region together, PD learns its leader from heartbeats, and
//!   a client that only knows PD's address reads and writes;
//! - killing the leader's store loses no acknowledged write, and writes resume once the other
//!   two elect a leader and report it to PD;
//! - with two of three stores down no write commits (the client gets an error, not a hang),
//!   and restarting one brings service back with every acknowledged write;
//! - a store started against another cluster's PD refuses to start, naming the fix;
//! - a fourth store joins and PD's balance-region moves replicas onto it (learner → voter →
//!   old replica removed); a store removed through PD's API gives up every replica and
//!   becomes a tombstone, which may not come back; a store whose data folder was deleted is
//!   refused under its old id, naming the fix;
//! - PD's HTTP API splits the key space (`POST /pd/api/v1/regions/split`), its balancer spreads
//!   the new regions' leaders over the stores, and an operator (`POST /pd/api/v1/operators`)
//!   moves one leader by hand, while a transaction across the regions commits.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use storage_node::proto::pdpb::{self, pd_client::PdClient};
use tikv_client::TransactionClient;

const BIN: &str = env!("CARGO_BIN_EXE_storage-node");

/// A `storage-node` process, killed when dropped.
struct Proc {
    child: Child,
    addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `storage-node ARGS` and waits for its ready line; returns the address it serves on.
fn spawn(args: &[&str]) -> Result<Proc, String> {
    let mut child = Command::new(BIN)
        .args(args)
        .env(
            "STORAGE_NODE_LOG",
            std::env::var("TEST_STORE_LOG").unwrap_or("warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(if std::env::var("TEST_STORE_LOG").is_ok() {
            Stdio::inherit()
        } else {
            Stdio::piped()
        })
        .spawn()
        .expect("storage-node starts");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    if !line.contains(" ready on ") {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err);
        let _ = child.wait();
        return Err(err);
    }
    let addr = line
        .split(" ready on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    Ok(Proc { child, addr })
}

struct Cluster {
    pd: Proc,
    stores: Vec<Option<Proc>>,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let pd_dir = dir.path().join("pd");
        let pd = spawn(&[
            "pd",
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
            pd_dir.to_str().unwrap(),
        ])
        .expect("PD starts");
        let mut cluster = Cluster {
            pd,
            stores: Vec::new(),
            dir,
        };
        for id in 1..=3 {
            let store = cluster
                .start_store(id, "127.0.0.1:0")
                .expect("store starts");
            cluster.stores.push(Some(store));
        }
        cluster
    }

    fn store_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("store-{id}"))
    }

    fn start_store(&self, id: u64, addr: &str) -> Result<Proc, String> {
        store_process(&self.pd.addr, &self.store_dir(id), id, addr)
    }

    fn kill(&mut self, id: u64) -> String {
        let p = self.stores[id as usize - 1].take().expect("store running");
        p.addr.clone()
    }

    /// Restarts store `id` on the address it had (other stores and PD know it by that).
    fn restart(&mut self, id: u64, addr: &str) {
        let p = self.start_store(id, addr).expect("store restarts");
        self.stores[id as usize - 1] = Some(p);
    }
}

fn store_process(pd: &str, dir: &Path, id: u64, addr: &str) -> Result<Proc, String> {
    spawn(&[
        "store",
        "--addr",
        addr,
        "--data-dir",
        dir.to_str().unwrap(),
        "--pd",
        pd,
        "--store-id",
        &id.to_string(),
        "--initial-stores",
        "3",
    ])
}

/// The store PD names as the leader of the region holding `key`, if any.
async fn leader_store(pd: &str, key: &[u8]) -> Option<u64> {
    let mut client = PdClient::connect(format!("http://{pd}"))
        .await
        .expect("PD answers");
    let resp = client
        .get_region(pdpb::GetRegionRequest {
            region_key: key.to_vec(),
            ..Default::default()
        })
        .await
        .expect("GetRegion")
        .into_inner();
    resp.leader.map(|l| l.store_id)
}

/// `GET path` on PD's HTTP API (HTTP/1.1 on the gRPC port), parsed as JSON.
fn pd_http(pd: &str, path: &str) -> serde_json::Value {
    let (status, body) = pd_request(pd, "GET", path, "");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// One HTTP/1.1 request to PD: (status, body).
fn pd_request(pd: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(pd).expect("PD accepts HTTP");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {pd}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// Upper-case hex of the memcomparable encoding of `raw`: a key as PD's HTTP API writes it.
fn pd_key(raw: &[u8]) -> String {
    storage_node::mvcc::keys::encode_bytes(raw)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// Each region's leader store, by region id, once every region has one (within 10 s).
fn leaders(pd: &str, regions: usize) -> std::collections::BTreeMap<u64, u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = pd_http(pd, "/pd/api/v1/regions");
        let list = page["regions"].as_array().cloned().unwrap_or_default();
        let map: std::collections::BTreeMap<u64, u64> = list
            .iter()
            .filter_map(|r| Some((r["id"].as_u64()?, r["leader"]["store_id"].as_u64()?)))
            .collect();
        if list.len() == regions && map.len() == regions {
            return map;
        }
        assert!(
            Instant::now() < deadline,
            "PD never showed {regions} led regions: {page}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn put(client: &TransactionClient, k: &[u8], v: &[u8]) -> Result<(), tikv_client::Error> {
    let mut txn = client.begin_optimistic().await?;
    txn.put(k.to_vec(), v.to_vec()).await?;
    txn.commit().await?;
    Ok(())
}

async fn get(client: &TransactionClient, k: &[u8]) -> Result<Option<Vec<u8>>, tikv_client::Error> {
    let mut txn = client.begin_optimistic().await?;
    let v = txn.get(k.to_vec()).await?;
    txn.rollback().await?;
    Ok(v)
}

/// Retries `put` until it succeeds or `limit` passes; returns how long it took.
async fn put_until(client: &TransactionClient, k: &[u8], v: &[u8], limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        match put(client, k, v).await {
            Ok(()) => return start.elapsed(),
            Err(e) if start.elapsed() < limit => {
                eprintln!("write not yet accepted: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no write succeeded within {limit:?}: {e}"),
        }
    }
}

fn key(i: usize) -> Vec<u8> {
    format!("acked-{i:03}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_store_killed_loses_nothing_and_writes_resume_under_a_new_leader() {
    let mut cluster = Cluster::start();
    let client = TransactionClient::new(vec![cluster.pd.addr.clone()])
        .await
        .expect("client connects to PD");
    let took = put_until(&client, b"first", b"1", Duration::from_secs(20)).await;
    eprintln!("first write after start: {took:?}");
    for i in 0..30 {
        put(&client, &key(i), b"v")
            .await
            .expect("acknowledged write");
    }
    let leader = leader_store(&cluster.pd.addr, b"first")
        .await
        .expect("PD knows the leader");
    let addr = cluster.kill(leader);

    let took = put_until(&client, b"after-kill", b"1", Duration::from_secs(20)).await;
    eprintln!("first write after killing leader store {leader}: {took:?}");
    let new_leader = leader_store(&cluster.pd.addr, b"first").await.unwrap();
    assert_ne!(new_leader, leader, "PD must name the newly elected leader");
    // PD's HTTP page shows the same placement, in real PD's shape.
    let regions = pd_http(&cluster.pd.addr, "/pd/api/v1/regions");
    assert_eq!(regions["count"], 1, "{regions}");
    assert_eq!(
        regions["regions"][0]["leader"]["store_id"], new_leader,
        "{regions}"
    );
    assert_eq!(
        regions["regions"][0]["peers"].as_array().map(Vec::len),
        Some(3)
    );
    let stores = pd_http(&cluster.pd.addr, "/pd/api/v1/stores");
    assert_eq!(stores["count"], 3, "{stores}");
    for i in 0..30 {
        assert_eq!(
            get(&client, &key(i)).await.unwrap().as_deref(),
            Some(&b"v"[..]),
            "acknowledged write {i} lost with the leader's store"
        );
    }

    // The killed store comes back and catches up; then the new leader's store dies too. The
    // group of the restarted store and the third one still has a majority, which it only can
    // if the restarted store has the entries written while it was down.
    cluster.restart(leader, &addr);
    put_until(&client, b"after-restart", b"1", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.kill(new_leader);
    put_until(&client, b"after-second-kill", b"1", Duration::from_secs(20)).await;
    for k in [&b"after-kill"[..], b"after-restart", b"first"] {
        assert!(get(&client, k).await.unwrap().is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_of_three_stores_down_no_write_commits_until_one_returns() {
    let mut cluster = Cluster::start();
    let client = TransactionClient::new(vec![cluster.pd.addr.clone()])
        .await
        .unwrap();
    put_until(&client, b"before", b"1", Duration::from_secs(20)).await;
    let leader = leader_store(&cluster.pd.addr, b"before").await.unwrap();
    let others: Vec<u64> = (1..=3).filter(|s| *s != leader).collect();
    let addr = cluster.kill(others[0]);
    cluster.kill(others[1]);
    // The leader alone cannot commit: the client gets an error within its own timeouts.
    let started = Instant::now();
    let refused = put(&client, b"minority", b"1").await;
    assert!(
        refused.is_err(),
        "a write was acknowledged with two of three stores down"
    );
    eprintln!(
        "minority write refused after {:?}: {}",
        started.elapsed(),
        refused.unwrap_err()
    );
    cluster.restart(others[0], &addr);
    put_until(&client, b"majority-again", b"1", Duration::from_secs(30)).await;
    assert!(get(&client, b"before").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_started_against_another_clusters_pd_refuses_naming_the_fix() {
    let cluster = Cluster::start();
    let other = tempfile::tempdir().unwrap();
    let other_pd = spawn(&[
        "pd",
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        other.path().to_str().unwrap(),
    ])
    .unwrap();
    drop(cluster.stores.into_iter().next());
    let err = store_process(
        &other_pd.addr,
        &cluster.dir.path().join("store-1"),
        1,
        "127.0.0.1:0",
    )
    .err()
    .expect("the store must refuse another cluster's PD");
    assert!(err.contains("holds store 1 of cluster"), "{err}");
    assert!(err.contains("empty --data-dir"), "{err}");

    let bad = store_process(&cluster.pd.addr, &other.path().join("s0"), 0, "127.0.0.1:0")
        .err()
        .expect("store 0 is refused");
    assert!(bad.contains("--store-id must be 1 or more"), "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pd_splits_balances_leaders_and_moves_one_on_request() {
    let cluster = Cluster::start();
    let pd = cluster.pd.addr.clone();
    let client = TransactionClient::new(vec![pd.clone()])
        .await
        .expect("client connects to PD");
    put_until(&client, b"a", b"1", Duration::from_secs(20)).await;

    // Two splits through PD's HTTP API: three regions, all led by the parent's leader store.
    let body = format!(
        r#"{{"split_keys": ["{}", "{}"]}}"#,
        pd_key(b"h"),
        pd_key(b"p")
    );
    let (status, answer) = pd_request(&pd, "POST", "/pd/api/v1/regions/split", &body);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("regions-id"), "{answer}");
    let (status, answer) = pd_request(
        &pd,
        "POST",
        "/pd/api/v1/regions/split",
        r#"{"split_keys": ["7A"]}"#,
    );
    assert_eq!(status, 400, "hex that is not an encoded key: {answer}");
    assert!(answer.contains("encoded key"), "{answer}");

    // One transaction across the three regions commits, and reads back.
    let mut txn = client.begin_optimistic().await.unwrap();
    for k in [&b"b"[..], b"k", b"x"] {
        txn.put(k.to_vec(), b"3".to_vec()).await.unwrap();
    }
    txn.commit()
        .await
        .expect("a transaction across three regions");
    for k in [&b"b"[..], b"k", b"x"] {
        assert_eq!(get(&client, k).await.unwrap().as_deref(), Some(&b"3"[..]));
    }

    // The balancer moves leaders until no store leads two more regions than another: with
    // three regions on three stores, one each.
    let deadline = Instant::now() + Duration::from_secs(20);
    let spread = loop {
        let by_region = leaders(&pd, 3);
        let stores: std::collections::BTreeSet<u64> = by_region.values().copied().collect();
        if stores.len() == 3 {
            break by_region;
        }
        assert!(
            Instant::now() < deadline,
            "leaders never spread: {by_region:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    // A leader moved by hand; a store without a replica is refused, naming the fix.
    let (&region, &from) = spread.iter().next().unwrap();
    let to = (1..=3).find(|s| *s != from).unwrap();
    let body = format!(r#"{{"name": "transfer-leader", "region_id": {region}, "to_store_id": 9}}"#);
    let (status, answer) = pd_request(&pd, "POST", "/pd/api/v1/operators", &body);
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("holds no replica"), "{answer}");
    let body =
        format!(r#"{{"name": "transfer-leader", "region_id": {region}, "to_store_id": {to}}}"#);
    let (status, answer) = pd_request(&pd, "POST", "/pd/api/v1/operators", &body);
    assert_eq!(status, 200, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while leaders(&pd, 3)[&region] != to {
        assert!(
            Instant::now() < deadline,
            "the leader of region {region} never moved to store {to}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    put_until(&client, b"b", b"4", Duration::from_secs(10)).await;
}

/// Reads `k`, retrying for up to 20 s while the regions' leaders settle (a read error
/// rolls the transaction back before it is dropped).
async fn get_until(client: &TransactionClient, k: &[u8]) -> Option<Vec<u8>> {
    let start = Instant::now();
    loop {
        let mut txn = client.begin_optimistic().await.unwrap();
        match txn.get(k.to_vec()).await {
            Ok(v) => {
                txn.rollback().await.unwrap();
                return v;
            }
            Err(e) => {
                let _ = txn.rollback().await;
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "no read of {} within 20 s: {e}",
                    String::from_utf8_lossy(k)
                );
                eprintln!("read not yet served: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Each store's (state, replica count) as PD's `/pd/api/v1/stores` shows them.
fn store_states(pd: &str) -> std::collections::BTreeMap<u64, (String, u64)> {
    pd_http(pd, "/pd/api/v1/stores")["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["store"]["id"].as_u64().unwrap(),
                (
                    s["store"]["state_name"].as_str().unwrap().to_string(),
                    s["status"]["region_count"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

/// Whether every region has three voters and no learner (no move half-done).
fn settled(pd: &str) -> bool {
    pd_http(pd, "/pd/api/v1/regions")["regions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| {
            let peers = r["peers"].as_array().unwrap();
            peers.len() == 3 && peers.iter().all(|p| p["role_name"] == "Voter")
        })
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_store_receives_replicas_a_removed_one_gives_them_up_and_a_wiped_one_is_refused() {
    if let Ok(filter) = std::env::var("TEST_CLIENT_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let mut cluster = Cluster::start();
    let pd = cluster.pd.addr.clone();
    let client = TransactionClient::new(vec![pd.clone()])
        .await
        .expect("client connects to PD");
    for i in 0..30 {
        put_until(&client, &key(i), b"v", Duration::from_secs(20)).await;
    }
    let body = format!(
        r#"{{"split_keys": ["{}", "{}"]}}"#,
        pd_key(b"acked-010"),
        pd_key(b"acked-020")
    );
    let (status, answer) = pd_request(&pd, "POST", "/pd/api/v1/regions/split", &body);
    assert_eq!(status, 200, "{answer}");

    // Store 4 joins with nothing; balance-region moves replicas onto it until no store holds
    // two more than another (9 replicas on 4 stores: 3/2/2/2).
    let s4 = cluster
        .start_store(4, "127.0.0.1:0")
        .expect("a fourth store joins the running cluster");
    cluster.stores.push(Some(s4));
    wait_for(
        "store 4 holds two replicas",
        Duration::from_secs(60),
        || store_states(&pd).get(&4).is_some_and(|(_, n)| *n >= 2) && settled(&pd),
    );

    // Store 1 is removed: the replica checker moves each of its replicas to the store of the
    // other three that lacks one; then it is a tombstone.
    let (status, answer) = pd_request(&pd, "DELETE", "/pd/api/v1/store/1", "");
    assert_eq!(status, 200, "{answer}");
    wait_for(
        "store 1 becomes a tombstone",
        Duration::from_secs(60),
        || store_states(&pd)[&1].0 == "Tombstone" && settled(&pd),
    );
    let s1_dir = cluster.store_dir(1);
    drop(cluster.kill(1));

    // With store 2 gone too, every region's quorum is stores 3 and 4: store 4 is a voter of
    // each, holding every acknowledged write.
    drop(cluster.kill(2));
    // The TiKV client connects to a leader's store while it routes a request, and a failed
    // connect there is returned without dropping the cached region: a client that learns a
    // dead store's leadership from PD during the election (and never connected to it before)
    // keeps routing to it. So this reader waits until PD names live leaders, then connects
    // afresh — what a newly started `surreal` node would do.
    drop(client);
    wait_for(
        "every region led by store 3 or 4",
        Duration::from_secs(20),
        || {
            pd_http(&pd, "/pd/api/v1/regions")["regions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| matches!(r["leader"]["store_id"].as_u64(), Some(3 | 4)))
        },
    );
    let client = TransactionClient::new(vec![pd.clone()])
        .await
        .expect("client connects to PD");
    put_until(&client, b"after", b"move", Duration::from_secs(20)).await;
    for i in 0..30 {
        assert_eq!(
            get_until(&client, &key(i)).await.as_deref(),
            Some(&b"v"[..]),
            "key {i}"
        );
    }

    // A tombstone may not come back, and a store whose data folder was deleted may not rejoin
    // under its old id: both refusals name the fix.
    let err = store_process(&pd, &s1_dir, 1, "127.0.0.1:0")
        .err()
        .expect("a removed store is refused");
    assert!(
        err.contains("tombstone") && err.contains("lab add-store"),
        "{err}"
    );
    std::fs::remove_dir_all(cluster.store_dir(2)).unwrap();
    let err = store_process(&pd, &cluster.store_dir(2), 2, "127.0.0.1:0")
        .err()
        .expect("a store that lost its data is refused");
    assert!(err.contains("lab replace-store 2"), "{err}");
}
