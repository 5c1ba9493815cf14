//! Membership and recovery with real processes: the dead node stays ACTIVE until its heartbeat
//! is 30 s old, then is ARCHIVED; the survivor serves throughout; a restarted node and a
//! restarted storage node serve again without restarting anything else.

mod common;

use std::time::Duration;

use common::shared_lab;
use poc_helpers::vocab::config::MembershipIntervals;

#[test]
fn a_killed_node_is_archived_after_its_heartbeat_expires_and_everyone_recovers() {
    let (_root, builder) = shared_lab("members");
    let cluster = builder
        .membership_intervals(MembershipIntervals::fast())
        .stop_timeout(Duration::from_secs(3))
        .start()
        .unwrap();
    let before = cluster.members("b").unwrap();
    let mut labelled: Vec<_> = before.iter().filter_map(|m| m.lab_node.clone()).collect();
    labelled.sort();
    assert_eq!(
        labelled,
        ["node-a", "node-b"],
        "both starts were recognised: {before:?}"
    );
    assert_eq!(cluster.membership("a").unwrap().height(), 2);

    let drill = cluster
        .recovery_drill("a", "b", Duration::from_secs(60))
        .unwrap();
    println!("{}", drill.timings_frame().unwrap());
    for r in &drill.recovery {
        println!(
            "MEASURED {} on {}: {:.3} s ({} failed attempts)",
            r.scenario, r.observed_on, r.seconds, r.failed_attempts
        );
    }
    let a_id = |ms: &[poc_helpers::experiments::membership::Member]| {
        ms.iter()
            .find(|m| {
                m.lab_node.as_deref() == Some("node-a") && before.iter().any(|b| b.id == m.id)
            })
            .map(|m| m.status.clone())
    };
    assert_eq!(
        a_id(&drill.after_kill).as_deref(),
        Some("ACTIVE"),
        "right after the kill it looks alive"
    );
    assert_ne!(
        a_id(&drill.after_archive).as_deref(),
        Some("ACTIVE"),
        "then it is archived (or removed)"
    );
    let scenarios: Vec<&str> = drill.recovery.iter().map(|r| r.scenario.as_str()).collect();
    assert!(
        scenarios
            .iter()
            .any(|s| s.starts_with("membership archive")),
        "{scenarios:?}"
    );
    let archive = drill
        .recovery
        .iter()
        .find(|r| r.scenario.starts_with("membership archive"))
        .unwrap();
    assert!(
        archive.seconds >= 28.0,
        "SurrealDB waits for a 30 s old heartbeat: {archive:?}"
    );
    assert!(drill.recovery[0].scenario.starts_with("survivor"));
    // After the restart node-a has a new id, and both nodes serve.
    assert!(
        drill
            .after_restart
            .iter()
            .filter(|m| m.status == "ACTIVE")
            .count()
            >= 2
    );
    assert_eq!(
        drill
            .recovery
            .iter()
            .filter(|r| r.scenario.starts_with("storage restart"))
            .count(),
        2
    );
    cluster.cleanup().unwrap();
}

#[test]
fn a_gracefully_stopped_node_archives_itself_at_once() {
    let (_root, builder) = shared_lab("members-stop");
    let cluster = builder
        .stop_timeout(Duration::from_secs(10))
        .start()
        .unwrap();
    let before = cluster.members("a").unwrap();
    let b_id = before
        .iter()
        .find(|m| m.lab_node.as_deref() == Some("node-b"))
        .expect("node-b's id")
        .id
        .clone();
    cluster.stop_node("b").unwrap();
    let after = cluster.members("a").unwrap();
    let b = after.iter().find(|m| m.id == b_id);
    assert!(
        b.is_none_or(|m| m.status == "ARCHIVED"),
        "no 30 s wait after SIGTERM: {after:?}"
    );
    cluster.cleanup().unwrap();
}
