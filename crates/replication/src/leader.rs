//! The leader's side of one partition: what it knows of each follower, the high watermark it
//! derives from them, when it asks the controller to change the ISR, and when an acks=all
//! produce may be answered.
//!
//! ```text
//!            leader log end offset 120
//!   leader   [.......................]            ISR = {1, 2, 3}, min.insync.replicas = 2
//!   f2       [..................]  115
//!   f3       [.............]       110   <- the lowest in the ISR
//!                          ^
//!                   high watermark 110: every ISR member holds everything below it
//! ```
//!
//! Rules (Kafka's):
//! - The high watermark is the lowest log end offset among the ISR and any replica an ISR
//!   change in flight would add (KIP-497's "maximal ISR": the change may already be committed).
//!   It only moves forward, and only while the ISR has at least `min.insync.replicas` members
//!   (KIP-966: then every replica that leaves the ISR holds everything below it).
//! - A follower is caught up at a fetch from the leader's log end offset; one that has not
//!   been caught up for `replica.lag.time.max.ms` leaves the ISR. One that reaches the high
//!   watermark and this leadership's first offset rejoins. Either goes through the controller
//!   (AlterPartition, naming the partition epoch), one change at a time; the ISR changes here
//!   only when the committed metadata says so.
//! - acks=all is refused before the append while the ISR is smaller than
//!   `min.insync.replicas`, and answered once the high watermark passes the batch (with
//!   NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below it meanwhile).

use std::collections::BTreeMap;

use crate::BrokerId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max_ms: i64,
    /// The topic's `min.insync.replicas`.
    pub min_insync_replicas: usize,
}

/// The partition as the committed metadata has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

/// An ISR change for the controller (AlterPartition), with the broker epochs the leader saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub isr: Vec<(BrokerId, i64)>,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

/// What a follower's fetch changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchOutcome {
    /// The new high watermark, if it moved.
    pub high_watermark: Option<i64>,
    /// An ISR expansion to send to the controller.
    pub proposal: Option<IsrProposal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcksAll {
    Waiting,
    Acknowledged,
    NotEnoughReplicasAfterAppend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotEnoughReplicas {
    pub isr: usize,
    pub min_insync_replicas: usize,
}

#[derive(Debug, Clone, Copy)]
struct FollowerProgress {
    /// Unknown until its first fetch in this leadership.
    log_end_offset: Option<i64>,
    broker_epoch: i64,
    last_caught_up_ms: i64,
    last_fetch_ms: i64,
    last_fetch_leader_end_offset: i64,
}

#[derive(Debug, Clone)]
pub struct Leader {
    local: BrokerId,
    config: ReplicaConfig,
    assignment: Assignment,
    followers: BTreeMap<BrokerId, FollowerProgress>,
    log_end_offset: i64,
    high_watermark: i64,
    /// This leadership's first offset: a replica rejoins only once it has it.
    epoch_start_offset: i64,
    /// The ISR of an AlterPartition in flight.
    pending: Option<Vec<BrokerId>>,
}

impl Leader {
    /// Takes leadership at `now_ms` with the local log as it is. Followers get a full
    /// `replica.lag.time.max.ms` before they can be dropped from the ISR.
    pub fn new(
        local: BrokerId,
        config: ReplicaConfig,
        assignment: Assignment,
        log_end_offset: i64,
        high_watermark: i64,
        now_ms: i64,
    ) -> Leader {
        let mut leader = Leader {
            local,
            config,
            assignment: Assignment {
                replicas: Vec::new(),
                ..assignment.clone()
            },
            followers: BTreeMap::new(),
            log_end_offset,
            high_watermark: high_watermark.min(log_end_offset),
            epoch_start_offset: log_end_offset,
            pending: None,
        };
        let _ = leader.update_assignment(assignment, now_ms);
        leader
    }

    pub fn leader_epoch(&self) -> i32 {
        self.assignment.leader_epoch
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn isr(&self) -> &[BrokerId] {
        &self.assignment.isr
    }

    pub fn epoch_start_offset(&self) -> i64 {
        self.epoch_start_offset
    }

    pub fn set_config(&mut self, config: ReplicaConfig) -> Option<i64> {
        self.config = config;
        self.advance_high_watermark()
    }

    /// A follower's log end offset as of its last fetch, if it fetched in this leadership.
    pub fn follower_log_end_offset(&self, follower: BrokerId) -> Option<i64> {
        self.followers.get(&follower).and_then(|f| f.log_end_offset)
    }

    /// The committed metadata changed (same leadership: the caller starts a new `Leader` when
    /// the leader epoch moves). Returns the new high watermark if the change let it advance.
    pub fn update_assignment(&mut self, assignment: Assignment, now_ms: i64) -> Option<i64> {
        debug_assert_eq!(assignment.leader_epoch, self.assignment.leader_epoch);
        if assignment.partition_epoch > self.assignment.partition_epoch || self.assignment.replicas.is_empty() {
            self.pending = None;
        }
        for replica in &assignment.replicas {
            if *replica != self.local {
                self.followers.entry(*replica).or_insert(FollowerProgress {
                    log_end_offset: None,
                    broker_epoch: -1,
                    last_caught_up_ms: now_ms,
                    last_fetch_ms: now_ms,
                    last_fetch_leader_end_offset: -1,
                });
            }
        }
        self.followers.retain(|id, _| assignment.replicas.contains(id));
        self.assignment = assignment;
        self.advance_high_watermark()
    }

    /// The leader appended; its log now ends at `log_end_offset`.
    pub fn on_append(&mut self, log_end_offset: i64) -> Option<i64> {
        self.log_end_offset = log_end_offset;
        self.advance_high_watermark()
    }

    /// A follower fetched from `fetch_offset` (its log end offset). `eligible`: the metadata
    /// says it may join the ISR (registered, unfenced, not shutting down).
    pub fn on_follower_fetch(
        &mut self,
        follower: BrokerId,
        broker_epoch: i64,
        fetch_offset: i64,
        eligible: bool,
        now_ms: i64,
    ) -> FetchOutcome {
        let leader_end = self.log_end_offset;
        let Some(progress) = self.followers.get_mut(&follower) else {
            return FetchOutcome::default();
        };
        if fetch_offset >= leader_end {
            progress.last_caught_up_ms = progress.last_caught_up_ms.max(now_ms);
        } else if fetch_offset >= progress.last_fetch_leader_end_offset {
            progress.last_caught_up_ms = progress.last_caught_up_ms.max(progress.last_fetch_ms);
        }
        progress.last_fetch_leader_end_offset = leader_end;
        progress.last_fetch_ms = now_ms;
        progress.log_end_offset = Some(fetch_offset.min(leader_end));
        progress.broker_epoch = broker_epoch;

        let high_watermark = self.advance_high_watermark();
        let rejoins = !self.assignment.isr.contains(&follower)
            && eligible
            && self.pending.is_none()
            && fetch_offset >= self.high_watermark
            && fetch_offset >= self.epoch_start_offset;
        let proposal = rejoins.then(|| {
            let mut isr = self.assignment.isr.clone();
            isr.push(follower);
            self.propose(isr)
        });
        FetchOutcome {
            high_watermark,
            proposal,
        }
    }

    /// Drops followers that have not caught up for `replica.lag.time.max.ms`.
    pub fn tick(&mut self, now_ms: i64) -> Option<IsrProposal> {
        if self.pending.is_some() {
            return None;
        }
        let lag_max = self.config.replica_lag_time_max_ms;
        let lagging: Vec<BrokerId> = self
            .assignment
            .isr
            .iter()
            .copied()
            .filter(|id| *id != self.local)
            .filter(|id| {
                self.followers
                    .get(id)
                    .is_some_and(|f| now_ms - f.last_caught_up_ms > lag_max)
            })
            .collect();
        if lagging.is_empty() {
            return None;
        }
        let isr = self
            .assignment
            .isr
            .iter()
            .copied()
            .filter(|id| !lagging.contains(id))
            .collect();
        Some(self.propose(isr))
    }

    /// The change in flight, to send again when its answer was lost. A change stays in
    /// flight until the committed metadata moves the partition epoch (it may have been
    /// committed even if the answer says otherwise or never comes), except when the
    /// controller refused it outright ([`Leader::on_proposal_refused`]).
    pub fn pending_proposal(&self) -> Option<IsrProposal> {
        self.pending.as_ref().map(|isr| self.proposal_for(isr))
    }

    /// The controller refused the change at the current partition epoch (INELIGIBLE_REPLICA,
    /// INVALID_REQUEST): it was not committed, so a later fetch or tick may propose again.
    /// Errors that say the leadership or the partition epoch moved (FENCED_LEADER_EPOCH,
    /// INVALID_UPDATE_VERSION, NOT_LEADER_OR_FOLLOWER, STALE_BROKER_EPOCH) are not refusals:
    /// the change may be committed, and the metadata that says so is on its way.
    pub fn on_proposal_refused(&mut self) {
        self.pending = None;
    }

    /// `min.insync.replicas` as this leader applies it.
    pub fn min_insync_replicas(&self) -> usize {
        self.config.min_insync_replicas
    }

    /// Checked before an acks=all append.
    pub fn check_acks_all(&self) -> Result<(), NotEnoughReplicas> {
        let isr = self.assignment.isr.len();
        if isr < self.config.min_insync_replicas {
            return Err(NotEnoughReplicas {
                isr,
                min_insync_replicas: self.config.min_insync_replicas,
            });
        }
        Ok(())
    }

    /// Where an acks=all produce whose last record is at `last_offset` stands.
    pub fn acks_all(&self, last_offset: i64) -> AcksAll {
        if self.high_watermark <= last_offset {
            AcksAll::Waiting
        } else if self.assignment.isr.len() < self.config.min_insync_replicas {
            AcksAll::NotEnoughReplicasAfterAppend
        } else {
            AcksAll::Acknowledged
        }
    }

    fn propose(&mut self, isr: Vec<BrokerId>) -> IsrProposal {
        let proposal = self.proposal_for(&isr);
        self.pending = Some(isr);
        proposal
    }

    fn proposal_for(&self, isr: &[BrokerId]) -> IsrProposal {
        IsrProposal {
            isr: isr
                .iter()
                .map(|id| {
                    let epoch = self.followers.get(id).map_or(-1, |f| f.broker_epoch);
                    (*id, epoch)
                })
                .collect(),
            leader_epoch: self.assignment.leader_epoch,
            partition_epoch: self.assignment.partition_epoch,
        }
    }

    fn advance_high_watermark(&mut self) -> Option<i64> {
        if self.assignment.isr.len() < self.config.min_insync_replicas {
            return None;
        }
        let maximal = self.assignment.isr.iter().chain(self.pending.iter().flatten()).copied();
        let mut lowest = self.log_end_offset;
        for id in maximal {
            if id == self.local {
                continue;
            }
            match self.followers.get(&id).and_then(|f| f.log_end_offset) {
                Some(end) => lowest = lowest.min(end),
                // Not heard from in this leadership: nothing new is known to be on it.
                None => return None,
            }
        }
        (lowest > self.high_watermark).then(|| {
            self.high_watermark = lowest;
            lowest
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG_MS: i64 = 10_000;

    fn leader(isr: &[BrokerId], min_isr: usize) -> Leader {
        Leader::new(
            1,
            ReplicaConfig {
                replica_lag_time_max_ms: LAG_MS,
                min_insync_replicas: min_isr,
            },
            Assignment {
                replicas: vec![1, 2, 3],
                isr: isr.to_vec(),
                leader_epoch: 5,
                partition_epoch: 7,
            },
            100,
            90,
            0,
        )
    }

    #[test]
    fn the_high_watermark_waits_for_every_isr_member() {
        let mut l = leader(&[1, 2, 3], 1);
        assert_eq!(l.on_append(120), None, "followers not heard from yet");
        assert_eq!(l.on_follower_fetch(2, 11, 115, true, 1).high_watermark, None);
        assert_eq!(l.on_follower_fetch(3, 12, 110, true, 1).high_watermark, Some(110));
        assert_eq!(l.acks_all(109), AcksAll::Acknowledged);
        assert_eq!(l.acks_all(110), AcksAll::Waiting);
        assert_eq!(l.on_follower_fetch(3, 12, 120, true, 2).high_watermark, Some(115));
        assert_eq!(
            l.on_follower_fetch(3, 12, 100, true, 3).high_watermark,
            None,
            "never back"
        );
        assert_eq!(l.high_watermark(), 115);
    }

    #[test]
    fn a_lagging_follower_is_proposed_out_and_back_in_once_caught_up() {
        let mut l = leader(&[1, 2, 3], 1);
        let _ = l.on_append(200);
        let _ = l.on_follower_fetch(2, 11, 200, true, 1_000);
        let _ = l.on_follower_fetch(3, 12, 150, true, 1_000);
        assert_eq!(l.tick(LAG_MS), None, "3 still has its grace from the leadership start");
        let _ = l.on_follower_fetch(2, 11, 200, true, LAG_MS + 500);
        let proposal = l.tick(LAG_MS + 1_000).expect("3 is out");
        assert_eq!(proposal.isr, vec![(1, -1), (2, 11)]);
        assert_eq!((proposal.leader_epoch, proposal.partition_epoch), (5, 7));
        assert_eq!(l.tick(LAG_MS + 2_000), None, "one change at a time");

        // The controller commits it; 3 catches up and is proposed back.
        let _ = l.update_assignment(
            Assignment {
                replicas: vec![1, 2, 3],
                isr: vec![1, 2],
                leader_epoch: 5,
                partition_epoch: 8,
            },
            LAG_MS + 3_000,
        );
        let outcome = l.on_follower_fetch(3, 12, 200, true, LAG_MS + 4_000);
        let proposal = outcome.proposal.expect("caught up");
        assert_eq!(proposal.isr, vec![(1, -1), (2, 11), (3, 12)]);
        assert_eq!(proposal.partition_epoch, 8);
        // A fenced follower is not proposed.
        let mut l2 = leader(&[1, 2], 1);
        assert_eq!(l2.on_follower_fetch(3, 12, 100, false, 1).proposal, None);
    }

    #[test]
    fn a_rejoining_replica_counts_for_the_high_watermark_while_its_change_is_in_flight() {
        let mut l = leader(&[1, 2], 1);
        let _ = l.on_append(100);
        let _ = l.on_follower_fetch(2, 11, 100, true, 1);
        assert_eq!(l.high_watermark(), 100);
        let outcome = l.on_follower_fetch(3, 12, 100, true, 2);
        assert!(outcome.proposal.is_some());
        let _ = l.on_append(130);
        let _ = l.on_follower_fetch(2, 11, 130, true, 3);
        assert_eq!(l.high_watermark(), 100, "3 may already be in the committed ISR");
        assert_eq!(l.on_follower_fetch(3, 12, 130, true, 4).high_watermark, Some(130));
    }

    #[test]
    fn below_min_isr_acks_all_is_refused_and_the_high_watermark_holds() {
        let mut l = leader(&[1], 2);
        assert_eq!(
            l.check_acks_all(),
            Err(NotEnoughReplicas {
                isr: 1,
                min_insync_replicas: 2
            })
        );
        assert_eq!(l.on_append(150), None, "KIP-966: no progress under min.insync.replicas");
        let mut l = leader(&[1, 2], 2);
        let _ = l.on_append(150);
        let _ = l.on_follower_fetch(2, 11, 150, true, 1);
        assert_eq!(l.acks_all(149), AcksAll::Acknowledged);
        let _ = l.update_assignment(
            Assignment {
                replicas: vec![1, 2, 3],
                isr: vec![1],
                leader_epoch: 5,
                partition_epoch: 8,
            },
            2,
        );
        assert_eq!(l.acks_all(149), AcksAll::NotEnoughReplicasAfterAppend);
    }
}
