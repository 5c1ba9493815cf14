//! Faults: the lab's one fault path. Every node, storage and link fault, whether it comes from
//! a facade call, the CLI or an experiment's schedule, goes through [`Lab::inject`], which
//! carries it out and appends it to the fault log.

use super::start::describe_stop;
use super::*;
use crate::infra::binary::{self};
use crate::infra::embedded_tier::EmbeddedTier;
use crate::infra::links::{self};
use crate::infra::ports;
use crate::infra::process::Managed as _;
use crate::infra::process::Stopped;
use crate::infra::storage::{StorageTier, TierPlan};
use crate::infra::storage_node::{Role, StorageNode};
use crate::vocab::error::LabError;
use crate::vocab::faults::{Fault, Link, LinkFault};
use crate::vocab::nodes::{NodeAction, NodeRef, NodeState};

impl Lab {
    /// The one fault path: carries out `fault` and appends it to the fault log with its target,
    /// its window on the lab clock and its outcome (a refused fault is logged too, and opens no
    /// window). Facade calls, CLI commands and experiment schedules all come through here.
    pub(crate) async fn inject(&mut self, fault: &Fault) -> Result<String, LabError> {
        let started = self.clock_ms();
        let (target, result) = match (fault, fault.validate()) {
            (_, Err(e)) => (self.fault_target(fault), Err(e)),
            (Fault::Node(node, action), Ok(())) => (
                self.target_name(node),
                self.node_action(node.clone(), *action).await,
            ),
            (Fault::Storage(action), Ok(())) => (
                "storage".to_string(),
                self.storage_action(None, *action).await,
            ),
            (Fault::Store(id, action), Ok(())) => (
                format!("store-{id}"),
                self.storage_action(Some(*id), *action).await,
            ),
            (Fault::Pd(action), Ok(())) => ("pd".into(), self.pd_action(*action).await),
            (Fault::StoreNet(id, cut), Ok(())) => {
                (store_net_name(*id), self.store_net(*id, *cut).await)
            }
            (Fault::Link(link, change), Ok(())) => match self.link_fault(link, *change) {
                Ok((target, line)) => (target, Ok(line)),
                Err(e) => (self.fault_target(fault), Err(e)),
            },
        };
        self.log_fault(&target, fault.action(), started, &result);
        result
    }

    /// The fault log's name for what `fault` hits: `node-a`, `storage`, `client→node-a`, … (or
    /// what the caller typed, when it names no node).
    fn fault_target(&self, fault: &Fault) -> String {
        match fault {
            Fault::Node(node, _) => self.target_name(node),
            Fault::Storage(_) => "storage".into(),
            Fault::Store(id, _) => format!("store-{id}"),
            Fault::StoreNet(id, _) => store_net_name(*id),
            Fault::Pd(_) => "pd".into(),
            Fault::Link(link, _) => {
                let node = self.target_name(link.node());
                match link {
                    Link::ClientToNode(_) => links::client_link_name(&node),
                    Link::NodeToStorage(_) => links::storage_link_name(&node),
                }
            }
        }
    }

    /// Stop, kill, restart, pause or resume one node; returns a log line.
    async fn node_action(&mut self, node: NodeRef, action: NodeAction) -> Result<String, LabError> {
        let i = self.resolve(&node)?;
        self.check_owner()?;
        let grace = self.cfg.stop_timeout;
        let line = match action {
            NodeAction::Stop => {
                // Close our sessions first, so the server has no client of ours to drain.
                self.clients[i] = None;
                self.drop_load_pool(i);
                let t = std::time::Instant::now();
                let how = self.nodes[i].stop(grace).await;
                format!(
                    "{} stopped ({}, {:.1} s)",
                    self.tag(i),
                    describe_stop(how),
                    t.elapsed().as_secs_f64()
                )
            }
            NodeAction::Kill => {
                self.clients[i] = None;
                self.drop_load_pool(i);
                let pid = self.nodes[i].pid();
                let how = self.nodes[i].kill().await;
                match (how, pid) {
                    (Stopped::AlreadyGone, _) | (_, None) => {
                        format!("{} was not running", self.tag(i))
                    }
                    (_, Some(pid)) => format!("{} killed with SIGKILL (pid {pid})", self.tag(i)),
                }
            }
            NodeAction::Restart => {
                self.check_not_held_elsewhere("restart a node of")?;
                self.restart(i).await?
            }
            NodeAction::Pause => {
                self.nodes[i].signal(nix::sys::signal::Signal::SIGSTOP)?;
                format!(
                    "{} paused with SIGSTOP (it keeps its sockets but answers nothing)",
                    self.tag(i)
                )
            }
            NodeAction::Resume => {
                let name = self.nodes[i].name.clone();
                let state = self.nodes[i].refresh().clone();
                not_paused(&name, &state, &format!("restart_node(\"{name}\")"))?;
                self.nodes[i].signal(nix::sys::signal::Signal::SIGCONT)?;
                format!("{} resumed with SIGCONT", self.tag(i))
            }
        };
        self.save_state()?;
        Ok(line)
    }

    /// Appends a fault call to the fault log.
    fn log_fault(
        &mut self,
        target: &str,
        action: &str,
        started: f64,
        result: &Result<String, LabError>,
    ) {
        let done = self.clock_ms();
        let outcome = match result {
            Ok(line) => Ok(line.as_str()),
            Err(e) => Err(e.to_string()),
        };
        self.faults.record(target, action, started, done, outcome);
    }

    /// Changes one link's settings. Returns the link's name and a log line.
    fn link_fault(&mut self, link: &Link, fault: LinkFault) -> Result<(String, String), LabError> {
        let i = self.resolve(link.node())?;
        if self.links.is_empty() {
            return Err(LabError::config(
                "fault_links",
                "this lab has no fault proxies, so its links cannot be broken",
                "start the lab with `.fault_links(true)` (off by default: the proxies live in this process)",
            ));
        }
        let name = self.nodes[i].name.clone();
        let (proxy, link_name) = match link {
            Link::ClientToNode(_) => (
                self.links[i].client.as_ref(),
                links::client_link_name(&name),
            ),
            Link::NodeToStorage(_) => (
                self.links[i].storage.as_ref(),
                links::storage_link_name(&name),
            ),
        };
        let proxy = proxy.ok_or_else(|| {
            LabError::config(
                "fault_links",
                format!("{name} has no storage link: its storage is `{}`, inside the node", self.cfg.storage.label()),
                "node→storage links exist with shared storage: use StorageMode::Shared (the default)",
            )
        })?;
        proxy.apply(links::apply(&fault, proxy.settings()));
        let line = format!("[{link_name}] {}", links::describe(&fault));
        Ok((link_name, line))
    }

    /// Stop, kill, restart, pause or resume the embedded storage node. The `surreal` nodes are
    /// left alone: they retry PD and TiKV and carry on once storage is back.
    async fn storage_action(
        &mut self,
        store: Option<u64>,
        action: NodeAction,
    ) -> Result<String, LabError> {
        self.check_owner()?;
        if action == NodeAction::Restart {
            self.check_not_held_elsewhere("restart the storage of")?;
        }
        let grace = self.cfg.stop_timeout;
        let timeout = self.cfg.start_timeout;
        let label = self.cfg.storage.label();
        let Some(tier) = self.storage.as_mut().and_then(StorageTier::embedded) else {
            return Err(LabError::StorageUnavailable {
                mode: label,
                reason: "this lab does not run the embedded storage node".into(),
                fix: "storage faults need StorageMode::Shared (the default); with external TiKV, stop its processes yourself".into(),
            });
        };
        let line = match store {
            Some(id) => process_action(tier.store(id)?, action, grace, timeout).await?,
            None => tier_action(tier, action, grace, timeout).await?,
        };
        self.save_state()?;
        Ok(line)
    }

    /// One action on PD alone (a replicated tier's first process).
    async fn pd_action(&mut self, action: NodeAction) -> Result<String, LabError> {
        self.check_owner()?;
        let (grace, timeout) = (self.cfg.stop_timeout, self.cfg.start_timeout);
        let label = self.cfg.storage.label();
        let Some(tier) = self.storage.as_mut().and_then(StorageTier::embedded) else {
            return Err(LabError::StorageUnavailable {
                mode: label,
                reason: "this lab does not run the embedded storage tier".into(),
                fix: "PD faults need StorageMode::Shared with `.stores(3)`".into(),
            });
        };
        if !tier.is_replicated() {
            return Err(LabError::InvalidConfig {
                setting: "pd".into(),
                reason: "this lab's PD runs in one process with its only store".into(),
                fix: "start the lab with `.stores(3)` (CLI: `lab up --stores 3`) to fault PD alone; `kill_storage()` crashes the combined process"
                    .into(),
            });
        }
        let line = process_action(tier.front(), action, grace, timeout).await?;
        self.save_state()?;
        Ok(line)
    }

    /// Cuts store `id` off from the tier's other stores (`cut`), or heals it: the store's own
    /// partition page (`POST /lab/v1/partition`), which drops Raft messages to and from them.
    async fn store_net(&mut self, id: u64, cut: bool) -> Result<String, LabError> {
        self.check_owner()?;
        let label = self.cfg.storage.label();
        let timeout = self.cfg.query_timeout;
        let Some(tier) = self.storage.as_mut().and_then(StorageTier::embedded) else {
            return Err(LabError::StorageUnavailable {
                mode: label,
                reason: "this lab does not run the embedded storage tier".into(),
                fix: "a partition inside the storage tier needs `.stores(3)` (StorageMode::Shared)"
                    .into(),
            });
        };
        let others: Vec<u64> = tier.store_ids().into_iter().filter(|s| *s != id).collect();
        let store = tier.store(id)?;
        let addr = store.addr;
        let body = serde_json::json!({ "cut_from": if cut { others.clone() } else { vec![] } });
        let (status, answer) =
            crate::infra::client::http_post(addr, "/lab/v1/partition", body.to_string(), timeout)
                .await
                .map_err(|e| LabError::StorageUnavailable {
                    mode: "shared".into(),
                    reason: format!("store-{id} did not answer its partition page: {e}"),
                    fix: format!("check `cluster.status()`: store-{id} must be running"),
                })?;
        if status != 200 {
            return Err(LabError::StorageUnavailable {
                mode: "shared".into(),
                reason: format!("store-{id} refused the partition: HTTP {status}: {answer}"),
                fix: "check the store's log".into(),
            });
        }
        Ok(if cut {
            format!(
                "store-{id} cut off from stores {others:?}: Raft messages between them are dropped"
            )
        } else {
            format!("store-{id} healed: it hears from the other stores again")
        })
    }

    /// Restart node `i` on the same port and data directory, then reconnect its session.
    async fn restart(&mut self, i: usize) -> Result<String, LabError> {
        self.clients[i] = None;
        self.drop_load_pool(i);
        if self.nodes[i].is_up() {
            self.nodes[i].stop(self.cfg.stop_timeout).await;
        }
        let bin = match &self.binary {
            Some(b) => b.path.clone(),
            None => {
                let b = binary::locate_surreal(self.cfg.surreal_bin.as_deref())?;
                let p = b.path.clone();
                self.binary = Some(b);
                p
            }
        };
        ports::wait_ports_free(self.nodes[i].port, 1, PORT_RELEASE_WAIT).await?;
        let path = match (&self.nodes[i].path_arg, &self.storage) {
            (Some(p), _) => p.clone(),
            (None, Some(tier)) => tier.node_path(&self.nodes[i].data_dir),
            (None, None) => {
                let plan = TierPlan {
                    lab_dir: &self.cfg.lab_dir,
                    storage_port: self.cfg.storage_port,
                    stores: self.cfg.stores,
                    store_ports: &[],
                    trace: self.cfg.storage_trace,
                    timeout: self.cfg.start_timeout,
                };
                let tier = StorageTier::start(&self.cfg.storage, &plan).await?;
                let path = tier.node_path(&self.nodes[i].data_dir);
                self.storage = Some(tier);
                path
            }
        };
        self.nodes[i].spawn(&bin, &path, &self.cfg.user, &self.cfg.pass)?;
        let ready = self.nodes[i].wait_ready(self.cfg.start_timeout).await?;
        if self.cfg.storage.is_shared() {
            self.learn_member_id(i).await;
        }
        self.connect(i).await?;
        // An in-memory node comes back empty: give it its schema again (idempotent elsewhere).
        if self.cfg.apply_schema && !self.cfg.storage.is_shared() {
            self.apply_schema(i).await?;
        }
        Ok(format!(
            "{} restarted (pid {}) → ready in {:.0} ms",
            self.tag(i),
            self.nodes[i].pid().unwrap_or(0),
            ready.as_secs_f64() * 1000.0
        ))
    }
}

/// One action on the whole tier: every process at once (a power cut, a restart of the
/// storage machines). A restart brings up whatever is down, PD first.
async fn tier_action(
    tier: &mut EmbeddedTier,
    action: NodeAction,
    grace: Duration,
    timeout: Duration,
) -> Result<String, LabError> {
    if !tier.is_replicated() {
        return process_action(tier.front(), action, grace, timeout).await;
    }
    let tag = format!(
        "[storage: pd :{} + {} stores]",
        tier.pd_addr().port(),
        tier.store_count()
    );
    Ok(match action {
        NodeAction::Stop => {
            tier.stop(grace).await;
            format!("{tag} stopped (SIGTERM)")
        }
        NodeAction::Kill => {
            tier.kill().await;
            format!("{tag} killed with SIGKILL, every process")
        }
        NodeAction::Restart => {
            if tier.any_up() {
                tier.stop(grace).await;
            }
            for p in &tier.procs {
                ports::wait_ports_free(p.addr.port(), 1, PORT_RELEASE_WAIT).await?;
            }
            let took = tier.start(timeout).await?;
            format!(
                "{tag} restarted on the same data → ready in {:.0} ms",
                took.as_secs_f64() * 1000.0
            )
        }
        NodeAction::Pause => {
            tier.signal(nix::sys::signal::Signal::SIGSTOP)?;
            format!("{tag} paused with SIGSTOP, every process")
        }
        NodeAction::Resume => {
            if !tier.is_paused() {
                let state = tier.refresh();
                not_paused("storage", &state, "restart_storage()")?;
            }
            tier.signal(nix::sys::signal::Signal::SIGCONT)?;
            format!("{tag} resumed with SIGCONT")
        }
    })
}

/// One action on one storage process: the combined node, or one store.
async fn process_action(
    node: &mut StorageNode,
    action: NodeAction,
    grace: Duration,
    timeout: Duration,
) -> Result<String, LabError> {
    let name = node.role.name();
    let tag = format!("[{name} :{}]", node.addr.port());
    let restart_call = match node.role {
        Role::Store { id, .. } => format!("restart_store({id})"),
        Role::Pd => "restart_pd()".into(),
        _ => "restart_storage()".into(),
    };
    Ok(match action {
        NodeAction::Stop => {
            let how = node.stop(grace).await;
            format!("{tag} stopped ({})", describe_stop(how))
        }
        NodeAction::Kill => {
            let pid = node.pid();
            node.kill().await;
            format!(
                "{tag} killed with SIGKILL (pid {})",
                pid.map(|p| p.to_string()).unwrap_or("-".into())
            )
        }
        NodeAction::Restart => {
            if node.is_up() {
                node.stop(grace).await;
            }
            ports::wait_ports_free(node.addr.port(), 1, PORT_RELEASE_WAIT).await?;
            node.spawn()?;
            let took = node.wait_ready(timeout).await?;
            format!(
                "{tag} restarted on the same data (pid {}) → ready in {:.0} ms",
                node.pid().unwrap_or(0),
                took.as_secs_f64() * 1000.0
            )
        }
        NodeAction::Pause => {
            node.signal(nix::sys::signal::Signal::SIGSTOP)?;
            format!("{tag} paused with SIGSTOP")
        }
        NodeAction::Resume => {
            let state = node.refresh().clone();
            not_paused(&name, &state, &restart_call)?;
            node.signal(nix::sys::signal::Signal::SIGCONT)?;
            format!("{tag} resumed with SIGCONT")
        }
    })
}

/// Resuming only makes sense for a paused process: anything else is refused with what to do
/// (`restart` names the call that brings a stopped one back).
fn not_paused(target: &str, state: &NodeState, restart: &str) -> Result<(), LabError> {
    let fix = match state {
        NodeState::Paused => return Ok(()),
        NodeState::Running => {
            "nothing to do: it is running (pause it first to freeze it)".to_string()
        }
        _ => format!("start it again with `cluster.{restart}` (CLI: `lab restart {target}`)"),
    };
    Err(LabError::WrongState {
        action: "resume".into(),
        target: target.into(),
        reason: format!("it is {state}, not paused"),
        fix,
    })
}

/// The fault log's name for store `id`'s partition from the other stores.
fn store_net_name(id: u64) -> String {
    format!("store-{id}↔stores")
}
