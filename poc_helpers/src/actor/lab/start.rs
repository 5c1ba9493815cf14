//! Starting and stopping a lab: reap what an earlier run left, check ports, start the storage
//! tier and the nodes (with fault proxies when asked), connect, apply the schema; and the way
//! back: stop everything, clean up, or detach and leave the processes running.

use crate::infra::process::Managed as _;
use std::collections::HashMap;

use super::*;
use crate::experiments::membership;
use crate::infra::binary::{self};
use crate::infra::client::{self, ConnectSpec, Db};
use crate::infra::links::NodeLinks;
use crate::infra::node::Node;
use crate::infra::ports;
use crate::infra::process::{self, Reaped, Stopped};
use crate::infra::procs;
use crate::infra::storage::{StorageTier, TierPlan};
use crate::vocab::config::StorageMode;
use crate::vocab::error::LabError;
use crate::vocab::oplog::{self};

impl Lab {
    /// Learns node `i`'s SurrealDB member id right after it became ready, before the next node
    /// registers (see `experiments::membership`).
    pub(super) async fn learn_member_id(&mut self, i: usize) {
        let spec = self.connect_spec(i);
        let spawned = self.nodes[i].started_unix_ms().unwrap_or(0);
        if let Some(id) = membership::learn_member_id(&spec, spawned, &self.member_ids).await {
            self.member_ids.insert(id, spec.node.clone());
        }
    }

    /// Starts the lab: reap leftovers, check ports, start storage and nodes, connect, create
    /// namespace/database, apply the schema, write `state.json`. On failure nothing is left
    /// running. With ephemeral ports a port race with another process is retried on a new block.
    pub(super) async fn start(&mut self) -> Result<Vec<String>, LabError> {
        let bin = binary::locate_surreal(self.cfg.surreal_bin.as_deref())?;
        self.binary = Some(bin);
        for sub in ["nodes", "logs", "run"] {
            let dir = self.cfg.lab_dir.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| {
                LabError::io(
                    "creating directory",
                    &dir,
                    &e,
                    "check that the lab root is writable (env LAB_DIR)",
                )
            })?;
        }
        let mut lines = self.reap_previous_run().await;
        let reaped_nodes = lines
            .iter()
            .any(|l| l.contains("left running by an earlier run"));
        let mut attempts_left = if self.cfg.ephemeral_ports { 3 } else { 1 };
        loop {
            attempts_left -= 1;
            let base = if self.cfg.ephemeral_ports {
                ports::pick_ephemeral_block(self.cfg.nodes)?
            } else {
                self.cfg.base_port
            };
            self.cfg.base_port = base;
            self.nodes = (0..self.cfg.nodes)
                .map(|i| self.make_node(i, base + i as u16))
                .collect();
            self.clients = vec![None; self.cfg.nodes];
            if reaped_nodes && !self.cfg.ephemeral_ports {
                // The reaped processes may still be releasing these very ports.
                let _ = ports::wait_ports_free(base, self.cfg.nodes, PORT_RELEASE_WAIT).await;
            }
            match self.try_start().await {
                Ok(mut started) => {
                    lines.append(&mut started);
                    return Ok(lines);
                }
                Err(e) => {
                    self.live = false;
                    self.stop_everything().await;
                    let _ = std::fs::remove_file(self.cfg.lab_dir.join(STATE_FILE));
                    if attempts_left > 0 && is_port_race(&e) {
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    pub(super) async fn try_start(&mut self) -> Result<Vec<String>, LabError> {
        ports::ensure_ports_free(self.cfg.base_port, self.cfg.nodes)?;
        if self.cfg.storage == StorageMode::Shared && self.cfg.storage_port == 0 {
            self.cfg.storage_port = if self.cfg.ephemeral_ports {
                // A block of one, outside the nodes' block.
                loop {
                    let p = ports::pick_ephemeral_block(1)?;
                    if !(self.cfg.base_port..self.cfg.base_port + self.cfg.nodes as u16)
                        .contains(&p)
                    {
                        break p;
                    }
                }
            } else {
                crate::infra::storage_node::DEFAULT_STORAGE_PORT
            };
        }
        let plan = TierPlan {
            lab_dir: &self.cfg.lab_dir,
            storage_port: self.cfg.storage_port,
            stores: self.cfg.stores,
            store_ports: &[],
            trace: self.cfg.storage_trace,
            timeout: self.cfg.start_timeout,
        };
        let tier = StorageTier::start(&self.cfg.storage, &plan).await?;
        let bin = self.binary.clone().expect("located above").path;
        let shared = self.cfg.storage.is_shared();
        let mut paths: Vec<String> = self
            .nodes
            .iter()
            .map(|n| tier.node_path(&n.data_dir))
            .collect();
        self.storage = Some(tier);
        if self.cfg.fault_links {
            self.start_link_proxies(&mut paths).await?;
        }
        if shared {
            // One after another: concurrent first starts on one store race to bootstrap it.
            for (i, path) in paths.iter().enumerate() {
                let node = &mut self.nodes[i];
                node.spawn(&bin, path, &self.cfg.user, &self.cfg.pass)?;
                node.wait_ready(self.cfg.start_timeout).await?;
                // Before the next node registers: the only new member is this one.
                self.learn_member_id(i).await;
            }
        } else {
            for (node, path) in self.nodes.iter_mut().zip(&paths) {
                node.spawn(&bin, path, &self.cfg.user, &self.cfg.pass)?;
            }
            let timeout = self.cfg.start_timeout;
            let waits = self.nodes.iter_mut().map(|n| n.wait_ready(timeout));
            for result in futures::future::join_all(waits).await {
                result?;
            }
        }
        for i in 0..self.nodes.len() {
            self.connect(i).await?;
            if self.cfg.apply_schema && (!shared || i == 0) {
                self.apply_schema(i).await?;
            }
        }
        self.live = true;
        self.save_state()?;
        Ok(self
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "[{} :{}] started (pid {}, {}) → ready in {:.0} ms",
                    n.name,
                    n.port,
                    n.pid().map(|p| p.to_string()).unwrap_or_default(),
                    self.cfg.storage.label(),
                    n.ready_ms.unwrap_or(0.0)
                )
            })
            .collect())
    }

    /// Stops processes an earlier run of this lab left behind (see `procs` for the rules,
    /// `process::reap_pidfile` for the steps).
    pub(super) async fn reap_previous_run(&mut self) -> Vec<String> {
        let old_state = StateFile::read(&self.cfg.lab_dir).ok();
        let old_storage_port = old_state.as_ref().and_then(|s| s.storage_port);
        let old_store_ports: HashMap<u64, u16> = old_state
            .as_ref()
            .map(|s| s.stores.iter().map(|r| (r.id, r.port)).collect())
            .unwrap_or_default();
        let old_ports: HashMap<String, u16> = old_state
            .map(|s| s.nodes.into_iter().map(|n| (n.name, n.port)).collect())
            .unwrap_or_default();
        let run_dir = self.cfg.lab_dir.join("run");
        let Ok(entries) = std::fs::read_dir(&run_dir) else {
            return Vec::new();
        };
        let mut lines = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "pid") {
                continue;
            }
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name == "storage" || name == "pd" || name.starts_with("store-") {
                // A storage process of an earlier run: recognised by its `--addr` port.
                let port = match name
                    .strip_prefix("store-")
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    Some(id) => match old_store_ports.get(&id) {
                        Some(p) => *p,
                        None => {
                            let _ = std::fs::remove_file(&path);
                            continue;
                        }
                    },
                    None => {
                        old_storage_port.unwrap_or(crate::infra::storage_node::DEFAULT_STORAGE_PORT)
                    }
                };
                let reaped = process::reap_pidfile(&path, self.cfg.stop_timeout, |cmd| {
                    crate::infra::storage_node::is_lab_storage_cmd(cmd, port)
                })
                .await;
                if let Reaped::Stopped { pid, how } = reaped {
                    lines.push(format!("[{name} :{port}] stopped a storage process left running by an earlier run (pid {pid}, {how:?})"));
                }
                continue;
            }
            let planned = (0..self.cfg.nodes)
                .find(|i| crate::vocab::nodes::node_name(*i) == name)
                .map(|i| self.cfg.base_port.saturating_add(i as u16));
            let Some(port) = old_ports.get(&name).copied().or(planned) else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            let reaped = process::reap_pidfile(&path, self.cfg.stop_timeout, |cmd| {
                procs::is_lab_node_cmd(cmd, port)
            });
            let line = match reaped.await {
                Reaped::NoPidfile => continue,
                Reaped::StaleRemoved { pid } => {
                    format!("[{name}] removed a stale pidfile (pid {pid} is no longer running)")
                }
                Reaped::ForeignLeftAlone { pid, cmd } => format!(
                    "[{name}] removed a pidfile pointing at pid {pid} (`{}`), which is not a lab node: left it running",
                    oplog::shorten(&cmd, 60)
                ),
                Reaped::Stopped { pid, how } => {
                    format!(
                        "[{name} :{port}] stopped a node left running by an earlier run (pid {pid}, {how:?})"
                    )
                }
            };
            lines.push(line);
        }
        lines
    }

    /// Opens (or re-opens) node `i`'s SDK session.
    ///
    /// The handle is kept and only ever borrowed: in SDK 3.x `Surreal::clone()` opens a *new*
    /// server session and replays sign-in and `use` on it — a root sign-in verifies the password
    /// hash, ~30 ms — so cloning per query would make every query 30 ms slower.
    pub(super) async fn connect(&mut self, i: usize) -> Result<(), LabError> {
        let spec = self.connect_spec(i);
        let db = client::connect(&spec).await?;
        self.clients[i] = Some(db);
        Ok(())
    }

    /// How a client reaches node `i`: through its client-link proxy when there is one.
    pub(crate) fn connect_spec(&self, i: usize) -> ConnectSpec {
        let node = &self.nodes[i];
        let dial_port = self
            .links
            .get(i)
            .and_then(|l| l.client.as_ref())
            .map(|p| p.listen_addr().port())
            .unwrap_or(node.port);
        ConnectSpec {
            node: node.name.clone(),
            port: node.port,
            dial_port,
            user: self.cfg.user.clone(),
            pass: self.cfg.pass.clone(),
            namespace: self.cfg.namespace.clone(),
            database: self.cfg.database.clone(),
            create_ns_db: self.cfg.create_namespace,
            timeout: self.cfg.query_timeout,
        }
    }

    /// Starts a proxy on each node's client link and, for shared storage, on its storage link;
    /// rewrites each node's `tikv://` path to its own storage proxy.
    pub(super) async fn start_link_proxies(
        &mut self,
        paths: &mut [String],
    ) -> Result<(), LabError> {
        self.links.clear();
        for (i, path) in paths.iter_mut().enumerate() {
            let links = node_links(self.nodes[i].addr(), path).await?;
            self.links.push(links);
        }
        Ok(())
    }

    /// Applies `schema/entities.surql` through node `i`.
    pub(super) async fn apply_schema(&mut self, i: usize) -> Result<(), LabError> {
        let (name, port) = (self.nodes[i].name.clone(), self.nodes[i].port);
        let db = self.client(i).await?;
        let outcomes = client::run_query(db, crate::vocab::entities::SCHEMA, None)
            .await
            .map_err(|e| client::query_error(&name, port, "schema/entities.surql", &e))?;
        let parts = oplog::split_statements(crate::vocab::entities::SCHEMA);
        for (k, outcome) in outcomes.into_iter().enumerate() {
            if let Err(e) = outcome {
                let stmt = parts
                    .get(k)
                    .map(String::as_str)
                    .unwrap_or("schema/entities.surql");
                return Err(client::query_error(&name, port, stmt, &e));
            }
        }
        Ok(())
    }

    /// Node `i`'s session, connecting first if there is none (after a restart or an attach).
    pub(super) async fn client(&mut self, i: usize) -> Result<&Db, LabError> {
        if self.clients[i].is_none() {
            self.connect(i).await?;
        }
        Ok(self.clients[i].as_ref().expect("connected above"))
    }

    /// Stops every node concurrently (each with its own grace period), then the storage tier.
    pub(super) async fn stop_all(&mut self) -> Vec<String> {
        let grace = self.cfg.stop_timeout;
        self.clients.iter_mut().for_each(|c| *c = None);
        self.load_pools.clear();
        let was_up: Vec<bool> = self.nodes.iter_mut().map(|n| n.is_up()).collect();
        let results = futures::future::join_all(self.nodes.iter_mut().map(|n| n.stop(grace))).await;
        let mut lines: Vec<String> = results
            .into_iter()
            .enumerate()
            .filter(|(k, _)| was_up[*k])
            .map(|(k, how)| format!("{} stopped ({})", self.tag(k), describe_stop(how)))
            .collect();
        if let Some(tier) = self.storage.as_mut() {
            let was_up = tier.embedded().map(|t| t.any_up()).unwrap_or(false);
            // Stops only what the lab started: the embedded node, a tiup playground. External
            // storage is not ours and keeps running.
            tier.stop(grace).await;
            if let Some(t) = tier.embedded().filter(|_| was_up) {
                for p in &t.procs {
                    lines.push(format!("[{} :{}] stopped", p.role.name(), p.addr.port()));
                }
            }
        }
        // The embedded node and external storage stay in the lab, so status tables (and
        // `state.json`, for `lab status` after `lab down`) keep their row: `stopped` or
        // `external`. A stopped tiup playground has nothing left to show or restart.
        if matches!(self.storage, Some(StorageTier::Tiup { .. })) {
            self.storage = None;
        }
        if let Some(pid) = self.adopted_storage_pid.take() {
            process::terminate_pid(pid, grace).await;
            lines.push(format!("[storage] stopped (pid {pid})"));
        }
        let _ = self.save_state();
        lines
    }

    /// Stops everything, ignoring errors (used on failure paths and on drop).
    pub(crate) async fn stop_everything(&mut self) {
        self.stop_all().await;
    }

    /// `cleanup()`: stop everything and delete the lab directory.
    pub(super) async fn cleanup(&mut self) -> Result<(), LabError> {
        // Never delete a directory a newer start of this lab owns.
        self.check_owner()?;
        self.stop_all().await;
        let dir = &self.cfg.lab_dir;
        // Only ever delete a directory named after the lab (names are validated as plain words).
        if dir.file_name().is_some_and(|n| n == self.cfg.name.as_str()) && dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| {
                LabError::io(
                    "deleting",
                    dir,
                    &e,
                    "check permissions, then delete it by hand",
                )
            })?;
        }
        Ok(())
    }

    /// Leaves the processes running and forgets them (`detach`), recording them in `state.json`.
    pub(super) fn detach(&mut self) {
        // Nobody holds the lab any more: the CLI may now manage all of it.
        if self.owner_pid == Some(std::process::id()) {
            self.owner_pid = None;
        }
        let _ = self.save_state();
        self.nodes.iter_mut().for_each(Node::forget);
        self.clients.iter_mut().for_each(|c| *c = None);
        self.load_pools.clear();
        if let Some(mut tier) = self.storage.take() {
            // Dropping the tier's `Child` does not kill it; its pid is in state.json.
            if let Some(t) = tier.embedded() {
                t.forget();
            }
            drop(tier);
        }
    }
}

/// A port taken between our check and the node's bind (only retried with ephemeral ports).
pub(super) fn is_port_race(e: &LabError) -> bool {
    match e {
        LabError::PortInUse { .. } => true,
        LabError::NodeExited { tail, .. } => tail.to_ascii_lowercase().contains("in use"),
        _ => false,
    }
}

pub(super) fn describe_stop(how: Stopped) -> &'static str {
    match how {
        Stopped::AlreadyGone => "was not running",
        Stopped::Graceful => "SIGTERM",
        Stopped::Killed => "SIGTERM ignored, SIGKILL",
    }
}

/// The fault proxies of one node: one on its client link, and for a `tikv://` path one on its
/// storage link, with `path` rewritten to dial that proxy (used at start and by `add_node`).
pub(super) async fn node_links(
    node_addr: std::net::SocketAddr,
    path: &mut String,
) -> Result<NodeLinks, LabError> {
    let io_err = |e: std::io::Error| {
        LabError::config(
            "fault_links",
            format!("could not start a fault proxy: {e}"),
            "free some ports or file descriptors, or start without `.fault_links(true)`",
        )
    };
    let mut links = NodeLinks {
        client: Some(
            crate::infra::proxy::Proxy::start(node_addr)
                .await
                .map_err(io_err)?,
        ),
        storage: None,
    };
    if let Some(addr) = path.strip_prefix("tikv://") {
        let upstream: std::net::SocketAddr = addr.parse().map_err(|_| {
            LabError::config(
                "fault_links",
                format!("storage address `{addr}` is not IP:PORT"),
                "use 127.0.0.1:PORT storage endpoints",
            )
        })?;
        let proxy = crate::infra::proxy::Proxy::start(upstream)
            .await
            .map_err(io_err)?;
        *path = format!("tikv://{}", proxy.listen_addr());
        links.storage = Some(proxy);
    }
    Ok(links)
}
