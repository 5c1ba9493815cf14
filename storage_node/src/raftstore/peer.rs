//! One region's peer on this store: a raft-rs `RawNode` plus what waits on it.
//!
//! Writes arrive as tasks (Percolator actions). A leader runs a queue of them as one batch
//! against its applied state, proposes the engine writes they decided on as one entry, and
//! runs the next batch only after that entry is applied — so every batch sees everything
//! before it, as TiKV's latches guarantee for commands on the same keys. Reads ask for a read
//! index (Raft's ReadIndex: the leader confirms with a quorum that it is still the leader) and
//! are served once that index is applied, so a deposed leader never answers a read.
//!
//! A confirmed read index also gives the leader a **lease**, as TiKV's does: a quorum heard
//! from it after the moment it asked, and with check-quorum on, none of those peers votes for
//! another candidate until an election timeout has passed since (raft-rs's `in_lease`). So for
//! a little less than an election timeout from the moment it asked, no other peer can have
//! become leader, and the leader serves reads from its applied state without asking the quorum
//! again. Three holes in that argument are closed as TiKV closes them: the lease is an election
//! timeout minus two ticks (a follower counts in ticks, tikv#9728); there is none in a term in
//! which a leadership transfer began (a transfer's candidate is voted for despite the lease,
//! tikv#1593, raft-rs#234); and a restarted store grants no vote for an election timeout (it
//! forgot whom it heard from, tikv#15035; see `StoreThread`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use raft::eraftpb::Entry;
use raft::{RawNode, StateRole};

use super::RegionError;
use super::peer_storage::PeerStorage;
use super::split::RegionSize;
use crate::proto::metapb;
use crate::txn::scheduler::{Executed, Task};

/// Answers a read-index request: `Ok` once the read may be served from the local engine.
pub type ReadCallback = tokio::sync::oneshot::Sender<Result<(), RegionError>>;

/// The batch being replicated, and the callers it answers when applied.
struct Inflight {
    index: u64,
    term: u64,
    /// `None` once its callers were answered early (it timed out); the peer still waits for
    /// the entry's fate before running the next batch.
    executed: Option<Executed>,
    deadline: Instant,
}

/// Answers a split request: the regions it produced, or why it did not happen.
pub type SplitCallback = tokio::sync::oneshot::Sender<Result<Vec<metapb::Region>, RegionError>>;

/// A split this leader proposed and waits to see applied.
pub struct PendingSplit {
    /// Its entry.
    pub index: u64,
    /// The term it was proposed in.
    pub term: u64,
    /// Who asked (none for an automatic split).
    pub done: Option<SplitCallback>,
}

/// Answers a membership change: the region once the change applied here, or why not.
pub type ConfCallback = tokio::sync::oneshot::Sender<Result<metapb::Region, RegionError>>;

/// A membership change this leader proposed and waits to see applied.
pub struct PendingConf {
    /// Its entry.
    pub index: u64,
    /// Who asked (none for PD's operator steps, which PD follows through heartbeats).
    pub done: Option<ConfCallback>,
}

/// Reads that share one read-index request.
struct ReadBatch {
    id: u64,
    /// When the leader asked: a quorum confirmed it after this moment.
    asked: Instant,
    callbacks: Vec<ReadCallback>,
    /// Known once the leader confirmed it: serve when applied reaches it.
    index: Option<u64>,
    deadline: Instant,
}

/// A region's peer.
pub struct Peer {
    /// The region.
    pub region_id: u64,
    /// This peer's id.
    pub peer_id: u64,
    /// The Raft state machine.
    pub raw: RawNode<PeerStorage>,
    /// Writes waiting to run: the task, when it arrived, its deadline.
    queued: VecDeque<(Task, Instant, Instant)>,
    inflight: Option<Inflight>,
    reads_unsent: Vec<(ReadCallback, Instant)>,
    reads: VecDeque<ReadBatch>,
    next_read_id: u64,
    /// Index and term of the last applied entry.
    pub applied: (u64, u64),
    /// The term in which this peer, as leader, raised the store's max_ts from the TSO.
    pub max_ts_synced_term: u64,
    /// Applied index as of the last fsync of the engine file (the log may be compacted
    /// up to it: entries applied after it could still need a replay).
    pub durable_applied: u64,
    was_leader: bool,
    /// A split waiting to be proposed (at this encoded key) once no batch is in flight.
    pub split_wanted: Option<(Vec<u8>, Option<SplitCallback>)>,
    /// The split proposed and not yet applied: writes wait for it (their region changes).
    pub pending_split: Option<PendingSplit>,
    /// The membership change proposed and not yet applied.
    pub pending_conf: Option<PendingConf>,
    /// Until when, and in which term, this leader may serve reads without a read index.
    lease: Option<(u64, Instant)>,
    /// How long a confirmed read index keeps the lease (zero: no lease reads).
    lease_span: Duration,
    /// A term in which a leadership transfer began: no lease in it.
    no_lease_term: u64,
    /// Ticks of the stale-peer check at which this peer knew no leader (see
    /// `StoreThread::check_stale_peers`).
    pub leaderless_checks: u32,
    /// Write records applied since the region was last measured.
    pub written_since_measure: u64,
    /// The region's size when last measured (`None` before the first measure).
    pub size: Option<RegionSize>,
}

impl Peer {
    /// Peer `peer_id` over a started raft node; `applied` is where the engine's state stands;
    /// a confirmed read index gives it a lease of `lease_span` (zero: no lease reads).
    pub fn new(
        peer_id: u64,
        raw: RawNode<PeerStorage>,
        applied: u64,
        lease_span: Duration,
    ) -> Peer {
        let applied_term = raw.raft.raft_log.term(applied).unwrap_or(0);
        Peer {
            region_id: raw.store().region_id(),
            peer_id,
            raw,
            queued: VecDeque::new(),
            inflight: None,
            reads_unsent: Vec::new(),
            reads: VecDeque::new(),
            next_read_id: 1,
            applied: (applied, applied_term),
            durable_applied: applied,
            max_ts_synced_term: 0,
            was_leader: false,
            split_wanted: None,
            pending_split: None,
            pending_conf: None,
            leaderless_checks: 0,
            lease: None,
            lease_span,
            no_lease_term: 0,
            written_since_measure: 0,
            size: None,
        }
    }

    /// Whether this peer knows its region (range and members): false for a peer created by a
    /// leader's message until the leader's snapshot arrives.
    pub fn is_initialized(&self) -> bool {
        !self.raw.store().region().peers.is_empty()
    }

    /// Whether this peer leads its region.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// A leader that has applied an entry of its own term (everything committed before it
    /// took over is in its engine) and synced max_ts in this term: it may execute writes and
    /// serve reads.
    pub fn is_ready_leader(&self) -> bool {
        self.is_applied_leader() && self.max_ts_synced_term == self.raw.raft.term
    }

    /// A leader that has applied an entry of its own term.
    pub fn is_applied_leader(&self) -> bool {
        self.is_leader() && self.applied.1 == self.raw.raft.term
    }

    /// The `NotLeader` error naming the leader this peer knows.
    pub fn not_leader(&self) -> RegionError {
        let leader_id = self.raw.raft.leader_id;
        RegionError::NotLeader {
            region_id: self.region_id,
            leader: self
                .raw
                .store()
                .region()
                .peers
                .iter()
                .find(|p| p.id == leader_id)
                .cloned(),
        }
    }

    /// Queues a write task (it runs when this peer is a ready leader with nothing in flight).
    pub fn push_write(&mut self, task: Task, arrived: Instant, deadline: Instant) {
        self.queued.push_back((task, arrived, deadline));
    }

    /// Queues a read-index request.
    pub fn push_read(&mut self, done: ReadCallback, deadline: Instant) {
        self.reads_unsent.push((done, deadline));
    }

    /// Whether queued writes could run now.
    pub fn can_execute(&self) -> bool {
        !self.queued.is_empty()
            && self.inflight.is_none()
            && self.pending_split.is_none()
            && self.is_ready_leader()
    }

    /// Whether a wanted split may be proposed now: no batch in flight (its writes were
    /// executed against the region as it is), no other split pending.
    pub fn can_split(&self) -> bool {
        self.split_wanted.is_some()
            && self.inflight.is_none()
            && self.pending_split.is_none()
            && self.pending_conf.is_none()
            && !self.raw.raft.has_pending_conf()
            && self.is_ready_leader()
    }

    /// Rejects every queued write with `err` (the region changed under them).
    pub fn reject_queued(&mut self, err: RegionError) {
        for (task, _, _) in self.queued.drain(..) {
            task.reject(err.clone().into());
        }
    }

    /// Answers everything waiting on this peer with `err`: the peer is being destroyed (its
    /// replica was removed from the region).
    pub fn abandon(&mut self, err: RegionError) {
        self.reject_queued(err.clone());
        if let Some(executed) = self.inflight.take().and_then(|f| f.executed) {
            executed.finish(Err(err.clone().into()));
        }
        for (done, _) in self.reads_unsent.drain(..) {
            let _ = done.send(Err(err.clone()));
        }
        for b in self.reads.drain(..) {
            for done in b.callbacks {
                let _ = done.send(Err(err.clone()));
            }
        }
        if let Some((_, Some(done))) = self.split_wanted.take() {
            let _ = done.send(Err(err.clone()));
        }
        if let Some(done) = self.pending_split.take().and_then(|s| s.done) {
            let _ = done.send(Err(err.clone()));
        }
        if let Some(done) = self.pending_conf.take().and_then(|c| c.done) {
            let _ = done.send(Err(err));
        }
    }

    /// Takes up to `max` queued writes to run as one batch, if this peer may run them now.
    pub fn take_batch(&mut self, max: usize) -> Option<Vec<(Task, Instant)>> {
        if !self.can_execute() {
            return None;
        }
        let n = self.queued.len().min(max);
        Some(self.queued.drain(..n).map(|(t, a, _)| (t, a)).collect())
    }

    /// Proposes an executed batch's writes; answers its callers at once if that fails.
    pub fn propose(&mut self, mut executed: Executed, deadline: Instant) {
        executed.proposed = Some(Instant::now());
        let data = executed.batch.encode();
        let before = self.raw.raft.raft_log.last_index();
        if self.raw.propose(Vec::new(), data).is_err()
            || self.raw.raft.raft_log.last_index() == before
        {
            let err = self.not_leader();
            executed.finish(Err(err.into()));
            return;
        }
        self.inflight = Some(Inflight {
            index: self.raw.raft.raft_log.last_index(),
            term: self.raw.raft.term,
            executed: Some(executed),
            deadline,
        });
    }

    /// Notes, for the batch in flight, when its entry became durable in this peer's log and
    /// when Raft reported it committed (the steps a write's trace shows).
    pub fn note_progress(&mut self, now: Instant) {
        let last = self.raw.store().last_index_now();
        let committed = self.raw.raft.raft_log.committed;
        if let Some(f) = self.inflight.as_mut()
            && let Some(ex) = f.executed.as_mut()
        {
            if ex.persisted.is_none() && f.index <= last {
                ex.persisted = Some(now);
            }
            if ex.committed.is_none() && f.index <= committed {
                ex.committed = Some(now);
            }
        }
    }

    /// Sends one read-index request for every read queued since the last one.
    pub fn send_reads(&mut self) {
        if self.reads_unsent.is_empty() {
            return;
        }
        if !self.is_leader() {
            let err = self.not_leader();
            for (done, _) in self.reads_unsent.drain(..) {
                let _ = done.send(Err(err.clone()));
            }
            return;
        }
        let now = Instant::now();
        if self.in_lease(now) {
            for (done, _) in self.reads_unsent.drain(..) {
                let _ = done.send(Ok(()));
            }
            return;
        }
        // raft-rs drops a read index asked before the leader committed in its term; wait.
        if !self.raw.raft.commit_to_current_term() {
            return;
        }
        let id = self.next_read_id;
        self.next_read_id += 1;
        let deadline = self
            .reads_unsent
            .iter()
            .map(|(_, d)| *d)
            .min()
            .unwrap_or_else(Instant::now);
        let callbacks = self.reads_unsent.drain(..).map(|(c, _)| c).collect();
        self.reads.push_back(ReadBatch {
            id,
            asked: now,
            callbacks,
            index: None,
            deadline,
        });
        self.raw.read_index(id.to_be_bytes().to_vec());
    }

    /// Records the read indexes Raft confirmed.
    pub fn on_read_states(&mut self, states: Vec<raft::ReadState>) {
        for rs in states {
            let Ok(id) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) else {
                continue;
            };
            let id = u64::from_be_bytes(id);
            if let Some(b) = self.reads.iter_mut().find(|b| b.id == id) {
                b.index = Some(rs.index);
                let asked = b.asked;
                self.renew_lease(asked);
            }
        }
        self.serve_reads();
    }

    /// A quorum confirmed this leader after `asked`: the lease runs from then.
    fn renew_lease(&mut self, asked: Instant) {
        let term = self.raw.raft.term;
        self.note_transfer();
        if self.lease_span.is_zero() || !self.is_leader() || self.no_lease_term == term {
            return;
        }
        let until = asked + self.lease_span;
        if self.lease.is_none_or(|(t, u)| t != term || u < until) {
            self.lease = Some((term, until));
        }
    }

    /// Notes a leadership transfer under way: its term gets no lease. A transfer's candidate
    /// campaigns at once and is voted for despite the voters' leases; its message may even
    /// arrive after the transfer was given up. So a term with a transfer has no lease until it
    /// ends.
    fn note_transfer(&mut self) {
        if self.raw.raft.lead_transferee.is_some() {
            self.no_lease_term = self.raw.raft.term;
            self.lease = None;
        }
    }

    /// Whether a read may be served now from the applied state, without a read index: the
    /// lease of this term holds, and everything committed is applied (the leader applied an
    /// entry of its own term, so that includes whatever its predecessors committed).
    fn in_lease(&mut self, now: Instant) -> bool {
        self.note_transfer();
        let term = self.raw.raft.term;
        self.no_lease_term != term
            && self
                .lease
                .is_some_and(|(t, until)| t == term && now < until)
            && self.is_applied_leader()
            && self.applied.0 >= self.raw.raft.raft_log.committed
    }

    /// Ends the lease (a membership change: the quorum it was counted in changed).
    pub fn end_lease(&mut self) {
        self.lease = None;
    }

    /// Starts a leadership transfer to `to_peer` (no lease for the rest of this term).
    pub fn transfer_leader(&mut self, to_peer: u64) {
        self.raw.transfer_leader(to_peer);
        self.note_transfer();
    }

    fn serve_reads(&mut self) {
        let applied = self.applied.0;
        self.reads.retain_mut(|b| match b.index {
            Some(index) if index <= applied => {
                for done in b.callbacks.drain(..) {
                    let _ = done.send(Ok(()));
                }
                false
            }
            _ => true,
        });
    }

    /// Records applied entries: answers the batch in flight and the reads they unblock.
    pub fn on_applied(&mut self, entries: &[Entry]) {
        for e in entries {
            self.applied = (e.index, e.term);
            if let Some(inflight) = self.inflight.take_if(|f| e.index >= f.index) {
                let result = if e.index == inflight.index && e.term == inflight.term {
                    Ok(())
                } else {
                    // Another leader's entry took our slot: our batch never happened.
                    Err(RegionError::StaleCommand.into())
                };
                if let Some(executed) = inflight.executed {
                    executed.finish(result);
                }
            }
        }
        if let Some(last) = entries.last() {
            self.raw.advance_apply_to(last.index);
        }
        self.serve_reads();
    }

    /// After a tick or a ready: answers what can no longer succeed, or waited too long.
    pub fn check(&mut self, now: Instant) {
        let leader = self.is_leader();
        self.note_transfer(); // one raft-rs began on a peer's request, too
        if self.was_leader && !leader {
            // Deposed: nothing queued here will run, no read here may be served. The batch in
            // flight may still commit under the new leader, so its fate is unknown.
            let err = self.not_leader();
            if let Some(executed) = self.inflight.as_mut().and_then(|f| f.executed.take()) {
                executed.finish(Err(RegionError::StaleCommand.into()));
            }
            for b in self.reads.drain(..) {
                for done in b.callbacks {
                    let _ = done.send(Err(err.clone()));
                }
            }
            if let Some((_, Some(done))) = self.split_wanted.take() {
                let _ = done.send(Err(err.clone()));
            }
            if let Some(done) = self.pending_split.as_mut().and_then(|s| s.done.take()) {
                // It may still apply under the new leader: its outcome is unknown here.
                let _ = done.send(Err(RegionError::StaleCommand));
            }
            if let Some(done) = self.pending_conf.take().and_then(|c| c.done) {
                let _ = done.send(Err(RegionError::StaleCommand));
            }
        }
        if self
            .pending_split
            .as_ref()
            .is_some_and(|s| self.is_ready_leader() && s.term < self.raw.raft.term)
        {
            // Leading a later term with its first entry applied: the old proposal is not coming.
            self.pending_split = None;
        }
        self.was_leader = leader;
        if self.is_ready_leader()
            && let Some(f) = self.inflight.take_if(|f| f.term < self.raw.raft.term)
            && let Some(executed) = f.executed
        {
            // We lead a later term and applied its first entry: an older batch of ours was
            // either applied before it (and answered) or replaced; it is not coming.
            executed.finish(Err(RegionError::StaleCommand.into()));
        }
        if !leader && !self.queued.is_empty() {
            let err = self.not_leader();
            for (task, _, _) in self.queued.drain(..) {
                task.reject(err.clone().into());
            }
        }
        if let Some(f) = self.inflight.as_mut()
            && now >= f.deadline
            && let Some(executed) = f.executed.take()
        {
            // Answer the callers (a client must not hang), but keep waiting for the entry:
            // the next batch must see it if it commits.
            executed.finish(Err(RegionError::StaleCommand.into()));
        }
        while self.queued.front().is_some_and(|(_, _, d)| now >= *d) {
            let (task, _, _) = self.queued.pop_front().expect("checked");
            task.reject(RegionError::StaleCommand.into());
        }
        self.reads.retain_mut(|b| {
            if now < b.deadline {
                return true;
            }
            for done in b.callbacks.drain(..) {
                let _ = done.send(Err(RegionError::StaleCommand));
            }
            false
        });
    }
}
