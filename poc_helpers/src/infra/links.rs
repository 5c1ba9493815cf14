//! The lab's breakable network links: which links exist, how to name one ([`Link`](crate::vocab::faults::Link)), and the
//! proxies behind them.
//!
//! With `.fault_links(true)` the lab puts a [`Proxy`] on two links of
//! every node (see `proxy` for the picture):
//!
//! * [`Link::ClientToNode`](crate::vocab::faults::Link::ClientToNode) — between the lab's SDK sessions (including the bank checker's and
//!   the load generator's clients) and the node. Cutting it is "the application cannot reach
//!   node-a", while node-a itself is healthy and still talks to storage.
//! * [`Link::NodeToStorage`](crate::vocab::faults::Link::NodeToStorage) — between the node and the storage tier (PD and TiKV traffic).
//!   Cutting it is a partition of one query node from the data: the node is up, answers
//!   `/health`'s HTTP port, but cannot read or commit anything.
//!
//! Links are off by default: the proxies live in the notebook process (in the lab's runtime),
//! so a lab with links cannot be detached and attached from the CLI, and every byte makes one
//! extra loopback hop.

use serde::{Deserialize, Serialize};

use crate::infra::proxy::{LinkSettings, Proxy, ProxyStats};
use crate::vocab::faults::LinkFault;
use polars::prelude::DataFrame;

use crate::vocab::error::LabError;
use crate::vocab::frames::frame;

/// The settings after applying `fault` to `now`.
pub(crate) fn apply(fault: &LinkFault, mut now: LinkSettings) -> LinkSettings {
    match *fault {
        LinkFault::Cut => now.cut = true,
        LinkFault::Heal => now = LinkSettings::default(),
        LinkFault::Latency { latency, jitter } => {
            now.latency = latency;
            now.jitter = jitter;
        }
        LinkFault::Drop { fraction } => now.drop_fraction = fraction,
    }
    now
}

/// One row of `cluster.links()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// `client→node-a` or `node-a→storage`.
    pub link: String,
    /// The proxy's port (what the client side dials).
    pub proxy_port: u16,
    /// The real server's port.
    pub upstream_port: u16,
    /// Current settings.
    pub settings: LinkSettings,
    /// Counters since the lab started.
    pub stats: ProxyStats,
}

/// The two proxies of one node (either may be absent: isolated nodes have no storage link).
#[derive(Debug, Default)]
pub(crate) struct NodeLinks {
    pub client: Option<Proxy>,
    pub storage: Option<Proxy>,
}

/// `client→node-a`, the name used in the fault log and in `links()`.
pub(crate) fn client_link_name(node: &str) -> String {
    format!("client→{node}")
}

/// `node-a→storage`.
pub(crate) fn storage_link_name(node: &str) -> String {
    format!("{node}→storage")
}

/// A log line describing new settings, e.g. `latency 100 ms ± 20 ms`.
pub(crate) fn describe(fault: &LinkFault) -> String {
    match fault {
        LinkFault::Cut => "cut: open connections reset, new ones refused".into(),
        LinkFault::Heal => "healed: no cut, no latency, no drops".into(),
        LinkFault::Latency { latency, jitter } => format!(
            "latency {} ms ± {} ms each way",
            latency.as_millis(),
            jitter.as_millis()
        ),
        LinkFault::Drop { fraction } => {
            format!("dropping {:.0}% of new connections", fraction * 100.0)
        }
    }
}

/// `links()` as a table: link, proxy_port, upstream_port, cut, latency_ms, jitter_ms,
/// drop_fraction, accepted, refused, dropped, reset, upstream_failed, kb_up, kb_down.
pub fn links_frame(rows: &[LinkStatus]) -> Result<DataFrame, LabError> {
    use polars::prelude::*;
    let col_u64 = |name: &str, f: &dyn Fn(&LinkStatus) -> u64| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<_>>())
    };
    frame(vec![
        Column::new(
            "link".into(),
            rows.iter().map(|r| r.link.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "proxy_port".into(),
            rows.iter().map(|r| r.proxy_port as u32).collect::<Vec<_>>(),
        ),
        Column::new(
            "upstream_port".into(),
            rows.iter()
                .map(|r| r.upstream_port as u32)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "cut".into(),
            rows.iter().map(|r| r.settings.cut).collect::<Vec<_>>(),
        ),
        Column::new(
            "latency_ms".into(),
            rows.iter()
                .map(|r| r.settings.latency.as_secs_f64() * 1000.0)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "jitter_ms".into(),
            rows.iter()
                .map(|r| r.settings.jitter.as_secs_f64() * 1000.0)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "drop_fraction".into(),
            rows.iter()
                .map(|r| r.settings.drop_fraction)
                .collect::<Vec<_>>(),
        ),
        col_u64("accepted", &|r| r.stats.accepted),
        col_u64("refused", &|r| r.stats.refused),
        col_u64("dropped", &|r| r.stats.dropped),
        col_u64("reset", &|r| r.stats.reset),
        col_u64("upstream_failed", &|r| r.stats.upstream_failed),
        col_u64("kb_up", &|r| r.stats.bytes_up / 1024),
        col_u64("kb_down", &|r| r.stats.bytes_down / 1024),
    ])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn faults_change_only_their_own_setting_and_heal_resets_all() {
        let latency = LinkFault::Latency {
            latency: Duration::from_millis(50),
            jitter: Duration::from_millis(5),
        };
        let s = apply(&latency, LinkSettings::default());
        let s = apply(&LinkFault::Drop { fraction: 0.3 }, s);
        let s = apply(&LinkFault::Cut, s);
        assert!(s.cut && s.drop_fraction == 0.3 && s.latency == Duration::from_millis(50));
        assert!(apply(&LinkFault::Heal, s).is_healthy());
        assert_eq!(
            describe(&LinkFault::Drop { fraction: 0.0 }),
            "dropping 0% of new connections"
        );
    }
}
