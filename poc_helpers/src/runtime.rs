//! The lab's actor: one OS thread with its own tokio runtime that owns every process, connection
//! and record of a lab, driven by plain-data commands over `std::sync::mpsc`.
//!
//! # Why an actor thread (and not just `async fn`s)
//!
//! The notebooks run in evcxr, which compiles **every cell as its own library with its own copy of
//! every crate** — including tokio and its thread-local "current runtime". An SDK connection made
//! by code from cell 1 spawns its background task on cell 1's runtime; a future created by cell 2's
//! code and polled there looks in cell 2's (empty) thread-local and panics with "there is no
//! reactor running". Async APIs therefore break across cells.
//!
//! What does work across cells: a thread started by the cell that builds the lab, running that
//! cell's code and that cell's tokio, and receiving *data* — never closures or futures, whose code
//! would belong to another cell. So:
//!
//! * `Command` is a plain enum. Each variant carries its arguments and a `std::sync::mpsc::Sender`
//!   for its typed reply. std's channels contain no runtime state, so both cells agree on them.
//! * The facade (`Cluster`) sends a command and blocks on `Receiver::recv`. Never tokio's
//!   `blocking_recv`: that panics when the caller itself is inside a runtime (as evcxr's async
//!   cells are).
//! * The actor thread runs `block_on(lab.handle(command))` for one command at a time. Between
//!   commands the runtime's worker threads keep running background tasks (the SDK's WebSocket
//!   routers), so connections stay alive.
//! * Replies are plain data too (`Vec<OpRecord>`, `Vec<Instance>`, `QueryResult`, `String`s); the
//!   facade builds DataFrames from them in the *caller's* copy of polars.
//!
//! The same synchronous facade serves the CLI and the tests, which do not have this problem but
//! lose nothing by it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::client::QueryResult;
use crate::error::LabError;
use crate::lab::Lab;
use crate::metrics::Instance;
use crate::oplog::OpRecord;

/// The reply half a command carries.
pub(crate) type Reply<T> = mpsc::Sender<T>;

/// Which node a command is about: a 0-based index or a name (`node-b`, `b`, `B`, `"1"`).
///
/// Notebook code passes `0`, `"b"` or `"node-b"` and conversion happens through `Into<NodeRef>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRef {
    /// 0-based: 0 is node-a.
    Index(usize),
    /// A name as the user typed it; resolved by the lab.
    Name(String),
}

impl From<usize> for NodeRef {
    fn from(i: usize) -> Self {
        NodeRef::Index(i)
    }
}
impl From<i32> for NodeRef {
    /// Integer literals in notebook cells default to `i32`; negative values resolve to no node.
    fn from(i: i32) -> Self {
        if i < 0 {
            NodeRef::Name(i.to_string())
        } else {
            NodeRef::Index(i as usize)
        }
    }
}
impl From<&str> for NodeRef {
    fn from(s: &str) -> Self {
        NodeRef::Name(s.to_string())
    }
}
impl From<String> for NodeRef {
    fn from(s: String) -> Self {
        NodeRef::Name(s)
    }
}
impl From<&String> for NodeRef {
    fn from(s: &String) -> Self {
        NodeRef::Name(s.clone())
    }
}

/// A single-node lifecycle action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeAction {
    /// SIGTERM, grace period, SIGKILL.
    Stop,
    /// SIGKILL at once.
    Kill,
    /// Stop if running, start again on the same port and data directory, wait until ready.
    Restart,
    /// SIGSTOP: the process stays, but stops answering (a hung machine).
    Pause,
    /// SIGCONT after a pause.
    Resume,
}

impl NodeAction {
    /// The fault log's name for the action.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            NodeAction::Stop => "stop",
            NodeAction::Kill => "kill",
            NodeAction::Restart => "restart",
            NodeAction::Pause => "pause",
            NodeAction::Resume => "resume",
        }
    }
}

/// One query of a [`Command::Race`]: its log line (if any) and how it ended.
pub(crate) type RaceResult = (Option<String>, Result<QueryResult, LabError>);

/// Everything the facade can ask the actor. Plain data only: see the module docs.
pub(crate) enum Command {
    /// Start the lab described by the actor's config. Replies with one log line per node and the
    /// final config (ephemeral ports are only chosen now).
    Start {
        reply: Reply<Result<(Vec<String>, crate::lab::LabConfig), LabError>>,
    },
    /// The status of every node.
    Instances {
        reply: Reply<Result<Vec<Instance>, LabError>>,
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
    /// Stop / kill / restart one node. Replies with a log line.
    Node {
        node: NodeRef,
        action: NodeAction,
        reply: Reply<Result<String, LabError>>,
    },
    /// Runs several queries at the same moment, each on its node; replies in the same order.
    Race {
        queries: Vec<(NodeRef, String)>,
        reply: Reply<Vec<RaceResult>>,
    },
    /// Length of the storage trace file now (a mark to read from).
    TraceMark { reply: Reply<Result<u64, LabError>> },
    /// Trace rows written since a mark, attributed to nodes.
    TraceSince {
        mark: u64,
        reply: Reply<Result<Vec<crate::trace::TraceRow>, LabError>>,
    },
    /// Acts on the embedded storage node (shared mode).
    Storage {
        action: NodeAction,
        reply: Reply<Result<String, LabError>>,
    },
    /// Runs a load workload (see `workload`) on the lab's session pools.
    Workload {
        spec: crate::workload::WorkloadSpec,
        reply: Reply<Result<crate::workload::WorkloadReport, LabError>>,
    },
    /// `(name, pid)` of every running lab process: nodes, then the storage node.
    Processes { reply: Reply<Vec<(String, u32)>> },
    /// Stop every node (and storage the lab started). Replies with log lines.
    StopAll {
        reply: Reply<Result<Vec<String>, LabError>>,
    },
    /// Cut / heal / slow down / drop connections on one link. Replies with a log line.
    LinkFault {
        link: crate::links::Link,
        fault: crate::links::LinkFault,
        reply: Reply<Result<String, LabError>>,
    },
    /// The state and counters of every link proxy.
    Links {
        reply: Reply<Vec<crate::links::LinkStatus>>,
    },
    /// Runs the contention experiment (see `conflicts`).
    Contention {
        plan: crate::conflicts::ContentionPlan,
        reply: Reply<Result<Vec<crate::conflicts::ContentionRow>, LabError>>,
    },
    /// Runs the bank checker (see `bank`).
    Bank {
        plan: crate::bank::BankPlan,
        reply: Reply<Result<crate::bank::BankReport, LabError>>,
    },
    /// SurrealDB member id → lab node name, for every node start so far.
    MemberIds {
        reply: Reply<std::collections::HashMap<String, String>>,
    },
    /// LIVE SELECT on one node while writes run on others (see `live`). Replies with the
    /// writes' log lines and the report.
    LiveWatch {
        listen: NodeRef,
        table: String,
        writes: Vec<(NodeRef, String)>,
        wait: Duration,
        reply: Reply<(Vec<String>, Result<crate::live::LiveReport, LabError>)>,
    },
    /// A copy of the fault log.
    Faults {
        reply: Reply<Vec<crate::faults::FaultRecord>>,
    },
    /// Stop everything and delete the lab directory.
    Cleanup { reply: Reply<Result<(), LabError>> },
    /// End the actor. `stop_nodes: false` leaves processes running (detach).
    Shutdown { stop_nodes: bool, reply: Reply<()> },
}

/// The facade's handle on the actor thread.
pub(crate) struct Actor {
    tx: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl Actor {
    /// Starts the actor thread for `lab`. The thread is named after the lab for debuggers and
    /// panic messages.
    pub(crate) fn spawn(lab: Lab) -> Result<Actor, LabError> {
        let (tx, rx) = mpsc::channel::<Command>();
        let name = format!("lab-{}", lab.name());
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || actor_main(lab, rx))
            .map_err(|e| LabError::ActorGone {
                reason: format!("could not start the lab thread: {e}"),
            })?;
        Ok(Actor {
            tx,
            thread: Some(thread),
        })
    }

    /// Sends the command built by `make` (which receives the reply sender) and waits for the reply.
    ///
    /// `make` runs here, in the caller's thread, only to assemble the command value; no closure
    /// ever crosses to the actor.
    pub(crate) fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, LabError> {
        let (reply_tx, reply_rx) = mpsc::channel();
        self.tx
            .send(make(reply_tx))
            .map_err(|_| LabError::ActorGone {
                reason: "the lab thread has ended".into(),
            })?;
        reply_rx.recv().map_err(|_| LabError::ActorGone {
            reason: "the lab thread dropped the request (it panicked; see the message above)"
                .into(),
        })
    }

    /// Like [`Actor::call`] but gives up waiting after `limit` (used by `Drop`, which must not hang).
    pub(crate) fn call_timeout<T>(
        &self,
        limit: Duration,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, LabError> {
        let (reply_tx, reply_rx) = mpsc::channel();
        self.tx
            .send(make(reply_tx))
            .map_err(|_| LabError::ActorGone {
                reason: "the lab thread has ended".into(),
            })?;
        reply_rx
            .recv_timeout(limit)
            .map_err(|e| LabError::ActorGone {
                reason: format!("no reply from the lab thread within {limit:?} ({e})"),
            })
    }

    /// Waits for the actor thread to finish (after a `Shutdown`).
    pub(crate) fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The actor thread's body: build the runtime, handle commands until `Shutdown` or until every
/// facade is gone, then make sure nothing is left running.
fn actor_main(mut lab: Lab, rx: mpsc::Receiver<Command>) {
    // A multi-threaded runtime so the SDK's connection tasks run on worker threads even while
    // this thread waits for the next command. Worker count = CPU cores (tokio's default).
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lab-rt")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("poc_helpers: could not build the lab's tokio runtime: {e}");
            return;
        }
    };
    let mut shut_down = false;
    for cmd in rx.iter() {
        let is_shutdown = matches!(cmd, Command::Shutdown { .. });
        // A panic inside one command must not take the lab (and its child processes' owner) down:
        // the reply sender is dropped, so the caller gets `ActorGone`, and the next command runs.
        let outcome = catch_unwind(AssertUnwindSafe(|| rt.block_on(lab.handle(cmd))));
        if let Err(panic) = outcome {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            eprintln!("poc_helpers: the lab thread panicked while handling a command: {msg}");
        }
        if is_shutdown {
            shut_down = true;
            break;
        }
    }
    if !shut_down {
        // Every facade was dropped without a Shutdown (e.g. leaked): do not leave orphans.
        rt.block_on(lab.stop_everything());
    }
    // Give the SDK's background tasks a moment to close their sockets, but never hang here.
    rt.shutdown_timeout(Duration::from_secs(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_refs_from_notebook_literals() {
        fn r(x: impl Into<NodeRef>) -> NodeRef {
            x.into()
        }
        assert_eq!(r(0), NodeRef::Index(0)); // an untyped literal is i32
        assert_eq!(r(1usize), NodeRef::Index(1));
        assert_eq!(r("b"), NodeRef::Name("b".into()));
        assert_eq!(r(String::from("node-b")), NodeRef::Name("node-b".into()));
    }
}
