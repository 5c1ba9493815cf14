//! Membership and recovery, as the facade offers them: adding a node to a running lab and
//! removing it, `INFO FOR ROOT` members labelled with lab node names, and the recovery drill,
//! which is a timed sequence of ordinary facade calls (kill, poll, restart) made on the
//! caller's thread.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use polars::prelude::DataFrame;

use super::Cluster;
use crate::actor::command::Command;
use crate::experiments::membership::{
    Member, RecoveryReport, RecoveryRow, members_frame, parse_members,
};
use crate::vocab::error::LabError;
use crate::vocab::nodes::NodeRef;

impl Cluster {
    /// Starts one more node on the lab's storage and returns its name (`"node-c"` after a and
    /// b), like `cockroach demo`'s `\demo add`. It gets the next free port (a free ephemeral
    /// one with `.ephemeral_ports()`), the lab's settings and, with `.fault_links(true)`, its
    /// own link proxies; it registers in the membership (`INFO FOR ROOT` on any node lists it)
    /// and, over shared storage, serves every existing record at once: nothing is copied,
    /// because no node holds data. `lab status`, `lab down` and `lab clean` see it.
    ///
    /// ```no_run
    /// # use poc_helpers::prelude::*;
    /// let cluster = Cluster::builder().ephemeral_ports().start().unwrap();
    /// cluster.sql("a", "CREATE note:1 SET text = 'before c existed'").unwrap();
    /// let c = cluster.add_node().unwrap();                       // "node-c"
    /// assert_eq!(cluster.sql(c.as_str(), "SELECT * FROM note:1").unwrap().row_count(), 1);
    /// cluster.remove_node(c.as_str()).unwrap();
    /// ```
    pub fn add_node(&self) -> Result<String, LabError> {
        let (name, line) = self.actor.call(|reply| Command::AddNode { reply })??;
        self.node_count.fetch_add(1, Ordering::Relaxed);
        self.say(&line);
        Ok(name)
    }

    /// Stops `node` gracefully (SIGTERM, then SIGKILL after the stop timeout) and forgets it:
    /// it leaves the status table and `state.json`. Only the newest node can be removed (names
    /// stay a, b, c …), and never the last one. Its entry in `INFO FOR ROOT` stays until its
    /// heartbeat expires, as for any node that went away.
    pub fn remove_node(&self, node: impl Into<NodeRef>) -> Result<(), LabError> {
        let node = node.into();
        let line = self
            .actor
            .call(|reply| Command::RemoveNode { node, reply })??;
        self.node_count.fetch_sub(1, Ordering::Relaxed);
        self.say(&line);
        Ok(())
    }

    /// `INFO FOR ROOT`'s node list as `observer` sees it, each id labelled with the lab node
    /// it belongs to where the lab saw that start.
    pub fn members(&self, observer: impl Into<NodeRef>) -> Result<Vec<Member>, LabError> {
        let info = self.quietly(|| self.sql(observer, "INFO FOR ROOT"))?;
        let ids = self.actor.call(|reply| Command::MemberIds { reply })?;
        let mut members = parse_members(info.first().unwrap_or(&serde_json::Value::Null));
        for m in &mut members {
            m.lab_node = ids.get(&m.id).cloned();
        }
        Ok(members)
    }

    /// [`members`](Self::members) as a table: id, lab_node, status, seen_ago_s.
    pub fn membership(&self, observer: impl Into<NodeRef>) -> Result<DataFrame, LabError> {
        members_frame(&self.members(observer)?)
    }

    /// Retries `query` on `node` until it succeeds or `limit` passes; returns the seconds it
    /// took and the failed attempts. Quiet (no log line per attempt).
    pub fn time_until_served(
        &self,
        node: impl Into<NodeRef>,
        query: &str,
        limit: Duration,
    ) -> Result<(f64, u32), LabError> {
        let node = node.into();
        let t = Instant::now();
        let mut failed = 0;
        loop {
            match self.quietly(|| self.sql(node.clone(), query)) {
                Ok(_) => return Ok((t.elapsed().as_secs_f64(), failed)),
                Err(e) if t.elapsed() >= limit => return Err(e),
                Err(_) => {
                    failed += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// The membership and recovery drill (shared storage, ≥ 2 nodes):
    ///
    /// 1. kill `victim`; time the survivor's first successful write after the kill
    ///    (*survivor keeps serving*);
    /// 2. poll the survivor's `INFO FOR ROOT` until the victim's entry is no longer ACTIVE (at
    ///    most `archive_limit`; ~31 s with [`MembershipIntervals::fast`](crate::vocab::config::MembershipIntervals::fast)):
    ///    ARCHIVED, or already gone, because SurrealDB's cleanup task removes archived nodes on
    ///    its next tick, which can come within the same poll (*membership archive*);
    /// 3. restart the victim; time from the restart call to its first successful query
    ///    (*restart recovery*);
    /// 4. kill and restart the storage node; time from the restart call to each node's first
    ///    successful query, with no node restarted (*storage restart recovery*).
    pub fn recovery_drill(
        &self,
        victim: impl Into<NodeRef>,
        survivor: impl Into<NodeRef>,
        archive_limit: Duration,
    ) -> Result<RecoveryReport, LabError> {
        let victim = victim.into();
        let survivor = survivor.into();
        let vname = self.endpoint(victim.clone())?.node;
        let sname = self.endpoint(survivor.clone())?.node;
        let write = "UPSERT drill:probe SET n += 1";
        let limit = Duration::from_secs(120);
        self.quietly(|| self.sql(survivor.clone(), write))?;
        let before = self.members(survivor.clone())?;
        let victim_ids: Vec<String> = before
            .iter()
            .filter(|m| m.lab_node.as_deref() == Some(vname.as_str()) && m.status == "ACTIVE")
            .map(|m| m.id.clone())
            .collect();
        let mut recovery = Vec::new();

        self.kill_node(victim.clone())?;
        let killed_at = Instant::now();
        let (s, failed) = self.time_until_served(survivor.clone(), write, limit)?;
        recovery.push(RecoveryRow {
            scenario: "survivor keeps serving (kill → first write OK)".into(),
            fault: format!("kill {vname}"),
            observed_on: sname.clone(),
            seconds: s,
            failed_attempts: failed,
        });
        let after_kill = self.members(survivor.clone())?;

        let mut after_archive = after_kill.clone();
        let mut archived_after = None;
        while killed_at.elapsed() < archive_limit {
            after_archive = self.members(survivor.clone())?;
            let still_active = after_archive
                .iter()
                .any(|m| victim_ids.contains(&m.id) && m.status == "ACTIVE");
            if !still_active {
                archived_after = Some(killed_at.elapsed().as_secs_f64());
                break;
            }
            // Often enough to see the ARCHIVED state, which lasts only until the cleanup
            // task's next tick; INFO FOR ROOT is one cheap read.
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(s) = archived_after {
            recovery.push(RecoveryRow {
                scenario: "membership archive (kill → ARCHIVED in INFO FOR ROOT)".into(),
                fault: format!("kill {vname}"),
                observed_on: sname.clone(),
                seconds: s,
                failed_attempts: 0,
            });
        }

        let t = Instant::now();
        self.restart_node(victim.clone())?;
        let (_, failed) = self.time_until_served(victim.clone(), write, limit)?;
        recovery.push(RecoveryRow {
            scenario: "restart recovery (restart call → first write OK)".into(),
            fault: format!("restart {vname}"),
            observed_on: vname.clone(),
            seconds: t.elapsed().as_secs_f64(),
            failed_attempts: failed,
        });
        let after_restart = self.members(survivor.clone())?;

        self.kill_storage()?;
        let t = Instant::now();
        self.restart_storage()?;
        for name in self.node_names() {
            let (_, failed) = self.time_until_served(name.as_str(), write, limit)?;
            recovery.push(RecoveryRow {
                scenario: "storage restart recovery (restart call → first write OK)".into(),
                fault: "kill + restart storage".into(),
                observed_on: name,
                seconds: t.elapsed().as_secs_f64(),
                failed_attempts: failed,
            });
        }
        Ok(RecoveryReport {
            before,
            after_kill,
            after_archive,
            after_restart,
            recovery,
        })
    }
}
