//! How Raft messages travel between the stores of a region.
//!
//! raft-rs produces messages addressed to peer ids; the store wraps each in a [`RaftMessage`]
//! naming the region and both peers (with their stores), as TiKV's `raft_serverpb::RaftMessage`
//! does, and hands it to a [`Transport`]. A store on its own needs none ([`NoTransport`]); the
//! replicated tier plugs in the network between store processes, and the tests plug in a
//! network they can cut and heal.

use raft::eraftpb::Message;

use crate::proto::metapb;

/// A Raft message between two peers of a region.
#[derive(Clone, Debug)]
pub struct RaftMessage {
    /// The region.
    pub region_id: u64,
    /// The sending peer (and its store).
    pub from: metapb::Peer,
    /// The receiving peer (and its store).
    pub to: metapb::Peer,
    /// The raft-rs message.
    pub message: Message,
}

/// Carries messages to other stores; delivery may fail silently (Raft retries).
pub trait Transport: Send + 'static {
    /// Sends `msg` towards `msg.to.store_id`.
    fn send(&self, msg: RaftMessage);
}

/// A store alone: its groups have one peer and nothing to send.
pub struct NoTransport;

impl Transport for NoTransport {
    fn send(&self, msg: RaftMessage) {
        tracing::warn!(
            region = msg.region_id,
            to_store = msg.to.store_id,
            "no transport: dropping a raft message"
        );
    }
}
