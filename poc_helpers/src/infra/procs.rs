//! Processes by pid: is it alive, what is its command line, send it a signal, stop it with a
//! deadline, and the pidfiles that let a later run find (and reap) what an earlier run left behind.
//!
//! Why pidfiles: a notebook kernel that crashes or restarts leaves its `surreal` children running,
//! still holding ports 8000/8001. The next lab start reads `run/node-*.pid`, checks that the pid
//! really is *our* `surreal start --bind 127.0.0.1:<port>` (pids get reused!), and only then stops
//! it. A pid that belongs to anything else is never signalled.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use sysinfo::{ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind};

use crate::vocab::error::LabError;

/// How often a stop/kill loop re-checks whether the process is gone. Short, because the lab waits
/// on this interactively; cheap, because it is one `kill(pid, 0)` plus a /proc read.
pub const POLL: Duration = Duration::from_millis(25);

/// What one look at a pid found (a snapshot: the process may change right after).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcInfo {
    /// The command line, `argv[0]` first.
    pub cmd: Vec<String>,
    /// Resident memory in bytes.
    pub rss_bytes: u64,
    /// An exited process whose parent has not collected it yet: dead for our purposes.
    pub zombie: bool,
    /// Stopped by SIGSTOP (a "paused" node, used by failure experiments).
    pub stopped: bool,
}

/// Looks a process up via `sysinfo` (works for processes this run did not start).
pub fn inspect(pid: u32) -> Option<ProcInfo> {
    let mut sys = System::new().ok()?;
    let spid = sysinfo::Pid::from_u32(pid);
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[spid]),
        true,
        ProcessRefreshKind::nothing()
            .with_memory()
            .with_cmd(UpdateKind::Always),
    );
    let p = sys.process(spid)?;
    Some(ProcInfo {
        cmd: p
            .cmd()
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect(),
        rss_bytes: p.memory(),
        zombie: p.status() == ProcessStatus::Zombie,
        stopped: p.status() == ProcessStatus::Stop,
    })
}

/// True if `pid` exists and is not a zombie. `kill(pid, 0)` sends nothing; it only asks the
/// kernel whether the pid exists (EPERM means it exists but belongs to another user).
pub fn is_alive(pid: u32) -> bool {
    let exists = match signal::kill(Pid::from_raw(pid as i32), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    };
    exists && !inspect(pid).map(|p| p.zombie).unwrap_or(false)
}

/// Sends `sig` to `pid`. A pid that is already gone is not an error (it is what we wanted).
///
/// SIGSTOP and SIGCONT take effect asynchronously: right after `kill` returns, the kernel may
/// still show the old state. For those two, this waits (at most 1 s) until the process shows the
/// new one, so a caller that reads the state back at once — the status table, `add_node`'s
/// "is storage paused?" check — sees what it just did. (A test once added a node to a storage
/// node paused a moment earlier and found it still "running".)
pub fn send(pid: u32, sig: Signal) -> Result<(), String> {
    match signal::kill(Pid::from_raw(pid as i32), sig) {
        Ok(()) => {}
        Err(nix::errno::Errno::ESRCH) => return Ok(()),
        Err(e) => return Err(format!("sending {sig} to pid {pid} failed: {e}")),
    }
    let want_stopped = match sig {
        Signal::SIGSTOP => true,
        Signal::SIGCONT => false,
        _ => return Ok(()),
    };
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        match inspect(pid) {
            Some(p) if !p.zombie && p.stopped != want_stopped => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => break,
        }
    }
    Ok(())
}

/// True if `cmd` is a `surreal start` bound to `127.0.0.1:<port>`: the only processes the lab will
/// ever signal on the strength of a pidfile.
pub fn is_lab_node_cmd(cmd: &[String], port: u16) -> bool {
    let Some(argv0) = cmd.first() else {
        return false;
    };
    let is_surreal = Path::new(argv0).file_name().is_some_and(|n| n == "surreal");
    let bind = format!("127.0.0.1:{port}");
    let binds_port = cmd
        .windows(2)
        .any(|w| (w[0] == "--bind" || w[0] == "-b") && w[1] == bind)
        || cmd.iter().any(|a| *a == format!("--bind={bind}"));
    is_surreal && cmd.iter().any(|a| a == "start") && binds_port
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The process was already gone.
    AlreadyGone,
    /// It exited after SIGTERM within the grace period.
    Graceful,
    /// It ignored SIGTERM for the whole grace period and was SIGKILLed.
    Killed,
}

/// Stops a process we did *not* spawn (so cannot `wait` for): SIGTERM, wait up to `grace`, then
/// SIGKILL and wait briefly for it to disappear.
///
/// A paused (SIGSTOPped) process cannot act on SIGTERM, so it also gets SIGCONT.
pub async fn terminate_pid(pid: u32, grace: Duration) -> Stopped {
    if !is_alive(pid) {
        return Stopped::AlreadyGone;
    }
    let _ = send(pid, Signal::SIGTERM);
    let _ = send(pid, Signal::SIGCONT);
    if wait_gone(pid, grace).await {
        return Stopped::Graceful;
    }
    let _ = send(pid, Signal::SIGKILL);
    wait_gone(pid, Duration::from_secs(5)).await;
    Stopped::Killed
}

/// Stops a child we spawned (so can `wait` for, which also reaps it): with `grace`, SIGTERM and
/// up to `grace` to exit, then SIGKILL; without, SIGKILL at once. Both the `surreal` nodes and
/// the storage node end this way.
///
/// A paused (SIGSTOPped) process cannot act on SIGTERM until it is continued, so it also gets
/// SIGCONT.
pub async fn end_child(child: &mut std::process::Child, grace: Option<Duration>) -> Stopped {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return Stopped::AlreadyGone;
    }
    if let Some(g) = grace {
        let pid = child.id();
        let _ = send(pid, Signal::SIGTERM);
        let _ = send(pid, Signal::SIGCONT);
        let deadline = Instant::now() + g;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return Stopped::Graceful;
            }
            tokio::time::sleep(POLL).await;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Stopped::Killed
}

/// Polls until `pid` is gone or `limit` passes; true if it is gone.
pub async fn wait_gone(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !is_alive(pid) {
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
    !is_alive(pid)
}

/// Writes `pid` to `path` (the file holds just the number, so `kill $(cat node-a.pid)` works).
pub fn write_pidfile(path: &Path, pid: u32) -> Result<(), LabError> {
    std::fs::write(path, format!("{pid}\n")).map_err(|e| {
        LabError::io(
            "writing pidfile",
            path,
            &e,
            "check that the lab directory is writable",
        )
    })
}

/// Removes a pidfile only if it still names `pid` — after a newer start of the same lab took
/// the file over, an old handle stopping its (already reaped) process must leave it alone.
pub fn remove_pidfile_if(path: &Path, pid: Option<u32>) {
    if pid.is_some() && read_pidfile(path) == pid {
        let _ = std::fs::remove_file(path);
    }
}

/// Reads a pidfile; `None` if it is missing or does not hold a number.
pub fn read_pidfile(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// What [`reap_pidfile`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaped {
    /// No pidfile: nothing to do.
    NoPidfile,
    /// The pid was dead; the stale file was removed.
    StaleRemoved {
        /// The pid the file named.
        pid: u32,
    },
    /// The pid is alive but is not our node (pid reuse): the file was removed, the process left alone.
    ForeignLeftAlone {
        /// The pid the file named.
        pid: u32,
        /// That process's command line, for the start report.
        cmd: String,
    },
    /// Our node from an earlier run was stopped.
    Stopped {
        /// The pid of the stopped process.
        pid: u32,
        /// How it ended: after SIGTERM, or SIGKILLed after the grace period.
        how: Stopped,
    },
}

/// Cleans up after an earlier run: see the module docs for the rules.
pub async fn reap_pidfile(pidfile: &Path, port: u16, grace: Duration) -> Reaped {
    reap_pidfile_if(pidfile, grace, |cmd| is_lab_node_cmd(cmd, port)).await
}

/// [`reap_pidfile`] with the "is this really ours?" test given by the caller (the storage node
/// has its own command line).
pub async fn reap_pidfile_if(
    pidfile: &Path,
    grace: Duration,
    ours: impl Fn(&[String]) -> bool,
) -> Reaped {
    let Some(pid) = read_pidfile(pidfile) else {
        let _ = std::fs::remove_file(pidfile);
        return Reaped::NoPidfile;
    };
    let outcome = match inspect(pid) {
        Some(info) if !info.zombie && is_alive(pid) => {
            if ours(&info.cmd) {
                Reaped::Stopped {
                    pid,
                    how: terminate_pid(pid, grace).await,
                }
            } else {
                Reaped::ForeignLeftAlone {
                    pid,
                    cmd: info.cmd.join(" "),
                }
            }
        }
        _ => Reaped::StaleRemoved { pid },
    };
    let _ = std::fs::remove_file(pidfile);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn recognises_only_our_node_command_lines() {
        let ours = v(&[
            "/x/release/surreal",
            "start",
            "--bind",
            "127.0.0.1:8001",
            "memory",
        ]);
        assert!(is_lab_node_cmd(&ours, 8001));
        assert!(!is_lab_node_cmd(&ours, 8000), "other port");
        assert!(is_lab_node_cmd(
            &v(&["surreal", "start", "--bind=127.0.0.1:8000"]),
            8000
        ));
        assert!(!is_lab_node_cmd(&v(&["sleep", "100"]), 8000));
        assert!(!is_lab_node_cmd(
            &v(&["surreal", "sql", "--bind", "127.0.0.1:8000"]),
            8000
        ));
        assert!(!is_lab_node_cmd(
            &v(&["surreal", "start", "--bind", "0.0.0.0:8000"]),
            8000
        ));
    }

    #[test]
    fn liveness_of_self_and_of_a_reaped_child() {
        assert!(is_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!is_alive(pid));
    }

    #[test]
    fn a_pause_or_resume_is_visible_as_soon_as_send_returns() {
        // A busy process: a stop reaches a running process later than a sleeping one.
        struct Busy(std::process::Child);
        impl Drop for Busy {
            // Killed even when an assert fails: a stopped orphan would hold the test's output.
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let busy = Busy(
            std::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .unwrap(),
        );
        let pid = busy.0.id();
        for _ in 0..200 {
            send(pid, Signal::SIGSTOP).unwrap();
            assert!(
                inspect(pid).unwrap().stopped,
                "paused, so the kernel must say stopped"
            );
            send(pid, Signal::SIGCONT).unwrap();
            assert!(
                !inspect(pid).unwrap().stopped,
                "resumed, so no longer stopped"
            );
        }
    }

    #[tokio::test]
    async fn reaping_leaves_foreign_processes_alone_and_removes_stale_files() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("node-a.pid");

        // A dead pid: the file goes away.
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        dead.wait().unwrap();
        write_pidfile(&pidfile, dead_pid).unwrap();
        assert_eq!(
            reap_pidfile(&pidfile, 8000, POLL).await,
            Reaped::StaleRemoved { pid: dead_pid }
        );
        assert!(!pidfile.exists());

        // A live process that is not ours: the file goes away, the process stays.
        let mut sleeper = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        write_pidfile(&pidfile, sleeper.id()).unwrap();
        let got = reap_pidfile(&pidfile, 8000, POLL).await;
        assert!(
            matches!(got, Reaped::ForeignLeftAlone { pid, .. } if pid == sleeper.id()),
            "{got:?}"
        );
        assert!(!pidfile.exists());
        assert!(
            sleeper.try_wait().unwrap().is_none(),
            "the foreign process must still run"
        );
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
    }
}
