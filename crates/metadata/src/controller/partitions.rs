//! Changes to existing partitions: ISR changes asked for by leaders (AlterPartition, KIP-497),
//! leader elections asked for by operators (ElectLeaders), and reassignments
//! (AlterPartitionReassignments: new replicas catch up before old ones leave).

use uuid::Uuid;

use super::{Controller, ControllerError, Plan};
use crate::election::{diff, Election};
use crate::image::{apply_partition_change, MetadataImage};
use crate::records::{BrokerId, LeaderRecoveryState, MetadataRecord, PartitionChange, PartitionState, NO_LEADER};

/// A member of the ISR a leader proposes, with the broker epoch the leader saw it at
/// (-1 if unknown), so a replica that restarted meanwhile is not taken back in by mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IsrMember {
    pub id: BrokerId,
    pub broker_epoch: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlterPartition {
    pub broker_id: BrokerId,
    pub broker_epoch: i64,
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<IsrMember>,
    pub leader_recovery_state: LeaderRecoveryState,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionReassignment {
    pub topic: String,
    pub partition: i32,
    /// The replicas to move to; `None` cancels a reassignment in progress.
    pub target: Option<Vec<BrokerId>>,
}

pub type ElectionResult = Vec<((String, i32), Result<(), ControllerError>)>;
pub type ReassignmentResult = ElectionResult;

impl Controller {
    /// Several leaders' ISR changes at once (a broker sends all it has in one request, as
    /// Kafka's AlterPartition carries many partitions), each decided on its own against the
    /// same image: one partition's refusal does not stop the others. A partition named twice
    /// is decided once; its repeats are refused.
    pub fn alter_partitions(
        &mut self,
        image: &MetadataImage,
        requests: &[AlterPartition],
    ) -> Plan<Vec<Result<PartitionState, ControllerError>>> {
        let mut records = Vec::new();
        let mut replies = Vec::with_capacity(requests.len());
        let mut seen = std::collections::BTreeSet::new();
        for request in requests {
            if !seen.insert((request.topic_id, request.partition)) {
                replies.push(Err(ControllerError::InvalidRequest(format!(
                    "partition {} of topic {} is named twice",
                    request.partition, request.topic_id
                ))));
                continue;
            }
            match self.alter_partition(image, request) {
                Ok(plan) => {
                    records.extend(plan.records);
                    replies.push(Ok(plan.reply));
                }
                Err(e) => replies.push(Err(e)),
            }
        }
        Plan::new(records, replies)
    }

    /// A leader's ISR change. The answer is the partition as it will be once committed.
    pub fn alter_partition(
        &mut self,
        image: &MetadataImage,
        request: &AlterPartition,
    ) -> Result<Plan<PartitionState>, ControllerError> {
        let broker = image
            .broker(request.broker_id)
            .ok_or(ControllerError::BrokerNotRegistered(request.broker_id))?;
        if broker.epoch != request.broker_epoch {
            return Err(ControllerError::StaleBrokerEpoch {
                id: request.broker_id,
                epoch: request.broker_epoch,
                current: broker.epoch,
            });
        }
        let topic = image
            .topic(&request.topic_id)
            .ok_or(ControllerError::UnknownTopicId(request.topic_id))?;
        let state = topic
            .partitions
            .get(&request.partition)
            .ok_or_else(|| ControllerError::UnknownTopicOrPartition(format!("{}-{}", topic.name, request.partition)))?;
        if state.leader != request.broker_id {
            return Err(ControllerError::NotLeader(request.broker_id));
        }
        if request.leader_epoch != state.leader_epoch {
            return Err(ControllerError::FencedLeaderEpoch {
                got: request.leader_epoch,
                current: state.leader_epoch,
            });
        }
        if request.partition_epoch != state.partition_epoch {
            return Err(ControllerError::InvalidUpdateVersion {
                got: request.partition_epoch,
                current: state.partition_epoch,
            });
        }
        let isr: Vec<BrokerId> = request.new_isr.iter().map(|m| m.id).collect();
        if !isr.contains(&state.leader) {
            return Err(ControllerError::InvalidRequest(
                "the leader must stay in the ISR".into(),
            ));
        }
        if let Some(stranger) = isr.iter().find(|b| !state.replicas.contains(b)) {
            return Err(ControllerError::InvalidRequest(format!(
                "broker {stranger} is not a replica of this partition"
            )));
        }
        for member in &request.new_isr {
            if state.isr.contains(&member.id) {
                continue;
            }
            let eligible = image.is_usable(member.id)
                && (member.broker_epoch == -1
                    || image.broker(member.id).is_some_and(|b| b.epoch == member.broker_epoch));
            if !eligible {
                return Err(ControllerError::IneligibleReplica(format!(
                    "broker {} cannot join the ISR: fenced, shutting down, or of another session",
                    member.id
                )));
            }
        }
        match (state.leader_recovery_state, request.leader_recovery_state) {
            (LeaderRecoveryState::Recovered, LeaderRecoveryState::Recovering) => {
                return Err(ControllerError::InvalidRequest(
                    "a recovered partition cannot go back to recovering".into(),
                ))
            }
            (_, LeaderRecoveryState::Recovering) if isr.len() > 1 => {
                return Err(ControllerError::InvalidRequest(
                    "a recovering leader cannot have followers in sync".into(),
                ))
            }
            _ => {}
        }

        let mut next = state.clone();
        let usable = |b: BrokerId| image.is_usable(b);
        if let Some(change) = self.decide(image, &topic.name, state, &isr, Election::Clean, &usable) {
            apply_partition_change(&mut next, &change);
        }
        next.leader_recovery_state = request.leader_recovery_state;
        self.complete_reassignment(image, &topic.name, &mut next);
        let records = changes_to(topic.id, request.partition, state, &next);
        Ok(Plan::new(records, committed(state, &next)))
    }

    /// Preferred or unclean elections; `None` means every partition (answering only for those
    /// that need one).
    pub fn elect_leaders(
        &mut self,
        image: &MetadataImage,
        election: Election,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Plan<ElectionResult> {
        let all = partitions.is_none();
        let wanted: Vec<(String, i32)> = partitions.unwrap_or_else(|| {
            image
                .partitions()
                .map(|(topic, partition, _)| (topic.name.clone(), partition))
                .collect()
        });
        let mut records = Vec::new();
        let mut results = Vec::new();
        for (name, partition) in wanted {
            let Some((topic, state)) = image
                .topic_by_name(&name)
                .and_then(|t| t.partitions.get(&partition).map(|s| (t, s)))
            else {
                let error = ControllerError::UnknownTopicOrPartition(format!("{name}-{partition}"));
                results.push(((name, partition), Err(error)));
                continue;
            };
            let outcome = self.elect_one(image, (&topic.name, topic.id), partition, state, election);
            match outcome {
                Err(ControllerError::ElectionNotNeeded) if all => {}
                Err(ControllerError::PreferredLeaderNotAvailable) if all => {}
                Err(e) => results.push(((name, partition), Err(e))),
                Ok(record) => {
                    records.push(record);
                    results.push(((name, partition), Ok(())));
                }
            }
        }
        Plan::new(records, results)
    }

    fn elect_one(
        &self,
        image: &MetadataImage,
        topic: (&str, Uuid),
        partition: i32,
        state: &PartitionState,
        election: Election,
    ) -> Result<MetadataRecord, ControllerError> {
        let usable = |b: BrokerId| image.is_usable(b);
        match election {
            Election::Preferred => {
                let preferred = state.replicas.first().copied().unwrap_or(NO_LEADER);
                if state.leader == preferred {
                    return Err(ControllerError::ElectionNotNeeded);
                }
                let record = self.settle(image, topic, partition, state, &state.isr, Election::Preferred, &usable);
                match record {
                    Some(MetadataRecord::PartitionChange(change)) if change.leader == Some(preferred) => {
                        Ok(MetadataRecord::PartitionChange(change))
                    }
                    _ => Err(ControllerError::PreferredLeaderNotAvailable),
                }
            }
            Election::Unclean | Election::Clean => {
                if state.has_leader() {
                    return Err(ControllerError::ElectionNotNeeded);
                }
                let record = self.settle(image, topic, partition, state, &state.isr, election, &usable);
                match record {
                    Some(MetadataRecord::PartitionChange(change)) if change.leader.is_some_and(|l| l != NO_LEADER) => {
                        Ok(MetadataRecord::PartitionChange(change))
                    }
                    _ => Err(ControllerError::EligibleLeadersNotAvailable),
                }
            }
        }
    }

    pub fn alter_reassignments(
        &mut self,
        image: &MetadataImage,
        requests: Vec<PartitionReassignment>,
    ) -> Plan<ReassignmentResult> {
        let mut records = Vec::new();
        let mut results = Vec::new();
        for request in requests {
            let key = (request.topic.clone(), request.partition);
            let Some((topic, state)) = image
                .topic_by_name(&request.topic)
                .and_then(|t| t.partitions.get(&request.partition).map(|s| (t, s)))
            else {
                let error =
                    ControllerError::UnknownTopicOrPartition(format!("{}-{}", request.topic, request.partition));
                results.push((key, Err(error)));
                continue;
            };
            let next = match &request.target {
                Some(target) => self.start_reassignment(image, &topic.name, state, target),
                None => self.cancel_reassignment(image, &topic.name, state),
            };
            match next {
                Ok(next) => {
                    records.extend(changes_to(topic.id, request.partition, state, &next));
                    results.push((key, Ok(())));
                }
                Err(e) => results.push((key, Err(e))),
            }
        }
        Plan::new(records, results)
    }

    /// Partitions being reassigned: (topic, partition, replicas, adding, removing).
    pub fn list_reassignments(image: &MetadataImage) -> Vec<(String, i32, &PartitionState)> {
        image
            .partitions()
            .filter(|(_, _, s)| s.is_reassigning())
            .map(|(t, p, s)| (t.name.clone(), p, s))
            .collect()
    }

    fn start_reassignment(
        &self,
        image: &MetadataImage,
        topic: &str,
        state: &PartitionState,
        target: &[BrokerId],
    ) -> Result<PartitionState, ControllerError> {
        let invalid = |m: String| Err(ControllerError::InvalidReplicaAssignment(m));
        if target.is_empty() {
            return invalid("a reassignment needs at least one replica".into());
        }
        if (1..target.len()).any(|i| target[..i].contains(&target[i])) {
            return invalid(format!("the target {target:?} lists a broker twice"));
        }
        if let Some(missing) = target.iter().find(|b| image.broker(**b).is_none()) {
            return invalid(format!("the target names broker {missing}, which is not registered"));
        }
        // Replicas that were there before any reassignment began; a new target replaces an
        // unfinished one.
        let original: Vec<BrokerId> = state
            .replicas
            .iter()
            .copied()
            .filter(|r| !state.adding_replicas.contains(r))
            .collect();
        let mut next = state.clone();
        next.replicas = target.to_vec();
        next.replicas
            .extend(state.replicas.iter().copied().filter(|r| !target.contains(r)));
        next.adding_replicas = target.iter().copied().filter(|r| !original.contains(r)).collect();
        next.removing_replicas = state.replicas.iter().copied().filter(|r| !target.contains(r)).collect();
        self.complete_reassignment(image, topic, &mut next);
        Ok(next)
    }

    fn cancel_reassignment(
        &self,
        image: &MetadataImage,
        topic: &str,
        state: &PartitionState,
    ) -> Result<PartitionState, ControllerError> {
        if !state.is_reassigning() {
            return Err(ControllerError::NoReassignmentInProgress);
        }
        let mut next = state.clone();
        next.replicas.retain(|r| !state.adding_replicas.contains(r));
        next.adding_replicas.clear();
        next.removing_replicas.clear();
        self.shrink_to_replicas(image, topic, &mut next);
        Ok(next)
    }

    /// Ends a reassignment once every target replica is in sync: the leaving replicas go, and
    /// leadership moves if the leader is one of them.
    fn complete_reassignment(&self, image: &MetadataImage, topic: &str, next: &mut PartitionState) {
        let target = next.target_replicas();
        if !next.is_reassigning() || !target.iter().all(|r| next.isr.contains(r)) {
            return;
        }
        next.replicas = target;
        next.adding_replicas.clear();
        next.removing_replicas.clear();
        self.shrink_to_replicas(image, topic, next);
    }

    /// After the replica list shrank: the ISR and ELR keep only assigned replicas, and a
    /// leader that is no longer assigned hands over.
    fn shrink_to_replicas(&self, image: &MetadataImage, topic: &str, next: &mut PartitionState) {
        let replicas = next.replicas.clone();
        next.isr.retain(|r| replicas.contains(r));
        next.elr.retain(|r| replicas.contains(r));
        next.last_known_elr.retain(|r| replicas.contains(r));
        if next.leader != NO_LEADER && !replicas.contains(&next.leader) {
            let usable = |b: BrokerId| image.is_usable(b) && replicas.contains(&b);
            let isr = next.isr.clone();
            let scratch = PartitionState {
                leader: NO_LEADER,
                ..next.clone()
            };
            if let Some(change) = self.decide(image, topic, &scratch, &isr, Election::Clean, &usable) {
                let mut elected = scratch.clone();
                apply_partition_change(&mut elected, &change);
                next.leader = elected.leader;
                next.isr = elected.isr;
                next.elr = elected.elr;
                next.last_known_elr = elected.last_known_elr;
                next.leader_recovery_state = elected.leader_recovery_state;
            } else {
                next.leader = NO_LEADER;
            }
        }
    }
}

/// The record taking `old` to `new`, if they differ.
fn changes_to(topic_id: Uuid, partition: i32, old: &PartitionState, new: &PartitionState) -> Vec<MetadataRecord> {
    diff(old, new)
        .map(|change| {
            MetadataRecord::PartitionChange(PartitionChange {
                topic_id,
                partition,
                ..change
            })
        })
        .into_iter()
        .collect()
}

/// `new` with the epochs it will have once its change is applied to `old`.
fn committed(old: &PartitionState, new: &PartitionState) -> PartitionState {
    let mut state = old.clone();
    if let Some(change) = diff(old, new) {
        apply_partition_change(&mut state, &change);
    }
    state
}
