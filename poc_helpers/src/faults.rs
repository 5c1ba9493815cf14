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

use polars::prelude::*;
use serde::{Deserialize, Serialize};

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
pub fn faults_frame(records: &[FaultRecord]) -> PolarsResult<DataFrame> {
    DataFrame::new(
        records.len(),
        vec![
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
        ],
    )
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

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
