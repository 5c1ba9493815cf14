//! `lab bench --links`: what a healthy fault proxy costs, measured against a direct connection
//! in the same invocation, so the ratio never depends on how busy the machine was that day.
//!
//! ```text
//! raw TCP echo      small request/response round trips (the size of a TiKV RPC), over one
//!                   connection straight to an echo server and one through a healthy proxy,
//!                   alternated round trip by round trip
//! SurrealDB         bench_storage's statements on two 1-node labs over the storage node, one
//!                   plain and one with `.fault_links(true)` (client→node and node→storage both
//!                   proxied, as in notebook 05), alternated statement by statement
//! ```
//!
//! The table prints p50 and p99 of each side, the proxy's extra time per round trip and the
//! proxied ÷ direct ratio; it judges nothing by itself (issue 23's goals are ≤ 0.1 ms extra p50
//! per round trip and ≤ 1.15× per statement, and a reader compares).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use poc_helpers::facade::Cluster;
use poc_helpers::infra::proxy::Proxy;
use poc_helpers::vocab::config::StorageMode;
use poc_helpers::vocab::error::LabError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::bench::median;

/// Echo message sizes, bytes: a tiny RPC (a `KvGet` of one key, a TSO request) and a larger one
/// (a prewrite of a few small records).
pub const ECHO_SIZES: [usize; 2] = [64, 4096];

/// One thing timed both ways.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRow {
    /// `echo 64 B` or the statement.
    pub what: String,
    /// Round trips per side.
    pub samples: usize,
    /// Direct p50 and p99, ms.
    pub direct: (f64, f64),
    /// Through healthy proxies, p50 and p99, ms.
    pub proxied: (f64, f64),
}

impl LinkRow {
    fn new(what: String, direct: &[f64], proxied: &[f64]) -> LinkRow {
        LinkRow {
            what,
            samples: direct.len(),
            direct: (percentile(direct, 0.50), percentile(direct, 0.99)),
            proxied: (percentile(proxied, 0.50), percentile(proxied, 0.99)),
        }
    }

    /// Proxied ÷ direct p50.
    pub fn p50_ratio(&self) -> f64 {
        self.proxied.0 / self.direct.0.max(1e-9)
    }
}

/// The `q` quantile (0–1) by nearest rank; NaN for no values.
fn percentile(values: &[f64], q: f64) -> f64 {
    if values.len() < 2 {
        return median(values);
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// An echo server on a free loopback port, Nagle off like every real RPC server.
async fn echo_server() -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let c = TcpStream::connect(addr).await?;
    c.set_nodelay(true)?;
    Ok(c)
}

/// One round trip of `msg`, ms.
async fn round_trip(c: &mut TcpStream, msg: &[u8], got: &mut [u8]) -> std::io::Result<f64> {
    let t = Instant::now();
    c.write_all(msg).await?;
    c.read_exact(got).await?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// `round_trips` echoes of each of [`ECHO_SIZES`], direct and through a healthy [`Proxy`]
/// (the lab's own, in this process), alternated so both sides see the same machine.
pub fn echo(round_trips: usize) -> std::io::Result<Vec<LinkRow>> {
    // Two workers, as the lab's runtime has on a 2-core machine: the proxy and the echo server
    // run there while this thread drives the clients.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let server = echo_server().await?;
        let proxy = Proxy::start(server).await?;
        let mut direct = connect(server).await?;
        let mut proxied = connect(proxy.listen_addr()).await?;
        let mut rows = Vec::new();
        for size in ECHO_SIZES {
            let msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let mut got = vec![0u8; size];
            // Warm both paths (connection set-up, first allocations) unmeasured.
            for _ in 0..50 {
                round_trip(&mut direct, &msg, &mut got).await?;
                round_trip(&mut proxied, &msg, &mut got).await?;
            }
            let (mut d, mut p) = (Vec::new(), Vec::new());
            for _ in 0..round_trips.max(1) {
                d.push(round_trip(&mut direct, &msg, &mut got).await?);
                p.push(round_trip(&mut proxied, &msg, &mut got).await?);
            }
            rows.push(LinkRow::new(format!("echo {size} B"), &d, &p));
        }
        Ok(rows)
    })
}

/// bench_storage's statements `samples` times each on a plain 1-node lab and on one with fault
/// links, alternated statement by statement.
pub fn statements(lab_root: &Path, samples: usize) -> Result<Vec<LinkRow>, LabError> {
    let start = |name: &str, links: bool| {
        Cluster::builder()
            .name(name)
            .lab_root(lab_root)
            .ephemeral_ports()
            .nodes(1)
            .storage(StorageMode::Shared)
            .fault_links(links)
            .echo(false)
            .start()
    };
    let direct = start("bench-links-direct", false)?;
    let proxied = match start("bench-links-proxied", true) {
        Ok(c) => c,
        Err(e) => {
            let _ = direct.cleanup();
            return Err(e);
        }
    };
    let measured = (|| -> Result<Vec<LinkRow>, LabError> {
        let mut rows = Vec::new();
        for lab in [&direct, &proxied] {
            lab.sql("a", "UPSERT probe:1 SET n = 0")?;
        }
        for statement in crate::bench_storage::STATEMENTS {
            // One unmeasured run each warms the connection and the statement's path.
            direct.sql("a", statement)?;
            proxied.sql("a", statement)?;
            let (mut d, mut p) = (Vec::new(), Vec::new());
            for _ in 0..samples.max(1) {
                d.push(direct.sql("a", statement)?.ms);
                p.push(proxied.sql("a", statement)?.ms);
            }
            rows.push(LinkRow::new(statement.to_string(), &d, &p));
        }
        Ok(rows)
    })();
    let cleaned = direct.cleanup().and(proxied.cleanup());
    let rows = measured?;
    cleaned?;
    Ok(rows)
}

/// The table `lab bench --links` prints.
pub fn table(rows: &[LinkRow]) -> String {
    let mut s = format!(
        "  {:<28} {:>7} {:>11} {:>11} {:>12} {:>12} {:>10} {:>10}\n",
        "round trip",
        "runs",
        "direct p50",
        "direct p99",
        "proxied p50",
        "proxied p99",
        "extra p50",
        "p50 ratio"
    );
    for r in rows {
        s.push_str(&format!(
            "  {:<28} {:>7} {:>8.3} ms {:>8.3} ms {:>9.3} ms {:>9.3} ms {:>7.3} ms {:>9.2}×\n",
            r.what,
            r.samples,
            r.direct.0,
            r.direct.1,
            r.proxied.0,
            r.proxied.1,
            r.proxied.0 - r.direct.0,
            r.p50_ratio()
        ));
    }
    s
}

/// `links.csv`: one row per thing timed.
pub fn csv(rows: &[LinkRow]) -> String {
    let mut s = String::from(
        "what,samples,direct_p50_ms,direct_p99_ms,proxied_p50_ms,proxied_p99_ms,p50_ratio\n",
    );
    for r in rows {
        s.push_str(&format!(
            "\"{}\",{},{:.4},{:.4},{:.4},{:.4},{:.3}\n",
            r.what,
            r.samples,
            r.direct.0,
            r.direct.1,
            r.proxied.0,
            r.proxied.1,
            r.p50_ratio()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_prints_both_sides_and_their_ratio() {
        let row = LinkRow::new(
            "echo 64 B".into(),
            &[0.010, 0.010, 0.020],
            &[0.015, 0.015, 0.030],
        );
        assert_eq!(row.direct, (0.010, 0.020));
        let text = table(&[row]);
        assert!(text.contains("echo 64 B"), "{text}");
        assert!(
            text.contains("0.005 ms") && text.contains("1.50×"),
            "{text}"
        );
        assert!(csv(&[]).starts_with("what,samples,"));
    }

    #[test]
    fn a_healthy_proxy_relays_every_echo() {
        let rows = echo(20).unwrap();
        assert_eq!(rows.len(), ECHO_SIZES.len());
        for r in &rows {
            assert_eq!(r.samples, 20);
            assert!(r.direct.0 > 0.0 && r.proxied.0 > 0.0, "{r:?}");
        }
    }
}
