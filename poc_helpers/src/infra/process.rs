//! One process the lab runs — a `surreal` node, the combined storage node, PD, a store — and
//! its whole life: spawn it with its own log and pidfile, adopt it again from a later handle,
//! read its state, pause / resume / stop / kill it, reap it, or forget it and leave it running.
//!
//! Why one type: every process the lab owns must end the same way (SIGTERM, a grace period,
//! then SIGKILL; never a zombie left behind; never a signal to a pid that is not ours) and show
//! the same states in the status table. When `Node` and `StorageNode` each kept a copy of this,
//! the copies drifted: one ended its child with `Child::kill`, the other with `kill(2)` on the
//! pid; one described an exit as `code 1`, the other as `exit status: 1`. Now the owners keep
//! only what is theirs (ports, arguments, the readiness check, the data directory) and hold a
//! `LabProcess` for the rest.
//!
//! Every signal goes through one function, `Handle::send` (which calls [`procs::send`]), so a
//! process we spawned and a process we adopted by pid are signalled alike.
//!
//! On disk, for a process named `node-a`:
//!
//! ```text
//! logs/node-a.log   everything it prints (stdout and stderr), across restarts: each start
//!                   appends a `=== lab: node-a starting at unix … ms: <command>` header
//! run/node-a.pid    its pid while it runs, so a later run can find (and reap) it
//! ```

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;

use crate::infra::procs;
use crate::vocab::error::LabError;
use crate::vocab::nodes::NodeState;

/// How many log lines a start error quotes: enough for the cause, short enough to read.
pub const LOG_TAIL_LINES: usize = 20;

/// How long to wait for a process to disappear after SIGKILL. The kernel acts on SIGKILL at
/// once; only a process stuck in uninterruptible I/O takes longer.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The process was already gone.
    AlreadyGone,
    /// It exited after SIGTERM within the grace period.
    Graceful,
    /// It ignored SIGTERM for the whole grace period (or was killed at once) and got SIGKILL.
    Killed,
}

/// Why a signal could not be sent; the owner turns it into its own error (a node's or the
/// storage tier's), since only it knows what to tell the learner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignalError {
    /// There is no process (never started, stopped, exited, forgotten).
    NoProcess,
    /// `kill(2)` refused, e.g. EPERM.
    Failed(String),
}

/// The process behind a [`LabProcess`]: our own child (we can `wait` for it, which reaps it and
/// gives its exit status) or a pid adopted from a pidfile or `state.json` (we can only signal
/// and probe it; its parent, or init, reaps it).
#[derive(Debug)]
enum Handle {
    Child(Child),
    Adopted(u32),
}

impl Handle {
    fn pid(&self) -> u32 {
        match self {
            Handle::Child(c) => c.id(),
            Handle::Adopted(pid) => *pid,
        }
    }

    /// The one place the lab signals a process it manages. A process that is already gone is
    /// not an error; SIGSTOP and SIGCONT return once the kernel shows the new state (see
    /// [`procs::send`]).
    fn send(&self, sig: Signal) -> Result<(), String> {
        procs::send(self.pid(), sig)
    }

    /// `Some(how)` once the process has ended. For our child this also reaps it (`try_wait`),
    /// so it never lingers as a zombie; an adopted pid can only be asked whether it still runs.
    fn exited(&mut self) -> Option<String> {
        match self {
            Handle::Child(child) => match child.try_wait() {
                Ok(Some(status)) => Some(describe_exit(status)),
                Ok(None) => None,
                // ECHILD: someone else reaped it; in any case it is not running for us.
                Err(_) => Some("unknown status".into()),
            },
            Handle::Adopted(pid) => (!procs::is_alive(*pid)).then(|| "unknown status".into()),
        }
    }

    /// Polls until the process has ended or `limit` passes; true if it ended.
    async fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.exited().is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(procs::POLL).await;
        }
    }

    /// Ends the process: with `Some(grace)`, SIGTERM and up to `grace` to exit, then SIGKILL;
    /// with `None`, SIGKILL at once (a crash). Returns once it is gone — and, for our child,
    /// reaped.
    ///
    /// A paused (SIGSTOPped) process cannot act on SIGTERM until it is continued, so it also
    /// gets SIGCONT. SIGKILL needs no SIGCONT: the kernel delivers it to stopped processes too.
    async fn end(&mut self, grace: Option<Duration>) -> Stopped {
        if self.exited().is_some() {
            return Stopped::AlreadyGone;
        }
        if let Some(g) = grace {
            let _ = self.send(Signal::SIGTERM);
            let _ = self.send(Signal::SIGCONT);
            if self.wait_exit(g).await {
                return Stopped::Graceful;
            }
        }
        let _ = self.send(Signal::SIGKILL);
        if !self.wait_exit(KILL_WAIT).await
            && let Handle::Child(child) = self
        {
            // Stuck in the kernel: block until it goes, rather than leave a zombie behind.
            let _ = child.wait();
        }
        Stopped::Killed
    }
}

/// What [`LabProcess::adopt_from_pidfile`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// No pidfile, or one that holds no number.
    NoPidfile,
    /// The pid is not running any more.
    Stale {
        /// The pid the file named.
        pid: u32,
    },
    /// The pid runs something that is not ours (pids get reused): never to be signalled.
    Foreign {
        /// The pid the file named.
        pid: u32,
        /// That process's command line, for the report.
        cmd: String,
    },
    /// Our process: now adopted.
    Adopted {
        /// Its pid.
        pid: u32,
    },
}

/// What every lab process type (a `surreal` node, a storage process) says about its process,
/// written once here over the [`LabProcess`] each one holds: a type only says where that is.
pub(crate) trait Managed {
    /// The process this value manages.
    fn process(&self) -> &LabProcess;
    /// The same, to change.
    fn process_mut(&mut self) -> &mut LabProcess;

    /// The process id, while there is a process.
    fn pid(&self) -> Option<u32> {
        self.process().pid()
    }
    /// The state as last seen (`refresh` looks again).
    fn state(&self) -> &NodeState {
        self.process().state()
    }
    /// When the current process was spawned (Unix ms), for uptime.
    fn started_unix_ms(&self) -> Option<u64> {
        self.process().started_unix_ms()
    }
    /// Its log file (`logs/<name>.log`).
    fn log(&self) -> &Path {
        self.process().log()
    }
    /// Resident memory in MB, while there is a process.
    fn rss_mb(&self) -> Option<f64> {
        self.process().rss_mb()
    }
    /// Forgets the process without stopping it (`detach` leaves processes running).
    fn forget(&mut self) {
        self.process_mut().forget()
    }
    /// Re-reads the state: notices a process that exited by itself, or was paused.
    fn refresh(&mut self) -> &NodeState {
        self.process_mut().refresh()
    }
    /// True while the process is alive (running or paused).
    fn is_up(&mut self) -> bool {
        self.process_mut().is_up()
    }
    /// For a process that could not be adopted: the state `state.json` recorded.
    fn set_gone_state(&mut self, state: NodeState) {
        self.process_mut().set_gone_state(state)
    }
}

/// One managed process: its name, log, pidfile and state, and the process itself while there
/// is one. Owned by a [`crate::infra::node::Node`] or a
/// [`crate::infra::storage_node::StorageNode`], which add what is specific to them.
#[derive(Debug)]
pub(crate) struct LabProcess {
    /// `node-a`, `storage`, `pd`, `store-2`: in the log header and the owner's messages.
    name: String,
    /// `<lab>/logs/<name>.log`.
    log: PathBuf,
    /// `<lab>/run/<name>.pid`.
    pidfile: PathBuf,
    /// Current state; refreshed by [`LabProcess::refresh`].
    state: NodeState,
    /// When the current process was spawned (Unix ms), for uptime.
    started_unix_ms: Option<u64>,
    handle: Option<Handle>,
}

impl LabProcess {
    /// A process named `name` that has not been started, with its log and pidfile in the lab
    /// directory's `logs/` and `run/`.
    pub(crate) fn new(name: &str, lab_dir: &Path) -> Self {
        LabProcess {
            name: name.to_string(),
            log: lab_dir.join("logs").join(format!("{name}.log")),
            pidfile: lab_dir.join("run").join(format!("{name}.pid")),
            state: NodeState::NotStarted,
            started_unix_ms: None,
            handle: None,
        }
    }

    /// The log file.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// The pidfile.
    pub(crate) fn pidfile(&self) -> &Path {
        &self.pidfile
    }

    /// The state as last seen (call [`LabProcess::refresh`] for a fresh look).
    pub(crate) fn state(&self) -> &NodeState {
        &self.state
    }

    /// When the current process was spawned (Unix ms).
    pub(crate) fn started_unix_ms(&self) -> Option<u64> {
        self.started_unix_ms
    }

    /// The process id, while there is a process.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.handle.as_ref().map(Handle::pid)
    }

    /// Resident memory in MB (1 MB = 1,048,576 bytes), while there is a process.
    pub(crate) fn rss_mb(&self) -> Option<f64> {
        self.pid().and_then(crate::infra::metrics::rss_mb)
    }

    /// The last `n` lines of the log, for error messages.
    pub(crate) fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }

    /// The first words of the header each start writes into the log. Readiness checks that read
    /// the log look only after the last one, so an earlier start's lines never count.
    pub(crate) fn start_marker(&self) -> String {
        format!("=== lab: {} starting", self.name)
    }

    /// Spawns `cmd` as this process: its own process group (so a Ctrl-C in the terminal that
    /// ran `lab up` does not reach it), stdin closed, stdout and stderr appended to the log after
    /// a header line (so restarts keep the history), and its pid written to the pidfile.
    ///
    /// `shown_env` is the environment the header shows before the command (the owner leaves
    /// out secrets such as the root password); `unusable` turns a failed spawn into the owner's
    /// error, which knows how to fix the binary.
    pub(crate) fn spawn(
        &mut self,
        mut cmd: Command,
        shown_env: &[(String, String)],
        unusable: impl FnOnce(std::io::Error) -> LabError,
    ) -> Result<u32, LabError> {
        for dir in [self.log.parent(), self.pidfile.parent()]
            .into_iter()
            .flatten()
        {
            create_dir(dir)?;
        }
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
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let _ = writeln!(
            log,
            "{} at unix {} ms: {}{} {}",
            self.start_marker(),
            unix_ms(),
            shown_env
                .iter()
                .map(|(k, v)| format!("{k}={v} "))
                .collect::<String>(),
            Path::new(cmd.get_program()).display(),
            args.join(" ")
        );
        let stderr = log
            .try_clone()
            .map_err(|e| LabError::io("opening log", &self.log, &e, "check the lab directory"))?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(stderr);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(unusable)?;
        let pid = child.id();
        // Own the child before anything else can fail, so every error path can still stop it.
        self.handle = Some(Handle::Child(child));
        self.state = NodeState::Running;
        self.started_unix_ms = Some(unix_ms());
        procs::write_pidfile(&self.pidfile, pid)?;
        Ok(pid)
    }

    /// Takes over a running process by pid (from `state.json`, for `Cluster::attach`) if
    /// `ours` recognises its command line — pids get reused, and a pid that now belongs to
    /// anything else must never be signalled. True if adopted.
    pub(crate) fn adopt_if(
        &mut self,
        pid: u32,
        started_unix_ms: Option<u64>,
        ours: impl Fn(&[String]) -> bool,
    ) -> bool {
        let is_ours = procs::inspect(pid).is_some_and(|p| !p.zombie && ours(&p.cmd));
        if is_ours {
            self.handle = Some(Handle::Adopted(pid));
            self.state = NodeState::Running;
            self.started_unix_ms = started_unix_ms;
        }
        is_ours
    }

    /// Takes over the process this process's pidfile names, if `ours` recognises it (see
    /// [`LabProcess::adopt_if`]). A pidfile naming a dead or foreign pid is removed; the
    /// foreign process is left alone.
    pub(crate) fn adopt_from_pidfile(&mut self, ours: impl Fn(&[String]) -> bool) -> Found {
        let Some(pid) = procs::read_pidfile(&self.pidfile) else {
            let _ = std::fs::remove_file(&self.pidfile);
            return Found::NoPidfile;
        };
        match procs::inspect(pid).filter(|p| !p.zombie) {
            None => {
                let _ = std::fs::remove_file(&self.pidfile);
                Found::Stale { pid }
            }
            Some(info) if !ours(&info.cmd) => {
                let _ = std::fs::remove_file(&self.pidfile);
                Found::Foreign {
                    pid,
                    cmd: info.cmd.join(" "),
                }
            }
            Some(_) => {
                self.handle = Some(Handle::Adopted(pid));
                self.state = NodeState::Running;
                Found::Adopted { pid }
            }
        }
    }

    /// For a process that could not be adopted: the state the lab recorded for it (stopped,
    /// killed…), shown until it is started again.
    pub(crate) fn set_gone_state(&mut self, state: NodeState) {
        debug_assert!(
            self.handle.is_none(),
            "only for a process that is not running"
        );
        self.state = state;
    }

    /// Forgets the process without stopping it (`detach` leaves processes running for a later
    /// `attach`, which adopts them). Dropping a `Child` neither kills nor waits for it.
    pub(crate) fn forget(&mut self) {
        self.handle = None;
    }

    /// Re-reads the process state: notices a process that exited by itself (and reaps it,
    /// removing its pidfile), or one that was paused or resumed from outside.
    pub(crate) fn refresh(&mut self) -> &NodeState {
        let Some(handle) = self.handle.as_mut() else {
            return &self.state;
        };
        let pid = handle.pid();
        if let Some(how) = handle.exited() {
            self.handle = None;
            procs::remove_pidfile_if(&self.pidfile, Some(pid));
            if matches!(self.state, NodeState::Running | NodeState::Paused) {
                self.state = NodeState::Exited(how);
            }
        } else if matches!(self.state, NodeState::Running | NodeState::Paused) {
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

    /// Sends `sig` to the process. For SIGSTOP and SIGCONT (pause and resume, the only signals
    /// owners send this way; stop and kill end the process with [`LabProcess::stop`] and
    /// [`LabProcess::kill`]) the state follows at once.
    pub(crate) fn signal(&mut self, sig: Signal) -> Result<(), SignalError> {
        let handle = self.handle.as_ref().ok_or(SignalError::NoProcess)?;
        handle.send(sig).map_err(SignalError::Failed)?;
        self.refresh();
        Ok(())
    }

    /// Graceful stop: SIGTERM, up to `grace`, then SIGKILL. State becomes `stopped`.
    pub(crate) async fn stop(&mut self, grace: Duration) -> Stopped {
        let how = self.end(Some(grace)).await;
        self.state = NodeState::Stopped;
        how
    }

    /// Immediate SIGKILL, as a crash or a power cut would. State becomes `killed`.
    pub(crate) async fn kill(&mut self) -> Stopped {
        let how = self.end(None).await;
        self.state = NodeState::Killed;
        how
    }

    /// Ends the process (see `Handle::end`) and removes the pidfile — only if it still names
    /// this pid: after a newer start of the same lab took the file over, an old handle must
    /// leave it alone.
    async fn end(&mut self, grace: Option<Duration>) -> Stopped {
        let Some(mut handle) = self.handle.take() else {
            return Stopped::AlreadyGone;
        };
        let how = handle.end(grace).await;
        procs::remove_pidfile_if(&self.pidfile, Some(handle.pid()));
        how
    }
}

/// Stops a process known only by its pid (`state.json` named it, but it is no tier's any
/// more): SIGTERM, `grace`, SIGKILL. The caller has checked that it is ours.
pub(crate) async fn terminate_pid(pid: u32, grace: Duration) -> Stopped {
    Handle::Adopted(pid).end(Some(grace)).await
}

/// What `reap_pidfile` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaped {
    /// No pidfile: nothing to do.
    NoPidfile,
    /// The pid was dead; the stale file was removed.
    StaleRemoved {
        /// The pid the file named.
        pid: u32,
    },
    /// The pid is alive but is not ours (pid reuse): the file was removed, the process left alone.
    ForeignLeftAlone {
        /// The pid the file named.
        pid: u32,
        /// That process's command line, for the start report.
        cmd: String,
    },
    /// Our process from an earlier run was stopped.
    Stopped {
        /// The pid of the stopped process.
        pid: u32,
        /// How it ended: after SIGTERM, or SIGKILLed after the grace period.
        how: Stopped,
    },
}

/// Cleans up after an earlier run: a kernel that crashed or restarted leaves its processes
/// running, still holding their ports. `pidfile` names one; if `ours` recognises its command
/// line it is adopted and stopped like any managed process, otherwise only the file goes.
pub(crate) async fn reap_pidfile(
    pidfile: &Path,
    grace: Duration,
    ours: impl Fn(&[String]) -> bool,
) -> Reaped {
    // Only the pidfile matters here: nothing is spawned, so no name or log.
    let mut orphan = LabProcess {
        name: String::new(),
        log: PathBuf::new(),
        pidfile: pidfile.to_path_buf(),
        state: NodeState::NotStarted,
        started_unix_ms: None,
        handle: None,
    };
    match orphan.adopt_from_pidfile(ours) {
        Found::NoPidfile => Reaped::NoPidfile,
        Found::Stale { pid } => Reaped::StaleRemoved { pid },
        Found::Foreign { pid, cmd } => Reaped::ForeignLeftAlone { pid, cmd },
        Found::Adopted { pid } => {
            let how = orphan.stop(grace).await;
            // Gone either way: a pid that could not be stopped must not be adopted again.
            let _ = std::fs::remove_file(pidfile);
            Reaped::Stopped { pid, how }
        }
    }
}

/// Creates `dir` and its parents, with an error that names the lab directory.
pub(crate) fn create_dir(dir: &Path) -> Result<(), LabError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        LabError::io(
            "creating directory",
            dir,
            &e,
            "check that the lab directory is writable (LAB_DIR)",
        )
    })
}

/// `code 1`, `signal 9`, … for status tables.
fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("code {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => status.to_string(),
    }
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

/// Now, in µs since the Unix epoch (the storage trace's clock, on the same machine).
pub(crate) fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch (wall clock): when a process was spawned, for uptime and
/// `state.json`.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;
