//! Status: every node's (and the storage node's) state, the link proxies' counters, and the
//! storage trace attributed to nodes.

use crate::infra::process::Managed as _;
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::experiments::waterfall::Waterfall;
use crate::infra::binary::{self};
use crate::infra::client::{self};
use crate::infra::links::{self, LinkStatus};
use crate::infra::metrics::Instance;
use crate::infra::placement::{self, Placement};
use crate::infra::storage::StorageTier;
use crate::infra::storage_node::{Role, StorageNode};
use crate::vocab::error::LabError;
use crate::vocab::nodes::NodeRef;
use crate::vocab::nodes::NodeState;

impl Lab {
    /// The storage tier's map from PD: which regions exist and which stores hold and lead them.
    pub(crate) async fn placement(&mut self) -> Result<Placement, LabError> {
        let Some(pd) = self.storage.as_ref().and_then(StorageTier::pd) else {
            return Err(LabError::StorageUnavailable {
                mode: self.cfg.storage.label(),
                reason: "isolated nodes keep their data to themselves: there are no regions or stores to show".into(),
                fix: "start the lab with shared storage (`.storage(StorageMode::Shared)`, the default) and call `cluster.placement()` again".into(),
            });
        };
        placement::fetch(pd, self.cfg.query_timeout).await
    }

    /// Has PD move region `region`'s leader to store `store`.
    pub(crate) async fn transfer_leader(
        &mut self,
        region: u64,
        store: u64,
    ) -> Result<(), LabError> {
        let Some(pd) = self.storage.as_ref().and_then(StorageTier::pd) else {
            return Err(LabError::StorageUnavailable {
                mode: self.cfg.storage.label(),
                reason: "isolated nodes have no shared storage tier".into(),
                fix: "start the lab with shared storage and `.stores(3)`".into(),
            });
        };
        placement::transfer_leader(pd, region, store, self.cfg.query_timeout).await
    }

    /// Has PD split the regions at `keys` (encoded).
    pub(crate) async fn split_at(&mut self, keys: &[Vec<u8>]) -> Result<Vec<u64>, LabError> {
        let Some(pd) = self.storage.as_ref().and_then(StorageTier::pd) else {
            return Err(LabError::StorageUnavailable {
                mode: self.cfg.storage.label(),
                reason: "isolated nodes have no shared storage tier to split".into(),
                fix: "start the lab with shared storage (`.storage(StorageMode::Shared)`, the default)".into(),
            });
        };
        placement::split(
            pd,
            keys,
            self.cfg.query_timeout.max(Duration::from_secs(10)),
        )
        .await
    }

    /// Every node's status (the spec's Instance entity).
    pub(crate) async fn instances(&mut self) -> Vec<Instance> {
        let now = crate::infra::process::unix_ms();
        let binary_version = self.binary.as_ref().map(|b| b.version.clone());
        let storage = self.cfg.storage.label();
        let mut out = Vec::with_capacity(self.nodes.len() + 1);
        for n in &mut self.nodes {
            let state = n.refresh().clone();
            let pid = n.pid();
            let version = if state == NodeState::Running {
                match client::http_get(n.addr(), "/version", Duration::from_secs(1)).await {
                    Ok((200, body)) => binary::parse_version_line(&body).or(binary_version.clone()),
                    _ => binary_version.clone(),
                }
            } else {
                binary_version.clone()
            };
            out.push(Instance {
                node: n.name.clone(),
                port: n.port,
                pid,
                state: state.clone(),
                version,
                rss_mb: n.rss_mb(),
                uptime_s: uptime_s(&state, n.started_unix_ms(), now),
                // Shared nodes show where their storage is (tikv://127.0.0.1:PORT).
                storage: n
                    .path_arg
                    .clone()
                    .filter(|p| p.starts_with("tikv://"))
                    .unwrap_or_else(|| storage.clone()),
                ready_ms: n.ready_ms,
                ws_url: format!("ws://127.0.0.1:{}", n.port),
                http_url: format!("http://127.0.0.1:{}", n.port),
                data_mb: None,
            });
        }
        out.extend(self.storage_rows(now).into_iter().flatten());
        out
    }

    /// The storage tier's rows, last in the table, in every state of the tier:
    ///
    /// - the embedded storage processes (one combined `storage` row, or `pd` and one row per
    ///   store): its pid, memory and data size while it runs, and `paused`,
    ///   `stopped`, `killed` or `exited(…)` otherwise — also after `stop_all()` / `lab down`,
    ///   which stop it but keep it in the lab (a restart starts it on the same data);
    /// - external storage (`StorageMode::ExternalTikv`): state `external`, its PD address in
    ///   `port` and `storage` (the same `tikv://…` the nodes' rows show), and no pid, uptime or
    ///   memory, because the lab does not own that process and never stops it;
    /// - isolated nodes (each its own store) and tiup have no row.
    fn storage_rows(&mut self, now: u64) -> Option<Vec<Instance>> {
        match self.storage.as_mut()? {
            StorageTier::Embedded(tier) => {
                let stores = tier.store_count();
                Some(
                    tier.procs
                        .iter_mut()
                        .map(|s| storage_process_row(s, stores, now))
                        .collect(),
                )
            }
            StorageTier::External { pd } => Some(vec![Instance {
                node: "storage".into(),
                port: pd.port(),
                pid: None,
                state: NodeState::External,
                version: None,
                rss_mb: None,
                uptime_s: None,
                storage: format!("tikv://{pd}"),
                ready_ms: None,
                ws_url: String::new(),
                http_url: format!("grpc://{pd}"),
                data_mb: None,
            }]),
            StorageTier::Isolated(_) | StorageTier::Tiup { .. } => None,
        }
    }

    /// The state and counters of every link proxy.
    pub(super) fn link_statuses(&self) -> Vec<LinkStatus> {
        let mut out = Vec::new();
        for (i, l) in self.links.iter().enumerate() {
            let name = &self.nodes[i].name;
            for (proxy, link) in [
                (&l.client, links::client_link_name(name)),
                (&l.storage, links::storage_link_name(name)),
            ] {
                if let Some(p) = proxy {
                    out.push(LinkStatus {
                        link,
                        proxy_port: p.listen_addr().port(),
                        upstream_port: p.upstream().port(),
                        settings: p.settings(),
                        stats: p.stats(),
                    });
                }
            }
        }
        out
    }

    /// The storage trace file, or why there is none.
    pub(super) fn trace_path(&mut self) -> Result<PathBuf, LabError> {
        match self
            .storage
            .as_mut()
            .and_then(StorageTier::embedded)
            .and_then(|t| t.front().trace.clone())
        {
            Some(p) => Ok(p),
            None => Err(LabError::config(
                "storage_trace",
                "this lab has no storage trace",
                "start the lab with StorageMode::Shared and `.storage_trace(true)`",
            )),
        }
    }

    /// Trace rows since `mark`, each attributed to the node whose connection sent it.
    pub(super) fn trace_since(
        &mut self,
        mark: u64,
    ) -> Result<Vec<crate::infra::trace::TraceRow>, LabError> {
        let path = self.trace_path()?;
        let mut rows = crate::infra::trace::read_since(&path, mark)
            .map_err(|e| LabError::io("reading", &path, &e, "check the lab directory"))?;
        let pids: Vec<(String, u32)> = self
            .nodes
            .iter()
            .filter_map(|n| n.pid().map(|p| (n.name.clone(), p)))
            .collect();
        crate::infra::trace::attribute(&mut rows, &crate::infra::trace::connection_owners(&pids));
        Ok(rows)
    }

    /// Runs `query` on one node and builds its latency waterfall from the storage trace (see
    /// `experiments::waterfall`). Without a trace (isolated storage, or no `.storage_trace`),
    /// the waterfall has no storage steps: only the client's and SurrealDB's times.
    pub(super) async fn waterfall(
        &mut self,
        node: NodeRef,
        query: String,
    ) -> (Option<String>, Result<Waterfall, LabError>) {
        let i = match self.resolve(&node) {
            Ok(i) => i,
            Err(e) => return (None, Err(e)),
        };
        let mark = self
            .trace_path()
            .ok()
            .map(|p| crate::infra::trace::mark(&p));
        let sent_us = crate::infra::process::unix_us();
        let (line, result) = self.sql(node, query.clone(), None).await;
        let r = match result {
            Ok(r) => r,
            Err(e) => return (line, Err(e)),
        };
        let rows = match mark.map(|m| self.trace_since(m)) {
            Some(Ok(rows)) => rows,
            Some(Err(e)) => return (line, Err(e)),
            None => Vec::new(),
        };
        let server_ms = r
            .statements
            .iter()
            .map(|s| s.server_ms)
            .sum::<Option<f64>>();
        let w = Waterfall::build(
            &self.nodes[i].name,
            &query,
            &self.cfg.storage.label(),
            sent_us,
            r.ms,
            server_ms,
            &rows,
        );
        (line, Ok(w))
    }
}

/// One embedded storage process's row: pid, memory and data size while it runs, its state
/// otherwise. The `storage` column says what it holds: `pd+tikv` (combined), `pd`, or
/// `tikv 2/3` (store 2 of 3).
/// Seconds since a process was spawned, while it is alive (running or paused).
fn uptime_s(state: &NodeState, started_unix_ms: Option<u64>, now: u64) -> Option<f64> {
    let up = matches!(state, NodeState::Running | NodeState::Paused);
    started_unix_ms
        .filter(|_| up)
        .map(|t| now.saturating_sub(t) as f64 / 1000.0)
}

fn storage_process_row(s: &mut StorageNode, stores: usize, now: u64) -> Instance {
    let state = s.refresh().clone();
    let uptime_s = uptime_s(&state, s.started_unix_ms(), now);
    let pid = s.pid();
    let holds = match s.role {
        Role::Combined => "pd+tikv".to_string(),
        Role::Pd => "pd".to_string(),
        Role::Store { id, .. } => format!("tikv {id}/{stores}"),
    };
    Instance {
        node: s.role.name(),
        port: s.addr.port(),
        pid,
        state,
        version: Some(format!("storage-node {}", env!("CARGO_PKG_VERSION"))),
        rss_mb: s.rss_mb(),
        uptime_s,
        storage: holds,
        ready_ms: s.ready_ms,
        ws_url: String::new(),
        http_url: format!("grpc://{}", s.addr),
        data_mb: Some(s.data_bytes() as f64 / (1024.0 * 1024.0)),
    }
}
