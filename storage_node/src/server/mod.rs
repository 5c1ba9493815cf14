//! The gRPC front: PD and TiKV services on one port, plus the small layer that lets us
//! advertise the address each client dialed.

pub mod kv;
pub mod pd;

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::transport::Server;

use crate::proto::pdpb::pd_server::PdServer;
use crate::proto::tikvpb::tikv_server::TikvServer;
use crate::storage::Storage;
use crate::trace::Tracer;

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

/// Serves PD and TiKV on `listener` until `shutdown` resolves.
pub async fn serve(
    storage: Arc<Storage>,
    tracer: Arc<Tracer>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let addr: SocketAddr = listener
        .local_addr()
        .expect("bound listener has an address");
    let pd = PdServer::new(pd::PdService::new(
        storage.clone(),
        addr.to_string(),
        tracer.clone(),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let kv = TikvServer::new(kv::KvService::new(storage, tracer))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .layer(tower::layer::layer_fn(RecordAuthority))
        .add_service(pd)
        .add_service(kv)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
