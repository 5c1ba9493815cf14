//! One SurrealDB node: a `surreal start` process with its own port, data directory, log file and
//! pidfile, and the start / health-wait / stop / kill / restart steps around it.
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

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;

use crate::infra::procs::{self, Stopped};
use crate::vocab::config::LOOPBACK;
use crate::vocab::error::LabError;
use crate::vocab::nodes::{NodeState, node_name};

/// How many log lines a start error quotes: enough for the cause, short enough to read.
pub const LOG_TAIL_LINES: usize = 20;

/// How often the health wait polls. A 3.3.5 node on `memory` is ready in a few hundred ms, so
/// a short interval measures start time precisely without loading the machine.
const READY_POLL: Duration = Duration::from_millis(25);

/// Per-request limit for health probes: loopback answers in ~1 ms, so this only matters for a
/// hung (e.g. SIGSTOPped) process.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The process behind a node: our own child (we can `wait` for it and read its exit code), or a
/// pid adopted from `state.json` by `Cluster::attach` (we can only signal and probe it).
#[derive(Debug)]
enum NodeProc {
    Child(Child),
    Adopted(u32),
}

/// One node, owned by the lab's actor thread.
#[derive(Debug)]
pub(crate) struct Node {
    /// `node-a`, `node-b`, …
    pub name: String,
    /// 127.0.0.1 port for HTTP and WebSocket.
    pub port: u16,
    /// The node's own data directory (`nodes/<name>/data`).
    pub data_dir: PathBuf,
    /// The node's log file (`logs/<name>.log`).
    pub log: PathBuf,
    /// The node's pidfile (`run/<name>.pid`).
    pub pidfile: PathBuf,
    /// Current state; refreshed by [`Node::refresh`].
    pub state: NodeState,
    /// When the current process was spawned (Unix ms), for uptime.
    pub started_unix_ms: Option<u64>,
    /// How long the last start took from spawn to ready, in ms.
    pub ready_ms: Option<f64>,
    /// The storage path argument of the last start, reused by restarts.
    pub path_arg: Option<String>,
    /// Extra `surreal start` flags (e.g. shortened membership intervals), after the lab's own.
    pub extra_args: Vec<String>,
    /// Extra environment for the process (e.g. `SURREAL_LIVE_QUERY_ENGINE=router`).
    pub extra_env: Vec<(String, String)>,
    proc_: Option<NodeProc>,
}

impl Node {
    /// A node that has not been started, with its paths inside `lab_dir`.
    pub(crate) fn new(index: usize, port: u16, lab_dir: &Path) -> Self {
        let name = node_name(index);
        Node {
            data_dir: lab_dir.join("nodes").join(&name).join("data"),
            log: lab_dir.join("logs").join(format!("{name}.log")),
            pidfile: lab_dir.join("run").join(format!("{name}.pid")),
            name,
            port,
            state: NodeState::NotStarted,
            started_unix_ms: None,
            ready_ms: None,
            path_arg: None,
            extra_args: Vec::new(),
            extra_env: Vec::new(),
            proc_: None,
        }
    }

    /// Rebuilds a node around a pid found in a pidfile (for `Cluster::attach`).
    pub(crate) fn adopt(
        mut self,
        pid: u32,
        started_unix_ms: Option<u64>,
        ready_ms: Option<f64>,
    ) -> Self {
        self.proc_ = Some(NodeProc::Adopted(pid));
        self.state = NodeState::Running;
        self.started_unix_ms = started_unix_ms;
        self.ready_ms = ready_ms;
        self
    }

    /// The HTTP address, `127.0.0.1:<port>`.
    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from((LOOPBACK, self.port))
    }

    /// The process id, while there is a process.
    pub(crate) fn pid(&self) -> Option<u32> {
        match &self.proc_ {
            Some(NodeProc::Child(c)) => Some(c.id()),
            Some(NodeProc::Adopted(pid)) => Some(*pid),
            None => None,
        }
    }

    /// Forgets the process without stopping it (used by `detach`, which leaves nodes running).
    pub(crate) fn forget(&mut self) {
        // Dropping a `std::process::Child` neither kills nor waits for it.
        self.proc_ = None;
    }

    /// Re-reads the process state: notices a process that exited by itself, or was paused.
    pub(crate) fn refresh(&mut self) -> &NodeState {
        let own_pid = self.pid();
        let exited = match &mut self.proc_ {
            Some(NodeProc::Child(child)) => match child.try_wait() {
                Ok(Some(status)) => Some(describe_exit(status)),
                _ => None,
            },
            Some(NodeProc::Adopted(pid)) => {
                (!procs::is_alive(*pid)).then(|| "unknown status".to_string())
            }
            None => None,
        };
        if let Some(how) = exited {
            self.proc_ = None;
            procs::remove_pidfile_if(&self.pidfile, own_pid);
            if matches!(self.state, NodeState::Running | NodeState::Paused) {
                self.state = NodeState::Exited(how);
            }
        } else if let Some(pid) = self.pid()
            && matches!(self.state, NodeState::Running | NodeState::Paused)
        {
            let paused = procs::inspect(pid).is_some_and(|p| p.stopped);
            self.state = if paused {
                NodeState::Paused
            } else {
                NodeState::Running
            };
        }
        &self.state
    }

    /// True while the process is alive (running or paused).
    pub(crate) fn is_up(&mut self) -> bool {
        matches!(self.refresh(), NodeState::Running | NodeState::Paused)
    }

    /// Spawns `surreal start` for this node. `path_arg` is the storage path from `StorageTier`.
    ///
    /// The process gets its own process group, so a Ctrl-C in the terminal that ran `lab up`
    /// does not reach it, and its stdout+stderr go to the node's log file (appended, with a header
    /// line, so restarts keep the history).
    pub(crate) fn spawn(
        &mut self,
        bin: &Path,
        path_arg: &str,
        user: &str,
        pass: &str,
    ) -> Result<(), LabError> {
        for dir in [
            &self.data_dir,
            self.log.parent().unwrap(),
            self.pidfile.parent().unwrap(),
        ] {
            std::fs::create_dir_all(dir).map_err(|e| {
                LabError::io(
                    "creating directory",
                    dir,
                    &e,
                    "check that the lab directory is writable (LAB_DIR)",
                )
            })?;
        }
        let mut args = start_args(self.port, path_arg);
        // Extra flags go before the positional storage path.
        let path = args.pop().expect("start_args ends with the path");
        args.extend(self.extra_args.iter().cloned());
        args.push(path);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| {
                LabError::io(
                    "opening log",
                    &self.log,
                    &e,
                    "check that the lab directory is writable",
                )
            })?;
        // The header marks every (re)start in the log.
        let _ = writeln!(
            log,
            "=== lab: {} starting at unix {} ms: {}{} {}",
            self.name,
            unix_ms(),
            self.extra_env
                .iter()
                .map(|(k, v)| format!("{k}={v} "))
                .collect::<String>(),
            bin.display(),
            args.join(" ")
        );
        let stderr = log
            .try_clone()
            .map_err(|e| LabError::io("opening log", &self.log, &e, "check the lab directory"))?;
        let mut cmd = Command::new(bin);
        // Credentials go in the environment (`surreal start` reads SURREAL_USER/SURREAL_PASS),
        // so the password never shows in `ps` output or in the log header above.
        cmd.args(&args)
            .env("SURREAL_USER", user)
            .env("SURREAL_PASS", pass)
            .envs(tuning_env(|k| std::env::var_os(k).is_some()))
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|e| LabError::BinaryUnusable {
            name: "surreal".into(),
            path: bin.display().to_string(),
            reason: format!("starting it failed: {e}"),
            fix: "check the binary (`surreal version`) or rebuild it with scripts/build-server.sh"
                .into(),
        })?;
        let pid = child.id();
        // Own the child before anything else can fail, so every error path can still stop it.
        self.proc_ = Some(NodeProc::Child(child));
        self.path_arg = Some(path_arg.to_string());
        self.state = NodeState::Running;
        self.started_unix_ms = Some(unix_ms());
        self.ready_ms = None;
        procs::write_pidfile(&self.pidfile, pid)
    }

    /// Waits until `/health` and `/ready` both answer 200; records and returns the time since
    /// spawn. On timeout or early exit the node is stopped and the error quotes its log.
    pub(crate) async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, LabError> {
        let begun = Instant::now();
        let spawned_at = self.started_unix_ms.unwrap_or_else(unix_ms);
        loop {
            if let NodeState::Exited(how) = self.refresh().clone() {
                return Err(LabError::NodeExited {
                    node: self.name.clone(),
                    port: self.port,
                    status: how,
                    log: self.log.display().to_string(),
                    tail: log_tail(&self.log, LOG_TAIL_LINES),
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
                    log: self.log.display().to_string(),
                    tail: log_tail(&self.log, LOG_TAIL_LINES),
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
        let how = self.end_process(Some(grace)).await;
        self.state = NodeState::Stopped;
        how
    }

    /// Immediate SIGKILL, as a crash would. State becomes `killed`.
    pub(crate) async fn kill(&mut self) -> Stopped {
        let how = self.end_process(None).await;
        self.state = NodeState::Killed;
        how
    }

    /// Sends SIGSTOP (`pause`) or SIGCONT (`resume`) to a running node.
    #[allow(dead_code)] // the failure-mode helpers build on this
    pub(crate) fn signal(&mut self, sig: Signal) -> Result<(), LabError> {
        let pid = self.pid().ok_or_else(|| LabError::NodeDown {
            node: self.name.clone(),
            port: self.port,
            state: self.state.to_string(),
        })?;
        procs::send(pid, sig).map_err(|reason| LabError::Connection {
            node: self.name.clone(),
            port: self.port,
            message: reason,
        })
    }

    /// Ends the process: with `Some(grace)` SIGTERM first, otherwise SIGKILL at once. Waits until
    /// the process is really gone (and reaped, for our own children) and removes the pidfile.
    async fn end_process(&mut self, grace: Option<Duration>) -> Stopped {
        let own_pid = self.pid();
        let how = match self.proc_.take() {
            None => Stopped::AlreadyGone,
            Some(NodeProc::Adopted(pid)) => match grace {
                Some(g) => procs::terminate_pid(pid, g).await,
                None => {
                    let _ = procs::send(pid, Signal::SIGKILL);
                    procs::wait_gone(pid, Duration::from_secs(5)).await;
                    Stopped::Killed
                }
            },
            Some(NodeProc::Child(mut child)) => procs::end_child(&mut child, grace).await,
        };
        procs::remove_pidfile_if(&self.pidfile, own_pid);
        how
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

/// `exit code 1`, `signal 9`, … for status tables.
fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("code {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => status.to_string(),
    }
}

/// Now, in µs since the Unix epoch (the storage trace's clock, on the same machine).
pub(crate) fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch (wall clock, for uptime and `state.json`).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The last `n` lines of a log file, with terminal colour codes removed, indented for errors.
pub fn log_tail(path: &Path, n: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return format!("    (no log at {})", path.display());
    };
    // Only the end matters; a long-running node's log can be large.
    let start = bytes.len().saturating_sub(64 * 1024);
    let text = strip_ansi(&String::from_utf8_lossy(&bytes[start..]));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(n)..];
    if tail.is_empty() {
        return "    (the log is empty)".into();
    }
    tail.iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Removes ANSI escape sequences (`ESC [ … letter`), which make logs unreadable in error text.
pub(crate) fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
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
        assert!(procs::is_lab_node_cmd(&cmd, 8123));
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
    fn log_tail_strips_colours_and_keeps_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        let body: String = (0..30)
            .map(|i| format!("\u{1b}[32mline {i}\u{1b}[0m\n"))
            .collect();
        std::fs::write(&p, body).unwrap();
        let tail = log_tail(&p, 3);
        assert_eq!(tail, "    line 27\n    line 28\n    line 29");
        assert!(log_tail(&dir.path().join("missing.log"), 3).contains("no log"));
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
