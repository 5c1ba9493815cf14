//! `storage-node pd`: the placement driver on its own — the timestamp oracle, id allocation,
//! the store and region registries the stores' heartbeats keep current, and the GC safe point.
//! It holds no data: kill it and the stores keep their regions, but no transaction can start
//! (every transaction needs a timestamp) until it is back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::engine::EngineError;
use crate::pd::cluster::PdCluster;
use crate::pd::gc::SafePointFile;
use crate::pd::tso::Tso;
use crate::server::Serving;
use crate::server::pd::{GcKeeper, PdService};
use crate::{StartError, bind, open_tracer};

/// How to run PD.
#[derive(Clone, Debug)]
pub struct PdConfig {
    /// Loopback address to serve PD on (clients and stores dial it).
    pub addr: SocketAddr,
    /// Where the cluster id, the TSO limit, the id allocator and the GC safe point live.
    pub data_dir: PathBuf,
    /// Append one JSON line per traced RPC (TSO requests) to this file.
    pub trace: Option<PathBuf>,
}

/// A PD that is serving.
pub struct PdNode {
    /// The address it serves on.
    pub addr: SocketAddr,
    /// Its registry (tests inspect it).
    pub cluster: Arc<PdCluster>,
    serving: Serving,
}

const CLUSTER_ID_FILE: &str = "cluster-id";

/// The cluster id persisted in `dir`, created on first start.
fn cluster_id(dir: &std::path::Path) -> std::io::Result<u64> {
    let file = dir.join(CLUSTER_ID_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => text.trim().parse().map_err(|_| {
            std::io::Error::other(format!(
                "{} is damaged; restore it (stores refuse a PD of another cluster) or use a fresh --data-dir for the whole cluster",
                file.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = crate::engine::new_cluster_id();
            let tmp = file.with_extension("tmp");
            std::fs::write(&tmp, id.to_string())?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &file)?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

impl PdNode {
    /// Opens PD's data directory, binds the port and starts serving in the background.
    pub async fn start(config: PdConfig) -> Result<PdNode, StartError> {
        let (listener, addr) = bind(config.addr).await?;
        let io = |what: &str, e: std::io::Error| {
            StartError::Engine(EngineError::Redb(format!(
                "PD {what} in {}: {e}",
                config.data_dir.display()
            )))
        };
        std::fs::create_dir_all(&config.data_dir).map_err(|e| io("data directory", e))?;
        let id = cluster_id(&config.data_dir).map_err(|e| io("cluster id", e))?;
        let tso = Arc::new(Tso::open(&config.data_dir).map_err(|e| io("timestamp oracle", e))?);
        let cluster =
            Arc::new(PdCluster::open(id, &config.data_dir).map_err(|e| io("id allocator", e))?);
        let gc = SafePointFile::open(&config.data_dir).map_err(|e| io("GC safe point", e))?;
        let tracer = open_tracer(&config.trace)?;
        let service = PdService::new(
            cluster.clone(),
            tso,
            GcKeeper::Pd(gc),
            addr.to_string(),
            tracer,
        );
        Ok(PdNode {
            addr,
            cluster,
            serving: Serving::spawn(Some(service), None, listener),
        })
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> u64 {
        self.cluster.cluster_id()
    }

    /// Stops serving and waits for in-flight RPCs to finish.
    pub async fn stop(self) {
        self.serving.stop().await
    }

    /// Waits until the server stops on its own (an error).
    pub async fn wait(&mut self) -> Result<(), String> {
        self.serving.wait().await
    }
}
