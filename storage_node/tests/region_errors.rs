//! Region errors as the TiKV client expects them, checked on the wire: a request for a region
//! this store does not hold, or with an epoch the region no longer has, is answered with the
//! matching `region_error` (which the client answers by refreshing its cache from PD and
//! retrying), before any data is touched.

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
