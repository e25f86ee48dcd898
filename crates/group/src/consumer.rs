//! The consumer group protocol of KIP-848: members heartbeat their subscription, the
//! coordinator computes the assignment (server-side assignors) and hands it out incrementally.
//!
//! A group has a *group epoch*, bumped whenever membership, subscriptions or the subscribed
//! topics' partition counts change, and a *target assignment* computed for that epoch. Each
//! member converges on its target one heartbeat at a time: partitions it must give up are
//! revoked first (its epoch stays put until it reports them gone), and partitions it gains are
//! handed over only once no other member still holds them. A member then carries the
//! assignment epoch. Stale epochs are fenced (FENCED_MEMBER_EPOCH) so a zombie cannot act.
//!
//! A group id is either classic or consumer while it has members; committed offsets belong to
//! the id and are shared (the classic state of a consumer group's id stays Empty). Whenever a
//! group's epochs, members or assignments change, a snapshot of it is written to
//! `__consumer_offsets` before the heartbeat is answered; at start-up the snapshot restores the
//! group, members keep their epochs and assignments and get fresh sessions.

use std::collections::{BTreeMap, BTreeSet};

use crate::coordinator::{Coordinator, GroupError, Output};
use crate::group::{Group, GroupState};
use crate::records::{ConsumerGroupSnapshot, ConsumerMemberSnapshot, Record, StoredAssignment};

/// Partitions by topic name.
pub type Assignment = BTreeMap<String, BTreeSet<i32>>;

/// The assignors a member may ask for; the first is the default.
pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// Member epochs with a meaning of their own in a heartbeat.
const JOINING_EPOCH: i32 = 0;
const LEAVING_EPOCH: i32 = -1;
const STATIC_LEAVING_EPOCH: i32 = -2;

#[derive(Debug, Clone)]
pub struct ConsumerHeartbeat {
    pub group_id: String,
    /// Empty on a first join with ConsumerGroupHeartbeat v0 (the coordinator names the member).
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub client_id: String,
    pub client_host: String,
    /// `None`: unchanged since the last heartbeat.
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// The partitions the member holds, when it reports them.
    pub owned: Option<Assignment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerHeartbeatAnswer {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's whole assignment, when it changed since the last answer.
    pub assignment: Option<Assignment>,
}

#[derive(Debug, Clone)]
pub(crate) struct ConsumerMember {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) rack_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) member_epoch: i32,
    pub(crate) previous_member_epoch: i32,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) subscribed_topic_names: Vec<String>,
    pub(crate) subscribed_topic_regex: Option<regex::Regex>,
    /// What the member holds as far as the coordinator knows, including `revoking`.
    pub(crate) assigned: Assignment,
    /// Partitions the member was told to give up and has not yet reported gone.
    pub(crate) revoking: Assignment,
    pub(crate) last_sent: Option<Assignment>,
    pub(crate) session_deadline_ms: i64,
    /// A member that does not finish revoking by then is removed.
    pub(crate) revocation_deadline_ms: Option<i64>,
}

impl ConsumerMember {
    pub(crate) fn subscribes_to(&self, topic: &str) -> bool {
        self.subscribed_topic_names.iter().any(|name| name == topic)
            || self
                .subscribed_topic_regex
                .as_ref()
                .is_some_and(|regex| regex.is_match(topic))
    }

    /// The assignment the member should act on now: what it holds minus what it must give up.
    fn current(&self) -> Assignment {
        difference(&self.assigned, &self.revoking)
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ConsumerGroup {
    pub(crate) group_epoch: i32,
    pub(crate) assignment_epoch: i32,
    pub(crate) assignor: String,
    pub(crate) members: BTreeMap<String, ConsumerMember>,
    pub(crate) target: BTreeMap<String, Assignment>,
    /// Partition counts of the subscribed topics the target was computed from.
    pub(crate) subscribed_metadata: BTreeMap<String, i32>,
    /// When the group lost its last member, for offset retention; -1 while it has members.
    pub(crate) emptied_at_ms: i64,
    /// What was last written, so unchanged heartbeats write nothing.
    pub(crate) last_persisted: Option<ConsumerGroupSnapshot>,
}

impl ConsumerGroup {
    pub(crate) fn snapshot(&self) -> ConsumerGroupSnapshot {
        ConsumerGroupSnapshot {
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: self.assignor.clone(),
            emptied_at_ms: self.emptied_at_ms,
            subscribed_metadata: self.subscribed_metadata.iter().map(|(t, c)| (t.clone(), *c)).collect(),
            members: self
                .members
                .values()
                .map(|member| ConsumerMemberSnapshot {
                    member_id: member.member_id.clone(),
                    instance_id: member.instance_id.clone(),
                    rack_id: member.rack_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    member_epoch: member.member_epoch,
                    previous_member_epoch: member.previous_member_epoch,
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    subscribed_topic_names: member.subscribed_topic_names.clone(),
                    subscribed_topic_regex: member.subscribed_topic_regex.as_ref().map(pattern_of),
                    assigned: stored(&member.assigned),
                    revoking: stored(&member.revoking),
                    target: stored(self.target.get(&member.member_id).unwrap_or(&Assignment::new())),
                })
                .collect(),
        }
    }

    /// The group a snapshot describes; members get fresh sessions from `now_ms`.
    pub(crate) fn restore(snapshot: ConsumerGroupSnapshot, now_ms: i64, session_timeout_ms: i32) -> ConsumerGroup {
        let mut group = ConsumerGroup {
            group_epoch: snapshot.group_epoch,
            assignment_epoch: snapshot.assignment_epoch,
            assignor: snapshot.assignor.clone(),
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            subscribed_metadata: snapshot.subscribed_metadata.iter().cloned().collect(),
            emptied_at_ms: snapshot.emptied_at_ms,
            last_persisted: None,
        };
        for member in &snapshot.members {
            let revoking = unstored(&member.revoking);
            group.target.insert(member.member_id.clone(), unstored(&member.target));
            group.members.insert(
                member.member_id.clone(),
                ConsumerMember {
                    member_id: member.member_id.clone(),
                    instance_id: member.instance_id.clone(),
                    rack_id: member.rack_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    member_epoch: member.member_epoch,
                    previous_member_epoch: member.previous_member_epoch,
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    subscribed_topic_names: member.subscribed_topic_names.clone(),
                    subscribed_topic_regex: member.subscribed_topic_regex.as_deref().and_then(|p| compile(p).ok()),
                    assigned: unstored(&member.assigned),
                    revocation_deadline_ms: (!revoking.is_empty())
                        .then(|| now_ms + i64::from(member.rebalance_timeout_ms.max(1))),
                    revoking,
                    last_sent: None,
                    session_deadline_ms: now_ms + i64::from(session_timeout_ms),
                },
            );
        }
        group.last_persisted = Some(snapshot);
        group
    }

    /// The state names of KIP-848's ConsumerGroupDescribe and ListGroups.
    pub(crate) fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .filter(|member| member.member_epoch != STATIC_LEAVING_EPOCH)
            .any(|member| member.member_epoch != self.assignment_epoch || !member.revoking.is_empty())
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }
}

/// A consumer group member as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub assignment: Assignment,
    pub target_assignment: Assignment,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupDescription {
    pub state: &'static str,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<ConsumerMemberDescription>,
}

/// Broker settings for consumer groups, under Kafka's names.
#[derive(Debug, Clone)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.session.timeout.ms`
    pub session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`
    pub heartbeat_interval_ms: i32,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        // Kafka heartbeats every 5 s; members learn of a new assignment only on a heartbeat, so
        // a shorter interval is what makes rebalances take well under a second here.
        ConsumerGroupConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 500,
        }
    }
}

impl Coordinator {
    /// ConsumerGroupHeartbeat. `topics` is the broker's topic metadata (name -> partition
    /// count), without internal topics.
    pub fn consumer_heartbeat(
        &mut self,
        now_ms: i64,
        request: ConsumerHeartbeat,
        topics: &BTreeMap<String, i32>,
    ) -> Result<ConsumerHeartbeatAnswer, GroupError> {
        if request.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        if let Some(assignor) = &request.server_assignor {
            if !ASSIGNORS.contains(&assignor.as_str()) {
                return Err(GroupError::UnsupportedAssignor);
            }
        }
        let regex = match &request.subscribed_topic_regex {
            Some(pattern) if !pattern.is_empty() => Some(compile(pattern)?),
            _ => None,
        };
        let heartbeat_interval_ms = self.config.consumer.heartbeat_interval_ms;
        let session_timeout_ms = self.config.consumer.session_timeout_ms;
        let max_size = self.config.max_size;
        if !self.groups.contains_key(&request.group_id) {
            if request.member_epoch != JOINING_EPOCH {
                return Err(GroupError::UnknownMemberId);
            }
            let group = Group::new(request.group_id.clone(), now_ms);
            self.groups.insert(request.group_id.clone(), group);
        }
        let new_member_id = if request.member_epoch == JOINING_EPOCH && request.member_id.is_empty() {
            Some(self.new_member_id(&request.client_id))
        } else {
            None
        };
        let group = self.groups.get_mut(&request.group_id).expect("inserted above");
        if !group.members.is_empty() || group.is(GroupState::Dead) {
            // A classic group with members: this id is not a consumer group.
            return Err(GroupError::GroupIdNotFound);
        }
        let consumer = group.consumer.get_or_insert_with(|| ConsumerGroup {
            assignor: ASSIGNORS[0].to_string(),
            emptied_at_ms: -1,
            ..ConsumerGroup::default()
        });
        let member_id = new_member_id.unwrap_or_else(|| request.member_id.clone());
        match request.member_epoch {
            STATIC_LEAVING_EPOCH
                if consumer
                    .members
                    .get(&member_id)
                    .is_some_and(|member| member.instance_id.is_some()) =>
            {
                // A static member going away for a restart: its partitions stay reserved for
                // the instance until it returns or its session ends; nobody rebalances.
                let member = consumer.members.get_mut(&member_id).expect("checked above");
                member.previous_member_epoch = member.member_epoch;
                member.member_epoch = STATIC_LEAVING_EPOCH;
                persist_if_changed(&mut self.outputs, &request.group_id, consumer, now_ms);
                return Ok(ConsumerHeartbeatAnswer {
                    member_id,
                    member_epoch: STATIC_LEAVING_EPOCH,
                    heartbeat_interval_ms,
                    assignment: None,
                });
            }
            LEAVING_EPOCH | STATIC_LEAVING_EPOCH => {
                if consumer.members.remove(&member_id).is_none() {
                    return Err(GroupError::UnknownMemberId);
                }
                consumer.target.remove(&member_id);
                consumer.group_epoch += 1;
                persist_if_changed(&mut self.outputs, &request.group_id, consumer, now_ms);
                return Ok(ConsumerHeartbeatAnswer {
                    member_id,
                    member_epoch: request.member_epoch,
                    heartbeat_interval_ms,
                    assignment: None,
                });
            }
            JOINING_EPOCH => {
                if request.subscribed_topic_names.is_none() && regex.is_none() {
                    return Err(GroupError::InvalidRequest("a joining member must subscribe"));
                }
                let mut returning = None;
                if let Some(instance_id) = &request.instance_id {
                    let holder = consumer
                        .members
                        .values()
                        .find(|member| {
                            member.instance_id.as_ref() == Some(instance_id) && member.member_id != member_id
                        })
                        .map(|member| (member.member_id.clone(), member.member_epoch));
                    match holder {
                        Some((holder_id, STATIC_LEAVING_EPOCH)) => returning = consumer.members.remove(&holder_id),
                        Some(_) => return Err(GroupError::UnreleasedInstanceId),
                        None => {}
                    }
                }
                if !consumer.members.contains_key(&member_id) && consumer.members.len() >= max_size {
                    return Err(GroupError::GroupMaxSizeReached);
                }
                let member = ConsumerMember {
                    member_id: member_id.clone(),
                    instance_id: request.instance_id.clone(),
                    rack_id: request.rack_id.clone(),
                    client_id: request.client_id.clone(),
                    client_host: request.client_host.clone(),
                    member_epoch: JOINING_EPOCH,
                    previous_member_epoch: JOINING_EPOCH,
                    rebalance_timeout_ms: request.rebalance_timeout_ms,
                    subscribed_topic_names: request.subscribed_topic_names.clone().unwrap_or_default(),
                    subscribed_topic_regex: regex,
                    assigned: Assignment::new(),
                    revoking: Assignment::new(),
                    last_sent: None,
                    session_deadline_ms: 0,
                    revocation_deadline_ms: None,
                };
                if let Some(assignor) = &request.server_assignor {
                    consumer.assignor = assignor.clone();
                }
                match returning {
                    // A static member back from a restart takes over its instance's place:
                    // same partitions, same epoch, no new group epoch unless it subscribes
                    // differently.
                    Some(previous) => {
                        let unchanged = previous.subscribed_topic_names == member.subscribed_topic_names
                            && previous.subscribed_topic_regex.as_ref().map(regex::Regex::as_str)
                                == member.subscribed_topic_regex.as_ref().map(regex::Regex::as_str);
                        let target = consumer.target.remove(&previous.member_id).unwrap_or_default();
                        consumer.target.insert(member_id.clone(), target);
                        consumer.members.insert(
                            member_id.clone(),
                            ConsumerMember {
                                member_epoch: previous.previous_member_epoch,
                                previous_member_epoch: previous.previous_member_epoch,
                                assigned: previous.assigned,
                                revoking: previous.revoking,
                                ..member
                            },
                        );
                        if !unchanged {
                            consumer.group_epoch += 1;
                        }
                    }
                    // A member joining again (after being fenced) starts over with nothing.
                    None => {
                        consumer.members.insert(member_id.clone(), member);
                        consumer.group_epoch += 1;
                    }
                }
            }
            epoch => {
                let member = consumer
                    .members
                    .get_mut(&member_id)
                    .ok_or(GroupError::UnknownMemberId)?;
                let retry_of_previous = epoch == member.previous_member_epoch
                    && request
                        .owned
                        .as_ref()
                        .is_none_or(|owned| is_subset(owned, &member.assigned));
                if epoch != member.member_epoch && !retry_of_previous {
                    return Err(GroupError::FencedMemberEpoch);
                }
                let mut changed = false;
                if let Some(names) = &request.subscribed_topic_names {
                    changed |= *names != member.subscribed_topic_names;
                    member.subscribed_topic_names = names.clone();
                }
                if request.subscribed_topic_regex.is_some() {
                    let old = member.subscribed_topic_regex.as_ref().map(regex::Regex::as_str);
                    changed |= old != regex.as_ref().map(regex::Regex::as_str);
                    member.subscribed_topic_regex = regex;
                }
                if request.rebalance_timeout_ms > 0 {
                    member.rebalance_timeout_ms = request.rebalance_timeout_ms;
                }
                if changed {
                    consumer.group_epoch += 1;
                }
            }
        }
        let member = consumer.members.get_mut(&member_id).expect("present above");
        member.session_deadline_ms = now_ms + i64::from(session_timeout_ms);
        refresh_target(consumer, topics);
        reconcile(consumer, &member_id, request.owned.as_ref(), now_ms);
        persist_if_changed(&mut self.outputs, &request.group_id, consumer, now_ms);
        let member = consumer.members.get_mut(&member_id).expect("present above");
        let current = member.current();
        let send = request.member_epoch == JOINING_EPOCH
            || member.last_sent.as_ref() != Some(&current)
            || request.owned.as_ref().is_some_and(|owned| *owned != current);
        if send {
            member.last_sent = Some(current.clone());
        }
        Ok(ConsumerHeartbeatAnswer {
            member_id,
            member_epoch: member.member_epoch,
            heartbeat_interval_ms,
            assignment: send.then_some(current),
        })
    }

    /// Removes consumer group members whose session ended or who did not give up partitions
    /// within their rebalance timeout; the rest converge on a new target.
    /// The new target is computed on the next heartbeat, which brings the topic metadata.
    pub(crate) fn tick_consumer_groups(&mut self, now_ms: i64) {
        for group in self.groups.values_mut() {
            let group_id = group.group_id.clone();
            let Some(consumer) = group.consumer.as_mut() else {
                continue;
            };
            let expired: Vec<String> = consumer
                .members
                .values()
                .filter(|member| {
                    member.session_deadline_ms <= now_ms
                        || member.revocation_deadline_ms.is_some_and(|deadline| deadline <= now_ms)
                })
                .map(|member| member.member_id.clone())
                .collect();
            if expired.is_empty() {
                continue;
            }
            for member_id in &expired {
                consumer.members.remove(member_id);
                consumer.target.remove(member_id);
            }
            consumer.group_epoch += 1;
            persist_if_changed(&mut self.outputs, &group_id, consumer, now_ms);
        }
    }

    pub(crate) fn consumer_deadlines(&self) -> Option<i64> {
        self.groups
            .values()
            .filter_map(|group| group.consumer.as_ref())
            .flat_map(|consumer| consumer.members.values())
            .flat_map(|member| std::iter::once(member.session_deadline_ms).chain(member.revocation_deadline_ms))
            .min()
    }

    /// ConsumerGroupDescribe for one group; `None` if it is not a consumer group.
    pub fn describe_consumer_group(&self, group_id: &str) -> Option<ConsumerGroupDescription> {
        let consumer = self.groups.get(group_id)?.consumer.as_ref()?;
        Some(ConsumerGroupDescription {
            state: consumer.state_name(),
            group_epoch: consumer.group_epoch,
            assignment_epoch: consumer.assignment_epoch,
            assignor: consumer.assignor.clone(),
            members: consumer
                .members
                .values()
                .map(|member| ConsumerMemberDescription {
                    member_id: member.member_id.clone(),
                    instance_id: member.instance_id.clone(),
                    rack_id: member.rack_id.clone(),
                    member_epoch: member.member_epoch,
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    subscribed_topic_names: member.subscribed_topic_names.clone(),
                    subscribed_topic_regex: member.subscribed_topic_regex.as_ref().map(pattern_of),
                    assignment: member.current(),
                    target_assignment: consumer.target.get(&member.member_id).cloned().unwrap_or_default(),
                })
                .collect(),
        })
    }
}

/// Queues the group's snapshot if it differs from the last one written.
fn persist_if_changed(outputs: &mut Vec<Output>, group_id: &str, consumer: &mut ConsumerGroup, now_ms: i64) {
    if consumer.members.is_empty() && consumer.emptied_at_ms < 0 {
        consumer.emptied_at_ms = now_ms;
    } else if !consumer.members.is_empty() {
        consumer.emptied_at_ms = -1;
    }
    let snapshot = consumer.snapshot();
    if consumer.last_persisted.as_ref() == Some(&snapshot) {
        return;
    }
    consumer.last_persisted = Some(snapshot.clone());
    outputs.push(Output::Persist(Record::ConsumerGroup {
        group_id: group_id.to_string(),
        snapshot: Some(snapshot),
    }));
}

fn stored(assignment: &Assignment) -> StoredAssignment {
    assignment
        .iter()
        .map(|(topic, partitions)| (topic.clone(), partitions.iter().copied().collect()))
        .collect()
}

fn unstored(assignment: &StoredAssignment) -> Assignment {
    assignment
        .iter()
        .filter(|(_, partitions)| !partitions.is_empty())
        .map(|(topic, partitions)| (topic.clone(), partitions.iter().copied().collect()))
        .collect()
}

/// The pattern as the member sent it, without the anchors `compile` adds.
fn pattern_of(regex: &regex::Regex) -> String {
    let anchored = regex.as_str();
    anchored
        .strip_prefix("^(?:")
        .and_then(|rest| rest.strip_suffix(")$"))
        .unwrap_or(anchored)
        .to_string()
}

/// Kafka's regexes are Java's (RE2/J in KIP-848); the `regex` crate takes the common subset.
/// A subscription pattern must match whole topic names.
fn compile(pattern: &str) -> Result<regex::Regex, GroupError> {
    regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|_| GroupError::InvalidRegularExpression)
}

/// Recomputes the target assignment if the group epoch moved past it, or if a subscribed
/// topic's partition count changed (which moves the group epoch first).
fn refresh_target(consumer: &mut ConsumerGroup, topics: &BTreeMap<String, i32>) {
    let subscribed: BTreeMap<String, i32> = topics
        .iter()
        .filter(|(topic, _)| consumer.members.values().any(|member| member.subscribes_to(topic)))
        .map(|(topic, count)| (topic.clone(), *count))
        .collect();
    if subscribed != consumer.subscribed_metadata {
        consumer.subscribed_metadata = subscribed;
        // One change, one new epoch: a join that also brings new topics moves it once.
        if consumer.group_epoch == consumer.assignment_epoch {
            consumer.group_epoch += 1;
        }
    }
    if consumer.group_epoch <= consumer.assignment_epoch {
        return;
    }
    consumer.target = match consumer.assignor.as_str() {
        "range" => assign_range(consumer),
        _ => assign_uniform(consumer),
    };
    consumer.assignment_epoch = consumer.group_epoch;
}

/// Balanced and sticky: every member first keeps up to its fair share of what it had, then
/// the rest goes, partition by partition, to the eligible member holding the fewest.
fn assign_uniform(consumer: &ConsumerGroup) -> BTreeMap<String, Assignment> {
    let mut target: BTreeMap<String, Assignment> = consumer
        .members
        .keys()
        .map(|id| (id.clone(), Assignment::new()))
        .collect();
    let mut counts: BTreeMap<&str, usize> = consumer.members.keys().map(|id| (id.as_str(), 0)).collect();
    let partitions: Vec<(String, i32)> = consumer
        .subscribed_metadata
        .iter()
        .flat_map(|(topic, count)| (0..*count).map(move |partition| (topic.clone(), partition)))
        .collect();
    let floor = partitions.len() / consumer.members.len().max(1);
    let mut unassigned = Vec::new();
    for (topic, partition) in partitions {
        let keeper = consumer.target.iter().find(|(member_id, previous)| {
            previous.get(&topic).is_some_and(|set| set.contains(&partition))
                && consumer
                    .members
                    .get(*member_id)
                    .is_some_and(|m| m.subscribes_to(&topic))
                && counts
                    .get(member_id.as_str())
                    .is_some_and(|count| *count < floor.max(1))
        });
        match keeper {
            Some((member_id, _)) => {
                *counts.get_mut(member_id.as_str()).expect("a member") += 1;
                target
                    .get_mut(member_id)
                    .expect("a member")
                    .entry(topic)
                    .or_default()
                    .insert(partition);
            }
            None => unassigned.push((topic, partition)),
        }
    }
    for (topic, partition) in unassigned {
        let chosen = consumer
            .members
            .values()
            .filter(|member| member.subscribes_to(&topic))
            .min_by_key(|member| (counts[member.member_id.as_str()], member.member_id.clone()))
            .map(|member| member.member_id.clone());
        if let Some(member_id) = chosen {
            *counts.get_mut(member_id.as_str()).expect("a member") += 1;
            target
                .get_mut(&member_id)
                .expect("a member")
                .entry(topic)
                .or_default()
                .insert(partition);
        }
    }
    target
}

/// Per topic, contiguous ranges of partitions to its subscribers in member id order.
fn assign_range(consumer: &ConsumerGroup) -> BTreeMap<String, Assignment> {
    let mut target: BTreeMap<String, Assignment> = consumer
        .members
        .keys()
        .map(|id| (id.clone(), Assignment::new()))
        .collect();
    for (topic, count) in &consumer.subscribed_metadata {
        let subscribers: Vec<&String> = consumer
            .members
            .values()
            .filter(|member| member.subscribes_to(topic))
            .map(|member| &member.member_id)
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        let count = *count as usize;
        let (share, extra) = (count / subscribers.len(), count % subscribers.len());
        let mut next = 0;
        for (index, member_id) in subscribers.into_iter().enumerate() {
            let take = share + usize::from(index < extra);
            let partitions: BTreeSet<i32> = (next..next + take).map(|p| p as i32).collect();
            next += take;
            if !partitions.is_empty() {
                target
                    .get_mut(member_id)
                    .expect("a member")
                    .insert(topic.clone(), partitions);
            }
        }
    }
    target
}

/// Moves one member toward its target: first the partitions it must give up (it keeps its
/// epoch until it reports them gone), then those it gains that nobody else still holds.
fn reconcile(consumer: &mut ConsumerGroup, member_id: &str, owned: Option<&Assignment>, now_ms: i64) {
    let target = consumer.target.get(member_id).cloned().unwrap_or_default();
    let held_by_others: Assignment = consumer
        .members
        .values()
        .filter(|other| other.member_id != member_id)
        .fold(Assignment::new(), |mut all, other| {
            for (topic, partitions) in &other.assigned {
                all.entry(topic.clone()).or_default().extend(partitions);
            }
            all
        });
    let assignment_epoch = consumer.assignment_epoch;
    let member = consumer.members.get_mut(member_id).expect("reconciling a member");
    if let Some(owned) = owned {
        let released = difference(&member.revoking, owned);
        member.assigned = difference(&member.assigned, &released);
        member.revoking = difference(&member.revoking, &released);
    }
    if member.revoking.is_empty() {
        member.revocation_deadline_ms = None;
        let to_revoke = difference(&member.assigned, &target);
        if !to_revoke.is_empty() {
            member.revoking = to_revoke;
            member.revocation_deadline_ms = Some(now_ms + i64::from(member.rebalance_timeout_ms.max(1)));
            return;
        }
        let gains = difference(&difference(&target, &member.assigned), &held_by_others);
        for (topic, partitions) in gains {
            member.assigned.entry(topic).or_default().extend(partitions);
        }
        if member.member_epoch != assignment_epoch {
            member.previous_member_epoch = member.member_epoch;
            member.member_epoch = assignment_epoch;
        }
    }
}

fn difference(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(topic, partitions)| {
            let rest: BTreeSet<i32> = match b.get(topic) {
                Some(remove) => partitions.difference(remove).copied().collect(),
                None => partitions.clone(),
            };
            (!rest.is_empty()).then(|| (topic.clone(), rest))
        })
        .collect()
}

fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    difference(a, b).is_empty()
}
