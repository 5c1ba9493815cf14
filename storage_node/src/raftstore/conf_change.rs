//! Membership changes of a region: which stores hold its replicas (TiKV's `ChangePeer`).
//!
//! PD moves a replica from one store to another in steps, each one Raft conf change that every
//! replica applies at the same log position (Raft's single-server changes, as raft-rs's v1
//! `ConfChange` does them):
//!
//! 1. **add a learner** on the new store: it receives the log (in practice a snapshot, since
//!    the log it needs was compacted long ago) but does not vote, so a slow newcomer cannot
//!    stall the region's quorum;
//! 2. **promote** it to voter once it has caught up (PD waits until it is no longer *pending*);
//! 3. **remove** the old replica (after moving the leader away, if it led).
//!
//! Every change raises the region epoch's `conf_ver`, as TiKV's does. A change proposed
//! against an older `conf_ver` than the region has when the entry applies is stale (another
//! change got in first) and is skipped on every replica alike.
//!
//! The entry's data is raft-rs's `ConfChange`; its context is a [`ChangeContext`]: the peer
//! (with its store, which raft-rs's node id alone does not say) and the `conf_ver` proposed at.

use prost::Message as _;
use raft::eraftpb::ConfChangeType;

use crate::proto::metapb;

/// What a conf change entry carries beside raft-rs's `ConfChange`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChangeContext {
    /// The peer added, promoted or removed (id, store, role after the change).
    #[prost(message, optional, tag = "1")]
    pub peer: Option<metapb::Peer>,
    /// The region's `conf_ver` when the change was proposed.
    #[prost(uint64, tag = "2")]
    pub conf_ver: u64,
}

impl ChangeContext {
    /// The context's bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// Reads a context written by [`ChangeContext::encode`].
    pub fn decode_from(bytes: &[u8]) -> Result<ChangeContext, prost::DecodeError> {
        <ChangeContext as prost::Message>::decode(bytes)
    }
}

/// Why a change cannot be made; each message names what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// The store already holds a replica of the region.
    #[error("store {store} already holds replica {peer} of region {region}")]
    AlreadyThere {
        /// The region.
        region: u64,
        /// The store.
        store: u64,
        /// Its replica there.
        peer: u64,
    },
    /// The peer to promote or remove is not in the region.
    #[error("region {region} has no replica {peer}; list its replicas with `lab placement`")]
    NoSuchPeer {
        /// The region.
        region: u64,
        /// The peer asked for.
        peer: u64,
    },
    /// Removing the leader: it must hand over first (TiKV refuses the same way).
    #[error(
        "replica {peer} leads region {region}: transfer the leader to another replica before removing it"
    )]
    RemovingLeader {
        /// The region.
        region: u64,
        /// The leader.
        peer: u64,
    },
    /// The change would leave the region without a voter.
    #[error("region {region} would have no voter left; add a replica before removing this one")]
    LastVoter {
        /// The region.
        region: u64,
    },
}

fn is_learner(p: &metapb::Peer) -> bool {
    p.role == metapb::PeerRole::Learner as i32
}

/// `region` after `change` of `peer`, with `conf_ver + 1`: what every replica computes when the
/// entry applies. `leader` is the proposing leader's peer id (it may not remove itself).
pub fn changed_region(
    region: &metapb::Region,
    change: ConfChangeType,
    peer: &metapb::Peer,
    leader: Option<u64>,
) -> Result<metapb::Region, ChangeError> {
    let mut out = region.clone();
    let have = out.peers.iter().position(|p| p.id == peer.id);
    let no_such = || ChangeError::NoSuchPeer {
        region: region.id,
        peer: peer.id,
    };
    match change {
        ConfChangeType::AddLearnerNode => {
            if let Some(p) = out.peers.iter().find(|p| p.store_id == peer.store_id) {
                return Err(ChangeError::AlreadyThere {
                    region: region.id,
                    store: peer.store_id,
                    peer: p.id,
                });
            }
            out.peers.push(metapb::Peer {
                role: metapb::PeerRole::Learner as i32,
                ..*peer
            });
        }
        ConfChangeType::AddNode => match have {
            // Promotion: the learner becomes a voter.
            Some(i) if is_learner(&out.peers[i]) => {
                out.peers[i].role = metapb::PeerRole::Voter as i32;
            }
            Some(_) => {
                return Err(ChangeError::AlreadyThere {
                    region: region.id,
                    store: peer.store_id,
                    peer: peer.id,
                });
            }
            None => {
                if out.peers.iter().any(|p| p.store_id == peer.store_id) {
                    return Err(ChangeError::AlreadyThere {
                        region: region.id,
                        store: peer.store_id,
                        peer: peer.id,
                    });
                }
                out.peers.push(metapb::Peer {
                    role: metapb::PeerRole::Voter as i32,
                    ..*peer
                });
            }
        },
        ConfChangeType::RemoveNode => {
            let i = have.ok_or_else(no_such)?;
            if leader == Some(peer.id) {
                return Err(ChangeError::RemovingLeader {
                    region: region.id,
                    peer: peer.id,
                });
            }
            out.peers.remove(i);
            if !out.peers.iter().any(|p| !is_learner(p)) {
                return Err(ChangeError::LastVoter { region: region.id });
            }
        }
    }
    let epoch = out.region_epoch.get_or_insert_with(Default::default);
    epoch.conf_ver += 1;
    Ok(out)
}

/// The region's `conf_ver`.
pub fn conf_ver(region: &metapb::Region) -> u64 {
    region.region_epoch.map(|e| e.conf_ver).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, store_id: u64) -> metapb::Peer {
        metapb::Peer {
            id,
            store_id,
            ..Default::default()
        }
    }

    fn region() -> metapb::Region {
        metapb::Region {
            id: 2,
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: vec![peer(3, 1), peer(4, 2), peer(5, 3)],
            ..Default::default()
        }
    }

    #[test]
    fn a_move_is_learner_then_promote_then_remove_each_raising_conf_ver() {
        let r = region();
        let r = changed_region(&r, ConfChangeType::AddLearnerNode, &peer(9, 4), Some(3)).unwrap();
        assert!(is_learner(r.peers.iter().find(|p| p.id == 9).unwrap()));
        let r = changed_region(&r, ConfChangeType::AddNode, &peer(9, 4), Some(3)).unwrap();
        assert!(!is_learner(r.peers.iter().find(|p| p.id == 9).unwrap()));
        let r = changed_region(&r, ConfChangeType::RemoveNode, &peer(5, 3), Some(3)).unwrap();
        let stores: Vec<u64> = r.peers.iter().map(|p| p.store_id).collect();
        assert_eq!(stores, vec![1, 2, 4]);
        assert_eq!(conf_ver(&r), 4);
        assert_eq!(
            r.region_epoch.unwrap().version,
            1,
            "a conf change is not a split"
        );
    }

    #[test]
    fn bad_changes_are_refused_with_what_to_do() {
        let r = region();
        assert!(matches!(
            changed_region(&r, ConfChangeType::AddLearnerNode, &peer(9, 2), None),
            Err(ChangeError::AlreadyThere { store: 2, .. })
        ));
        assert!(matches!(
            changed_region(&r, ConfChangeType::RemoveNode, &peer(3, 1), Some(3)),
            Err(ChangeError::RemovingLeader { .. })
        ));
        assert!(matches!(
            changed_region(&r, ConfChangeType::RemoveNode, &peer(77, 1), Some(3)),
            Err(ChangeError::NoSuchPeer { .. })
        ));
        let alone = metapb::Region {
            peers: vec![peer(3, 1)],
            ..region()
        };
        assert!(matches!(
            changed_region(&alone, ConfChangeType::RemoveNode, &peer(3, 1), None),
            Err(ChangeError::LastVoter { .. })
        ));
    }

    #[test]
    fn the_context_round_trips() {
        let c = ChangeContext {
            peer: Some(peer(9, 4)),
            conf_ver: 3,
        };
        assert_eq!(ChangeContext::decode_from(&c.encode()).unwrap(), c);
    }
}
