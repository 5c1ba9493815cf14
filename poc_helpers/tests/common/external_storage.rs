//! A storage node started *outside* any lab, the way a learner runs their own PD + TiKV: the
//! `storage-node` binary on `127.0.0.1:0` (the OS picks a free port; the ready line says which)
//! with its own temporary data directory. Labs reach it through `StorageMode::ExternalTikv` or
//! `lab up --storage tikv://127.0.0.1:PORT`, and must never stop it. It is killed when dropped,
//! so a failing test leaves nothing running.
//!
//! Only std, tempfile and poc_helpers' binary lookup, so the `lab` CLI's tests include this
//! same file (`#[path]`) instead of keeping a copy.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The line `storage-node` prints on stdout once it serves (see `storage_node/src/main.rs`).
const READY_LINE: &str = "storage-node ready on ";

/// A `storage-node` process no lab started.
pub struct ExternalStorage {
    child: Child,
    /// The port it serves PD and TiKV on.
    pub port: u16,
    /// Its stdout + stderr, quoted when something goes wrong.
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ExternalStorage {
    /// Starts it and waits (up to 30 s) for its ready line.
    pub fn start() -> Self {
        let bin = poc_helpers::infra::binary::locate_workspace_binary(
            "storage-node",
            "STORAGE_NODE_BIN",
            None,
            None,
        )
        .expect("the storage-node binary (scripts/build-server.sh builds it)")
        .path;
        let dir = tempfile::Builder::new()
            .prefix("external-storage-")
            .tempdir()
            .expect("temp dir");
        let log = dir.path().join("storage.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut child = Command::new(&bin)
            .args(["--addr", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--log", "info"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn storage-node");
        let begun = Instant::now();
        let port = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            // `storage-node ready on 127.0.0.1:PORT (cluster id …)`
            let port = text
                .split(READY_LINE)
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|addr| addr.rsplit(':').next())
                .and_then(|p| p.parse::<u16>().ok());
            if let Some(port) = port {
                break port;
            }
            let exited = child.try_wait().expect("try_wait").is_some();
            if exited || begun.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("external storage-node never became ready (exited: {exited}):\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        ExternalStorage {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// Its PD endpoint, `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited (it is our child, so this is exact: no pid reuse).
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// True if it accepts a TCP connection on its port.
    pub fn answers(&self) -> bool {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    }

    /// Panics (quoting its log) unless it is still alive and still accepts connections.
    pub fn assert_untouched(&mut self, after: &str) {
        let alive = self.is_alive();
        assert!(
            alive && self.answers(),
            "the external storage node (pid {}) was stopped by {after} (alive: {alive}); its log:\n{}",
            self.pid(),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for ExternalStorage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
