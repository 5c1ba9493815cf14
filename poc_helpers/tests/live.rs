//! LIVE SELECT across nodes, checked on the real binary: with the default engine a change
//! written on the other node is not delivered; with the experimental router engine it is.

mod common;

use std::time::Duration;

use common::shared_lab;
use poc_helpers::vocab::config::LiveQueryEngine;

const WRITES: [(&str, &str); 3] = [
    ("a", "CREATE feed:a1 SET msg = 'written on A'"),
    ("b", "CREATE feed:b1 SET msg = 'written on B'"),
    ("b", "UPDATE feed:a1 SET msg = 'changed on B'"),
];

#[test]
fn default_engine_a_live_query_on_a_hears_only_writes_made_on_a() {
    let (_root, builder) = shared_lab("live-inline");
    let cluster = builder.start().unwrap();
    let r = cluster
        .live_watch("a", "feed", WRITES.to_vec(), Duration::from_secs(2))
        .unwrap();
    println!("{}", r.notifications_frame().unwrap());
    assert!(r.writes.iter().all(|w| w.ok));
    assert!(r.notified("feed:a1"), "the write on A is delivered: {r:?}");
    assert!(!r.notified("feed:b1"), "the write on B is not: {r:?}");
    assert_eq!(r.notifications.len(), 1, "nor B's update of a1: {r:?}");
    assert_eq!(r.notifications[0].action, "Create");
    cluster.cleanup().unwrap();
}

#[test]
fn router_engine_a_live_query_on_a_hears_writes_made_on_b() {
    let (_root, builder) = shared_lab("live-router");
    let cluster = builder
        .live_query_engine(LiveQueryEngine::Router)
        .start()
        .unwrap();
    let r = cluster
        .live_watch("a", "feed", WRITES.to_vec(), Duration::from_secs(2))
        .unwrap();
    println!("{}", r.notifications_frame().unwrap());
    // The engine is experimental: it relays writes made on node-b to node-a's subscriber, but
    // under load it was seen to miss one of B's two notifications within the wait (sometimes
    // the CREATE, sometimes the UPDATE). What held in every run: B's writes do reach A.
    let from_b = r.notified("feed:b1") || r.notifications.iter().any(|n| n.action == "Update");
    assert!(r.notified("feed:a1") && from_b, "{r:?}");
    cluster.cleanup().unwrap();
}
