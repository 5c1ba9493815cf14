//! The scheduler: one writer thread, commands in arrival order, group commit.
//!
//! TiKV schedules write commands behind per-key latches and lets Raft make them durable. One
//! process with one engine can do something simpler and just as correct: a single thread
//! executes commands one at a time (so no two commands ever race on a key) and commits them
//! to redb in batches — every command that arrived while the previous fsync was running
//! shares the next one. Throughput grows with concurrency while each client still gets its
//! answer only after its changes are on disk.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc;

use crate::concurrency::ConcurrencyManager;
use crate::engine::{Engine, LOCK_TABLE, META_TABLE, WRITE_TABLE};
use crate::lock_manager::LockManager;
use crate::txn::{TxnError, WriteContext};
use crate::txn_types::TimeStamp;

/// Most commands sharing one engine commit; bounds the latency a batch adds to its first member.
const MAX_BATCH: usize = 256;

/// What a batch leaves behind: its callers' completions, the commit timestamps it allocated
/// (to release), whether it removed any lock, and whether the engine commit succeeded.
type BatchResult = (Vec<Completion>, Vec<TimeStamp>, bool, Result<(), String>);

/// Runs once the batch's commit finished, with the commit's outcome.
type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A command: runs against the batch's tables and returns how to answer its caller.
type Task = Box<dyn FnOnce(&mut WriteContext<'_>) -> Completion + Send>;

/// Handle for submitting commands to the writer thread.
#[derive(Clone)]
pub struct Scheduler {
    tx: mpsc::Sender<Task>,
}

impl Scheduler {
    /// Starts the writer thread.
    pub fn start(
        engine: Arc<Engine>,
        cm: Arc<ConcurrencyManager>,
        lock_manager: Arc<LockManager>,
    ) -> Scheduler {
        let (tx, rx) = mpsc::channel::<Task>();
        std::thread::Builder::new()
            .name("storage-writer".into())
            .spawn(move || writer_loop(engine, cm, lock_manager, rx))
            .expect("spawn writer thread");
        Scheduler { tx }
    }

    /// Runs `command` on the writer thread and resolves once its batch is durable.
    pub async fn run<R, F>(&self, command: F) -> Result<R, TxnError>
    where
        R: Send + 'static,
        F: FnOnce(&mut WriteContext<'_>) -> Result<R, TxnError> + Send + 'static,
    {
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        let task: Task = Box::new(move |ctx| {
            let result = command(ctx);
            Box::new(move |committed: Result<(), String>| {
                let _ = reply_tx.send(committed.map_err(TxnError::Engine).and(result));
            })
        });
        self.tx
            .send(task)
            .map_err(|_| TxnError::Engine("storage writer stopped".into()))?;
        reply_rx.await.map_err(|_| {
            TxnError::Engine("the command was not applied: the engine is unavailable or the command panicked (see the storage-node log)".into())
        })?
    }
}

fn writer_loop(
    engine: Arc<Engine>,
    cm: Arc<ConcurrencyManager>,
    lock_manager: Arc<LockManager>,
    rx: mpsc::Receiver<Task>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(task) => batch.push(task),
                Err(_) => break,
            }
        }
        let (completions, allocated, released_locks, outcome) = run_batch(&engine, &cm, batch);
        // Only now may readers above the allocated commit timestamps proceed: the data is
        // visible (or, on failure, will never be).
        cm.release(&allocated);
        // Likewise lock waiters: a released lock counts once it is durably gone.
        if released_locks && outcome.is_ok() {
            lock_manager.wake_up();
        }
        for done in completions {
            done(outcome.clone());
        }
    }
}

fn run_batch(engine: &Engine, cm: &ConcurrencyManager, batch: Vec<Task>) -> BatchResult {
    // If the engine cannot even start a transaction, the commands are dropped unrun; their
    // callers see their reply channel close and report the engine as unavailable.
    let fail_all = |msg: String| -> BatchResult {
        tracing::error!("storage engine unavailable: {msg}");
        (Vec::new(), Vec::new(), false, Err(msg))
    };
    let wtxn = match engine.begin_write() {
        Ok(t) => t,
        Err(e) => return fail_all(e.to_string()),
    };
    let mut completions = Vec::with_capacity(batch.len());
    let (allocated, dirty, released_locks, poisoned) = {
        let tables = (
            wtxn.open_table(LOCK_TABLE),
            wtxn.open_table(WRITE_TABLE),
            wtxn.open_table(META_TABLE),
        );
        let (Ok(lock), Ok(write), Ok(meta)) = tables else {
            return fail_all("cannot open engine tables".into());
        };
        let mut ctx = WriteContext {
            lock,
            write,
            meta,
            cm,
            allocated: Vec::new(),
            dirty: false,
            failed: false,
            released_locks: false,
        };
        let mut poisoned = None;
        for task in batch {
            match catch_unwind(AssertUnwindSafe(|| task(&mut ctx))) {
                Ok(done) => completions.push(done),
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
            ctx.dirty,
            ctx.released_locks,
            poisoned,
        )
    };
    let outcome = match poisoned {
        Some(msg) => {
            let _ = wtxn.abort();
            Err(msg)
        }
        None if dirty => wtxn.commit().map_err(|e| e.to_string()),
        None => wtxn.abort().map_err(|e| e.to_string()),
    };
    (completions, allocated, released_locks, outcome)
}
