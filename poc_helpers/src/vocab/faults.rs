//! The fault log: every fault the lab injected, with when it started and when it ended, so a
//! chart can shade the window in which the system was broken.
//!
//! # Why a log of faults
//!
//! A throughput chart that dips is only half a story; the other half is *what we did at that
//! moment*. Jepsen draws its "nemesis" activity as shaded bands behind every latency plot for
//! exactly this reason. Every fault call of the lab — kill / stop / pause / resume / restart of
//! a node or of the storage node, and cut / heal / latency / drop on a network link — appends a
//! [`FaultRecord`] here, timed on the same clock as `cluster.timings()`'s `started_at_ms`
//! (milliseconds since the lab started), so the two tables line up.
//!
//! # Windows
//!
//! A fault that *breaks* something opens a window; the call that repairs it closes it:
//!
//! | opens                       | closed by                                   |
//! |-----------------------------|---------------------------------------------|
//! | `kill`, `stop` (node/storage) | `restart` of the same target (when it is ready again) |
//! | `pause`                     | `resume`, or a `restart`/`kill`/`stop` of the same target |
//! | `cut`, `latency`, `drop` (link) | `heal` of the link (or a new setting of the same kind) |
//!
//! Repairing calls get a window of their own covering the call itself (a restart takes a few
//! hundred ms during which the node does not serve). A window still open has no
//! `ended_at_ms`; charts shade it to their right edge.

use std::time::Duration;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::vocab::error::LabError;
use crate::vocab::frames::frame;
use crate::vocab::nodes::{NodeAction, NodeRef};

/// One fault: the single description of anything the lab can break or repair. A call such as
/// `cluster.kill_node("b")`, a bank run's schedule and the CLI's `lab kill b` all build a `Fault`
/// and hand it to the same `inject`, so every fault is carried out and logged the same way.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// A lifecycle action on one `surreal` node.
    Node(NodeRef, NodeAction),
    /// A lifecycle action on the whole embedded storage tier (every storage process).
    Storage(NodeAction),
    /// A lifecycle action on one store (1, 2, 3…) of a replicated tier (`.stores(3)`).
    Store(u64, NodeAction),
    /// New settings for one network link (needs `.fault_links(true)`).
    Link(Link, LinkFault),
    /// A lifecycle action on PD alone, in a replicated tier (`.stores(3)`): the stores keep
    /// their data, but no transaction can start (each needs a timestamp) and no client can find
    /// a region until PD is back.
    Pd(NodeAction),
    /// Store `id` cut off from the other stores of a replicated tier (`true`), or healed
    /// (`false`): a network partition inside the storage tier. Clients and PD still reach it.
    StoreNet(u64, bool),
}

impl Fault {
    /// SIGKILL a node, like a crash.
    pub fn kill_node(node: impl Into<NodeRef>) -> Fault {
        Fault::Node(node.into(), NodeAction::Kill)
    }
    /// SIGTERM a node (then SIGKILL after the stop timeout).
    pub fn stop_node(node: impl Into<NodeRef>) -> Fault {
        Fault::Node(node.into(), NodeAction::Stop)
    }
    /// SIGSTOP a node: it keeps its sockets but answers nothing.
    pub fn pause_node(node: impl Into<NodeRef>) -> Fault {
        Fault::Node(node.into(), NodeAction::Pause)
    }
    /// SIGCONT a paused node.
    pub fn resume_node(node: impl Into<NodeRef>) -> Fault {
        Fault::Node(node.into(), NodeAction::Resume)
    }
    /// Start a node again (same port and data) and wait until it is ready.
    pub fn restart_node(node: impl Into<NodeRef>) -> Fault {
        Fault::Node(node.into(), NodeAction::Restart)
    }
    /// SIGKILL the storage node: a crash of the whole storage tier.
    pub fn kill_storage() -> Fault {
        Fault::Storage(NodeAction::Kill)
    }
    /// SIGTERM the storage node.
    pub fn stop_storage() -> Fault {
        Fault::Storage(NodeAction::Stop)
    }
    /// SIGSTOP the storage node (a hung storage tier).
    pub fn pause_storage() -> Fault {
        Fault::Storage(NodeAction::Pause)
    }
    /// SIGCONT the storage node.
    pub fn resume_storage() -> Fault {
        Fault::Storage(NodeAction::Resume)
    }
    /// Start the storage node again on the same port and data.
    pub fn restart_storage() -> Fault {
        Fault::Storage(NodeAction::Restart)
    }

    /// SIGKILL store `id` of a replicated tier: its regions elect new leaders on the others.
    pub fn kill_store(id: u64) -> Fault {
        Fault::Store(id, NodeAction::Kill)
    }
    /// Start store `id` again on the same port and data: it catches up from the leaders.
    pub fn restart_store(id: u64) -> Fault {
        Fault::Store(id, NodeAction::Restart)
    }

    /// SIGKILL PD (a replicated tier): no new transaction until it is back.
    pub fn kill_pd() -> Fault {
        Fault::Pd(NodeAction::Kill)
    }
    /// Start PD again on its port and data; the stores register and report their regions again.
    pub fn restart_pd() -> Fault {
        Fault::Pd(NodeAction::Restart)
    }

    /// Cut store `id` off from the other stores (a partition inside the storage tier): the
    /// regions it led elect leaders among the others; it commits nothing alone.
    pub fn partition_store(id: u64) -> Fault {
        Fault::StoreNet(id, true)
    }
    /// Heal store `id`'s partition: it hears from the others again and catches up.
    pub fn heal_store(id: u64) -> Fault {
        Fault::StoreNet(id, false)
    }

    /// The fault log's action name: `kill`, `restart`, `cut`, `latency`, …
    pub fn action(&self) -> &'static str {
        match self {
            Fault::Node(_, a) | Fault::Storage(a) | Fault::Store(_, a) | Fault::Pd(a) => a.name(),
            Fault::Link(_, f) => f.action(),
            Fault::StoreNet(_, true) => "cut",
            Fault::StoreNet(_, false) => "heal",
        }
    }

    /// Refuses settings that can never be applied (checked before anything runs).
    pub fn validate(&self) -> Result<(), LabError> {
        if let Fault::Link(_, LinkFault::Drop { fraction }) = self
            && !(0.0..=1.0).contains(fraction)
        {
            return Err(LabError::config(
                "drop_connections",
                format!("{fraction} is not a fraction"),
                "pass a value between 0.0 (drop none) and 1.0 (drop all new connections)",
            ));
        }
        Ok(())
    }
}

/// `at` into a run, inject `fault`: one step of a fault schedule (see the bank checker).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultStep {
    /// Offset from the start of the load.
    pub at: Duration,
    /// What to do.
    pub fault: Fault,
}

impl FaultStep {
    /// `FaultStep::at(4.0, Fault::kill_node("b"))`.
    pub fn at(seconds: f64, fault: Fault) -> FaultStep {
        FaultStep {
            at: Duration::from_secs_f64(seconds),
            fault,
        }
    }
}

/// A network link the lab can break. Build one with [`Link::client_to`] / [`Link::to_storage`]
/// or directly: `Link::ClientToNode("a".into())`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// The lab's clients → a node.
    ClientToNode(NodeRef),
    /// A node → the storage tier.
    NodeToStorage(NodeRef),
}

impl Link {
    /// The link from the lab's clients to `node`.
    pub fn client_to(node: impl Into<NodeRef>) -> Link {
        Link::ClientToNode(node.into())
    }

    /// The link from `node` to the storage tier.
    pub fn to_storage(node: impl Into<NodeRef>) -> Link {
        Link::NodeToStorage(node.into())
    }

    /// The node this link belongs to.
    pub fn node(&self) -> &NodeRef {
        match self {
            Link::ClientToNode(n) | Link::NodeToStorage(n) => n,
        }
    }
}

/// What to do to a link. Plain data, so it can travel to the lab's actor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum LinkFault {
    /// Reset every connection and refuse new ones.
    Cut,
    /// Back to healthy: no cut, no latency, no drops.
    Heal,
    /// Delay each chunk by `latency ± jitter` in each direction.
    Latency {
        /// One-way delay.
        latency: Duration,
        /// Uniform spread around it.
        jitter: Duration,
    },
    /// Reset this fraction (0.0–1.0) of new connections.
    Drop {
        /// Fraction of new connections to reset.
        fraction: f64,
    },
}

impl LinkFault {
    /// SIGKILL store `id` of a replicated tier: its regions elect new leaders on the others.
    pub fn kill_store(id: u64) -> Fault {
        Fault::Store(id, NodeAction::Kill)
    }
    /// Start store `id` again on the same port and data: it catches up from the leaders.
    pub fn restart_store(id: u64) -> Fault {
        Fault::Store(id, NodeAction::Restart)
    }

    /// The fault log's action name.
    pub fn action(&self) -> &'static str {
        match self {
            LinkFault::Cut => "cut",
            LinkFault::Heal => "heal",
            LinkFault::Latency { .. } => "latency",
            LinkFault::Drop { .. } => "drop",
        }
    }
}

/// One fault call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// What was hit: `node-a`, `storage`, `client→node-a`, `node-b→storage`.
    pub target: String,
    /// The call: `kill`, `stop`, `pause`, `resume`, `restart`, `cut`, `heal`, `latency`, `drop`.
    pub action: String,
    /// When the call started (ms since the lab started; the clock of `timings()`).
    pub started_at_ms: f64,
    /// When the fault was repaired (for breaking calls) or when the call finished (for
    /// repairing calls); `None` while the fault is still in effect.
    pub ended_at_ms: Option<f64>,
    /// How long the call itself took, in ms.
    pub call_ms: f64,
    /// Whether the call succeeded (failed calls open no window).
    pub ok: bool,
    /// The call's log line, or its error.
    pub detail: String,
}

impl FaultRecord {
    /// True for calls that break something (and so open a window until repaired).
    pub fn is_breaking(&self) -> bool {
        matches!(
            self.action.as_str(),
            "kill" | "stop" | "pause" | "cut" | "latency" | "drop"
        )
    }

    /// The window to shade, with an open window running to `until`.
    pub fn window(&self, until: f64) -> Option<(f64, f64)> {
        if !self.ok {
            return None;
        }
        Some((self.started_at_ms, self.ended_at_ms.unwrap_or(until)))
    }

    /// A short label for charts: `kill node-a`.
    pub fn label(&self) -> String {
        format!("{} {}", self.action, self.target)
    }
}

/// The lab's fault log (kept by the actor).
#[derive(Debug, Default, Clone)]
pub(crate) struct FaultLog {
    records: Vec<FaultRecord>,
}

impl FaultLog {
    /// Records one call. `started`/`done` are lab-clock ms; `outcome` is the call's log line
    /// or its error text.
    pub(crate) fn record(
        &mut self,
        target: &str,
        action: &str,
        started: f64,
        done: f64,
        outcome: Result<&str, String>,
    ) {
        let ok = outcome.is_ok();
        let detail = match outcome {
            Ok(line) => line.to_string(),
            Err(e) => e.lines().next().unwrap_or("").to_string(),
        };
        let mut rec = FaultRecord {
            target: target.to_string(),
            action: action.to_string(),
            started_at_ms: started,
            ended_at_ms: None,
            call_ms: done - started,
            ok,
            detail,
        };
        if !ok {
            rec.ended_at_ms = Some(done);
            self.records.push(rec);
            return;
        }
        // Close what this call repairs or replaces (see the module table).
        let closes: &[&str] = match action {
            "restart" => &["kill", "stop", "pause"],
            "resume" => &["pause"],
            "kill" | "stop" => &["pause"],
            "heal" => &["cut", "latency", "drop"],
            "cut" => &[],
            // A new latency/drop setting replaces the previous one of its kind.
            "latency" => &["latency"],
            "drop" => &["drop"],
            _ => &[],
        };
        // A restart's fault ends when the target is ready again; the others at the call.
        let close_at = if action == "restart" { done } else { started };
        for open in self.records.iter_mut().filter(|r| {
            r.ok && r.target == target
                && r.ended_at_ms.is_none()
                && closes.contains(&r.action.as_str())
        }) {
            open.ended_at_ms = Some(close_at);
        }
        if !rec.is_breaking() || is_null_setting(action, &rec.detail) {
            rec.ended_at_ms = Some(done);
        }
        self.records.push(rec);
    }

    /// A copy of every record.
    pub(crate) fn records(&self) -> Vec<FaultRecord> {
        self.records.clone()
    }
}

/// `latency 0 ms` and `drop 0%` switch a fault off rather than on: they open no window.
fn is_null_setting(action: &str, detail: &str) -> bool {
    (action == "latency" && detail.contains("latency 0 ms ± 0 ms"))
        || (action == "drop" && detail.contains("dropping 0%"))
}

/// The fault log as a table: target, action, started_at_ms, ended_at_ms, call_ms, ok, detail.
pub fn faults_frame(records: &[FaultRecord]) -> Result<DataFrame, LabError> {
    frame(vec![
        Column::new(
            "target".into(),
            records.iter().map(|r| r.target.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "action".into(),
            records.iter().map(|r| r.action.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "started_at_ms".into(),
            records
                .iter()
                .map(|r| round1(r.started_at_ms))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "ended_at_ms".into(),
            records
                .iter()
                .map(|r| r.ended_at_ms.map(round1))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "call_ms".into(),
            records
                .iter()
                .map(|r| round1(r.call_ms))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "ok".into(),
            records.iter().map(|r| r.ok).collect::<Vec<_>>(),
        ),
        Column::new(
            "detail".into(),
            records.iter().map(|r| r.detail.clone()).collect::<Vec<_>>(),
        ),
    ])
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_name_their_target_and_action() {
        assert_eq!(
            Link::client_to("a"),
            Link::ClientToNode(NodeRef::Name("a".into()))
        );
        assert_eq!(
            Fault::kill_node("b"),
            Fault::Node("b".into(), NodeAction::Kill)
        );
        assert_eq!(Fault::restart_storage().action(), "restart");
        assert_eq!(
            Fault::Link(Link::to_storage(0), LinkFault::Cut).action(),
            "cut"
        );
        let bad = Fault::Link(Link::client_to("a"), LinkFault::Drop { fraction: 1.5 });
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("between 0.0") && e.contains("1.5"), "{e}");
    }

    #[test]
    fn a_kill_window_runs_until_the_restart_is_ready() {
        let mut log = FaultLog::default();
        log.record("node-a", "kill", 100.0, 110.0, Ok("killed"));
        assert_eq!(log.records()[0].ended_at_ms, None, "open until repaired");
        log.record("node-b", "restart", 150.0, 900.0, Ok("other node"));
        assert_eq!(
            log.records()[0].ended_at_ms,
            None,
            "another target does not close it"
        );
        log.record("node-a", "restart", 1000.0, 1600.0, Ok("restarted"));
        let r = log.records();
        assert_eq!(r[0].ended_at_ms, Some(1600.0));
        assert_eq!(
            r[2].ended_at_ms,
            Some(1600.0),
            "the restart covers its own call"
        );
        assert_eq!(r[0].window(5000.0), Some((100.0, 1600.0)));
    }

    #[test]
    fn pause_resume_and_link_windows() {
        let mut log = FaultLog::default();
        log.record("storage", "pause", 10.0, 11.0, Ok("paused"));
        log.record("storage", "resume", 50.0, 51.0, Ok("resumed"));
        log.record(
            "client→node-a",
            "latency",
            60.0,
            60.0,
            Ok("latency 100 ms ± 10 ms"),
        );
        log.record("client→node-a", "cut", 70.0, 70.0, Ok("cut"));
        log.record("client→node-a", "heal", 90.0, 90.0, Ok("healed"));
        log.record(
            "client→node-a",
            "latency",
            95.0,
            95.0,
            Ok("latency 0 ms ± 0 ms"),
        );
        let r = log.records();
        assert_eq!(r[0].ended_at_ms, Some(50.0));
        assert_eq!(r[2].ended_at_ms, Some(90.0));
        assert_eq!(r[3].ended_at_ms, Some(90.0));
        assert_eq!(
            r[5].ended_at_ms,
            Some(95.0),
            "a zero latency opens no window"
        );
        let df = faults_frame(&r).unwrap();
        assert_eq!(df.height(), 6);
        assert_eq!(df.width(), 7);
    }

    #[test]
    fn failed_calls_are_kept_but_shade_nothing() {
        let mut log = FaultLog::default();
        log.record(
            "node-z",
            "kill",
            1.0,
            2.0,
            Err("no node `z`\nFix: …".into()),
        );
        let r = &log.records()[0];
        assert!(!r.ok);
        assert_eq!(r.detail, "no node `z`");
        assert_eq!(r.window(10.0), None);
    }
}
