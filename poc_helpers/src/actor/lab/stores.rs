//! Growing and shrinking the replicated storage tier: add a store, remove one, replace one.
//!
//! The lab only starts and stops processes and asks PD; PD decides where replicas go, as
//! real PD does. A new store joins with no replica and PD's balance-region moves replicas
//! onto it; a removed store (`DELETE /pd/api/v1/store/{id}`) has its replicas moved away by
//! PD's replica checker, then becomes a tombstone. Replacing a store whose machine (and data
//! folder) is lost is both: remove the old one, add a new one — a store that lost its data may
//! never rejoin under its old id (Raft would count votes and log entries it forgot).

use crate::infra::placement;
use crate::infra::process::Managed as _;
use crate::infra::storage::StorageTier;
use crate::vocab::error::LabError;

use super::Lab;

impl Lab {
    /// PD's address, or the error that names why there is none.
    fn pd_for(&self, what: &str) -> Result<std::net::SocketAddr, LabError> {
        self.storage
            .as_ref()
            .and_then(StorageTier::pd)
            .ok_or_else(|| LabError::StorageUnavailable {
                mode: self.cfg.storage.label(),
                reason: format!("{what} needs the lab's replicated storage tier"),
                fix:
                    "start the lab with shared storage and `.stores(3)` (CLI: `lab up --stores 3`)"
                        .into(),
            })
    }

    /// Starts store N+1, which joins with no replica; returns its id and a log line.
    pub(super) async fn add_store(&mut self) -> Result<(u64, String), LabError> {
        self.check_owner()?;
        self.check_not_held_elsewhere("add a store to")?;
        self.pd_for("adding a store")?;
        let (trace, timeout) = (self.cfg.storage_trace, self.cfg.start_timeout);
        let label = self.cfg.storage.label();
        let Some(tier) = self.storage.as_mut().and_then(StorageTier::embedded) else {
            return Err(LabError::StorageUnavailable {
                mode: label,
                reason: "only the lab's own storage tier can grow by a store".into(),
                fix: "with external TiKV, start a TiKV store yourself (`tiup cluster scale-out`)"
                    .into(),
            });
        };
        let id = tier.plan_new_store(trace)?;
        // Only the new store: a store that is down (killed, being replaced) stays down.
        let new = tier.store(id)?;
        let started = match new.spawn() {
            Ok(()) => new.wait_ready(timeout).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            // Not ready: stop what was spawned and forget it, so the tier stays as it was.
            if let Some(mut s) = tier.procs.pop() {
                s.kill().await;
            }
            return Err(e);
        }
        self.cfg.stores += 1;
        self.save_state()?;
        Ok((
            id,
            format!("store-{id} joined with no replica; PD moves replicas onto it"),
        ))
    }

    /// Asks PD to remove store `id`: its replicas move to other stores, then it is a
    /// tombstone (its process keeps running until stopped; it holds nothing).
    pub(super) async fn remove_store(&mut self, id: u64) -> Result<String, LabError> {
        self.check_owner()?;
        let pd = self.pd_for("removing a store")?;
        placement::remove_store(pd, id, self.cfg.query_timeout).await
    }

    /// Replaces store `id` whose machine is lost: stops it if it runs, deletes its data folder,
    /// asks PD to remove it, and starts a new store. Returns the new store's id and a log line.
    pub(super) async fn replace_store(&mut self, id: u64) -> Result<(u64, String), LabError> {
        self.check_owner()?;
        self.check_not_held_elsewhere("replace a store of")?;
        let pd = self.pd_for("replacing a store")?;
        let label = self.cfg.storage.label();
        let Some(tier) = self.storage.as_mut().and_then(StorageTier::embedded) else {
            return Err(LabError::StorageUnavailable {
                mode: label,
                reason: "only the lab's own stores can be replaced here".into(),
                fix: "with external TiKV, use `tiup cluster scale-in` and `scale-out`".into(),
            });
        };
        let store = tier.store(id)?;
        if store.is_up() {
            store.kill().await;
        }
        let dir = store.data_dir.clone();
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| LabError::Io {
                action: "deleting".into(),
                path: dir.display().to_string(),
                message: e.to_string(),
                fix: "check the lab folder's permissions".into(),
            })?;
        }
        let removed = placement::remove_store(pd, id, self.cfg.query_timeout).await?;
        let (new_id, _) = self.add_store().await?;
        Ok((
            new_id,
            format!(
                "store-{id} lost its data folder and was removed ({removed}); store-{new_id} joined to take its replicas"
            ),
        ))
    }
}
