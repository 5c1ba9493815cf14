//! The lab's own storage tier as a group of `storage-node` processes: either one combined
//! process (PD and one store), or PD plus N stores that replicate every region with Raft — the
//! shape of a real TiKV cluster (`tiup playground` runs the same: one PD, three TiKV).
//!
//! The tier starts PD first (the stores register with it), then every store at once (the
//! first region needs a majority of its peers before it can elect a leader), and stops them
//! in the reverse order. A fault on "the storage" acts on every process of the tier; a fault
//! on one store acts on that store alone, which is how the lab shows a Raft failover.

use crate::infra::process::Managed as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::infra::placement;
use crate::infra::ports;
use crate::infra::process::Stopped;
use crate::infra::storage_node::{Role, StorageNode};
use crate::vocab::config::check_store_count;
use crate::vocab::error::LabError;
use crate::vocab::nodes::NodeState;

/// The embedded tier: `procs[0]` is the combined node or PD, `procs[1..]` the stores.
#[derive(Debug)]
pub(crate) struct EmbeddedTier {
    /// The processes, PD-facing one first.
    pub procs: Vec<StorageNode>,
}

impl EmbeddedTier {
    /// Plans the tier for `stores` stores, PD (or the combined node) on `port`. Stores get
    /// the ports in `store_ports` when given (a restart keeps them), else free ephemeral ones.
    pub(crate) fn plan(
        lab_dir: &Path,
        port: u16,
        stores: usize,
        store_ports: &[u16],
        trace: bool,
        bin: PathBuf,
    ) -> Result<EmbeddedTier, LabError> {
        check_store_count(stores)?;
        if stores == 1 {
            return Ok(EmbeddedTier {
                procs: vec![StorageNode::new(lab_dir, port, trace, bin)],
            });
        }
        let pd = StorageNode::with_role(Role::Pd, lab_dir, port, trace, bin.clone());
        let pd_addr = pd.addr;
        let mut procs = vec![pd];
        for id in 1..=stores {
            let store_port = match store_ports.get(id - 1) {
                Some(p) => *p,
                None => free_port_other_than(port)?,
            };
            let role = Role::Store {
                id: id as u64,
                pd: pd_addr,
                initial: stores,
            };
            procs.push(StorageNode::with_role(
                role,
                lab_dir,
                store_port,
                trace,
                bin.clone(),
            ));
        }
        Ok(EmbeddedTier { procs })
    }

    /// The address the `surreal` nodes are given: PD's, or the combined node's.
    pub(crate) fn pd_addr(&self) -> SocketAddr {
        self.procs[0].addr
    }

    /// The PD-facing process (PD, or the combined node).
    pub(crate) fn front(&mut self) -> &mut StorageNode {
        &mut self.procs[0]
    }

    /// How many stores the tier has.
    pub(crate) fn store_count(&self) -> usize {
        self.procs.len().saturating_sub(1).max(1)
    }

    /// True when PD and the stores are separate processes.
    pub(crate) fn is_replicated(&self) -> bool {
        self.procs.len() > 1
    }

    /// The stores' ports, in store order (empty for the combined node).
    #[cfg(test)]
    pub(crate) fn store_ports(&self) -> Vec<u16> {
        self.procs.iter().skip(1).map(|p| p.addr.port()).collect()
    }

    /// The ids of the tier's stores (empty for the combined node).
    pub(crate) fn store_ids(&self) -> Vec<u64> {
        self.procs
            .iter()
            .filter_map(|p| match p.role {
                Role::Store { id, .. } => Some(id),
                _ => None,
            })
            .collect()
    }

    /// Store `id` (1-based) of a replicated tier; the error names the stores there are.
    pub(crate) fn store(&mut self, id: u64) -> Result<&mut StorageNode, LabError> {
        let count = self.procs.len() - 1;
        if count == 0 {
            return Err(LabError::InvalidConfig {
                setting: "store".into(),
                reason: "this lab's storage is one combined process (PD and one store)".into(),
                fix: "start the lab with `.stores(3)` (CLI: `lab up --stores 3`) to fault one store; \
                      `kill_storage()` crashes the whole tier"
                    .into(),
            });
        }
        let n = id as usize;
        if n == 0 || n > count {
            return Err(LabError::InvalidConfig {
                setting: "store".into(),
                reason: format!("there is no store {id}"),
                fix: format!("use a store from 1 to {count}"),
            });
        }
        Ok(&mut self.procs[n])
    }

    /// Plans store N+1 (the next id), which joins the running cluster with no replica: PD's
    /// balance-region (or replica checker) then moves replicas onto it. Its `--initial-stores`
    /// stays the tier's first count, so it never bootstraps a region of its own.
    pub(crate) fn plan_new_store(&mut self, trace: bool) -> Result<u64, LabError> {
        let Some(Role::Store { pd, initial, .. }) = self.procs.get(1).map(|p| p.role.clone())
        else {
            return Err(LabError::InvalidConfig {
                setting: "stores".into(),
                reason: "this lab's storage is one combined process (PD and one store)".into(),
                fix: "start the lab with `.stores(3)` (CLI: `lab up --stores 3`) to add stores"
                    .into(),
            });
        };
        let id = self.procs.len() as u64;
        let lab_dir = self.procs[0]
            .data_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let port = free_port_other_than(pd.port())?;
        let bin = self.procs[0].bin().to_path_buf();
        self.procs.push(StorageNode::with_role(
            Role::Store { id, pd, initial },
            &lab_dir,
            port,
            trace,
            bin,
        ));
        Ok(id)
    }

    /// Spawns every process that is not running, PD first, and waits until each is ready.
    pub(crate) async fn start(&mut self, timeout: Duration) -> Result<Duration, LabError> {
        let begun = std::time::Instant::now();
        let (front, stores) = self.procs.split_at_mut(1);
        if !front[0].is_up() {
            front[0].spawn()?;
            front[0].wait_ready(timeout).await?;
        }
        for s in stores.iter_mut() {
            if !s.is_up() {
                ports::ensure_ports_free(s.addr.port(), 1)?;
                s.spawn()?;
            }
        }
        let waits = stores
            .iter_mut()
            .filter(|s| s.ready_ms.is_none())
            .map(|s| s.wait_ready(timeout));
        for r in futures::future::join_all(waits).await {
            r?;
        }
        self.wait_until_serving(timeout.saturating_sub(begun.elapsed()))
            .await?;
        Ok(begun.elapsed())
    }

    /// Waits until PD's map serves every key: a leader for every region, and no key range
    /// that no region covers. A store says it is ready once it serves, but its regions elect
    /// their leaders after that (half a second or more), and PD learns each region and its
    /// leader from the leader's heartbeat. A `surreal` node started before then fails its
    /// start-up check ("Leader of region 2 is not found": SurrealDB's TiKV client does not
    /// wait for a leader there), so the tier has started only once PD's map is whole.
    async fn wait_until_serving(&self, timeout: Duration) -> Result<(), LabError> {
        let begun = std::time::Instant::now();
        let ask = Duration::from_secs(1);
        loop {
            let missing = match placement::fetch(self.pd_addr(), ask).await {
                Ok(p) => p.not_serving(),
                Err(e) => vec![format!("PD did not answer: {e}")],
            };
            if missing.is_empty() {
                return Ok(());
            }
            if begun.elapsed() >= timeout {
                return Err(LabError::StorageUnavailable {
                    mode: "shared".into(),
                    reason: format!(
                        "every storage process is up, but PD's map still does not serve every key after {timeout:?}: {}",
                        missing.join("; ")
                    ),
                    fix:
                        "read the stores' logs (`cluster.status()` lists them): a region elects a \
                          leader once a majority of its stores run and reach each other"
                            .into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// True while every process is alive (running or paused).
    pub(crate) fn is_up(&mut self) -> bool {
        self.procs.iter_mut().all(|p| p.is_up())
    }

    /// True while any process is alive.
    pub(crate) fn any_up(&mut self) -> bool {
        self.procs.iter_mut().any(|p| p.is_up())
    }

    /// True if any process is paused (SIGSTOP).
    pub(crate) fn is_paused(&mut self) -> bool {
        self.procs
            .iter_mut()
            .any(|p| p.refresh() == &NodeState::Paused)
    }

    /// The tier's state in one word: the front's, unless a store differs (then `degraded` is
    /// told by the per-store rows of the status table).
    pub(crate) fn refresh(&mut self) -> NodeState {
        for p in self.procs.iter_mut() {
            p.refresh();
        }
        self.procs[0].state().clone()
    }

    /// SIGTERM every process, stores first (PD last, so no store loses its PD mid-shutdown).
    pub(crate) async fn stop(&mut self, grace: Duration) -> Stopped {
        let mut how = Stopped::AlreadyGone;
        for p in self.procs.iter_mut().rev() {
            let h = p.stop(grace).await;
            if p.role == Role::Combined || p.role == Role::Pd {
                how = h;
            }
        }
        how
    }

    /// SIGKILL every process at once, like a power cut of the storage machines.
    pub(crate) async fn kill(&mut self) {
        futures::future::join_all(self.procs.iter_mut().map(|p| p.kill())).await;
    }

    /// Sends `sig` to every live process (SIGSTOP / SIGCONT: a hung storage tier).
    pub(crate) fn signal(&mut self, sig: Signal) -> Result<(), LabError> {
        for p in self.procs.iter_mut().filter(|p| p.pid().is_some()) {
            p.signal(sig)?;
        }
        Ok(())
    }

    /// Forgets the processes without stopping them (`detach`).
    pub(crate) fn forget(&mut self) {
        self.procs.iter_mut().for_each(StorageNode::forget);
    }
}

/// A free port for a store, never PD's.
fn free_port_other_than(pd_port: u16) -> Result<u16, LabError> {
    loop {
        let p = ports::pick_ephemeral_block(1)?;
        if p != pd_port {
            return Ok(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_store_is_the_combined_node_and_three_are_pd_plus_three_stores() {
        let dir = Path::new("/lab");
        let one = EmbeddedTier::plan(dir, 2379, 1, &[], false, "/b".into()).unwrap();
        assert_eq!(one.procs.len(), 1);
        assert_eq!(one.procs[0].role, Role::Combined);
        let three =
            EmbeddedTier::plan(dir, 2379, 3, &[20161, 20162, 20163], false, "/b".into()).unwrap();
        assert_eq!(three.procs[0].role, Role::Pd);
        assert_eq!(three.store_ports(), vec![20161, 20162, 20163]);
        assert!(three.procs[1..].iter().all(|p| matches!(
            p.role,
            Role::Store { initial: 3, pd, .. } if pd.port() == 2379
        )));
        assert_eq!(three.store_count(), 3);
    }

    #[test]
    fn a_store_fault_names_the_stores_there_are() {
        let dir = Path::new("/lab");
        let mut one = EmbeddedTier::plan(dir, 2379, 1, &[], false, "/b".into()).unwrap();
        assert!(one.store(1).unwrap_err().to_string().contains(".stores(3)"));
        let mut three = EmbeddedTier::plan(dir, 2379, 3, &[1, 2, 3], false, "/b".into()).unwrap();
        assert!(three.store(2).is_ok());
        assert!(
            three
                .store(4)
                .unwrap_err()
                .to_string()
                .contains("from 1 to 3")
        );
    }
}
