//! Processes by pid: is it alive, what is its command line, send it a signal, and the pidfiles
//! that let a later run find (and reap) what an earlier run left behind. The life of a process
//! the lab runs — spawn, adopt, stop, kill, reap — is built on these in [`crate::infra::process`].
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
}
