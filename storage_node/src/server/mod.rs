//! The gRPC front: PD and TiKV services on one port, plus the small layer that lets us
//! advertise the address each client dialed. A port that serves PD also answers PD's HTTP
//! pages ([`pd_http`]): HTTP/1.1 and gRPC's HTTP/2 share the port, as on real PD.

pub mod kv;
pub mod pd;
pub mod pd_http;
pub mod store_http;

use std::task::{Context, Poll};

use tonic::transport::Server;

use crate::proto::pdpb::pd_server::PdServer;
use crate::proto::tikvpb::tikv_server::TikvServer;

/// SurrealDB's TiKV client sends requests of up to 4 MiB by default and more when raised;
/// accept up to 64 MiB rather than fail large transactions with a transport error.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The `host:port` the client put in the request's `:authority`, i.e. the address it dialed.
///
/// PD tells clients where the leader and the stores are. A fixed address would send every
/// client straight to us, bypassing a fault proxy put in front of one SurrealDB node — so we
/// answer with whatever address that client used to reach us. Through a proxy, the client
/// keeps talking through the proxy; directly, directly.
#[derive(Clone, Debug)]
pub struct DialedAuthority(pub String);

/// A tower middleware copying the request URI's authority into [`DialedAuthority`].
#[derive(Clone)]
pub struct RecordAuthority<S>(S);

impl<S, B> tower::Service<http::Request<B>> for RecordAuthority<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        if let Some(authority) = req.uri().authority() {
            let authority = DialedAuthority(authority.to_string());
            req.extensions_mut().insert(authority);
        }
        self.0.call(req)
    }
}

/// Serves PD, TiKV or both on `listener` until `shutdown` resolves: the one-process node
/// serves both, a PD process only PD, a store process only TiKV (its `Raft` stream included).
///
/// Connections end when they end, or when `sever` turns true: then every connection still
/// open (a peer's `Raft` stream, a client's idle HTTP/2 connection) is closed at once.
pub async fn serve(
    pd: Option<pd::PdService>,
    kv: Option<kv::KvService>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
    sever: tokio::sync::watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let http = pd
        .as_ref()
        .map(|pd| pd_http::router(pd.cluster(), pd.splitter()));
    let store_http = kv.as_ref().map(|kv| store_http::router(kv.storage()));
    let pd = pd.map(|pd| {
        PdServer::new(pd)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    });
    let kv = kv.map(|kv| {
        TikvServer::new(kv)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    });
    let mut routes = tonic::service::RoutesBuilder::default();
    if let Some(pd) = pd {
        routes.add_service(pd);
    }
    if let Some(kv) = kv {
        routes.add_service(kv);
    }
    let mut router = routes.routes().into_axum_router();
    if let Some(http) = http {
        router = router.merge(http);
    }
    if let Some(http) = store_http {
        router = router.merge(http);
    }
    let incoming = {
        use futures::StreamExt;
        tonic::transport::server::TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .map(move |io| io.map(|io| Severable::new(io, sever.clone())))
    };
    Server::builder()
        // HTTP/1.1 for PD's HTTP pages; gRPC clients still speak HTTP/2 (detected per connection).
        .accept_http1(true)
        .layer(tower::layer::layer_fn(RecordAuthority))
        .add_routes(tonic::service::Routes::from(router))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// How long a stopping server waits for in-flight requests (unary RPCs answer in milliseconds;
/// only endless streams are still open after this).
pub const GRACEFUL_STOP: std::time::Duration = std::time::Duration::from_secs(1);

/// A server running in the background: stop it, or wait for it to fail.
pub struct Serving {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    sever: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Serving {
    /// Starts serving `pd` and/or `kv` on `listener`.
    pub fn spawn(
        pd: Option<pd::PdService>,
        kv: Option<kv::KvService>,
        listener: tokio::net::TcpListener,
    ) -> Serving {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (sever, severed) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(serve(
            pd,
            kv,
            listener,
            async {
                let _ = rx.await;
            },
            severed,
        ));
        Serving {
            shutdown: Some(tx),
            sever,
            task,
        }
    }

    /// Stops serving and waits for in-flight RPCs to finish — for at most
    /// [`GRACEFUL_STOP`]: a store's `Raft` streams from its peers and PD's heartbeat streams
    /// from the stores never end by themselves, and waiting for them made every store of a
    /// stopping lab sit out its whole SIGTERM grace period (22 s for three stores).
    ///
    /// Then every connection still open is closed, so nothing of the server outlives `stop`:
    /// hyper serves each connection in a task of its own, which would otherwise go on
    /// answering over a connection accepted before (and keep the store's storage, its data
    /// folder and its Raft groups alive) — a store stopped inside a test process would not be
    /// down.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let stopped = tokio::time::timeout(GRACEFUL_STOP, &mut self.task)
            .await
            .is_ok();
        let _ = self.sever.send(true);
        if !stopped
            && tokio::time::timeout(GRACEFUL_STOP, &mut self.task)
                .await
                .is_err()
        {
            self.task.abort();
        }
    }

    /// Waits until the server stops on its own (an error).
    pub async fn wait(&mut self) -> Result<(), String> {
        match (&mut self.task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A connection that fails its reads and writes once the server is stopping for good (see
/// [`Serving::stop`]), so hyper closes it and drops the services it holds.
struct Severable<IO> {
    io: IO,
    severed: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    done: bool,
}

impl<IO> Severable<IO> {
    fn new(io: IO, mut sever: tokio::sync::watch::Receiver<bool>) -> Self {
        Severable {
            io,
            severed: Box::pin(async move {
                // A `Serving` dropped without `stop` leaves its connections be, as before.
                if sever.wait_for(|s| *s).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }),
            done: false,
        }
    }

    /// Whether the connection is severed; registers the task to be woken when it is.
    fn poll_severed(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.done && self.severed.as_mut().poll(cx).is_ready() {
            self.done = true;
        }
        self.done
    }
}

fn severed_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the server stopped: connection closed",
    )
}

impl<IO: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Severable<IO> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.poll_severed(cx) {
            return Poll::Ready(Err(severed_error()));
        }
        std::pin::Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Severable<IO> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_severed(cx) {
            return Poll::Ready(Err(severed_error()));
        }
        std::pin::Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.poll_severed(cx) {
            return Poll::Ready(Err(severed_error()));
        }
        std::pin::Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected
    for Severable<IO>
{
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}
