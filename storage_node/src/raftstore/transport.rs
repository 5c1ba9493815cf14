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

/// The stores this store is cut off from: a network partition inside the storage tier, set
/// by a person (`POST /lab/v1/partition` on the store's port, `cluster.partition_store(2)`).
/// Messages to and from those stores are dropped on this side, the way TinyKV's
/// `test_raftstore` filters drop them, so a partition needs no proxy between the stores: the
/// surrounding stores just stop hearing from this one, and it from them. Clients and PD still
/// reach the store (a partition of the store-to-store network only).
#[derive(Debug, Default)]
pub struct NetFilter {
    cut: std::sync::RwLock<std::collections::BTreeSet<u64>>,
}

impl NetFilter {
    /// Cuts this store off from `stores` (replacing any earlier cut); empty heals.
    pub fn set(&self, stores: impl IntoIterator<Item = u64>) {
        *self.cut.write().unwrap_or_else(|p| p.into_inner()) = stores.into_iter().collect();
    }

    /// The stores this store is cut off from.
    pub fn cut(&self) -> Vec<u64> {
        self.cut
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// Whether messages between this store and `store` are dropped.
    pub fn blocks(&self, store: u64) -> bool {
        self.cut
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&store)
    }
}

/// Carries messages to other stores; delivery may fail silently (Raft retries).
pub trait Transport: Send + 'static {
    /// Sends `msg` towards `msg.to.store_id`.
    fn send(&self, msg: RaftMessage);
}

/// A transport that drops what a [`NetFilter`] blocks, then hands the rest on.
pub struct Filtered {
    /// Where messages go.
    pub inner: Box<dyn Transport>,
    /// What is cut.
    pub filter: std::sync::Arc<NetFilter>,
}

impl Transport for Filtered {
    fn send(&self, msg: RaftMessage) {
        if !self.filter.blocks(msg.to.store_id) {
            self.inner.send(msg);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct Recording(Arc<Mutex<Vec<u64>>>);

    impl Transport for Recording {
        fn send(&self, msg: RaftMessage) {
            self.0.lock().unwrap().push(msg.to.store_id);
        }
    }

    fn to(store_id: u64) -> RaftMessage {
        RaftMessage {
            region_id: 2,
            from: metapb::Peer {
                id: 3,
                store_id: 1,
                ..Default::default()
            },
            to: metapb::Peer {
                id: store_id + 2,
                store_id,
                ..Default::default()
            },
            message: Message::default(),
        }
    }

    #[test]
    fn a_cut_drops_messages_to_those_stores_only_and_healing_lets_them_through() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let filter = Arc::new(NetFilter::default());
        let t = Filtered {
            inner: Box::new(Recording(sent.clone())),
            filter: filter.clone(),
        };
        filter.set([2]);
        t.send(to(2));
        t.send(to(3));
        assert_eq!(*sent.lock().unwrap(), vec![3], "store 2 is cut off");
        assert_eq!(filter.cut(), vec![2]);
        filter.set([]);
        t.send(to(2));
        assert_eq!(*sent.lock().unwrap(), vec![3, 2], "healed");
    }
}
