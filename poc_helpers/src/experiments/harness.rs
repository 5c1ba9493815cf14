//! The narrow handle an experiment gets on a running lab.
//!
//! An experiment (a bank run, a contention run, a LIVE SELECT watch) needs a handful of
//! things from the lab: run a query on a node, inject a fault, know which nodes are up, open
//! its own sessions, read the lab's clock. It does not need the lab's processes, pools, state
//! file or command loop, so it does not get them: each experiment is written as
//! `run(plan, h: &mut impl Harness)`, the way mini-redis hands a command only `(db, dst)` and
//! TiKV hands `commit` only `(txn, reader, key, ts)`.
//!
//! The actor's `Lab` is the one implementation (`actor::lab::harness`). Keeping the trait here,
//! below the actor, is what breaks the old import circle: experiments name the trait, the actor
//! names the experiments.
//!
//! The trait is crate-private: its `async fn`s are run inside the actor's runtime with
//! `block_on`, which needs no `Send` bound, and no code outside this crate implements it.

use crate::infra::client::ConnectSpec;
use crate::vocab::config::LabConfig;
use crate::vocab::error::LabError;
use crate::vocab::faults::{Fault, FaultRecord, Link};
use crate::vocab::nodes::NodeRef;
use crate::vocab::query::QueryResult;

/// What an experiment may ask of the lab.
pub(crate) trait Harness {
    /// The lab's settings.
    fn config(&self) -> &LabConfig;

    /// Number of nodes.
    fn node_count(&self) -> usize;

    /// True while node `i`'s process is alive (running or paused).
    fn node_is_up(&mut self, i: usize) -> bool;

    /// True while node `i` is paused (SIGSTOPped).
    fn node_is_paused(&mut self, i: usize) -> bool;

    /// The embedded storage node's state: `None` without one, `Some(true)` while alive.
    fn storage_is_up(&mut self) -> Option<bool>;

    /// True while the embedded storage node is paused.
    fn storage_is_paused(&mut self) -> bool;

    /// Every link whose proxy is not healthy (cut, slowed or dropping).
    fn broken_links(&self) -> Vec<Link>;

    /// Resolves `node-b`, `b`, `1` … to an index, or explains which names exist.
    fn resolve(&self, node: &NodeRef) -> Result<usize, LabError>;

    /// The node's name (`node-b`) when `node` resolves, else what the caller typed.
    fn node_name(&self, node: &NodeRef) -> String;

    /// How to open a session of one's own to node `i` (through its client link, if any).
    fn connect_spec(&self, i: usize) -> ConnectSpec;

    /// Milliseconds since the lab started: the clock of `timings()` and `faults()`.
    fn clock_ms(&self) -> f64;

    /// Unix ms at which the lab clock reads 0 (for tasks that keep the clock themselves).
    fn created_unix_ms(&self) -> u64;

    /// True when a long run should wrap up (asked from another thread, or the lab was deleted).
    fn cancelled(&self) -> bool;

    /// Runs a query on one node and records it in the operation log; returns its log line.
    async fn sql(
        &mut self,
        node: NodeRef,
        query: String,
    ) -> (Option<String>, Result<QueryResult, LabError>);

    /// Injects one fault through the lab's one fault path (logged in the fault log).
    async fn inject(&mut self, fault: &Fault) -> Result<String, LabError>;

    /// A copy of the fault log so far.
    fn fault_records(&self) -> Vec<FaultRecord>;
}

/// The first node that is up, or an error that says how to get one.
pub(crate) fn first_up(h: &mut impl Harness) -> Result<usize, LabError> {
    (0..h.node_count())
        .find(|i| h.node_is_up(*i))
        .ok_or_else(|| {
            LabError::config(
                "nodes",
                "no node is running",
                "restart one with `cluster.restart_node(\"a\")`",
            )
        })
}

/// After a run: heal every link, resume what is paused, restart what is down (storage first,
/// then the nodes), each through [`Harness::inject`] so the repairs are in the fault log too.
pub(crate) async fn heal_everything(h: &mut impl Harness) {
    for link in h.broken_links() {
        let _ = h
            .inject(&Fault::Link(link, crate::vocab::faults::LinkFault::Heal))
            .await;
    }
    if h.storage_is_paused() {
        let _ = h.inject(&Fault::resume_storage()).await;
    }
    if h.storage_is_up() == Some(false) {
        let _ = h.inject(&Fault::restart_storage()).await;
    }
    for i in 0..h.node_count() {
        if h.node_is_paused(i) {
            let _ = h.inject(&Fault::resume_node(i)).await;
        } else if !h.node_is_up(i) {
            let _ = h.inject(&Fault::restart_node(i)).await;
        }
    }
}
