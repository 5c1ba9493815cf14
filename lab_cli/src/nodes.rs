//! `lab add | remove | kill | stop | pause | resume | restart`: one node (or the storage tier, or one store)
//! of the lab recorded in `state.json`, from a terminal — the verbs `cockroach demo` offers as
//! `\demo add/shutdown/restart`. Each attaches to the lab, does one thing through the same
//! facade calls a notebook makes (so the fault log and `state.json` stay right), prints its log
//! line, and lets go of the lab, leaving every process running.

use std::path::Path;

use poc_helpers::facade::Cluster;
use poc_helpers::vocab::error::LabError;
use poc_helpers::vocab::faults::Fault;
use poc_helpers::vocab::nodes::NodeAction;

/// The name that means the embedded storage node rather than a `surreal` node.
pub const STORAGE: &str = "storage";

/// `lab add`: starts the next node on the lab's storage and prints the status table.
pub fn add(dir: &Path) -> Result<(), LabError> {
    let cluster = Cluster::attach_dir(dir)?;
    let name = cluster.add_node()?;
    let letter = name.trim_start_matches("node-");
    println!("{}", cluster.status()?);
    println!("try: lab sql {letter} \"SELECT * FROM user\"   (it serves what the others wrote)");
    Ok(())
}

/// `lab remove NODE`: stops the newest node gracefully and forgets it.
pub fn remove(dir: &Path, node: &str) -> Result<(), LabError> {
    let cluster = Cluster::attach_dir(dir)?;
    cluster.remove_node(node).map_err(with_storage_hint)
}

/// `lab kill|stop|pause|resume|restart NODE`: one action on a node or on the storage node.
pub fn act(dir: &Path, action: NodeAction, node: &str) -> Result<(), LabError> {
    let cluster = Cluster::attach_dir(dir)?;
    let given = node.trim().to_ascii_lowercase();
    let fault = if given == STORAGE {
        Fault::Storage(action)
    } else if let Some(id) = given.strip_prefix("store-").and_then(|n| n.parse().ok()) {
        Fault::Store(id, action)
    } else if given == "pd" {
        Fault::Pd(action)
    } else {
        Fault::Node(node.into(), action)
    };
    cluster.inject(fault).map_err(with_storage_hint)
}

/// An unknown node's error also lists `storage`, which these verbs accept too.
fn with_storage_hint(e: LabError) -> LabError {
    match e {
        LabError::UnknownNode { given, known } => LabError::UnknownNode {
            given,
            known: format!(
                "{known} (and `{STORAGE}` for the whole storage tier, `pd` for PD alone, `store-1`, `store-2`… for one store)"
            ),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_node_error_mentions_the_storage_node() {
        let e = with_storage_hint(LabError::UnknownNode {
            given: "z".into(),
            known: "node-a, node-b".into(),
        })
        .to_string();
        assert!(e.contains("no node `z`"), "{e}");
        assert!(
            e.contains(
                "node-a, node-b (and `storage` for the whole storage tier, `pd` for PD alone, `store-1`"
            ),
            "{e}"
        );
    }
}
