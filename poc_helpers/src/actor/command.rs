//! Everything the facade can ask the actor, as plain data (see `thread` for why no closure or
//! future may cross): each variant carries its arguments and a `std::sync::mpsc::Sender` for
//! its typed reply.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

use crate::experiments::bank::{BankPlan, BankReport};
use crate::experiments::conflicts::{ContentionPlan, ContentionReport};
use crate::experiments::live::LiveReport;
use crate::experiments::partitions::drops::{DropPlan, DropReport};
use crate::experiments::waterfall::Waterfall;
use crate::experiments::workload::{WorkloadPlan, WorkloadReport};
use crate::infra::links::LinkStatus;
use crate::infra::metrics::Instance;
use crate::infra::placement::Placement;
use crate::infra::trace::TraceRow;
use crate::vocab::config::LabConfig;
use crate::vocab::error::LabError;
use crate::vocab::faults::{Fault, FaultRecord};
use crate::vocab::nodes::NodeRef;
use crate::vocab::oplog::OpRecord;
use crate::vocab::query::QueryResult;

/// The reply half a command carries.
pub(crate) type Reply<T> = mpsc::Sender<T>;

/// One query of a [`Command::Race`]: its log line (if any), how it ended, and its client-side
/// round trip in ms (0 when it never reached a node).
pub(crate) type RaceResult = (Option<String>, Result<QueryResult, LabError>, f64);

/// Everything the facade can ask the actor. Plain data only: see the module docs.
pub(crate) enum Command {
    /// Start the lab described by the actor's config. Replies with one log line per node and the
    /// final config (ephemeral ports are only chosen now).
    Start {
        reply: Reply<Result<(Vec<String>, LabConfig), LabError>>,
    },
    /// Start one more node on the lab's storage (see `actor::lab::scale`). Replies with its
    /// name and a log line.
    AddNode {
        reply: Reply<Result<(String, String), LabError>>,
    },
    /// Stop the newest node and forget it. Replies with a log line.
    RemoveNode {
        node: NodeRef,
        reply: Reply<Result<String, LabError>>,
    },
    /// The status of every node.
    Instances {
        reply: Reply<Result<Vec<Instance>, LabError>>,
    },
    /// The storage tier's regions and stores, from PD.
    Placement {
        reply: Reply<Result<Placement, LabError>>,
    },
    /// Ask PD to split regions at these encoded keys; replies with the resulting region ids.
    SplitAt {
        keys: Vec<Vec<u8>>,
        reply: Reply<Result<Vec<u64>, LabError>>,
    },
    /// Ask PD to move a region's leader to a store.
    TransferLeader {
        region: u64,
        store: u64,
        reply: Reply<Result<(), LabError>>,
    },
    /// Start one more store (it joins with no replica). Replies with its id and a log line.
    AddStore {
        reply: Reply<Result<(u64, String), LabError>>,
    },
    /// Ask PD to remove a store (its replicas move away). Replies with PD's answer.
    RemoveStore {
        store: u64,
        reply: Reply<Result<String, LabError>>,
    },
    /// Replace a store that lost its data: remove it, start a new one.
    ReplaceStore {
        store: u64,
        reply: Reply<Result<(u64, String), LabError>>,
    },
    /// Run SurrealQL on one node. Replies with the log line (if the node was known) and the result.
    Sql {
        node: NodeRef,
        query: String,
        vars: Option<serde_json::Value>,
        reply: Reply<(Option<String>, Result<QueryResult, LabError>)>,
    },
    /// HTTP GET on one node.
    Http {
        node: NodeRef,
        path: String,
        reply: Reply<Result<(u16, String), LabError>>,
    },
    /// A copy of the operation log.
    OpLog { reply: Reply<Vec<OpRecord>> },
    /// Empty the operation log.
    ClearOpLog { reply: Reply<()> },
    /// Runs several queries at the same moment, each on its node; replies in the same order.
    Race {
        queries: Vec<(NodeRef, String)>,
        reply: Reply<Vec<RaceResult>>,
    },
    /// Length of the storage trace file now (a mark to read from).
    TraceMark { reply: Reply<Result<u64, LabError>> },
    /// Run SurrealQL on one node and build its latency waterfall from the storage trace.
    Waterfall {
        node: NodeRef,
        query: String,
        reply: Reply<(Option<String>, Result<Waterfall, LabError>)>,
    },
    /// Trace rows written since a mark, attributed to nodes.
    TraceSince {
        mark: u64,
        reply: Reply<Result<Vec<TraceRow>, LabError>>,
    },
    /// Runs a load workload (see `workload`) on the lab's session pools.
    Workload {
        plan: WorkloadPlan,
        reply: Reply<Result<WorkloadReport, LabError>>,
    },
    /// `(name, pid)` of every running lab process: nodes, then the storage node.
    Processes { reply: Reply<Vec<(String, u32)>> },
    /// Stop every node (and storage the lab started). Replies with log lines.
    StopAll {
        reply: Reply<Result<Vec<String>, LabError>>,
    },
    /// Injects one fault (a node or storage action, or a link change) through the one fault
    /// path, which also logs it. Replies with a log line.
    Fault {
        fault: Fault,
        reply: Reply<Result<String, LabError>>,
    },
    /// The state and counters of every link proxy.
    Links { reply: Reply<Vec<LinkStatus>> },
    /// Runs the contention experiment (see `conflicts`).
    Contention {
        plan: ContentionPlan,
        reply: Reply<Result<ContentionReport, LabError>>,
    },
    /// Runs the bank checker (see `bank`).
    Bank {
        plan: BankPlan,
        reply: Reply<Result<BankReport, LabError>>,
    },
    /// SurrealDB member id → lab node name, for every node start so far.
    MemberIds {
        reply: Reply<HashMap<String, String>>,
    },
    /// LIVE SELECT on one node while writes run on others (see `live`). Replies with the
    /// writes' log lines and the report.
    LiveWatch {
        listen: NodeRef,
        table: String,
        writes: Vec<(NodeRef, String)>,
        wait: Duration,
        reply: Reply<(Vec<String>, Result<LiveReport, LabError>)>,
    },
    /// Runs the dropped-connections drill (see `partitions::drops`).
    Drops {
        plan: DropPlan,
        reply: Reply<Result<DropReport, LabError>>,
    },
    /// A copy of the fault log.
    Faults { reply: Reply<Vec<FaultRecord>> },
    /// Stop everything and delete the lab directory.
    Cleanup { reply: Reply<Result<(), LabError>> },
    /// End the actor. `stop_nodes: false` leaves processes running (detach).
    Shutdown { stop_nodes: bool, reply: Reply<()> },
}
