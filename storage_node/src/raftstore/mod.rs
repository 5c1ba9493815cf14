//! The raftstore: every write is replicated through its region's Raft group before it counts.
//!
//! TiKV keeps each region (a range of keys) on several stores and runs one Raft group per
//! region across them; a write is answered only once the group has committed it and the leader
//! has applied it. This module is that layer, built on `raft` (tikv/raft-rs, the consensus
//! library TiKV itself uses), which leaves the storage, the transport and the ticking to us:
//!
//! - [`command`]: what an entry carries — the engine writes a Percolator action decided on.
//! - [`peer_storage`]: a peer's Raft log and hard state: entries in [`log_file`] (an
//!   append-only file, one fdatasync per round), the rest in the store's engine file.
//! - [`peer`]: one region's peer — its queue of writes, its one batch in flight, its reads.
//! - [`store`]: the store thread that ticks the peers, executes writes on leaders, persists
//!   every peer's log in one fsync, and applies what Raft committed.
//! - [`split`]: regions by key range, and how a region that grew splits in two.
//! - [`conf_change`]: which stores hold a region's replicas, and how PD moves one (learner →
//!   voter → old replica removed).
//! - [`transport`] and [`grpc`]: how Raft messages reach the other stores of a region (TiKV's
//!   `Raft` gRPC stream between store processes).
//!
//! A store holds a peer of each of its regions. The one-store tier is the same code with
//! groups of one: an entry commits as soon as it is durable on this store, by the same path a
//! replicated region uses (propose → persist → commit → apply), only with a quorum of one.

pub mod command;
pub mod conf_change;
pub mod grpc;
pub mod log_file;
pub mod peer;
pub mod peer_storage;
pub mod split;
pub mod store;
pub mod transport;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::proto::{errorpb, metapb};

/// Where one write's time went inside the store, step by step (µs): waiting in its region's
/// queue, running its Percolator action, the leader's log append and fsync, waiting for a
/// quorum (zero in a group of one), and applying. The storage trace records it with each
/// write RPC, so a statement's waterfall shows its Raft steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RaftSteps {
    /// Arrival at the store thread → its batch starts running.
    pub queued_us: u64,
    /// Running the batch's actions (the leader's Percolator work).
    pub execute_us: u64,
    /// Proposed → the leader's log holds it durably (one fsync).
    pub persist_us: u64,
    /// Persisted → committed (a quorum of the region's peers has it).
    pub commit_us: u64,
    /// Committed → applied to the engine and answered.
    pub apply_us: u64,
}

tokio::task_local! {
    /// Set by the gRPC layer around a request; the scheduler leaves the write's steps in it.
    pub static RAFT_STEPS: Arc<Mutex<Option<RaftSteps>>>;
}

pub use store::RaftStore;

/// Raft timing and limits of a store.
#[derive(Clone, Debug)]
pub struct RaftConfig {
    /// One Raft tick. TiKV ticks every second with a 10 s election timeout; a lab wants a
    /// failed leader replaced within the TiKV client's ~1.5 s of region back-off, so it ticks
    /// faster.
    pub tick: Duration,
    /// Ticks without a heartbeat before a follower stands for election (randomised up to 2×).
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// How long a write or read may wait for its region before it is answered with an error
    /// the client retries (below the client's own 10 s request timeout).
    pub request_timeout: Duration,
    /// Applied entries kept in the log before it is compacted.
    pub log_gc_threshold: u64,
    /// Size of a Raft log segment file (see [`log_file`]).
    pub log_segment_bytes: u64,
    /// A leader that hears from no quorum for an election timeout steps down. Always on in
    /// the lab; tests turn it off to keep a deposed leader believing it leads, the worst case
    /// for stale reads.
    pub check_quorum: bool,
    /// Whether a leader serves reads under a lease (needs `check_quorum`), as TiKV does, or
    /// asks the quorum for every read (ReadIndex). See [`peer`](self::peer) for why a lease is
    /// safe. On by default; off only to compare the two.
    pub lease_reads: bool,
    /// Ticks between a leader's region heartbeats to PD (besides the one it sends the moment
    /// it becomes leader, which is what lets clients find it after a failover).
    pub pd_heartbeat_ticks: usize,
    /// Ticks between checks of whether a led region outgrew [`RaftConfig::split`].
    pub split_check_ticks: usize,
    /// When a region splits by itself.
    pub split: split::SplitPolicy,
}

impl RaftConfig {
    /// How long a quorum's confirmation keeps a leader's lease: an election timeout less two
    /// ticks (a follower counts the timeout in ticks, so it may vote up to a tick early; one
    /// more for the threads' scheduling). Zero when lease reads are off.
    pub fn lease_span(&self) -> Duration {
        if self.lease_reads && self.check_quorum {
            self.tick * self.election_ticks.saturating_sub(2) as u32
        } else {
            Duration::ZERO
        }
    }

    /// An election timeout (the shortest, before raft-rs's randomisation).
    pub fn election_timeout(&self) -> Duration {
        self.tick * self.election_ticks as u32
    }
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            tick: Duration::from_millis(50),
            election_ticks: 10,
            heartbeat_ticks: 2,
            request_timeout: Duration::from_secs(4),
            log_gc_threshold: 1024,
            log_segment_bytes: log_file::SEGMENT_BYTES,
            check_quorum: true,
            lease_reads: true,
            pd_heartbeat_ticks: 20,
            split_check_ticks: 20,
            split: split::SplitPolicy::default(),
        }
    }
}

/// Why a region could not serve a request: TiKV's region errors, which the TiKV client
/// answers by re-routing and retrying (see `handle_region_error` in the client).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegionError {
    /// This peer is not the region's leader; `leader` is the one it knows, if any.
    #[error("region {region_id}: this store is not its leader")]
    NotLeader {
        /// The region.
        region_id: u64,
        /// The leader this peer knows of.
        leader: Option<metapb::Peer>,
    },
    /// The region has no peer on this store.
    #[error("region {0} is not on this store")]
    RegionNotFound(u64),
    /// The request's region epoch is not the region's current one (it split or changed
    /// members since the client cached it); `current` lists what the region is now.
    #[error("region epoch does not match (the region changed since the client cached it)")]
    EpochNotMatch {
        /// The regions that now hold the requested range.
        current: Vec<metapb::Region>,
    },
    /// The command was proposed but not committed in time, or its entry was replaced by a new
    /// leader's: its outcome is unknown and the client retries it.
    #[error("stale command: the proposal was not committed in time or was superseded")]
    StaleCommand,
    /// The request cannot be done as asked (a split at a bad key …); the message says why.
    #[error("{0}")]
    Refused(String),
}

impl RegionError {
    /// The protobuf form for a response's `region_error`.
    pub fn to_pb(&self) -> errorpb::Error {
        let mut e = errorpb::Error {
            message: self.to_string(),
            ..Default::default()
        };
        match self {
            RegionError::NotLeader { region_id, leader } => {
                e.not_leader = Some(errorpb::NotLeader {
                    region_id: *region_id,
                    leader: *leader,
                })
            }
            RegionError::RegionNotFound(region_id) => {
                e.region_not_found = Some(errorpb::RegionNotFound {
                    region_id: *region_id,
                })
            }
            RegionError::StaleCommand => e.stale_command = Some(errorpb::StaleCommand {}),
            RegionError::Refused(_) => {}
            RegionError::EpochNotMatch { current } => {
                e.epoch_not_match = Some(errorpb::EpochNotMatch {
                    current_regions: current.clone(),
                })
            }
        }
        e
    }
}
