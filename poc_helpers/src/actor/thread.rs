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

use crate::actor::command::{Command, Reply};
use crate::actor::lab::Lab;
use crate::vocab::error::LabError;

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
