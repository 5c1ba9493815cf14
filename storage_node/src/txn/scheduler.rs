//! The scheduler: write commands become tasks of their region's leader, run in batches.
//!
//! TiKV schedules write commands behind per-key latches, runs each against a snapshot, and
//! hands the writes it decided on to Raft. We keep the same split with a simpler rule: a
//! region's leader runs its queued commands one batch at a time, in arrival order, on the
//! store thread (see [`crate::raftstore`]), and starts the next batch only once the previous
//! one is applied. No two commands ever race on a key, every command sees all earlier ones,
//! and every command that arrived while the previous batch was being replicated shares the
//! next entry and its fsync (group commit). Each caller is answered only after its batch is
//! committed by Raft and applied.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use crate::concurrency::{CommitHandle, ConcurrencyManager};
use crate::engine::Engine;
use crate::lock_manager::LockManager;
use crate::raftstore::command::{EngineTables, WriteBatch};
use crate::raftstore::{RAFT_STEPS, RaftSteps, RaftStore};
use crate::txn::{TxnError, WriteContext};

/// Most commands sharing one entry; bounds the latency a batch adds to its first member.
pub const MAX_BATCH: usize = 256;

/// Runs once the batch's entry is applied (or failed), with that outcome and, for a batch that
/// went through Raft, where its time went.
pub type Completion = Box<dyn FnOnce(Result<(), TxnError>, Option<RaftSteps>) + Send>;

/// A queued write command: run it against a batch, or answer its caller without running it.
pub trait Command: Send {
    /// Runs the command; returns how to answer its caller once the batch's fate is known.
    fn run(self: Box<Self>, ctx: &mut WriteContext<'_>) -> Completion;
    /// Answers the caller with `error` without running the command.
    fn reject(self: Box<Self>, error: TxnError);
}

/// A command as the store thread queues it.
pub type Task = Box<dyn Command>;

/// A caller's answer: the result, and the steps its batch went through.
type Reply<R> = (Result<R, TxnError>, Option<RaftSteps>);

struct Typed<R, F> {
    command: F,
    reply: tokio::sync::oneshot::Sender<Reply<R>>,
}

impl<R, F> Command for Typed<R, F>
where
    R: Send + 'static,
    F: FnOnce(&mut WriteContext<'_>) -> Result<R, TxnError> + Send + 'static,
{
    fn run(self: Box<Self>, ctx: &mut WriteContext<'_>) -> Completion {
        let Typed { command, reply } = *self;
        let result = command(ctx);
        Box::new(move |applied, steps| {
            let _ = reply.send((applied.and(result), steps));
        })
    }

    fn reject(self: Box<Self>, error: TxnError) {
        let _ = self.reply.send((Err(error), None));
    }
}

/// Handle for submitting commands to a region's leader.
#[derive(Clone)]
pub struct Scheduler {
    raft: Arc<RaftStore>,
}

impl Scheduler {
    /// Commands go to `raft`'s store thread.
    pub fn new(raft: Arc<RaftStore>) -> Scheduler {
        Scheduler { raft }
    }

    /// Runs `command` as a write of `region_id` and resolves once its batch is applied.
    pub async fn run<R, F>(&self, region_id: u64, command: F) -> Result<R, TxnError>
    where
        R: Send + 'static,
        F: FnOnce(&mut WriteContext<'_>) -> Result<R, TxnError> + Send + 'static,
    {
        let (reply, reply_rx) = tokio::sync::oneshot::channel();
        self.raft
            .write(region_id, Box::new(Typed { command, reply }))?;
        let (result, steps) = reply_rx.await.map_err(|_| {
            TxnError::Engine("the command was not applied: the store stopped or the command panicked (see the storage-node log)".into())
        })?;
        if let Some(steps) = steps {
            // For the trace, when the gRPC layer asked (outside a request this is a no-op).
            let _ = RAFT_STEPS.try_with(|cell| {
                *cell.lock().unwrap_or_else(|p| p.into_inner()) = Some(steps);
            });
        }
        result
    }
}

/// A batch that ran: its callers' completions, the commit timestamps it allocated (to
/// release once its fate is known) and the engine writes to replicate.
pub struct Executed {
    /// How to answer each caller, and when its command reached the store thread.
    pub completions: Vec<(Completion, Instant)>,
    /// Commit timestamps readers wait for until the batch is applied or abandoned.
    pub allocated: Vec<CommitHandle>,
    /// The writes to propose.
    pub batch: WriteBatch,
    cm: Arc<ConcurrencyManager>,
    lock_manager: Arc<LockManager>,
    /// When the batch started running, was proposed, persisted and committed.
    started: Instant,
    /// Set by the peer as the entry moves through Raft.
    pub proposed: Option<Instant>,
    /// The leader's log holds the entry durably.
    pub persisted: Option<Instant>,
    /// A quorum holds it.
    pub committed: Option<Instant>,
}

impl Executed {
    /// Answers every caller with `outcome`, after making the batch's timestamps readable and,
    /// when it removed a lock, waking the pessimistic lock requests that wait for one.
    pub fn finish(self, outcome: Result<(), TxnError>) {
        self.cm.release(&self.allocated);
        if outcome.is_ok() && self.batch.releases_locks() {
            self.lock_manager.wake_up();
        }
        let applied = Instant::now();
        let us = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_micros() as u64,
            _ => 0,
        };
        let (started, proposed) = (Some(self.started), self.proposed);
        // Steps only for a batch that went through Raft and was applied.
        let replicated = outcome.is_ok() && proposed.is_some();
        for (done, arrived) in self.completions {
            let steps = replicated.then(|| RaftSteps {
                queued_us: us(Some(arrived), started),
                execute_us: us(started, proposed),
                persist_us: us(proposed, self.persisted),
                commit_us: us(self.persisted, self.committed),
                apply_us: us(self.committed, Some(applied)),
            });
            done(outcome.clone(), steps);
        }
    }
}

/// Runs `tasks` in arrival order against the engine's applied state and collects the writes
/// they decided on. The engine transaction is only a scratch view (each command sees the
/// earlier ones' writes) and is rolled back: the writes reach the engine when Raft applies them.
/// A batch that could not run is answered here and `None` returned.
pub fn execute_batch(
    engine: &Engine,
    cm: &Arc<ConcurrencyManager>,
    lock_manager: &Arc<LockManager>,
    tasks: Vec<(Task, Instant)>,
) -> Option<Executed> {
    let started = Instant::now();
    let fail_all = |tasks: Vec<(Task, Instant)>, msg: String| {
        tracing::error!("storage engine unavailable: {msg}");
        for (t, _) in tasks {
            t.reject(TxnError::Engine(msg.clone()));
        }
    };
    let wtxn = match engine.begin_write() {
        Ok(t) => t,
        Err(e) => {
            fail_all(tasks, e.to_string());
            return None;
        }
    };
    let mut completions = Vec::with_capacity(tasks.len());
    let (allocated, batch, poisoned) = {
        let tables = match EngineTables::open(&wtxn) {
            Ok(t) => t,
            Err(e) => {
                fail_all(tasks, format!("cannot open engine tables: {e}"));
                return None;
            }
        };
        let mut ctx = WriteContext {
            tables,
            cm,
            allocated: Vec::new(),
            batch: WriteBatch::default(),
            failed: false,
        };
        let mut poisoned = None;
        for (task, arrived) in tasks {
            match catch_unwind(AssertUnwindSafe(|| task.run(&mut ctx))) {
                Ok(done) => completions.push((done, arrived)),
                Err(_) => {
                    tracing::error!("a storage command panicked; its batch is abandoned");
                    poisoned =
                        Some("a storage command panicked; its batch was abandoned".to_string());
                }
            }
        }
        if ctx.failed && poisoned.is_none() {
            poisoned = Some("an engine write failed; the batch was abandoned".to_string());
        }
        (
            std::mem::take(&mut ctx.allocated),
            std::mem::take(&mut ctx.batch),
            poisoned,
        )
    };
    // The scratch view is never committed; Raft's apply writes the same changes.
    let _ = wtxn.abort();
    let executed = Executed {
        completions,
        allocated,
        batch,
        cm: cm.clone(),
        lock_manager: lock_manager.clone(),
        started,
        proposed: None,
        persisted: None,
        committed: None,
    };
    match poisoned {
        Some(msg) => {
            executed.finish(Err(TxnError::Engine(msg)));
            None
        }
        None if executed.batch.is_empty() => {
            // Nothing to replicate (a read-only check, a no-op rollback): answer at once.
            executed.finish(Ok(()));
            None
        }
        None => Some(executed),
    }
}
