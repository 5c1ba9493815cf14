//! Breaking things on purpose: every node, storage and link fault is a [`Fault`] sent to the
//! actor's one `inject`, so each is carried out and logged the same way, whoever asked.

use std::time::Duration;

use polars::prelude::DataFrame;

use super::Cluster;
use crate::actor::command::Command;
use crate::infra::links::LinkStatus;
use crate::vocab::error::LabError;
use crate::vocab::faults::{Fault, FaultRecord, Link, LinkFault};
use crate::vocab::nodes::{NodeAction, NodeRef};

impl Cluster {
    /// Injects one fault and prints its log line: `cluster.inject(Fault::kill_node("b"))` is
    /// `cluster.kill_node("b")`. Every fault, from here, the CLI or a bank schedule, goes
    /// through the actor's one fault path and lands in [`faults`](Self::faults).
    pub fn inject(&self, fault: Fault) -> Result<(), LabError> {
        let line = self.actor.call(|reply| Command::Fault { fault, reply })??;
        self.say(&line);
        Ok(())
    }

    fn inject_link(&self, link: Link, change: LinkFault) -> Result<(), LabError> {
        self.inject(Fault::Link(link, change))
    }

    /// Graceful stop: SIGTERM, then SIGKILL after the stop timeout.
    pub fn stop_node(&self, node: impl Into<NodeRef>) -> Result<(), LabError> {
        self.inject(Fault::Node(node.into(), NodeAction::Stop))
    }

    /// SIGKILL, like a crash.
    pub fn kill_node(&self, node: impl Into<NodeRef>) -> Result<(), LabError> {
        self.inject(Fault::Node(node.into(), NodeAction::Kill))
    }

    /// Start the node again (same port, same data directory), wait until ready, reconnect.
    pub fn restart_node(&self, node: impl Into<NodeRef>) -> Result<(), LabError> {
        self.inject(Fault::Node(node.into(), NodeAction::Restart))
    }

    /// SIGSTOP: the node keeps its process and sockets but answers nothing (a hung machine).
    pub fn pause_node(&self, node: impl Into<NodeRef>) -> Result<(), LabError> {
        self.inject(Fault::Node(node.into(), NodeAction::Pause))
    }

    /// SIGCONT: a paused node carries on where it stopped.
    pub fn resume_node(&self, node: impl Into<NodeRef>) -> Result<(), LabError> {
        self.inject(Fault::Node(node.into(), NodeAction::Resume))
    }

    /// Graceful stop of the embedded storage node (shared mode). The query nodes stay up and
    /// keep retrying; queries fail until storage is back.
    pub fn stop_storage(&self) -> Result<(), LabError> {
        self.inject(Fault::Storage(NodeAction::Stop))
    }

    /// SIGKILL the embedded storage node: a crash of the whole storage tier.
    pub fn kill_storage(&self) -> Result<(), LabError> {
        self.inject(Fault::Storage(NodeAction::Kill))
    }

    /// Start the embedded storage node again on the same port and data; the query nodes
    /// reconnect by themselves.
    pub fn restart_storage(&self) -> Result<(), LabError> {
        self.inject(Fault::Storage(NodeAction::Restart))
    }

    /// SIGSTOP the embedded storage node (a hung storage tier).
    pub fn pause_storage(&self) -> Result<(), LabError> {
        self.inject(Fault::Storage(NodeAction::Pause))
    }

    /// SIGKILL store `id` (1, 2, 3…) of a replicated tier (`.stores(3)`): the regions it led
    /// elect a leader on another store, and writes pause for that election instead of failing.
    pub fn kill_store(&self, id: u64) -> Result<(), LabError> {
        self.inject(Fault::Store(id, NodeAction::Kill))
    }

    /// SIGTERM store `id` of a replicated tier.
    pub fn stop_store(&self, id: u64) -> Result<(), LabError> {
        self.inject(Fault::Store(id, NodeAction::Stop))
    }

    /// Start store `id` again on the same port and data; it catches up from the leaders.
    pub fn restart_store(&self, id: u64) -> Result<(), LabError> {
        self.inject(Fault::Store(id, NodeAction::Restart))
    }

    /// SIGSTOP store `id`: a hung store (its peers stop hearing from it).
    pub fn pause_store(&self, id: u64) -> Result<(), LabError> {
        self.inject(Fault::Store(id, NodeAction::Pause))
    }

    /// SIGCONT a paused store.
    pub fn resume_store(&self, id: u64) -> Result<(), LabError> {
        self.inject(Fault::Store(id, NodeAction::Resume))
    }

    /// SIGKILL PD alone (a `.stores(3)` lab; CLI: `lab kill pd`): the stores keep their data
    /// and their leaders, but no transaction can start (each needs a timestamp from PD) until
    /// it is back.
    pub fn kill_pd(&self) -> Result<(), LabError> {
        self.inject(Fault::kill_pd())
    }

    /// Start PD again on its port and data (CLI: `lab restart pd`); the stores register with it
    /// again and their leaders report the regions, so transactions resume.
    pub fn restart_pd(&self) -> Result<(), LabError> {
        self.inject(Fault::restart_pd())
    }

    /// Cuts store `id` off from the other stores (a network partition inside the storage
    /// tier; CLI: `lab partition store-2`): Raft messages between it and them are dropped, so
    /// it commits nothing alone and the regions it led elect leaders among the others. The
    /// `surreal` nodes and PD still reach it.
    pub fn partition_store(&self, id: u64) -> Result<(), LabError> {
        self.inject(Fault::partition_store(id))
    }

    /// Heals store `id`'s partition (CLI: `lab heal store-2`): it catches up from the leaders.
    pub fn heal_store(&self, id: u64) -> Result<(), LabError> {
        self.inject(Fault::heal_store(id))
    }

    /// SIGCONT the embedded storage node.
    pub fn resume_storage(&self) -> Result<(), LabError> {
        self.inject(Fault::Storage(NodeAction::Resume))
    }

    /// Cuts a link: its open connections are reset and new ones refused until
    /// [`heal_link`](Self::heal_link). `cluster.cut_link(Link::to_storage("a"))` partitions
    /// node-a from the data while it keeps running.
    pub fn cut_link(&self, link: Link) -> Result<(), LabError> {
        self.inject_link(link, LinkFault::Cut)
    }

    /// Heals a link: no cut, no latency, no dropped connections.
    pub fn heal_link(&self, link: Link) -> Result<(), LabError> {
        self.inject_link(link, LinkFault::Heal)
    }

    /// Delays every chunk on the link by `latency ± jitter`, each way (zero removes it).
    pub fn add_latency(
        &self,
        link: Link,
        latency: Duration,
        jitter: Duration,
    ) -> Result<(), LabError> {
        self.inject_link(link, LinkFault::Latency { latency, jitter })
    }

    /// Resets `fraction` (0.0–1.0) of the link's *new* connections on accept.
    pub fn drop_connections(&self, link: Link, fraction: f64) -> Result<(), LabError> {
        self.inject_link(link, LinkFault::Drop { fraction })
    }

    /// Every link proxy as structs (settings and counters).
    pub fn link_statuses(&self) -> Result<Vec<LinkStatus>, LabError> {
        self.actor.call(|reply| Command::Links { reply })
    }

    /// Every link: link, proxy_port, upstream_port, cut, latency_ms, jitter_ms, drop_fraction,
    /// and counters (accepted, refused, dropped, reset, upstream_failed, kb_up, kb_down).
    pub fn links(&self) -> Result<DataFrame, LabError> {
        crate::infra::links::links_frame(&self.link_statuses()?)
    }

    /// Every fault call so far, as records (see `faults`).
    pub fn fault_records(&self) -> Result<Vec<FaultRecord>, LabError> {
        self.actor.call(|reply| Command::Faults { reply })
    }

    /// The fault log: target, action, started_at_ms, ended_at_ms, call_ms, ok, detail — on the
    /// clock of [`timings`](Self::timings), so charts can shade each fault's window.
    pub fn faults(&self) -> Result<DataFrame, LabError> {
        crate::vocab::faults::faults_frame(&self.fault_records()?)
    }
}
