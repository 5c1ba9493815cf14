//! What the storage node says on the wire, beyond the transactions themselves:
//!
//! - region errors as the TiKV client expects them: a request for a region this store does not
//!   hold, or with an epoch the region no longer has, is answered with the matching
//!   `region_error` (the client refreshes its cache from PD and retries), before any data is
//!   touched;
//! - the operation trace: a write's line carries its Raft steps.

mod common;

use common::TestNode;
use storage_node::proto::kvrpcpb;
use storage_node::proto::metapb::RegionEpoch;
use storage_node::proto::tikvpb::tikv_client::TikvClient;

fn get(region_id: u64, epoch: Option<RegionEpoch>) -> kvrpcpb::GetRequest {
    kvrpcpb::GetRequest {
        context: Some(kvrpcpb::Context {
            region_id,
            region_epoch: epoch,
            ..Default::default()
        }),
        key: b"k".to_vec(),
        version: u64::MAX >> 1,
    }
}

#[tokio::test]
async fn unknown_regions_and_stale_epochs_get_region_errors_and_the_current_region() {
    let node = TestNode::start().await;
    let mut kv = TikvClient::connect(format!("http://{}", node.endpoint()))
        .await
        .unwrap();

    let r = kv.kv_get(get(99, None)).await.unwrap().into_inner();
    let e = r.region_error.expect("region 99 is not here");
    assert_eq!(e.region_not_found.map(|n| n.region_id), Some(99), "{e:?}");

    let stale = RegionEpoch {
        conf_ver: 1,
        version: 0,
    };
    let r = kv.kv_get(get(2, Some(stale))).await.unwrap().into_inner();
    let e = r.region_error.expect("a stale epoch is refused");
    let current = e.epoch_not_match.expect("EpochNotMatch").current_regions;
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].id, 2);
    assert_eq!(
        current[0].region_epoch,
        Some(RegionEpoch {
            conf_ver: 1,
            version: 1
        })
    );

    let now = current[0].region_epoch;
    let r = kv.kv_get(get(2, now)).await.unwrap().into_inner();
    assert!(r.region_error.is_none(), "{:?}", r.region_error);
    assert!(r.not_found, "the current epoch reads");
}

/// A write's trace line says where its time went in Raft; a read's has no Raft steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_write_shows_its_raft_steps_and_a_read_none() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.jsonl");
    let node = storage_node::Node::start(storage_node::Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        trace: Some(trace.clone()),
        split: Default::default(),
    })
    .await
    .unwrap();
    let client = tikv_client::TransactionClient::new(vec![node.addr.to_string()])
        .await
        .unwrap();
    let mut t = client
        .begin_with_options(common::options(common::Mode::OnePc))
        .await
        .unwrap();
    t.put(b"k".to_vec(), b"v".to_vec()).await.unwrap();
    t.commit().await.unwrap();
    let mut r = client.begin_optimistic().await.unwrap();
    assert_eq!(r.get(b"k".to_vec()).await.unwrap(), Some(b"v".to_vec()));
    r.rollback().await.unwrap();

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let prewrite = lines
        .iter()
        .find(|l| l["rpc"] == "KvPrewrite")
        .expect("the 1PC prewrite is traced");
    let steps = &prewrite["raft"];
    for step in [
        "queued_us",
        "execute_us",
        "persist_us",
        "commit_us",
        "apply_us",
    ] {
        assert!(steps[step].is_u64(), "{step} missing in {prewrite}");
    }
    assert!(
        steps["persist_us"].as_u64().unwrap() > 0,
        "a durable log append takes time: {prewrite}"
    );
    let get = lines
        .iter()
        .find(|l| l["rpc"] == "KvGet")
        .expect("the read");
    assert!(get.get("raft").is_none(), "a read has no Raft steps: {get}");
}
