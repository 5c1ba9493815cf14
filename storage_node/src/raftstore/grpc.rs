//! Raft messages between store processes, over TiKV's own `Raft` gRPC stream.
//!
//! TiKV stores talk to each other with `tikvpb.Tikv/Raft`, a client stream of
//! `raft_serverpb.RaftMessage`; so do ours. Sending: [`GrpcTransport`] keeps one stream per
//! destination store (opened on first use, reopened after an error) and never blocks the store
//! thread — a message that cannot be sent is dropped, and Raft sends it again (heartbeats,
//! appends and votes are all retried by the protocol). Receiving: [`receive`] feeds a stream
//! into the store's [`Mailbox`].
//!
//! raft-rs's messages are rust-protobuf types and kvproto's are prost types, generated from the
//! same `eraftpb.proto`; they convert through their wire encoding.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use protobuf::Message as _;
use tokio::sync::mpsc;

use super::store::Mailbox;
use super::transport::{RaftMessage, Transport};
use crate::proto::tikvpb::tikv_client::TikvClient;
use crate::proto::{eraftpb, raft_serverpb};

/// Finds a store's address (PD's `GetStore` in a cluster; a table in tests).
pub type Resolver = Arc<dyn Fn(u64) -> Option<String> + Send + Sync>;

/// Messages queued per destination before new ones are dropped (Raft resends).
const QUEUE: usize = 4096;

/// Sends Raft messages to other stores over gRPC.
pub struct GrpcTransport {
    runtime: tokio::runtime::Handle,
    resolve: Resolver,
    streams: Mutex<HashMap<u64, mpsc::Sender<raft_serverpb::RaftMessage>>>,
}

impl GrpcTransport {
    /// A transport whose connections run on `runtime`, finding stores through `resolve`.
    pub fn new(runtime: tokio::runtime::Handle, resolve: Resolver) -> GrpcTransport {
        GrpcTransport {
            runtime,
            resolve,
            streams: Mutex::new(HashMap::new()),
        }
    }

    fn stream_to(&self, store_id: u64) -> mpsc::Sender<raft_serverpb::RaftMessage> {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = streams.get(&store_id).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        self.runtime.spawn(pump(store_id, self.resolve.clone(), rx));
        streams.insert(store_id, tx.clone());
        tx
    }
}

impl Transport for GrpcTransport {
    fn send(&self, msg: RaftMessage) {
        let to = msg.to.store_id;
        match to_wire(msg) {
            Some(wire) => {
                // Full queue or a stream being reopened: drop, Raft resends.
                let _ = self.stream_to(to).try_send(wire);
            }
            None => tracing::error!("cannot encode a raft message"),
        }
    }
}

/// Keeps a `Raft` stream open to `store_id` and feeds it from `rx`, reconnecting after errors.
async fn pump(store_id: u64, resolve: Resolver, rx: mpsc::Receiver<raft_serverpb::RaftMessage>) {
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    loop {
        let Some(addr) = resolve(store_id) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let client = match TikvClient::connect(format!("http://{addr}")).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(store_id, %addr, "raft connection failed: {e}");
                // Drop what queued meanwhile: stale heartbeats help no one.
                while rx.lock().await.try_recv().is_ok() {}
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let feed = rx.clone();
        let outbound = async_stream(feed);
        let mut client = client
            .max_encoding_message_size(crate::server::MAX_MESSAGE_BYTES)
            .max_decoding_message_size(crate::server::MAX_MESSAGE_BYTES);
        if let Err(e) = client.raft(outbound).await {
            tracing::debug!(store_id, %addr, "raft stream ended: {e}");
        }
        if rx.lock().await.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The queued messages as a stream for one gRPC call (ends when the transport is dropped).
fn async_stream(
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<raft_serverpb::RaftMessage>>>,
) -> impl tokio_stream::Stream<Item = raft_serverpb::RaftMessage> {
    futures::stream::unfold(rx, |rx| async move {
        let next = rx.lock().await.recv().await;
        next.map(|m| (m, rx))
    })
}

/// Delivers every message of an incoming `Raft` stream to the store.
pub async fn receive(
    mut stream: tonic::Streaming<raft_serverpb::RaftMessage>,
    mailbox: Mailbox,
) -> Result<raft_serverpb::Done, tonic::Status> {
    while let Some(wire) = stream.message().await? {
        match from_wire(wire) {
            Some(msg) => mailbox.deliver(msg),
            None => tracing::warn!("dropping an undecodable raft message"),
        }
    }
    Ok(raft_serverpb::Done {})
}

fn to_wire(msg: RaftMessage) -> Option<raft_serverpb::RaftMessage> {
    let bytes = msg.message.write_to_bytes().ok()?;
    Some(raft_serverpb::RaftMessage {
        region_id: msg.region_id,
        from_peer: Some(msg.from),
        to_peer: Some(msg.to),
        message: Some(eraftpb::Message::decode(bytes.as_slice()).ok()?),
        ..Default::default()
    })
}

fn from_wire(wire: raft_serverpb::RaftMessage) -> Option<RaftMessage> {
    let bytes = wire.message?.encode_to_vec();
    Some(RaftMessage {
        region_id: wire.region_id,
        from: wire.from_peer?,
        to: wire.to_peer?,
        message: raft::eraftpb::Message::parse_from_bytes(&bytes).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::metapb;

    #[test]
    fn a_message_survives_the_trip_between_the_two_protobuf_libraries() {
        let mut m = raft::eraftpb::Message::default();
        m.set_msg_type(raft::eraftpb::MessageType::MsgAppend);
        m.to = 12;
        m.from = 11;
        m.term = 7;
        m.index = 41;
        m.commit = 40;
        m.mut_entries().push(raft::eraftpb::Entry {
            index: 42,
            term: 7,
            data: b"payload".to_vec().into(),
            ..Default::default()
        });
        let peer = |id, store_id| metapb::Peer {
            id,
            store_id,
            ..Default::default()
        };
        let msg = RaftMessage {
            region_id: 2,
            from: peer(11, 1),
            to: peer(12, 2),
            message: m.clone(),
        };
        let back = from_wire(to_wire(msg).unwrap()).unwrap();
        assert_eq!(back.region_id, 2);
        assert_eq!((back.from.id, back.to.store_id), (11, 2));
        assert_eq!(back.message, m);
    }
}
