//! Ports: validating the lab's port plan, checking that ports are free, picking a free block, and
//! finding out who holds a busy port.
//!
//! Node *i* listens on `base + i` (node-a on 8000, node-b on 8001, … by default). Everything binds
//! to 127.0.0.1 only: the lab is a local playground and must never be reachable from a network.

use std::net::TcpListener;

use crate::vocab::config::LOOPBACK;
use crate::vocab::error::LabError;

/// Where `.ephemeral_ports()` searches for a free block.
///
/// The range starts at 20000 to stay clear of well-known service ports and ends below 32768,
/// where Linux begins handing out *outgoing* (client-side) ports: a listening port inside that
/// range can be taken at any moment by some unrelated outgoing connection.
pub const EPHEMERAL_RANGE: std::ops::Range<u16> = 20000..32000;

/// How many random blocks `.ephemeral_ports()` tries before giving up. A bind test takes
/// microseconds, so even 200 failed tries cost well under a second; on any normal machine the
/// first or second block is free.
const EPHEMERAL_ATTEMPTS: usize = 200;

/// True if we can bind `127.0.0.1:port` right now (the listener is dropped at once).
pub fn is_port_free(port: u16) -> bool {
    TcpListener::bind((LOOPBACK, port)).is_ok()
}

/// Checks every port of `base..base+count`; the first busy one is a [`LabError::PortInUse`]
/// naming its holder where the OS lets us see it.
pub fn ensure_ports_free(base: u16, count: usize) -> Result<(), LabError> {
    for i in 0..count {
        let port = base + i as u16;
        if !is_port_free(port) {
            return Err(LabError::PortInUse {
                port,
                holder: port_holder(port),
            });
        }
    }
    Ok(())
}

/// Waits up to `limit` for `base..base+count` to become free, then checks them like
/// [`ensure_ports_free`].
///
/// Needed right after stopping a process we did not spawn: its pid can already look dead (a
/// multi-threaded process shows as a zombie as soon as its main thread exits) while its other
/// threads are still closing its sockets.
pub async fn wait_ports_free(
    base: u16,
    count: usize,
    limit: std::time::Duration,
) -> Result<(), LabError> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if (0..count).all(|i| is_port_free(base + i as u16)) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ensure_ports_free(base, count)
}

/// Picks a random block of `count` consecutive free ports in [`EPHEMERAL_RANGE`].
///
/// Random probing (rather than asking the OS for port 0) is needed because the nodes need
/// *consecutive* ports, and it makes two test processes picking at the same moment unlikely to
/// collide. A collision is still possible; the builder retries with a new block if a node then
/// fails to bind.
pub fn pick_ephemeral_block(count: usize) -> Result<u16, LabError> {
    let span = (EPHEMERAL_RANGE.end - EPHEMERAL_RANGE.start) as usize;
    for _ in 0..EPHEMERAL_ATTEMPTS {
        let base = EPHEMERAL_RANGE.start + fastrand::usize(0..span - count) as u16;
        if (0..count).all(|i| is_port_free(base + i as u16)) {
            return Ok(base);
        }
    }
    Err(LabError::config(
        "ephemeral_ports",
        format!(
            "found no {count} consecutive free ports in {EPHEMERAL_RANGE:?} after {EPHEMERAL_ATTEMPTS} tries"
        ),
        "stop some local servers or choose a base port explicitly with `.base_port(P)`",
    ))
}

/// Describes the process listening on `port` as `pid 1234: <command line>`, if /proc lets us see it.
///
/// Linux only: the socket's inode comes from /proc/net/tcp{,6}, and the owning process is the one
/// with a `socket:[inode]` file descriptor. Other users' processes are not readable without root,
/// in which case the answer is `None` and the error simply omits the holder.
#[cfg(target_os = "linux")]
pub fn port_holder(port: u16) -> Option<String> {
    use procfs::net::TcpState;
    let mut inodes = Vec::new();
    for table in [procfs::net::tcp(), procfs::net::tcp6()]
        .into_iter()
        .flatten()
    {
        for entry in table {
            if entry.local_address.port() == port && entry.state == TcpState::Listen {
                inodes.push(entry.inode);
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for proc in procfs::process::all_processes().ok()?.flatten() {
        let Ok(fds) = proc.fd() else { continue };
        let holds = fds.flatten().any(|fd| {
            matches!(fd.target, procfs::process::FDTarget::Socket(inode) if inodes.contains(&inode))
        });
        if holds {
            let cmd = proc.cmdline().map(|c| c.join(" ")).unwrap_or_default();
            return Some(format!(
                "pid {}: {}{}",
                proc.pid(),
                cmd,
                lab_of(&proc).unwrap_or_default()
            ));
        }
    }
    None
}

/// If the process is a lab's node or storage node, which lab: its stdout is the lab's log file
/// `<lab root>/<name>/logs/<node>.log`, so the lab can be named and stopped by name.
#[cfg(target_os = "linux")]
fn lab_of(proc: &procfs::process::Process) -> Option<String> {
    let target = std::fs::read_link(format!("/proc/{}/fd/1", proc.pid())).ok()?;
    let logs = target.parent()?;
    if logs.file_name()? != "logs" || target.extension()? != "log" {
        return None;
    }
    let lab_dir = logs.parent()?;
    let name = lab_dir.file_name()?.to_string_lossy().into_owned();
    let root = lab_dir.parent()?.display().to_string();
    Some(format!(
        " — a process of the lab `{name}` in {}; stop that lab first (`lab down --name {name} --lab-dir {root}`, or `cleanup()` on its handle)",
        lab_dir.display()
    ))
}

/// On other systems we cannot cheaply find the holder; the error message just omits it.
#[cfg(not(target_os = "linux"))]
pub fn port_holder(_port: u16) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_port_is_detected_with_its_holder() {
        let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(!is_port_free(port));
        let err = ensure_ports_free(port, 1).unwrap_err();
        match &err {
            LabError::PortInUse { port: p, holder } => {
                assert_eq!(*p, port);
                #[cfg(target_os = "linux")]
                assert!(
                    holder
                        .as_deref()
                        .unwrap_or("")
                        .contains(&std::process::id().to_string()),
                    "holder should be this test process: {holder:?}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ephemeral_block_is_free_and_in_range() {
        let base = pick_ephemeral_block(3).unwrap();
        assert!(EPHEMERAL_RANGE.contains(&base) && EPHEMERAL_RANGE.contains(&(base + 2)));
    }
}
