//! `Lab` as an experiment's [`Harness`]: each method forwards to the lab's own, so an
//! experiment sees exactly what a facade call would, and nothing more.

use super::Lab;
use crate::experiments::harness::Harness;
use crate::infra::client::ConnectSpec;
use crate::infra::process::Managed as _;
use crate::vocab::config::LabConfig;
use crate::vocab::error::LabError;
use crate::vocab::faults::{Fault, FaultRecord, Link};
use crate::vocab::nodes::{NodeRef, NodeState};
use crate::vocab::query::QueryResult;

impl Harness for Lab {
    fn config(&self) -> &LabConfig {
        &self.cfg
    }

    fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn node_is_up(&mut self, i: usize) -> bool {
        self.nodes[i].is_up()
    }

    fn node_is_paused(&mut self, i: usize) -> bool {
        self.nodes[i].refresh() == &NodeState::Paused
    }

    fn storage_is_up(&mut self) -> Option<bool> {
        self.embedded_storage().map(|s| s.is_up())
    }

    fn storage_is_paused(&mut self) -> bool {
        self.embedded_storage().is_some_and(|s| s.is_paused())
    }

    fn broken_links(&self) -> Vec<Link> {
        Lab::broken_links(self)
    }

    fn resolve(&self, node: &NodeRef) -> Result<usize, LabError> {
        Lab::resolve(self, node)
    }

    fn node_name(&self, node: &NodeRef) -> String {
        self.target_name(node)
    }

    fn connect_spec(&self, i: usize) -> ConnectSpec {
        Lab::connect_spec(self, i)
    }

    fn clock_ms(&self) -> f64 {
        Lab::clock_ms(self)
    }

    fn created_unix_ms(&self) -> u64 {
        self.created_unix_ms
    }

    fn cancelled(&self) -> bool {
        Lab::cancelled(self)
    }

    async fn sql(
        &mut self,
        node: NodeRef,
        query: String,
    ) -> (Option<String>, Result<QueryResult, LabError>) {
        Lab::sql(self, node, query, None).await
    }

    async fn inject(&mut self, fault: &Fault) -> Result<String, LabError> {
        Lab::inject(self, fault).await
    }

    fn fault_records(&self) -> Vec<FaultRecord> {
        self.faults.records()
    }
}
