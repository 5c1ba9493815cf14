//! Partitions as an application meets them, and the concurrent duplicate: the facade side of
//! `experiments::partitions` and `experiments::unique`. The client cut, the latency drill and
//! the race are short sequences of ordinary facade calls on the caller's thread (each call is
//! logged as usual); the dropped-connections drill opens connections of its own, so it runs in
//! the actor (`Command::Drops`).

use std::time::{Duration, Instant};

use super::Cluster;
use crate::actor::command::Command;
use crate::experiments::conflicts::TxnOutcome;
use crate::experiments::partitions::drops::{DropPlan, DropReport};
use crate::experiments::partitions::{ClientCutReport, LatencyReport};
use crate::experiments::unique::UniqueRaceReport;
use crate::experiments::workload::{NodePolicy, WorkloadPlan};
use crate::vocab::error::LabError;
use crate::vocab::faults::Link;
use crate::vocab::nodes::NodeRef;

impl Cluster {
    /// Full node name (`"a"` → `node-a`) and index, or the lab's usual unknown-node error.
    fn named(&self, node: impl Into<NodeRef>) -> Result<(String, usize), LabError> {
        let ep = self.endpoint(node)?;
        let i = self
            .node_names()
            .iter()
            .position(|n| *n == ep.node)
            .unwrap_or(0);
        Ok((ep.node, i))
    }

    /// The client→node cut (needs `.fault_links(true)`): writes `note:cut` through `cut`, cuts
    /// the link from the lab's clients to `cut`, asks `cut` for the record (it fails), asks
    /// `cut`'s `/health` directly (it is fine), reads the record on `other` (it is there), then
    /// heals and times until `cut` serves the client again. The link is healed even when a
    /// step fails.
    pub fn client_cut_drill(
        &self,
        cut: impl Into<NodeRef>,
        other: impl Into<NodeRef>,
    ) -> Result<ClientCutReport, LabError> {
        let (cut, _) = self.named(cut)?;
        let (other, _) = self.named(other)?;
        let record = "note:cut";
        self.sql(
            cut.as_str(),
            &format!("UPSERT {record} SET text = 'written through {cut} before the cut'"),
        )?;
        let link = Link::client_to(cut.as_str());
        self.cut_link(link.clone())?;
        let during = (|| {
            let t = Instant::now();
            let seen = self.sql(cut.as_str(), &format!("SELECT * FROM {record}"));
            let failed_after_ms = t.elapsed().as_secs_f64() * 1000.0;
            let (error, error_class) = match &seen {
                Ok(_) => (String::new(), "none".to_string()),
                Err(e) => (
                    e.to_string().lines().next().unwrap_or("").to_string(),
                    match e {
                        LabError::Connection { .. } => "connection",
                        LabError::Timeout { .. } => "timeout",
                        _ => "other",
                    }
                    .to_string(),
                ),
            };
            let health_status = self.http(cut.as_str(), "/health").ok().map(|(s, _)| s);
            let read = self.sql(other.as_str(), &format!("SELECT * FROM {record}"))?;
            Ok::<_, LabError>((error, error_class, failed_after_ms, health_status, read))
        })();
        self.heal_link(link)?;
        let (error, error_class, failed_after_ms, health_status, read) = during?;
        let (back_after_s, failed_attempts) = self.time_until_served(
            cut.as_str(),
            &format!("SELECT * FROM {record}"),
            Duration::from_secs(30),
        )?;
        Ok(ClientCutReport {
            cut,
            other,
            record: record.into(),
            error,
            error_class,
            failed_after_ms,
            health_status,
            other_rows: read.row_count(),
            other_ms: read.ms,
            back_after_s,
            failed_attempts,
        })
    }

    /// Latency with jitter on the link from the lab's clients to `node` (needs
    /// `.fault_links(true)`): the same short read workload pinned to `node` (4 clients, 3 s
    /// after 0.5 s of warm-up, samples kept) runs on the healthy link and again with
    /// `latency ± jitter` added each way; then the link is healed (also when the second run
    /// fails). `report.chart()` shows p50 and p99 step up; `report.explain()` says by how much.
    pub fn latency_drill(
        &self,
        node: impl Into<NodeRef>,
        latency: Duration,
        jitter: Duration,
    ) -> Result<LatencyReport, LabError> {
        let (name, i) = self.named(node)?;
        let plan = WorkloadPlan::read_only()
            .nodes(NodePolicy::Pinned(i))
            .concurrency(4)
            .records(200)
            .table("latency_probe")
            .warmup(Duration::from_millis(500))
            .duration(Duration::from_secs(3))
            .keep_samples(true);
        let before = self.run_workload(plan.clone())?;
        let link = Link::client_to(name.as_str());
        self.add_latency(link.clone(), latency, jitter)?;
        let during = self.run_workload(plan.prepare(false));
        self.heal_link(link)?;
        Ok(LatencyReport {
            link: format!("client→{name}"),
            latency_ms: latency.as_secs_f64() * 1000.0,
            jitter_ms: jitter.as_secs_f64() * 1000.0,
            before,
            during: during?,
        })
    }

    /// Dropped connections (needs `.fault_links(true)`): `plan.fraction` of the new connections
    /// to `plan.node` are reset while `plan.clients` jobs each connect (retrying), write one
    /// record and close; then the link is healed and the records are read on `plan.read_on`.
    /// See [`DropReport`].
    pub fn drop_drill(&self, plan: DropPlan) -> Result<DropReport, LabError> {
        crate::experiments::partitions::drops::validate(&plan)?;
        self.actor.call(|reply| Command::Drops { plan, reply })?
    }

    /// The concurrent duplicate: deletes any user with `email`, then `nodes[0]` and `nodes[1]`
    /// each `CREATE` a user with that email at the same moment (the schema's UNIQUE index
    /// `user_email` guards it); the loser retries once; each node then counts the users with
    /// the email. See [`UniqueRaceReport`] for which error the loser gets and why.
    pub fn duplicate_email_race(
        &self,
        nodes: [&str; 2],
        email: &str,
    ) -> Result<UniqueRaceReport, LabError> {
        let plain = !email.is_empty()
            && email
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "@.-_+".contains(c));
        if !plain {
            return Err(LabError::config(
                "email",
                format!("`{email}` is not a plain email address"),
                "use letters, digits and @ . - _ +, e.g. \"ada@example.com\"",
            ));
        }
        let names = [self.named(nodes[0])?.0, self.named(nodes[1])?.0];
        self.sql_bind(
            names[0].as_str(),
            "DELETE user WHERE email = $email",
            serde_json::json!({ "email": email }),
        )?;
        let create = |n: &str| {
            format!("CREATE user CONTENT {{ name: 'signed up on {n}', email: '{email}' }}")
        };
        let queries = [create(&names[0]), create(&names[1])];
        let results = self.race_timed(vec![
            (names[0].as_str(), queries[0].as_str()),
            (names[1].as_str(), queries[1].as_str()),
        ])?;
        let outcomes: Vec<TxnOutcome> = names
            .iter()
            .zip(&results)
            .map(|(n, (r, ms))| TxnOutcome::from_result(n, r, *ms))
            .collect();
        let retry = match outcomes.iter().position(|o| !o.committed()) {
            Some(k) => {
                let started = std::time::Instant::now();
                let r = self.sql(names[k].as_str(), &queries[k]);
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                Some(TxnOutcome::from_result(&names[k], &r, ms))
            }
            None => None,
        };
        let mut rows_per_node = Vec::new();
        for n in &names {
            let r = self.sql_bind(
                n.as_str(),
                "SELECT VALUE id FROM user WHERE email = $email",
                serde_json::json!({ "email": email }),
            )?;
            rows_per_node.push((n.clone(), r.row_count()));
        }
        Ok(UniqueRaceReport {
            email: email.to_string(),
            index: "user_email".into(),
            outcomes,
            retry,
            rows_per_node,
        })
    }
}
