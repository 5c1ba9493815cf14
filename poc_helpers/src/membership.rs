//! Membership and recovery: which `surreal` nodes the cluster believes are alive, how a dead
//! one is noticed and archived, and how long the survivors and a restarted node take to serve.
//!
//! Placeholder types; filled in below.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The three membership intervals of `surreal start` (defaults 3 s / 15 s / 300 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipIntervals {
    /// `--node-membership-refresh-interval`: how often a node writes its heartbeat.
    pub refresh: Duration,
    /// `--node-membership-check-interval`: how often a node looks for expired peers.
    pub check: Duration,
    /// `--node-membership-cleanup-interval`: how often archived nodes are removed.
    pub cleanup: Duration,
}

impl MembershipIntervals {
    /// Short intervals for demos: heartbeat every second, check every second, clean up every 5 s.
    pub fn fast() -> Self {
        MembershipIntervals {
            refresh: Duration::from_secs(1),
            check: Duration::from_secs(1),
            cleanup: Duration::from_secs(5),
        }
    }

    /// The `surreal start` flags.
    pub(crate) fn flags(&self) -> Vec<String> {
        let ms = |d: Duration| format!("{}ms", d.as_millis().max(1));
        vec![
            "--node-membership-refresh-interval".into(),
            ms(self.refresh),
            "--node-membership-check-interval".into(),
            ms(self.check),
            "--node-membership-cleanup-interval".into(),
            ms(self.cleanup),
        ]
    }
}
