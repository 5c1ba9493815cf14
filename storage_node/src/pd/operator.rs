//! PD's operators: a plan of steps for one region, handed to its leader one step per heartbeat.
//!
//! Real PD schedules by answering region heartbeats: the leader reports the region, PD answers
//! with the next step of the region's operator, the leader carries it out, and the next
//! heartbeat shows whether it is done. PD never touches a store's data itself. The lab's PD
//! has the operator real PD uses to move a replica (`transfer-peer`, TinyKV's `MovePeer`):
//!
//! 1. **add learner** on the target store (it catches up, usually by snapshot, without voting);
//! 2. **promote** it to voter — only once it is no longer *pending* (caught up), so the
//!    region's quorum never depends on a replica that is still copying;
//! 3. **transfer the leader** away from the source store, if it leads there;
//! 4. **remove** the source replica.
//!
//! A step that is not done within [`STEP_TIMEOUT`] abandons the operator (the target store may
//! have died); the checkers that made it make a new one if it is still needed.

use std::time::{Duration, Instant};

use raft::eraftpb::ConfChangeType;

use crate::proto::metapb;

/// How long one step may take before its operator is abandoned. A learner's snapshot at the
/// lab's data sizes takes well under a second; the rest is heartbeat round trips.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// What PD asks a region's leader to do next (one heartbeat answer).
#[derive(Clone, Debug, PartialEq)]
pub enum Instruction {
    /// Hand leadership to this peer.
    TransferLeader(metapb::Peer),
    /// Make one membership change.
    ChangePeer(ConfChangeType, metapb::Peer),
}

/// One step of an operator.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    AddLearner(metapb::Peer),
    Promote(metapb::Peer),
    LeaderAway { from_store: u64, to: metapb::Peer },
    Remove(metapb::Peer),
}

/// Where an operator stands after a heartbeat.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// Ask the leader to do this.
    Do(Instruction),
    /// The current step waits for the region (a learner still catching up).
    Wait,
    /// Every step is done.
    Finished,
    /// A step took longer than [`STEP_TIMEOUT`].
    TimedOut,
}

/// A plan for one region.
#[derive(Clone, Debug)]
pub struct Operator {
    /// The region.
    pub region_id: u64,
    /// Why PD made it (shown in logs and the operator list).
    pub why: String,
    steps: Vec<Step>,
    at: usize,
    step_started: Instant,
}

fn role_is(p: &metapb::Peer, role: metapb::PeerRole) -> bool {
    p.role == role as i32
}

impl Operator {
    /// Moves the replica `from` of `region_id` to `to` (a new peer id on the target store).
    pub fn move_peer(
        region_id: u64,
        from: metapb::Peer,
        to: metapb::Peer,
        why: impl Into<String>,
    ) -> Operator {
        let learner = metapb::Peer {
            role: metapb::PeerRole::Learner as i32,
            ..to
        };
        let voter = metapb::Peer {
            role: metapb::PeerRole::Voter as i32,
            ..to
        };
        Operator {
            region_id,
            why: why.into(),
            steps: vec![
                Step::AddLearner(learner),
                Step::Promote(voter),
                Step::LeaderAway {
                    from_store: from.store_id,
                    to: voter,
                },
                Step::Remove(from),
            ],
            at: 0,
            step_started: Instant::now(),
        }
    }

    /// The store a replica is moving to and the one it moves from.
    pub fn stores(&self) -> (u64, u64) {
        let to = match self.steps.first() {
            Some(Step::AddLearner(p)) => p.store_id,
            _ => 0,
        };
        let from = match self.steps.last() {
            Some(Step::Remove(p)) => p.store_id,
            _ => 0,
        };
        (to, from)
    }

    /// The step under way, in words (for the operator list).
    pub fn step_name(&self) -> &'static str {
        match self.steps.get(self.at) {
            Some(Step::AddLearner(_)) => "add-learner",
            Some(Step::Promote(_)) => "promote-learner",
            Some(Step::LeaderAway { .. }) => "transfer-leader",
            Some(Step::Remove(_)) => "remove-peer",
            None => "finished",
        }
    }

    /// Skips the steps `region` shows done and says what to do next. `pending` are the
    /// replicas the leader reports as still catching up.
    pub fn next(
        &mut self,
        region: &metapb::Region,
        leader: Option<&metapb::Peer>,
        pending: &[metapb::Peer],
    ) -> Progress {
        let has = |id: u64| region.peers.iter().find(|p| p.id == id);
        while let Some(step) = self.steps.get(self.at) {
            let done = match step {
                Step::AddLearner(p) => has(p.id).is_some(),
                Step::Promote(p) => has(p.id).is_some_and(|x| role_is(x, metapb::PeerRole::Voter)),
                Step::LeaderAway { from_store, .. } => {
                    leader.is_some_and(|l| l.store_id != *from_store)
                }
                Step::Remove(p) => has(p.id).is_none(),
            };
            if !done {
                break;
            }
            self.at += 1;
            self.step_started = Instant::now();
        }
        let Some(step) = self.steps.get(self.at) else {
            return Progress::Finished;
        };
        if self.step_started.elapsed() > STEP_TIMEOUT {
            return Progress::TimedOut;
        }
        match step {
            Step::AddLearner(p) => {
                Progress::Do(Instruction::ChangePeer(ConfChangeType::AddLearnerNode, *p))
            }
            Step::Promote(p) if pending.iter().any(|x| x.id == p.id) => Progress::Wait,
            Step::Promote(p) => Progress::Do(Instruction::ChangePeer(ConfChangeType::AddNode, *p)),
            Step::LeaderAway { from_store, to } => {
                // Prefer a voter that was there before (surely caught up); the new one else.
                let target = region
                    .peers
                    .iter()
                    .find(|p| {
                        p.store_id != *from_store
                            && p.id != to.id
                            && role_is(p, metapb::PeerRole::Voter)
                            && !pending.iter().any(|x| x.id == p.id)
                    })
                    .unwrap_or(to);
                Progress::Do(Instruction::TransferLeader(*target))
            }
            Step::Remove(p) => {
                Progress::Do(Instruction::ChangePeer(ConfChangeType::RemoveNode, *p))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, store_id: u64, role: metapb::PeerRole) -> metapb::Peer {
        metapb::Peer {
            id,
            store_id,
            role: role as i32,
            ..Default::default()
        }
    }

    fn region(peers: Vec<metapb::Peer>) -> metapb::Region {
        metapb::Region {
            id: 2,
            peers,
            ..Default::default()
        }
    }

    use metapb::PeerRole::{Learner, Voter};

    #[test]
    fn a_move_waits_for_the_learner_and_moves_the_leader_before_removing_it() {
        let (a, b, c) = (peer(3, 1, Voter), peer(4, 2, Voter), peer(5, 3, Voter));
        let mut op = Operator::move_peer(2, a, peer(9, 4, Voter), "test");
        let leader = Some(&a);
        let r = region(vec![a, b, c]);
        assert_eq!(
            op.next(&r, leader, &[]),
            Progress::Do(Instruction::ChangePeer(
                ConfChangeType::AddLearnerNode,
                peer(9, 4, Learner)
            ))
        );
        let learner = peer(9, 4, Learner);
        let r = region(vec![a, b, c, learner]);
        assert_eq!(
            op.next(&r, leader, &[learner]),
            Progress::Wait,
            "a pending learner is not promoted"
        );
        assert_eq!(
            op.next(&r, leader, &[]),
            Progress::Do(Instruction::ChangePeer(
                ConfChangeType::AddNode,
                peer(9, 4, Voter)
            ))
        );
        let r = region(vec![a, b, c, peer(9, 4, Voter)]);
        assert_eq!(
            op.next(&r, leader, &[]),
            Progress::Do(Instruction::TransferLeader(b)),
            "the leader leaves the store whose replica goes, for a voter that was there before"
        );
        let new_leader = b;
        assert_eq!(
            op.next(&r, Some(&new_leader), &[]),
            Progress::Do(Instruction::ChangePeer(ConfChangeType::RemoveNode, a))
        );
        let r = region(vec![b, c, peer(9, 4, Voter)]);
        assert_eq!(op.next(&r, Some(&new_leader), &[]), Progress::Finished);
    }

    #[test]
    fn steps_already_done_are_skipped() {
        let (a, b, c) = (peer(3, 1, Voter), peer(4, 2, Voter), peer(5, 3, Voter));
        let mut op = Operator::move_peer(2, c, peer(9, 4, Voter), "test");
        // The learner was added and promoted before PD heard of it; store 3 does not lead.
        let r = region(vec![a, b, c, peer(9, 4, Voter)]);
        assert_eq!(
            op.next(&r, Some(&a), &[]),
            Progress::Do(Instruction::ChangePeer(ConfChangeType::RemoveNode, c))
        );
        assert_eq!(op.stores(), (4, 3));
    }
}
