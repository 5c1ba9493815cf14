//! The client suite's scaffolding for the replicated tier: the same `TestNode` API as
//! `mod.rs`, over PD plus three stores (in this process, on loopback ports) with the key space
//! split into several regions before the test starts.
#![allow(dead_code)]

#[path = "mod.rs"]
mod base;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use base::{ALL_MODES, Mode, is_write_conflict, key, options};
use storage_node::raftstore::RaftConfig;
use storage_node::roles::pd::{PdConfig, PdNode};
use storage_node::roles::store::{StoreConfig, StoreNode};
use storage_node::storage::Storage;
use tikv_client::TransactionClient;

/// Where the suite's keys are cut: inside its scan ranges (`{mode}/k00`…`k19`), its large
/// transactions (`big-{mode}-0000`…) and its plain keys (`k00`…).
pub const SPLIT_KEYS: [&[u8]; 5] = [
    b"AsyncCommit/k10",
    b"OnePc/k07",
    b"TwoPc/k12",
    b"big-AsyncCommit-0100",
    b"k10",
];

/// What the suite reads of the tier (`node.node.storage`): store 1's storage, which holds a
/// replica of every region.
pub struct Tier {
    pub storage: Arc<Storage>,
}

/// PD and three stores, split into six regions.
pub struct TestNode {
    pub node: Tier,
    pd: PdNode,
    stores: Vec<StoreNode>,
    _dirs: Vec<tempfile::TempDir>,
}

impl TestNode {
    pub async fn start() -> TestNode {
        let mut dirs = Vec::new();
        let pd_dir = tempfile::tempdir().unwrap();
        let pd = PdNode::start(PdConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            data_dir: pd_dir.path().to_path_buf(),
            trace: None,
        })
        .await
        .expect("PD starts");
        dirs.push(pd_dir);
        let mut stores = Vec::new();
        for id in 1..=3 {
            let dir = tempfile::tempdir().unwrap();
            let store = StoreNode::start(StoreConfig {
                addr: "127.0.0.1:0".parse().unwrap(),
                data_dir: dir.path().to_path_buf(),
                pd: pd.addr.to_string(),
                store_id: id,
                initial_stores: 3,
                trace: None,
                raft: RaftConfig::default(),
            })
            .await
            .expect("store starts");
            dirs.push(dir);
            stores.push(store);
        }
        // One key at a time, each in the region that holds it now, as the TiKV client would:
        // a busy machine can cost a leader its lease mid-way (an election timeout is 0.5 s),
        // and then the split is retried at the leader PD names, skipping keys already cut.
        let deadline = Instant::now() + Duration::from_secs(30);
        for key in SPLIT_KEYS {
            let encoded = storage_node::mvcc::keys::encode_bytes(key);
            loop {
                let Some(region) = pd.cluster.region_by_key(&encoded) else {
                    panic!("PD knows no region for {key:?}");
                };
                if region.region.start_key == encoded {
                    break;
                }
                let leader = wait_for_leader(&pd, &stores, region.region.id).await;
                match stores[leader]
                    .storage
                    .split(region.region.id, None, &[key.to_vec()])
                    .await
                {
                    Ok(_) => break,
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("split at {key:?} not done yet: {e:?}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("the split at {key:?}: {e:?}"),
                }
            }
        }
        // Every store holds every region once the splits applied everywhere.
        let regions = loop {
            let regions = stores[0].storage.region_count();
            if regions == SPLIT_KEYS.len() + 1 || Instant::now() >= deadline {
                break regions;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(regions, SPLIT_KEYS.len() + 1);
        // Every region elects its leader (the split's leader store campaigns at once) and
        // reports to PD before the suite's client asks.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pd.cluster.regions().len() != regions
            || pd.cluster.regions().iter().any(|r| r.leader.is_none())
        {
            assert!(
                Instant::now() < deadline,
                "PD never saw every region's leader"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        TestNode {
            node: Tier {
                storage: stores[0].storage.clone(),
            },
            pd,
            stores,
            _dirs: dirs,
        }
    }

    pub fn endpoint(&self) -> String {
        self.pd.addr.to_string()
    }

    pub async fn client(&self) -> TransactionClient {
        TransactionClient::new(vec![self.endpoint()])
            .await
            .expect("client connects")
    }
}

/// The index in `stores` of the store leading `region`, once PD knows it (within 10 s).
async fn wait_for_leader(pd: &PdNode, stores: &[StoreNode], region: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(i) = stores.iter().position(|s| {
            s.storage
                .peer_status(region)
                .is_some_and(|p| p.is_ready_leader)
        }) && pd
            .cluster
            .region_by_id(region)
            .is_some_and(|r| r.leader.is_some())
        {
            return i;
        }
        assert!(
            Instant::now() < deadline,
            "region {region} elected no leader"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
