//! `StorageMode::ExternalTikv` for real: a storage node the lab did not start (spawned here, on
//! its own port and data directory, like a learner's own PD + TiKV), two lab nodes over it.
//! Data written on one node is read on the other; the status table shows the storage as
//! `external` with its PD address and no pid; and nothing the lab does — `stop_all()`,
//! `cleanup()`, an attached handle — stops it: a new lab on it still finds the old data.

mod common;

use common::external_storage::ExternalStorage;
use common::shared_lab;
use poc_helpers::prelude::*;

fn names(r: &QueryResult) -> Vec<String> {
    r.rows()
        .iter()
        .filter_map(|v| v.get("name").and_then(|n| n.as_str()).map(String::from))
        .collect()
}

fn external(ext: &ExternalStorage) -> StorageMode {
    StorageMode::ExternalTikv {
        pd_endpoints: vec![ext.endpoint()],
    }
}

/// The storage row of a status table, which must be there.
fn storage_row(cluster: &Cluster) -> Instance {
    cluster
        .instances()
        .unwrap()
        .into_iter()
        .find(|i| i.node == "storage")
        .expect("a storage row in the status table")
}

/// The external storage row: state `external`, the PD address, nothing the lab would only know
/// of a process it owns.
fn assert_external_row(row: &Instance, ext: &ExternalStorage) {
    assert_eq!(row.state, NodeState::External, "{row:?}");
    assert_eq!(row.state.to_string(), "external");
    assert_eq!(row.port, ext.port, "{row:?}");
    assert_eq!(row.storage, format!("tikv://{}", ext.endpoint()), "{row:?}");
    assert_eq!(row.pid, None, "the lab does not own it: {row:?}");
    assert!(row.rss_mb.is_none() && row.uptime_s.is_none(), "{row:?}");
}

#[test]
fn two_nodes_share_external_storage_and_the_lab_never_stops_it() {
    let mut ext = ExternalStorage::start();
    let (_root, builder) = shared_lab("ext");
    let cluster = builder
        .storage(external(&ext))
        .nodes(2)
        .echo(false)
        .start()
        .expect("a lab on the external storage node");

    cluster.create_user("a", "Ada", "ada@example.com").unwrap();
    assert_eq!(
        names(&cluster.sql("b", "SELECT * FROM user").unwrap()),
        ["Ada"],
        "created on A, read on B: both nodes use the external storage"
    );

    // Status: the nodes point at the external PD, and the storage row says it is external.
    let st = cluster.instances().unwrap();
    assert!(
        st.iter()
            .filter(|i| i.node.starts_with("node-"))
            .all(|i| i.storage == format!("tikv://{}", ext.endpoint())),
        "{st:?}"
    );
    assert_external_row(&storage_row(&cluster), &ext);
    let frame = cluster.status().unwrap();
    let text = frame.to_string();
    assert_eq!(frame.height(), 3, "two nodes and the storage:\n{text}");
    let states: Vec<Option<&str>> = frame
        .column("state")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(states[2], Some("external"), "{text}");

    // An attached handle (what `lab status` uses) rebuilds the same row from state.json, and
    // dropping it stops nothing.
    let attached = Cluster::attach_dir(cluster.lab_dir()).unwrap();
    assert_external_row(&storage_row(&attached), &ext);
    drop(attached);

    cluster.stop_all().unwrap();
    ext.assert_untouched("stop_all()");
    assert_external_row(&storage_row(&cluster), &ext);
    cluster.cleanup().unwrap();
    ext.assert_untouched("cleanup()");

    // It still serves: a new lab on it finds the data of the old one.
    let (_root2, builder2) = shared_lab("ext-again");
    let again = builder2
        .storage(external(&ext))
        .nodes(1)
        .echo(false)
        .start()
        .expect("a second lab on the same external storage");
    assert_eq!(
        names(&again.sql("a", "SELECT * FROM user").unwrap()),
        ["Ada"],
        "the first lab's data outlived its cleanup"
    );
    drop(again); // an owning handle stops its nodes on drop: the storage must survive that too
    ext.assert_untouched("dropping a lab handle");
}
