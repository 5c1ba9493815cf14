//! The process type's tests (kept beside `process.rs`, which they test through `super::*`):
//! real, harmless processes (`sleep`, `sh`) spawned, adopted, paused, stopped, killed and
//! reaped, and checked to leave no zombie or orphan behind.

use super::*;

/// A harmless command line this test alone runs, so `ours` can recognise it.
fn sleeper(marker: &str) -> Command {
    let mut cmd = Command::new("sleep");
    cmd.arg(marker);
    cmd
}

fn spawned(dir: &Path, name: &str, cmd: Command) -> LabProcess {
    let mut p = LabProcess::new(name, dir);
    p.spawn(cmd, &[("SHOWN".into(), "1".into())], |e| {
        panic!("spawn failed: {e}")
    })
    .unwrap();
    p
}

/// True when nothing is left of `pid`: no process and no zombie (a zombie still has a
/// /proc entry, so `inspect` would find it).
fn nothing_left(pid: u32) -> bool {
    procs::inspect(pid).is_none()
}

/// Ends a test's process even when an assert failed, so no orphan outlives the test —
/// but only while the pid still runs the test's command line (`marker`), never a reused pid.
struct Cleanup(u32, &'static str);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let ours = procs::inspect(self.0).is_some_and(|p| p.cmd.iter().any(|a| a == self.1));
        if ours {
            let _ = procs::send(self.0, Signal::SIGKILL);
        }
    }
}

#[tokio::test]
async fn spawn_writes_the_log_header_and_the_pidfile_and_stop_reaps() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = spawned(dir.path(), "node-t", sleeper("61.25"));
    let pid = p.pid().unwrap();
    let _cleanup = Cleanup(pid, "61.25");
    assert_eq!(p.state(), &NodeState::Running);
    assert!(p.started_unix_ms().is_some());
    assert_eq!(procs::read_pidfile(p.pidfile()), Some(pid));
    assert_eq!(p.pidfile(), dir.path().join("run/node-t.pid"));
    let log = std::fs::read_to_string(p.log()).unwrap();
    assert!(
        log.starts_with("=== lab: node-t starting at unix ")
            && log.contains(" ms: SHOWN=1 sleep 61.25"),
        "{log}"
    );
    assert!(p.rss_mb().is_some_and(|mb| mb > 0.0));

    assert_eq!(p.stop(Duration::from_secs(5)).await, Stopped::Graceful);
    assert_eq!(p.state(), &NodeState::Stopped);
    assert_eq!(p.pid(), None);
    assert!(!p.pidfile().exists(), "the pidfile goes with the process");
    assert!(nothing_left(pid), "stopped and reaped: not even a zombie");
    assert_eq!(p.stop(Duration::from_secs(1)).await, Stopped::AlreadyGone);

    // A second start appends to the same log, after a header of its own.
    let mut again = LabProcess::new("node-t", dir.path());
    again
        .spawn(sleeper("61.26"), &[], |e| panic!("{e}"))
        .unwrap();
    let _cleanup2 = Cleanup(again.pid().unwrap(), "61.26");
    let log = std::fs::read_to_string(again.log()).unwrap();
    assert_eq!(log.matches(&again.start_marker()).count(), 2, "{log}");
    assert_eq!(again.kill().await, Stopped::Killed);
    assert_eq!(again.state(), &NodeState::Killed);
}

#[tokio::test]
async fn a_later_handle_adopts_from_the_pidfile_pauses_resumes_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = spawned(dir.path(), "store-9", sleeper("61.5"));
    let pid = first.pid().unwrap();
    let _cleanup = Cleanup(pid, "61.5");

    // A command line that is not ours is never adopted; its file goes, the process stays.
    let mut wrong = LabProcess::new("store-9", dir.path());
    let found = wrong.adopt_from_pidfile(|cmd| cmd.iter().any(|a| a == "99"));
    assert!(
        matches!(found, Found::Foreign { pid: p, .. } if p == pid),
        "{found:?}"
    );
    assert!(!wrong.pidfile().exists());
    assert_eq!(wrong.pid(), None);
    assert!(first.is_up(), "a foreign-looking process is left alone");
    procs::write_pidfile(first.pidfile(), pid).unwrap();

    let mut later = LabProcess::new("store-9", dir.path());
    assert_eq!(
        later.adopt_from_pidfile(|cmd| cmd.iter().any(|a| a == "61.5")),
        Found::Adopted { pid }
    );
    assert_eq!(later.pid(), Some(pid));
    assert_eq!(later.state(), &NodeState::Running);

    later.signal(Signal::SIGSTOP).unwrap();
    assert_eq!(later.state(), &NodeState::Paused, "paused at once");
    assert_eq!(first.refresh(), &NodeState::Paused, "the owner sees it too");
    later.signal(Signal::SIGCONT).unwrap();
    assert_eq!(later.state(), &NodeState::Running);
    assert_eq!(first.refresh(), &NodeState::Running);

    // Paused again: a stop must still end it with SIGTERM (SIGCONT lets it act on it).
    later.signal(Signal::SIGSTOP).unwrap();
    assert_eq!(later.stop(Duration::from_secs(5)).await, Stopped::Graceful);
    assert_eq!(later.state(), &NodeState::Stopped);
    assert!(!later.pidfile().exists());
    assert_eq!(
        later.signal(Signal::SIGCONT),
        Err(SignalError::NoProcess),
        "nothing left to signal"
    );

    // The spawner notices the exit and reaps its child: no zombie remains.
    assert_eq!(first.refresh(), &NodeState::Exited("signal 15".into()));
    assert_eq!(first.pid(), None);
    assert!(nothing_left(pid));
}

#[tokio::test]
async fn stop_escalates_to_sigkill_when_sigterm_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    // `exec` keeps it one process; an ignored signal stays ignored across exec.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "trap '' TERM; exec sleep 62"]);
    let mut p = spawned(dir.path(), "pd", cmd);
    let pid = p.pid().unwrap();
    let _cleanup = Cleanup(pid, "62");
    // Only once `sleep` runs is the trap certainly in place.
    let deadline = Instant::now() + Duration::from_secs(5);
    let execed =
        || procs::inspect(pid).is_some_and(|i| i.cmd.first().is_some_and(|a| a == "sleep"));
    while !execed() {
        assert!(Instant::now() < deadline, "sh never exec'd sleep");
        std::thread::sleep(Duration::from_millis(5));
    }

    let grace = Duration::from_millis(300);
    let begun = Instant::now();
    assert_eq!(p.stop(grace).await, Stopped::Killed);
    assert!(
        begun.elapsed() >= grace,
        "SIGKILL only after the grace period"
    );
    assert_eq!(p.state(), &NodeState::Stopped);
    assert!(!p.pidfile().exists());
    assert!(nothing_left(pid), "killed and reaped");
}

#[tokio::test]
async fn an_exit_is_noticed_and_a_forgotten_process_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exit 3"]);
    let mut p = spawned(dir.path(), "storage", cmd);
    let pid = p.pid().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.is_up() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(procs::POLL).await;
    }
    assert_eq!(p.state(), &NodeState::Exited("code 3".into()));
    assert!(!p.pidfile().exists());
    assert!(nothing_left(pid));

    // Forget (detach): the process runs on; a later handle adopts it by pid and kills it.
    let mut p = spawned(dir.path(), "node-f", sleeper("61.75"));
    let pid = p.pid().unwrap();
    let _cleanup = Cleanup(pid, "61.75");
    p.forget();
    assert_eq!(p.pid(), None);
    assert!(procs::is_alive(pid), "forget must not stop it");
    let mut later = LabProcess::new("node-f", dir.path());
    assert!(!later.adopt_if(pid, Some(7), |cmd| cmd.iter().any(|a| a == "nope")));
    assert!(later.adopt_if(pid, Some(7), |cmd| cmd.iter().any(|a| a == "61.75")));
    assert_eq!(later.started_unix_ms(), Some(7));
    assert_eq!(later.kill().await, Stopped::Killed);
    assert_eq!(later.state(), &NodeState::Killed);
    assert!(!procs::is_alive(pid));
    // The dropped `Child` cannot reap it: this test, its parent, does.
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None).unwrap();
    assert!(nothing_left(pid));
}

#[tokio::test]
async fn reaping_stops_ours_leaves_foreign_processes_alone_and_removes_stale_files() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("node-a.pid");
    let ours = |cmd: &[String]| cmd.iter().any(|a| a == "63");

    assert_eq!(
        reap_pidfile(&pidfile, procs::POLL, ours).await,
        Reaped::NoPidfile
    );

    // A dead pid: the file goes away.
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    procs::write_pidfile(&pidfile, dead_pid).unwrap();
    assert_eq!(
        reap_pidfile(&pidfile, procs::POLL, ours).await,
        Reaped::StaleRemoved { pid: dead_pid }
    );
    assert!(!pidfile.exists());

    // A live process that is not ours: the file goes away, the process stays.
    let mut foreign = Command::new("sleep").arg("100").spawn().unwrap();
    let _cleanup = Cleanup(foreign.id(), "100");
    procs::write_pidfile(&pidfile, foreign.id()).unwrap();
    let got = reap_pidfile(&pidfile, procs::POLL, ours).await;
    assert!(
        matches!(got, Reaped::ForeignLeftAlone { pid, .. } if pid == foreign.id()),
        "{got:?}"
    );
    assert!(!pidfile.exists());
    assert!(
        foreign.try_wait().unwrap().is_none(),
        "the foreign process must still run"
    );
    foreign.kill().unwrap();
    foreign.wait().unwrap();

    // Ours, left by an "earlier run": stopped.
    let mut left = Command::new("sleep").arg("63").spawn().unwrap();
    let _cleanup = Cleanup(left.id(), "63");
    procs::write_pidfile(&pidfile, left.id()).unwrap();
    let got = reap_pidfile(&pidfile, Duration::from_secs(5), ours).await;
    assert_eq!(
        got,
        Reaped::Stopped {
            pid: left.id(),
            how: Stopped::Graceful
        }
    );
    assert!(!pidfile.exists());
    assert!(left.try_wait().unwrap().is_some(), "it ended");
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
