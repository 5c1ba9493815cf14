//! The fault proxy's tests (kept beside `proxy.rs`, which they test through `super::*`):
//! each knob — cut, heal, latency with jitter, dropped connections — and the healthy link's
//! plain copy, against real loopback sockets.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn echo_once(mut s: TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

/// An echo server on a free port; returns its address.
async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(echo_once(s));
        }
    });
    addr
}

async fn roundtrip(c: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    c.write_all(msg).await?;
    let mut got = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut got))
        .await
        .map_err(|_| std::io::Error::other("timeout"))??;
    Ok(got)
}

#[tokio::test]
async fn a_healthy_link_relays_both_ways() {
    let p = Proxy::start(echo_server().await).await.unwrap();
    let mut c = TcpStream::connect(p.listen_addr()).await.unwrap();
    assert_eq!(roundtrip(&mut c, b"hello").await.unwrap(), b"hello");
    // A bigger message crosses several chunks and arrives intact and in order.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(roundtrip(&mut c, &big).await.unwrap(), big);
    let s = p.stats();
    assert_eq!(s.accepted, 1);
    assert_eq!(s.bytes_up, 5 + big.len() as u64);
    assert_eq!(s.bytes_down, s.bytes_up);
}

/// A server whose every answer leaves in two writes a moment apart (like a gRPC or
/// WebSocket header, then its body), so the proxy reads and forwards it in two pieces.
async fn two_part_answer_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut b = [0u8; 1];
                while s.read_exact(&mut b).await.is_ok() {
                    let head = s.write_all(&b).await;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    if head.is_err() || s.write_all(&b).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Not a speed test: a stall. If the proxy left Nagle on, the second piece of each answer
/// would wait for the client's delayed ACK of the first (~40 ms on Linux), on nearly every
/// round trip. A busy machine may stretch a few round trips; only a systematic stall fails.
#[tokio::test]
async fn a_healthy_link_does_not_stall_messages_sent_in_pieces() {
    let p = Proxy::start(two_part_answer_server().await).await.unwrap();
    let mut c = TcpStream::connect(p.listen_addr()).await.unwrap();
    c.set_nodelay(true).unwrap();
    let mut stalled = Vec::new();
    for _ in 0..200 {
        let t = std::time::Instant::now();
        assert_eq!(roundtrip(&mut c, b"x").await.unwrap(), b"x");
        let mut rest = [0u8; 1];
        c.read_exact(&mut rest).await.unwrap();
        if t.elapsed() >= Duration::from_millis(20) {
            stalled.push(t.elapsed());
        }
    }
    assert!(
        stalled.len() < 20,
        "{} of 200 round trips stalled ≥ 20 ms (longest {:?})",
        stalled.len(),
        stalled.iter().max()
    );
}

#[tokio::test]
async fn cut_resets_open_connections_and_refuses_new_ones_until_healed() {
    let p = Proxy::start(echo_server().await).await.unwrap();
    let mut open = TcpStream::connect(p.listen_addr()).await.unwrap();
    roundtrip(&mut open, b"before").await.unwrap();
    p.cut();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        roundtrip(&mut open, b"during").await.is_err(),
        "an open connection is reset by the cut"
    );
    let mut fresh = TcpStream::connect(p.listen_addr()).await.unwrap();
    assert!(
        roundtrip(&mut fresh, b"x").await.is_err(),
        "a new connection is reset on accept"
    );
    assert!(p.stats().refused >= 1 && p.stats().reset == 1);
    p.heal();
    let mut after = TcpStream::connect(p.listen_addr()).await.unwrap();
    assert_eq!(roundtrip(&mut after, b"after").await.unwrap(), b"after");
}

#[tokio::test]
async fn latency_delays_each_round_trip_without_reordering() {
    let p = Proxy::start(echo_server().await).await.unwrap();
    p.apply(LinkSettings {
        latency: Duration::from_millis(40),
        jitter: Duration::from_millis(20),
        ..Default::default()
    });
    let mut c = TcpStream::connect(p.listen_addr()).await.unwrap();
    let t = std::time::Instant::now();
    let msg: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    assert_eq!(roundtrip(&mut c, &msg).await.unwrap(), msg, "order kept");
    // At least one delay up and one down, each ≥ latency − jitter.
    assert!(
        t.elapsed() >= Duration::from_millis(40),
        "{:?}",
        t.elapsed()
    );
    p.heal();
    assert!(p.settings().is_healthy());
}

#[tokio::test]
async fn healing_while_bytes_are_held_back_keeps_them_in_order() {
    let p = Proxy::start(echo_server().await).await.unwrap();
    p.apply(LinkSettings {
        latency: Duration::from_millis(30),
        ..Default::default()
    });
    let mut c = TcpStream::connect(p.listen_addr()).await.unwrap();
    c.write_all(b"held-").await.unwrap();
    // Let the proxy read (and hold) the first part, then heal: the second part takes the
    // no-delay path, and must still queue behind the first.
    tokio::time::sleep(Duration::from_millis(5)).await;
    p.heal();
    assert_eq!(
        roundtrip(&mut c, b"then-healthy").await.unwrap(),
        b"held-then-he",
        "the first part comes back first"
    );
    let mut rest = [0u8; 5];
    c.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest, b"althy");
}

#[tokio::test]
async fn a_drop_fraction_resets_about_that_share_of_new_connections() {
    let p = Proxy::start(echo_server().await).await.unwrap();
    p.apply(LinkSettings {
        drop_fraction: 1.0,
        ..Default::default()
    });
    let mut c = TcpStream::connect(p.listen_addr()).await.unwrap();
    assert!(roundtrip(&mut c, b"x").await.is_err());
    p.apply(LinkSettings {
        drop_fraction: 0.5,
        ..Default::default()
    });
    let mut ok = 0;
    for _ in 0..40 {
        let mut c = TcpStream::connect(p.listen_addr()).await.unwrap();
        if roundtrip(&mut c, b"y").await.is_ok() {
            ok += 1;
        }
    }
    assert!((5..=35).contains(&ok), "about half got through: {ok}/40");
    assert_eq!(p.stats().dropped + p.stats().accepted, 41);
}

#[tokio::test]
async fn a_dead_server_is_seen_as_a_reset_and_counted() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let p = Proxy::start(dead).await.unwrap();
    let mut c = TcpStream::connect(p.listen_addr()).await.unwrap();
    assert!(roundtrip(&mut c, b"x").await.is_err());
    assert_eq!(p.stats().upstream_failed, 1);
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let p = Proxy::start(echo_server().await).await.unwrap();
    let addr = p.listen_addr();
    let mut c = TcpStream::connect(addr).await.unwrap();
    roundtrip(&mut c, b"x").await.unwrap();
    drop(p);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(roundtrip(&mut c, b"y").await.is_err());
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port is closed"
    );
}
