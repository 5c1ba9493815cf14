//! One SurrealDB node: a `surreal start` process with its own port, data directory, log file and
//! pidfile, and the start / health-wait / stop / kill / restart steps around it. The process
//! itself — spawn, log, pidfile, state, signals, reaping — is a `process::LabProcess`, shared with the
//! storage processes; this module adds what only a node has: its arguments and environment,
//! and the HTTP readiness check.
//!
//! Layout on disk (inside the lab directory):
//!
//! ```text
//! nodes/node-a/data/     the node's own data (used by `surrealkv`; empty for `memory`/tikv)
//! logs/node-a.log        everything the process prints (stdout and stderr), across restarts
//! run/node-a.pid         its pid while it runs, for reaping after a crash
//! ```
//!
//! A node is "ready" when both `GET /health` and `GET /ready` answer 200. In SurrealDB 3.3.5
//! `/health` only says the storage backend is reachable, while `/ready` turns 200 once start-up
//! work (version check, default namespace, node registration, root user) is finished — before
//! that, queries get 503. The lab needs both.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::infra::process::{LOG_TAIL_LINES, LabProcess, Managed, SignalError, Stopped, unix_ms};
use crate::vocab::config::LOOPBACK;
use crate::vocab::error::LabError;
use crate::vocab::nodes::{NodeState, node_name};

/// How often the health wait polls. A 3.3.5 node on `memory` is ready in a few hundred ms, so
/// a short interval measures start time precisely without loading the machine.
const READY_POLL: Duration = Duration::from_millis(25);

/// Per-request limit for health probes: loopback answers in ~1 ms, so this only matters for a
/// hung (e.g. SIGSTOPped) process.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One node, owned by the lab's actor thread: the `surreal` process (its log, pidfile, state
/// and signals are the [`LabProcess`]'s) plus what only a node has — a port, a data directory,
/// the storage path and flags it starts with, and an HTTP readiness check.
#[derive(Debug)]
pub(crate) struct Node {
    /// `node-a`, `node-b`, …
    pub name: String,
    /// 127.0.0.1 port for HTTP and WebSocket.
    pub port: u16,
    /// The node's own data directory (`nodes/<name>/data`).
    pub data_dir: PathBuf,
    /// How long the last start took from spawn to ready, in ms.
    pub ready_ms: Option<f64>,
    /// The storage path argument of the last start, reused by restarts.
    pub path_arg: Option<String>,
    /// Extra `surreal start` flags (e.g. shortened membership intervals), after the lab's own.
    pub extra_args: Vec<String>,
    /// Extra environment for the process (e.g. `SURREAL_LIVE_QUERY_ENGINE=router`).
    pub extra_env: Vec<(String, String)>,
    process: LabProcess,
}

impl Node {
    /// A node that has not been started, with its paths inside `lab_dir`.
    pub(crate) fn new(index: usize, port: u16, lab_dir: &Path) -> Self {
        let name = node_name(index);
        Node {
            data_dir: lab_dir.join("nodes").join(&name).join("data"),
            process: LabProcess::new(&name, lab_dir),
            name,
            port,
            ready_ms: None,
            path_arg: None,
            extra_args: Vec::new(),
            extra_env: Vec::new(),
        }
    }

    /// Takes over this node's process by pid (from `state.json`, for `Cluster::attach`) if
    /// that pid still runs our `surreal start --bind 127.0.0.1:<port>`. True if adopted.
    pub(crate) fn adopt(
        &mut self,
        pid: u32,
        started_unix_ms: Option<u64>,
        ready_ms: Option<f64>,
    ) -> bool {
        let port = self.port;
        let adopted = self.process.adopt_if(pid, started_unix_ms, |cmd| {
            crate::infra::procs::is_lab_node_cmd(cmd, port)
        });
        if adopted {
            self.ready_ms = ready_ms;
        }
        adopted
    }

    /// The HTTP address, `127.0.0.1:<port>`.
    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from((LOOPBACK, self.port))
    }

    /// The node's pidfile (`run/<name>.pid`).
    pub(crate) fn pidfile(&self) -> &Path {
        self.process.pidfile()
    }

    /// Spawns `surreal start` for this node. `path_arg` is the storage path from `StorageTier`.
    /// Its log, pidfile and process group are the [`LabProcess`]'s business.
    pub(crate) fn spawn(
        &mut self,
        bin: &Path,
        path_arg: &str,
        user: &str,
        pass: &str,
    ) -> Result<(), LabError> {
        crate::infra::process::create_dir(&self.data_dir)?;
        let mut args = start_args(self.port, path_arg);
        // Extra flags go before the positional storage path.
        let path = args.pop().expect("start_args ends with the path");
        args.extend(self.extra_args.iter().cloned());
        args.push(path);
        let mut cmd = Command::new(bin);
        // Credentials go in the environment (`surreal start` reads SURREAL_USER/SURREAL_PASS),
        // so the password never shows in `ps` output or in the log header (which shows only
        // `extra_env`).
        cmd.args(&args)
            .env("SURREAL_USER", user)
            .env("SURREAL_PASS", pass)
            .envs(tuning_env(|k| std::env::var_os(k).is_some()))
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)));
        self.ready_ms = None;
        self.path_arg = Some(path_arg.to_string());
        self.process
            .spawn(cmd, &self.extra_env, |e| LabError::BinaryUnusable {
                name: "surreal".into(),
                path: bin.display().to_string(),
                reason: format!("starting it failed: {e}"),
                fix: "check the binary (`surreal version`) or rebuild it with scripts/build-server.sh"
                    .into(),
            })?;
        Ok(())
    }

    /// Waits until `/health` and `/ready` both answer 200; records and returns the time since
    /// spawn. On timeout or early exit the node is stopped and the error quotes its log.
    pub(crate) async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, LabError> {
        let begun = Instant::now();
        let spawned_at = self.started_unix_ms().unwrap_or_else(unix_ms);
        loop {
            if let NodeState::Exited(how) = self.refresh().clone() {
                return Err(LabError::NodeExited {
                    node: self.name.clone(),
                    port: self.port,
                    status: how,
                    log: self.log().display().to_string(),
                    tail: self.process.log_tail(LOG_TAIL_LINES),
                });
            }
            if self.probe("/health").await == Some(200) && self.probe("/ready").await == Some(200) {
                let took = Duration::from_millis(unix_ms().saturating_sub(spawned_at));
                self.ready_ms = Some(took.as_secs_f64() * 1000.0);
                return Ok(took);
            }
            if begun.elapsed() > timeout {
                self.kill().await;
                return Err(LabError::StartTimeout {
                    node: self.name.clone(),
                    port: self.port,
                    waited: timeout,
                    log: self.log().display().to_string(),
                    tail: self.process.log_tail(LOG_TAIL_LINES),
                });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// One HTTP GET; `None` if nothing answered.
    async fn probe(&self, path: &str) -> Option<u16> {
        crate::infra::client::http_get(self.addr(), path, PROBE_TIMEOUT)
            .await
            .ok()
            .map(|(code, _)| code)
    }

    /// Graceful stop: SIGTERM, wait up to `grace`, then SIGKILL. State becomes `stopped`.
    pub(crate) async fn stop(&mut self, grace: Duration) -> Stopped {
        self.process.stop(grace).await
    }

    /// Immediate SIGKILL, as a crash would. State becomes `killed`.
    pub(crate) async fn kill(&mut self) -> Stopped {
        self.process.kill().await
    }

    /// Sends SIGSTOP (`pause`) or SIGCONT (`resume`) to a running node.
    pub(crate) fn signal(&mut self, sig: Signal) -> Result<(), LabError> {
        self.process.signal(sig).map_err(|e| match e {
            SignalError::NoProcess => LabError::NodeDown {
                node: self.name.clone(),
                port: self.port,
                state: self.state().to_string(),
            },
            SignalError::Failed(reason) => LabError::Connection {
                node: self.name.clone(),
                port: self.port,
                message: reason,
            },
        })
    }
}

/// The arguments of `surreal start` for one node.
///
/// `--bind 127.0.0.1:PORT` is also how the reaper recognises our nodes, so keep it in this
/// two-argument form. `--no-banner` keeps the ASCII-art logo out of the log file. The root user
/// is passed through the environment (see [`Node::spawn`]).
pub(crate) fn start_args(port: u16, path_arg: &str) -> Vec<String> {
    vec![
        "start".into(),
        "--bind".into(),
        format!("127.0.0.1:{port}"),
        "--log".into(),
        "info".into(),
        "--no-banner".into(),
        path_arg.into(),
    ]
}

/// Environment that keeps a lab node small on a laptop; each entry is skipped when the caller's
/// environment already sets it (`is_set`), so a learner can still override any of them.
///
/// Measured with `lab bench` on a 2-core machine (see the README's benchmark section):
///
/// * `SURREAL_RUNTIME_WORKER_THREADS`: SurrealDB starts `max(4, cores)` tokio workers. On a
///   2-core laptop running two nodes, a storage node and a client, four busy workers per node
///   only add context switches, and every worker that allocates grows the heap. The lab uses
///   the number of cores, between 2 and 4.
/// * `MALLOC_ARENA_MAX`: for the lab's source build of `surreal`, which uses glibc's allocator.
///   glibc gives busy threads their own arenas (up to 8 per core) and keeps freed memory in
///   each. One arena took a loaded node from ~185 MB to ~90 MB RSS with no measurable change in
///   throughput (two arenas: ~120 MB); with at most four workers, contention on it stays
///   negligible. The official release binary uses jemalloc instead, which ignores this variable
///   (it keeps per-thread caches of its own and returns memory on its own schedule), so on that
///   binary the setting is inert and harmless: the lab starts both the same way.
pub(crate) fn tuning_env(is_set: impl Fn(&str) -> bool) -> Vec<(&'static str, String)> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    [
        (
            "SURREAL_RUNTIME_WORKER_THREADS",
            cores.clamp(2, 4).to_string(),
        ),
        ("MALLOC_ARENA_MAX", "1".to_string()),
    ]
    .into_iter()
    .filter(|(k, _)| !is_set(k))
    .collect()
}

impl Managed for Node {
    fn process(&self) -> &LabProcess {
        &self.process
    }
    fn process_mut(&mut self) -> &mut LabProcess {
        &mut self.process
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_letters() {
        assert_eq!(node_name(0), "node-a");
        assert_eq!(node_name(8), "node-i");
    }

    #[test]
    fn start_args_are_recognised_by_the_reaper() {
        let mut cmd = vec!["/somewhere/surreal".to_string()];
        cmd.extend(start_args(8123, "memory"));
        assert!(crate::infra::procs::is_lab_node_cmd(&cmd, 8123));
        assert!(cmd.contains(&"--no-banner".to_string()));
        assert_eq!(cmd.last().unwrap(), "memory");
    }

    #[test]
    fn tuning_env_respects_what_the_caller_set() {
        let all = tuning_env(|_| false);
        let keys: Vec<&str> = all.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["SURREAL_RUNTIME_WORKER_THREADS", "MALLOC_ARENA_MAX"]);
        let workers: usize = all[0].1.parse().unwrap();
        assert!((2..=4).contains(&workers));
        let some = tuning_env(|k| k == "MALLOC_ARENA_MAX");
        assert_eq!(some.len(), 1);
        assert_eq!(some[0].0, "SURREAL_RUNTIME_WORKER_THREADS");
    }

    #[test]
    fn states_display_like_the_status_table() {
        assert_eq!(
            NodeState::Exited("code 1".into()).to_string(),
            "exited(code 1)"
        );
        assert_eq!(NodeState::Killed.to_string(), "killed");
    }
}
