//! A fault proxy: a small TCP relay the lab puts on a network link so it can break that link on
//! purpose — cut it, slow it down, or drop some of its new connections.
//!
//! # Why a proxy (and why this one)
//!
//! On one machine every "network" is loopback, which never fails. To see what a partition does
//! to a distributed database we have to *make* the network fail, and the least invasive way is
//! to stand in the middle: the client dials the proxy, the proxy dials the real server and copies
//! bytes both ways. Whatever the proxy does to those bytes is what the link does.
//!
//! The lab puts one proxy on each link it can break:
//!
//! ```text
//!   lab SDK sessions ──► [proxy client→node-a] ──► node-a ──► [proxy node-a→storage] ──► storage node
//!                        [proxy client→node-b] ──► node-b ──► [proxy node-b→storage] ──┘
//! ```
//!
//! A `surreal` node is given `tikv://127.0.0.1:<its proxy port>`. The embedded storage node
//! advertises to each client the address that client dialed (the gRPC `:authority`), so a
//! node's PD *and* TiKV traffic both go through its own proxy. (A real TiKV advertises its own
//! store address, so with `ExternalTikv` only PD traffic would be proxied.)
//!
//! Toxiproxy is the well-known tool for this, but it is a Go server with an HTTP control API —
//! one more process to install and supervise. Its Rust port (`noxious`) is a server too and has
//! not been maintained for years. What the lab needs is four knobs on a byte pump, so the proxy
//! is ~300 lines of tokio here, running inside the lab's own runtime (it lives in the notebook
//! process: no extra binary, nothing to clean up but tasks), with its own tests below.
//!
//! # The knobs ([`LinkSettings`])
//!
//! * **cut** — every open connection is reset at once and new ones are reset as soon as they
//!   are accepted, which a client sees as "connection reset/refused". The listener stays bound,
//!   so the port can never be taken by someone else while the link is down. **heal** undoes it.
//! * **latency ± jitter** — every chunk of bytes, in each direction, is held back by `latency`
//!   plus a random `[-jitter, +jitter]`, without ever reordering bytes (a chunk never leaves
//!   before the one in front of it).
//! * **drop a fraction** — that fraction of *new* connections is reset on accept; connections
//!   that got through are left alone (like a flaky load balancer).
//!
//! Settings apply immediately, to open connections too (except `drop`, which is about new ones).
//!
//! A healthy link costs next to nothing: with no delay the relay is a plain copy (no timer, no
//! queue) with Nagle off on both sockets. `lab bench --links` measures it against a direct
//! connection.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// How long the proxy waits for the real server to accept before giving up on a connection.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Bytes read per chunk. Small enough that latency is applied to each request/response of a
/// chatty protocol separately, large enough for bulk transfers.
const CHUNK: usize = 16 * 1024;

/// What a link currently does to its traffic. `LinkSettings::default()` is a healthy link.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LinkSettings {
    /// Reset every connection, open or new.
    pub cut: bool,
    /// Added one-way delay per chunk, each direction.
    pub latency: Duration,
    /// The delay varies uniformly within `latency ± jitter` (never below zero).
    pub jitter: Duration,
    /// Fraction (0.0–1.0) of new connections reset on accept.
    pub drop_fraction: f64,
}

impl LinkSettings {
    /// True when the link does nothing to its traffic.
    pub fn is_healthy(&self) -> bool {
        *self == LinkSettings::default()
    }

    /// One delay sample: `latency ± jitter`, clamped at zero.
    fn delay(&self) -> Duration {
        if self.jitter.is_zero() {
            return self.latency;
        }
        let j = self.jitter.as_secs_f64();
        let d = self.latency.as_secs_f64() + (fastrand::f64() * 2.0 - 1.0) * j;
        Duration::from_secs_f64(d.max(0.0))
    }
}

/// Counters of one proxy since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProxyStats {
    /// Connections relayed to the server.
    pub accepted: u64,
    /// Connections reset because the link was cut.
    pub refused: u64,
    /// Connections reset by the drop fraction.
    pub dropped: u64,
    /// Connections the server did not accept (it was down).
    pub upstream_failed: u64,
    /// Open connections reset by a cut.
    pub reset: u64,
    /// Bytes client → server.
    pub bytes_up: u64,
    /// Bytes server → client.
    pub bytes_down: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    dropped: AtomicU64,
    upstream_failed: AtomicU64,
    reset: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ProxyStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProxyStats {
            accepted: g(&self.accepted),
            refused: g(&self.refused),
            dropped: g(&self.dropped),
            upstream_failed: g(&self.upstream_failed),
            reset: g(&self.reset),
            bytes_up: g(&self.bytes_up),
            bytes_down: g(&self.bytes_down),
        }
    }
}

/// A running proxy: listens on `listen`, relays to `upstream`. Dropping it stops it and closes
/// every connection it relays.
pub struct Proxy {
    listen: SocketAddr,
    upstream: SocketAddr,
    settings: watch::Sender<LinkSettings>,
    /// Bumped by every cut; open connections watch it and reset themselves.
    cuts: watch::Sender<u64>,
    counters: Arc<Counters>,
    /// Dropping this sender ends the accept loop and, through it, every connection.
    _shutdown: watch::Sender<()>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("listen", &self.listen)
            .field("upstream", &self.upstream)
            .field("settings", &*self.settings.borrow())
            .finish()
    }
}

impl Proxy {
    /// Binds `127.0.0.1:0` (the OS picks a free port, outside the lab's node port range) and
    /// starts relaying to `upstream`. Must be called inside a tokio runtime; the proxy's tasks
    /// live on that runtime.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind((crate::vocab::config::LOOPBACK, 0)).await?;
        let listen = listener.local_addr()?;
        let (settings, settings_rx) = watch::channel(LinkSettings::default());
        let (cuts, cuts_rx) = watch::channel(0u64);
        let (shutdown, shutdown_rx) = watch::channel(());
        let counters = Arc::new(Counters::default());
        tokio::spawn(accept_loop(
            listener,
            upstream,
            settings_rx,
            cuts_rx,
            shutdown_rx,
            counters.clone(),
        ));
        Ok(Proxy {
            listen,
            upstream,
            settings,
            cuts,
            counters,
            _shutdown: shutdown,
        })
    }

    /// The address clients should dial.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The real server's address.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The current settings.
    pub fn settings(&self) -> LinkSettings {
        *self.settings.borrow()
    }

    /// Counters since start.
    pub fn stats(&self) -> ProxyStats {
        self.counters.snapshot()
    }

    /// Replaces the settings. Cutting resets every open connection right away.
    pub fn apply(&self, new: LinkSettings) {
        let was_cut = self.settings.borrow().cut;
        self.settings.send_replace(new);
        if new.cut && !was_cut {
            self.cuts.send_modify(|n| *n += 1);
        }
    }

    /// Cut: reset open connections and refuse new ones.
    pub fn cut(&self) {
        let mut s = self.settings();
        s.cut = true;
        self.apply(s);
    }

    /// Heal: back to a healthy link (no cut, no latency, no drops).
    pub fn heal(&self) {
        self.apply(LinkSettings::default());
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    settings: watch::Receiver<LinkSettings>,
    cuts: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<()>,
    counters: Arc<Counters>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            // The `Proxy` was dropped: stop accepting; connections see the same signal.
            _ = shutdown.changed() => return,
        };
        let Ok((client, _)) = accepted else {
            // Out of file descriptors or similar: back off a little instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let now = *settings.borrow();
        if now.cut {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            reset(client);
            continue;
        }
        if now.drop_fraction > 0.0 && fastrand::f64() < now.drop_fraction {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            reset(client);
            continue;
        }
        tokio::spawn(relay(
            client,
            upstream,
            settings.clone(),
            cuts.clone(),
            shutdown.clone(),
            counters.clone(),
        ));
    }
}

/// Closes a socket with a TCP reset (SO_LINGER 0) rather than a polite FIN, so the client
/// learns at once that the connection is gone — what a refused or broken link looks like.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// One relayed connection: dial the server, then pump both directions until both end, the
/// link is cut, or the proxy stops.
async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    settings: watch::Receiver<LinkSettings>,
    mut cuts: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<()>,
    counters: Arc<Counters>,
) {
    cuts.mark_unchanged();
    let server =
        match tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
            Ok(Ok(s)) => s,
            _ => {
                counters.upstream_failed.fetch_add(1, Ordering::Relaxed);
                reset(client);
                return;
            }
        };
    counters.accepted.fetch_add(1, Ordering::Relaxed);
    // No Nagle on either side: the relay writes each chunk as it reads it, so one message can
    // leave in two writes; with Nagle the second waits for the peer's ACK of the first, which
    // the peer delays (~40 ms on Linux) while it waits for the rest of the message.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // Keep handles to reset the sockets on a cut: the pumps own the halves.
    let client = Arc::new(client);
    let server = Arc::new(server);
    let up = pump(
        client.clone(),
        server.clone(),
        settings.clone(),
        counters.clone(),
        true,
    );
    let down = pump(
        server.clone(),
        client.clone(),
        settings,
        counters.clone(),
        false,
    );
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = cuts.changed() => {
            counters.reset.fetch_add(1, Ordering::Relaxed);
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
        }
        _ = shutdown.changed() => {}
    }
    // Dropping the last Arc closes both sockets (with RST after a cut).
}

/// Copies `from` → `to`, holding each chunk back by the link's current delay.
///
/// While nothing is held back and the link has no delay, this is a plain copy: read a chunk,
/// write it, on this task, with no timer and no queue. A timer there would cost a round trip
/// ~1 ms per direction even at zero delay (tokio's timer wheel rounds every deadline up to the
/// next millisecond tick), which is what made the healthy proxy slow. Once a delay applies,
/// chunks wait in `held` until due and reading goes on meanwhile, so a delay slows each
/// message down without limiting throughput; a chunk never overtakes one in front of it.
async fn pump(
    from: Arc<TcpStream>,
    to: Arc<TcpStream>,
    settings: watch::Receiver<LinkSettings>,
    counters: Arc<Counters>,
    upward: bool,
) {
    let counter = if upward {
        &counters.bytes_up
    } else {
        &counters.bytes_down
    };
    let mut held: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut buf = vec![0u8; CHUNK];
    let mut eof = false;
    loop {
        let Some(&(due, _)) = held.front() else {
            if eof {
                // Every byte is through: pass the half-close on.
                let _ = shutdown_write(&to).await;
                return;
            }
            let n = match read_some(&from, &mut buf).await {
                Ok(0) | Err(_) => {
                    eof = true;
                    continue;
                }
                Ok(n) => n,
            };
            let delay = settings.borrow().delay();
            if delay.is_zero() {
                // The fast path: nothing in front of this chunk and nothing to wait for.
                if write_all(&to, &buf[..n]).await.is_err() {
                    return;
                }
                counter.fetch_add(n as u64, Ordering::Relaxed);
            } else {
                held.push_back((Instant::now() + delay, buf[..n].to_vec()));
            }
            continue;
        };
        if due > Instant::now() {
            tokio::select! {
                read = read_some(&from, &mut buf), if !eof => {
                    match read {
                        Ok(0) | Err(_) => eof = true,
                        Ok(n) => {
                            let delay = settings.borrow().delay();
                            // Jitter must not reorder: never due before the chunk in front.
                            let last = held.back().map_or(due, |&(d, _)| d);
                            let at = (Instant::now() + delay).max(last);
                            held.push_back((at, buf[..n].to_vec()));
                        }
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(due) => {}
            }
        }
        let (_, chunk) = held.pop_front().expect("front exists");
        if write_all(&to, &chunk).await.is_err() {
            return;
        }
        counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
}

/// Reads into `buf` through a shared reference (tokio's `&TcpStream` readiness API), so both
/// pumps and the cut handler can hold the same socket.
async fn read_some(s: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        s.readable().await?;
        match s.try_read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

async fn write_all(s: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        s.writable().await?;
        match s.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Half-closes the write side (the peer reads EOF). `SockRef` borrows the socket, so no `&mut`
/// is needed while the other pump still reads from it.
async fn shutdown_write(s: &TcpStream) -> std::io::Result<()> {
    socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write)
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
