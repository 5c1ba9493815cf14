//! Load: the workload's session pools (kept between runs), record preparation, and the
//! resource sampler around a run. The clients themselves are in `experiments::workload::run`.

use super::*;
use crate::experiments::workload::{self, WorkloadPlan, WorkloadReport};
use crate::infra::client::{self, ConnectSpec};
use crate::infra::node::Node;
use crate::infra::process::Managed as _;
use crate::infra::procs::{self};
use crate::infra::storage::StorageTier;
use crate::vocab::error::LabError;

impl Lab {
    /// Runs a workload: checks the nodes, fills the session pools, prepares the records, and
    /// samples every process while the clients run (see `workload` for the measuring rules).
    pub(super) async fn workload(
        &mut self,
        spec: WorkloadPlan,
    ) -> Result<WorkloadReport, LabError> {
        spec.validate(self.nodes.len())?;
        let serving = spec.serving(self.nodes.len());
        for i in 0..serving {
            if !self.nodes[i].is_up() {
                let n = &self.nodes[i];
                return Err(LabError::NodeDown {
                    node: n.name.clone(),
                    port: n.port,
                    state: n.state().to_string(),
                });
            }
        }
        let setup = std::time::Instant::now();
        let sessions = spec.sessions();
        self.fill_load_pools(sessions).await?;
        if spec.prepare {
            self.prepare_records(&spec).await?;
        }
        let setup_ms = setup.elapsed().as_secs_f64() * 1000.0;
        let mut targets = self.processes();
        // The load generator shares the machine with the lab: its own cost is part of the picture.
        targets.push(("client".into(), std::process::id()));
        let sampler = crate::infra::sampler::Sampler::start(targets, spec.sample_every);
        self.runs += 1;
        let nonce = crate::infra::process::unix_ms() * 1000 + self.runs % 1000;
        let ctx = workload::run::RunContext {
            targets: self
                .nodes
                .iter()
                .take(serving)
                .zip(&self.load_pools)
                .map(|(n, pool)| workload::run::Target {
                    name: n.name.clone(),
                    sessions: &pool.sessions[..sessions],
                })
                .collect(),
            nonce,
        };
        let measured = workload::run::run(&spec, ctx).await;
        let resources = sampler.stop();
        Ok(WorkloadReport {
            label: spec.label(),
            storage: self.cfg.storage.label(),
            nodes: self
                .nodes
                .iter()
                .take(serving)
                .map(|n| n.name.clone())
                .collect(),
            sessions_per_node: sessions,
            measured_s: measured.measured_s,
            setup_ms,
            rows: measured.rows,
            raw: measured.raw,
            histogram: measured.histogram,
            error_examples: measured.error_examples,
            samples: measured.samples,
            resources,
            spec,
        })
    }

    /// Makes sure every node has at least `want` load sessions, opening the missing ones
    /// concurrently (each is a WebSocket, a root sign-in and a `USE`).
    pub(super) async fn fill_load_pools(&mut self, want: usize) -> Result<(), LabError> {
        self.load_pools
            .resize_with(self.nodes.len(), LoadPool::default);
        for i in 0..self.nodes.len() {
            let pid = self.nodes[i].pid();
            if self.load_pools[i].pid != pid {
                self.load_pools[i] = LoadPool {
                    pid,
                    sessions: Vec::new(),
                };
            }
            let missing = want.saturating_sub(self.load_pools[i].sessions.len());
            if missing == 0 {
                continue;
            }
            // The lab's own session created the namespace at start; concurrent DEFINEs from
            // many new sessions would only race each other.
            let spec = ConnectSpec {
                create_ns_db: false,
                ..self.connect_spec(i)
            };
            let opened =
                futures::future::join_all((0..missing).map(|_| client::connect(&spec))).await;
            for db in opened {
                self.load_pools[i].sessions.push(db?);
            }
        }
        Ok(())
    }

    /// Inserts the workload's records unless the same preparation already ran. Shared storage
    /// needs it once; isolated nodes each have their own data.
    pub(super) async fn prepare_records(&mut self, spec: &WorkloadPlan) -> Result<(), LabError> {
        let pids: Vec<Option<u32>> = self.nodes.iter().map(Node::pid).collect();
        let key = (spec.table.clone(), spec.records, pids);
        if self.prepared.as_ref() == Some(&key) {
            return Ok(());
        }
        let on = if self.cfg.storage.is_shared() {
            1
        } else {
            self.nodes.len()
        };
        for i in 0..on {
            let db = &self.load_pools[i].sessions[0];
            workload::run::prepare(db, spec).await.map_err(|e| {
                client::query_error(
                    &self.nodes[i].name,
                    self.nodes[i].port,
                    &format!("preparing {} records in `{}`", spec.records, spec.table),
                    &e,
                )
            })?;
        }
        self.prepared = Some(key);
        Ok(())
    }

    /// Forgets node `i`'s load sessions (before it is stopped, killed or restarted).
    pub(super) fn drop_load_pool(&mut self, i: usize) {
        if let Some(pool) = self.load_pools.get_mut(i) {
            *pool = LoadPool::default();
        }
    }

    /// `(name, pid)` of every running lab process: the nodes, then the storage node.
    pub(super) fn processes(&mut self) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = Vec::new();
        for n in &mut self.nodes {
            if n.is_up()
                && let Some(pid) = n.pid()
            {
                out.push((n.name.clone(), pid));
            }
        }
        let storage_pid = self
            .storage
            .as_ref()
            .and_then(StorageTier::pid)
            .or(self.adopted_storage_pid);
        if let Some(pid) = storage_pid.filter(|p| procs::is_alive(*p)) {
            out.push(("storage".into(), pid));
        }
        out
    }
}
