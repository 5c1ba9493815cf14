//! Scaling a running lab out and in: `add_node` starts one more `surreal` node on the lab's
//! storage (the next free port, the lab's flags, fault proxies when the lab has them), and
//! `remove_node` stops the newest node and forgets it. Over shared storage nothing is copied
//! either way: a new query node reads the same keys as the others from its first query, which
//! is what "stateless query nodes" means and why scaling out is this cheap.
//!
//! Both keep `state.json` current at every step — the new pid is recorded right after the
//! spawn, before the wait for ready — so `lab status`, `lab down`, `lab clean` and the reaper
//! of the next start always know every process, even if this one dies half-way.

use super::start::{describe_stop, node_links};
use super::*;
use crate::infra::binary::{self};
use crate::infra::ports;
use crate::infra::process::Managed as _;
use crate::infra::storage::StorageTier;
use crate::vocab::config::StorageMode;
use crate::vocab::error::LabError;
use crate::vocab::nodes::{MAX_NODES, NodeRef, NodeState, node_name};

/// How far above its planned port (`base + i`) a fixed-port lab looks for a free one.
const PORT_SCAN: u16 = 50;

impl Lab {
    /// Starts the next node (`node-c` after a and b) on the lab's storage, waits until it is
    /// ready, learns its member id and connects. Returns its name and a log line. On failure the
    /// new node is stopped and forgotten, so the lab is as it was.
    pub(super) async fn add_node(&mut self) -> Result<(String, String), LabError> {
        self.check_owner()?;
        self.check_not_held_elsewhere("add a node to")?;
        let i = self.nodes.len();
        if i >= MAX_NODES {
            return Err(LabError::WrongState {
                action: "add".into(),
                target: "a node".into(),
                reason: format!("the lab already runs {i} nodes, the most it names (node-a … node-i)"),
                fix: "remove a node first (`cluster.remove_node(..)`, `lab remove NODE`), or start a new lab".into(),
            });
        }
        let name = node_name(i);
        self.ensure_storage_serves(&name)?;
        let data_dir = self.make_node(i, 0).data_dir;
        let path = match (&self.storage, &self.cfg.storage) {
            (Some(tier), _) => tier.node_path(&data_dir),
            // An attached lab of isolated nodes keeps no tier value: there is no process to own.
            (None, StorageMode::Isolated(engine)) => {
                StorageTier::Isolated(*engine).node_path(&data_dir)
            }
            (None, _) => {
                return Err(LabError::WrongState {
                    action: "add".into(),
                    target: name,
                    reason: "the lab's storage tier is not running (the lab was stopped)".into(),
                    fix: "start a new lab (`Cluster::builder()…start()`, `lab up`) and add nodes to it".into(),
                });
            }
        };
        let port = self.next_node_port(i)?;
        let bin = self.surreal_path()?;
        let mut node = self.make_node(i, port);
        let mut path = path;
        let links = if self.cfg.fault_links {
            Some(node_links(node.addr(), &mut path).await?)
        } else {
            None
        };
        node.spawn(&bin, &path, &self.cfg.user, &self.cfg.pass)?;
        self.nodes.push(node);
        self.clients.push(None);
        if let Some(l) = links {
            self.links.push(l);
        }
        self.cfg.nodes = self.nodes.len();
        // Record the pid before anything can fail: the process exists from here on.
        self.save_state()?;
        match self.bring_up(i).await {
            Ok(line) => Ok((self.nodes[i].name.clone(), line)),
            Err(e) => {
                self.forget_newest(i).await;
                Err(e)
            }
        }
    }

    /// Waits until the new node `i` is ready, then makes it a full member of the lab.
    async fn bring_up(&mut self, i: usize) -> Result<String, LabError> {
        let ready = self.nodes[i].wait_ready(self.cfg.start_timeout).await?;
        let shared = self.cfg.storage.is_shared();
        if shared {
            self.learn_member_id(i).await;
        }
        self.connect(i).await?;
        // A node with its own store starts empty: give it the schema the others have.
        if self.cfg.apply_schema && !shared {
            self.apply_schema(i).await?;
        }
        self.save_state()?;
        let data = if shared {
            "on the same storage: nothing copied"
        } else {
            "with its own empty store"
        };
        Ok(format!(
            "{} added (pid {}, {data}) → ready in {:.0} ms",
            self.tag(i),
            self.nodes[i].pid().unwrap_or(0),
            ready.as_secs_f64() * 1000.0
        ))
    }

    /// Stops node `node` (gracefully) and forgets it. Only the newest node can go, so the names
    /// stay a, b, c … without gaps, and the lab keeps at least one node.
    pub(super) async fn remove_node(&mut self, node: NodeRef) -> Result<String, LabError> {
        let i = self.resolve(&node)?;
        self.check_owner()?;
        self.check_not_held_elsewhere("remove a node from")?;
        let newest = self.nodes.len() - 1;
        let name = self.nodes[i].name.clone();
        if self.nodes.len() == 1 {
            return Err(LabError::WrongState {
                action: "remove".into(),
                target: name,
                reason: "it is the lab's only node".into(),
                fix: "stop the whole lab with `cluster.cleanup()` (CLI: `lab clean`), or `stop_node` it and keep it".into(),
            });
        }
        if i != newest {
            let last = self.nodes[newest].name.clone();
            return Err(LabError::WrongState {
                action: "remove".into(),
                target: name.clone(),
                reason: format!(
                    "nodes are removed newest first, so the names stay a, b, c … and {last} is newer"
                ),
                fix: format!(
                    "remove {last} first, or keep {name} and take it out of service with `stop_node(\"{name}\")` (CLI: `lab stop {name}`)"
                ),
            });
        }
        let tag = self.tag(i);
        let pid = self.nodes[i].pid();
        let how = self.forget_newest(i).await;
        self.save_state()?;
        Ok(format!(
            "{tag} removed: {} (pid {}), forgotten by the lab; its entry in INFO FOR ROOT stays until its heartbeat expires",
            describe_stop(how),
            pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
        ))
    }

    /// Stops the newest node `i` and drops everything the lab kept for it.
    async fn forget_newest(&mut self, i: usize) -> crate::infra::process::Stopped {
        debug_assert_eq!(i + 1, self.nodes.len());
        self.clients[i] = None;
        self.drop_load_pool(i);
        let how = self.nodes[i].stop(self.cfg.stop_timeout).await;
        self.nodes.truncate(i);
        self.clients.truncate(i);
        self.links.truncate(i);
        self.load_pools.truncate(i);
        // The node pids the last preparation saw no longer match: prepare again next time.
        self.prepared = None;
        self.cfg.nodes = self.nodes.len();
        let _ = self.save_state();
        how
    }

    /// A new node needs storage that answers: refuse at once (naming the fix) rather than
    /// wait for a start timeout when the embedded storage node is stopped or paused.
    fn ensure_storage_serves(&mut self, name: &str) -> Result<(), LabError> {
        let Some(storage) = self.storage.as_mut().and_then(StorageTier::embedded) else {
            return Ok(());
        };
        match storage.refresh().clone() {
            NodeState::Running => Ok(()),
            NodeState::Paused => Err(LabError::WrongState {
                action: "add".into(),
                target: name.into(),
                reason: "the storage node is paused, so a new node could not register".into(),
                fix: "resume it first: `cluster.resume_storage()` (CLI: `lab resume storage`)"
                    .into(),
            }),
            other => Err(LabError::WrongState {
                action: "add".into(),
                target: name.into(),
                reason: format!("the storage node is {other}, so a new node could not register"),
                fix:
                    "start it again first: `cluster.restart_storage()` (CLI: `lab restart storage`)"
                        .into(),
            }),
        }
    }

    /// The port for new node `i`: with ephemeral ports any free one; otherwise its planned
    /// port `base + i`, or the next free one above it.
    fn next_node_port(&self, i: usize) -> Result<u16, LabError> {
        let mut taken: Vec<u16> = self.nodes.iter().map(|n| n.port).collect();
        taken.push(self.cfg.storage_port);
        let usable = |p: u16| !taken.contains(&p) && ports::is_port_free(p);
        if self.cfg.ephemeral_ports {
            for _ in 0..20 {
                let p = ports::pick_ephemeral_block(1)?;
                if usable(p) {
                    return Ok(p);
                }
            }
        }
        let planned = self.cfg.base_port.saturating_add(i as u16);
        (planned..=planned.saturating_add(PORT_SCAN))
            .find(|p| usable(*p))
            .ok_or_else(|| LabError::PortInUse {
                port: planned,
                holder: ports::port_holder(planned),
            })
    }

    /// The `surreal` binary the lab runs (located once, then remembered).
    pub(super) fn surreal_path(&mut self) -> Result<std::path::PathBuf, LabError> {
        if let Some(b) = &self.binary {
            return Ok(b.path.clone());
        }
        let b = binary::locate_surreal(self.cfg.surreal_bin.as_deref())?;
        let path = b.path.clone();
        self.binary = Some(b);
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::lab::tests::config;

    fn lab_with(dir: &std::path::Path, n: usize, ephemeral: bool) -> Lab {
        let mut cfg = config(dir);
        cfg.base_port = 23_500;
        cfg.ephemeral_ports = ephemeral;
        let mut lab = Lab::new(cfg);
        lab.nodes = (0..n)
            .map(|i| Node::new(i, 23_500 + i as u16, dir))
            .collect();
        lab.clients = vec![None; n];
        lab
    }

    #[test]
    fn a_new_node_gets_its_planned_port_or_the_next_free_one() {
        let dir = tempfile::tempdir().unwrap();
        let lab = lab_with(dir.path(), 2, false);
        let port = lab.next_node_port(2).unwrap();
        assert!((23_502..=23_502 + PORT_SCAN).contains(&port), "{port}");
        assert!(port != 23_500 && port != 23_501);
        // Its planned port held by someone else: the next free one above.
        if let Ok(held) = std::net::TcpListener::bind(("127.0.0.1", 23_502)) {
            let port = lab.next_node_port(2).unwrap();
            assert!(port > 23_502, "{port}");
            drop(held);
        }
    }

    #[test]
    fn an_ephemeral_lab_picks_a_free_port_outside_its_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let lab = lab_with(dir.path(), 2, true);
        let port = lab.next_node_port(2).unwrap();
        assert!(ports::EPHEMERAL_RANGE.contains(&port), "{port}");
        assert!(port != 23_500 && port != 23_501);
    }

    #[tokio::test]
    async fn only_the_newest_node_can_be_removed_and_never_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let mut lab = lab_with(dir.path(), 3, false);
        let e = lab.remove_node(NodeRef::from("b")).await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains("node-c is newer"), "{text}");
        assert!(text.contains("remove node-c first"), "{text}");
        assert_eq!(lab.nodes.len(), 3, "a refused removal changes nothing");
        // Never started, so removing is only forgetting.
        lab.remove_node(NodeRef::from("c")).await.unwrap();
        lab.remove_node(NodeRef::from("b")).await.unwrap();
        assert_eq!(lab.nodes.len(), 1);
        assert_eq!(lab.cfg.nodes, 1, "the config counts the nodes the lab has");
        let e = lab.remove_node(NodeRef::from("a")).await.unwrap_err();
        assert!(e.to_string().contains("only node"), "{e}");
    }

    #[tokio::test]
    async fn a_full_lab_refuses_another_node_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let mut lab = lab_with(dir.path(), MAX_NODES, false);
        let e = lab.add_node().await.unwrap_err().to_string();
        assert!(e.contains("already runs 9 nodes"), "{e}");
        assert!(e.contains("remove a node first"), "{e}");
    }
}
