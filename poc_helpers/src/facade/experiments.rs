//! The experiments, as the facade offers them: the bank checker, conflicts, LIVE SELECT, the
//! same query on every node, and the spec's entities. Experiments that run inside the actor
//! (bank, contention, live) are one command each; the others are short sequences of ordinary
//! facade calls made on the caller's thread, so they need no command of their own.

use std::time::Duration;

use super::Cluster;
use crate::actor::command::Command;
use crate::experiments::bank::{BankPlan, BankReport};
use crate::experiments::conflicts::{
    ContentionPlan, ContentionReport, Retried, RetryPolicy, TxnOutcome, WriteSkewReport,
    off_call_txn,
};
use crate::experiments::consistency::Comparison;
use crate::experiments::live::LiveReport;
use crate::vocab::entities::{Post, User};
use crate::vocab::error::LabError;
use crate::vocab::nodes::NodeRef;

impl Cluster {
    /// Runs the bank checker (see `experiments::bank`): transfers and reads through every node
    /// for `plan.duration` while `plan.schedule` injects faults, then heals everything, reads
    /// the final state and judges the history. Blocks until done. `report.verdict` is the
    /// answer; `report.summary_frame()` and `report.chart()` show the evidence.
    pub fn bank(&self, plan: BankPlan) -> Result<BankReport, LabError> {
        plan.validate()?;
        self.actor.call(|reply| Command::Bank { plan, reply })?
    }

    /// Runs `txn` on each of `nodes` at the same moment and reports how each ended. With two
    /// transactions writing the same record, one commits and the other gets the retryable
    /// conflict.
    pub fn race_transaction<N: Into<NodeRef> + Clone>(
        &self,
        nodes: &[N],
        txn: &str,
    ) -> Result<Vec<TxnOutcome>, LabError> {
        // Full node names ("b" → "node-b"), so a failed transaction's row names its node the
        // same way a committed one's does (and can be passed back to `sql`/`retry_on_conflict`).
        let names: Vec<String> = nodes
            .iter()
            .map(|n| match n.clone().into() {
                NodeRef::Name(s) if s.starts_with("node-") => s,
                NodeRef::Name(s) => format!("node-{s}"),
                NodeRef::Index(i) => crate::vocab::nodes::node_name(i),
            })
            .collect();
        let results = self.race_timed(nodes.iter().map(|n| (n.clone(), txn)).collect())?;
        Ok(names
            .iter()
            .zip(&results)
            .map(|(n, (r, ms))| TxnOutcome::from_result(n, r, *ms))
            .collect())
    }

    /// Runs `query` on `node`, and on a transaction conflict runs it again after a backoff,
    /// up to `policy.max_attempts`. Other errors are returned at once (they are not safe to
    /// retry blindly). Only retry whole transactions: a conflict means none of it happened.
    pub fn retry_on_conflict(
        &self,
        node: impl Into<NodeRef>,
        query: &str,
        policy: RetryPolicy,
    ) -> Result<Retried, LabError> {
        let node = node.into();
        let mut waited = Duration::ZERO;
        let mut attempt = 1;
        loop {
            match self.sql(node.clone(), query) {
                Ok(result) => {
                    return Ok(Retried {
                        result,
                        attempts: attempt,
                        backoff_ms: waited.as_secs_f64() * 1000.0,
                    });
                }
                Err(e) if e.is_transaction_conflict() && attempt < policy.max_attempts => {
                    let pause = policy.backoff(attempt);
                    std::thread::sleep(pause);
                    waited += pause;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Conflict rate under contention: for each level of `plan.hot_keys`, every client (on
    /// every node) runs read-increment-write transactions on a random one of that many
    /// counters, without retrying. Afterwards the counters must add up to the committed
    /// transactions (`lost_updates` = 0). Table: hot_keys, clients, attempts, committed,
    /// conflicts, other_errors, conflict_rate, lost_updates, p50_ms, as
    /// `report.summary_frame()`; the rows themselves are `report.rows`.
    pub fn conflict_rate(&self, plan: ContentionPlan) -> Result<ContentionReport, LabError> {
        plan.validate()?;
        self.actor
            .call(|reply| Command::Contention { plan, reply })?
    }

    /// The write-skew experiment: Alice and Bob are both on call; at the same moment, Alice
    /// (on node-a) and Bob (on node-b) each check that someone else is on call and go off.
    /// Unguarded, both commit — they wrote different records, so snapshot isolation sees no
    /// conflict — and nobody is on call. Guarded, both also write `shift:today`, so one of them
    /// gets a conflict and one doctor stays on call.
    pub fn write_skew(&self, guarded: bool) -> Result<WriteSkewReport, LabError> {
        let n = self.node_names().len();
        let (a, b) = (0usize, 1 % n);
        self.sql(
            a,
            "REMOVE TABLE IF EXISTS doctor; REMOVE TABLE IF EXISTS shift; \
             DEFINE TABLE doctor SCHEMALESS; DEFINE TABLE shift SCHEMALESS; \
             CREATE doctor:alice SET on_call = true; CREATE doctor:bob SET on_call = true; \
             CREATE shift:today SET changes = 0;",
        )?;
        let ta = off_call_txn("alice", guarded);
        let tb = off_call_txn("bob", guarded);
        let results = self.race_timed(vec![(a, ta.as_str()), (b, tb.as_str())])?;
        let names = self.node_names();
        let outcomes = vec![
            TxnOutcome::from_result(&names[a], &results[0].0, results[0].1),
            TxnOutcome::from_result(&names[b], &results[1].0, results[1].1),
        ];
        let on_call = self
            .sql(a, "SELECT VALUE id FROM doctor WHERE on_call = true")?
            .row_count();
        Ok(WriteSkewReport {
            guarded,
            outcomes,
            on_call_after: on_call,
        })
    }

    /// Registers `LIVE SELECT * FROM <table>` on `listen_on` (on a session of its own), runs
    /// `writes` one after another (each on its node, logged like `sql`), keeps listening for
    /// `wait`, then unsubscribes and returns what arrived. The table is defined first if missing
    /// (a LIVE SELECT on a missing table is refused).
    ///
    /// ```no_run
    /// # use poc_helpers::prelude::*;
    /// # let cluster = Cluster::builder().start().unwrap();
    /// let r = cluster.live_watch("a", "feed", vec![
    ///     ("a", "CREATE feed:a1 SET msg = 'written on A'"),
    ///     ("b", "CREATE feed:b1 SET msg = 'written on B'"),
    /// ], std::time::Duration::from_secs(2)).unwrap();
    /// assert!(r.notified("feed:a1"));
    /// // With the default (inline) engine: false. With `.live_query_engine(Router)`: true.
    /// println!("{}", r.notified("feed:b1"));
    /// ```
    pub fn live_watch<N: Into<NodeRef>>(
        &self,
        listen_on: impl Into<NodeRef>,
        table: &str,
        writes: Vec<(N, &str)>,
        wait: Duration,
    ) -> Result<LiveReport, LabError> {
        let ok = !table.is_empty()
            && table.len() <= 64
            && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(LabError::config(
                "table",
                format!("`{table}` is not a plain table name"),
                "use letters, digits and `_`",
            ));
        }
        let listen = listen_on.into();
        let table = table.to_string();
        let writes = writes
            .into_iter()
            .map(|(n, q)| (n.into(), q.to_string()))
            .collect();
        let (lines, report) = self.actor.call(|reply| Command::LiveWatch {
            listen,
            table,
            writes,
            wait,
            reply,
        })?;
        for line in lines {
            self.say(&line);
        }
        report
    }

    /// Runs `query` on every node (one after another, each logged like [`Cluster::sql`]) and
    /// returns what each returned. An error on any node is returned as is.
    pub fn compare_nodes(&self, query: &str) -> Result<Comparison, LabError> {
        let mut per_node = Vec::new();
        for name in self.node_names() {
            let r = self.sql(name.as_str(), query)?;
            per_node.push((name, r.rows().to_vec()));
        }
        Ok(Comparison {
            query: query.to_string(),
            per_node,
        })
    }

    /// Creates a user on `node` and returns it with its new id.
    pub fn create_user(
        &self,
        node: impl Into<NodeRef>,
        name: &str,
        email: &str,
    ) -> Result<User, LabError> {
        let r = self.sql_bind(
            node,
            "CREATE user CONTENT { name: $name, email: $email }",
            serde_json::json!({ "name": name, "email": email }),
        )?;
        r.take_one()?
            .ok_or_else(|| crate::vocab::entities::no_row(&r.node, "CREATE user"))
    }

    /// Creates a post by `author` (a user id such as `user:abc`) on `node`.
    pub fn create_post(
        &self,
        node: impl Into<NodeRef>,
        title: &str,
        content: &str,
        author: &str,
    ) -> Result<Post, LabError> {
        let r = self.sql_bind(
            node,
            "CREATE post CONTENT { title: $title, content: $content, author: type::record($author) }",
            serde_json::json!({ "title": title, "content": content, "author": author }),
        )?;
        r.take_one()?
            .ok_or_else(|| crate::vocab::entities::no_row(&r.node, "CREATE post"))
    }

    /// All users as seen by `node`, ordered by name.
    pub fn users(&self, node: impl Into<NodeRef>) -> Result<Vec<User>, LabError> {
        self.sql(node, "SELECT * FROM user ORDER BY name")?.take()
    }

    /// All posts as seen by `node`, ordered by title.
    pub fn posts(&self, node: impl Into<NodeRef>) -> Result<Vec<Post>, LabError> {
        self.sql(node, "SELECT * FROM post ORDER BY title")?.take()
    }
}
