//! The experiments the notebooks run, each as `run(plan, harness)`.
//!
//! Imports [`crate::vocab`], [`crate::infra`] and [`crate::present`], never the actor or the
//! facade: an experiment reaches the lab only through the narrow `harness::Harness` trait
//! (run a query, inject a fault, ask whether a node is up), the way a mini-redis command gets a
//! `Db` and a connection rather than the server. The actor's `Lab` implements the trait.
//!
//! - [`workload`]: the load generator (plans, runs, reports, sweeps).
//! - [`bank`]: the Jepsen-style bank test: a run that produces a history, and a pure checker
//!   that turns the history into a verdict.
//! - [`conflicts`]: contention and the conflict rate.
//! - [`live`]: LIVE SELECT across nodes.
//! - [`membership`]: `INFO FOR ROOT` members and recovery timings.
//! - [`scale_out`]: what storage did while a node joined; notebook 02's exercise check.
//! - [`consistency`]: the same query on every node, compared.
//! - [`commit_shape`]: whether a write committed in one phase or two, from the storage trace.
//! - [`handoff`]: one node's traced write of a record beside another node's traced read of it.
//! - [`majority_loss`]: two of three stores killed under a writer; one restarted.
//! - [`store_replacement`]: a store's machine lost under a writer; a new store rebuilt in its
//!   place (PD's replica checker), the old id refused.
//! - [`replica_cost`]: one write on one replica beside three, explained by its Raft steps.
//! - [`waterfall`]: where one statement's time goes, storage RPC by storage RPC.
//! - [`partitions`]: a client cut from its node, a slow link, dropped connections.
//! - [`unique`]: two nodes racing to create the same email under a UNIQUE index.
//! - [`production`]: notebook 06 — what multi-node users ask: catalog races, changefeeds, a
//!   node's life, rolling restarts, schema propagation, export and restore.

pub mod bank;
pub mod commit_shape;
pub mod conflicts;
pub mod consistency;
pub mod handoff;
pub(crate) mod harness;
pub mod live;
pub mod majority_loss;
pub mod membership;
pub mod partitions;
pub mod production;
pub mod replica_cost;
pub mod scale_out;
pub mod store_failover;
pub mod store_replacement;
pub mod unique;
pub mod waterfall;
pub mod workload;
