//! The classic group coordinator: requests and clock ticks in, answers and records out.
//!
//! Nothing here waits, reads a clock or touches a file. Every call takes the current time;
//! JoinGroup and SyncGroup answers, which may come long after the request (when the last member
//! rejoins, or when the leader sends the assignment), are queued as [`Output`]s with the token
//! the caller chose, as are the records to write to `__consumer_offsets`. The caller drains them
//! with [`Coordinator::take_outputs`] after every call, writes records before delivering the
//! answers that follow them, and calls [`Coordinator::tick`] by [`Coordinator::next_deadline`].

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::group::{Group, GroupState, InitialDelay, Member, PendingMember, Token};
use crate::records::{GroupMetadata, OffsetCommit, Record};

/// Broker settings the coordinator follows, under Kafka's names.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long a new group waits for more members before
    /// its first generation, extended by each arrival up to the rebalance timeout.
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size`
    pub max_size: usize,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_max_bytes: usize,
    /// Settings of KIP-848 consumer groups.
    pub consumer: crate::consumer::ConsumerGroupConfig,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX as usize,
            offset_metadata_max_bytes: 4096,
            consumer: crate::consumer::ConsumerGroupConfig::default(),
        }
    }
}

/// Why the coordinator refused a request; each is the Kafka error of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("the group id is empty")]
    InvalidGroupId,
    #[error("the session timeout is outside the broker's bounds")]
    InvalidSessionTimeout,
    #[error("the protocol type or protocols do not match the group's")]
    InconsistentGroupProtocol,
    #[error("the member id is not known to the group")]
    UnknownMemberId,
    #[error("the member must rejoin with the member id it was given")]
    MemberIdRequired,
    #[error("another member has the same group.instance.id")]
    FencedInstanceId,
    #[error("the generation is not the group's current one")]
    IllegalGeneration,
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    #[error("the group has reached group.max.size")]
    GroupMaxSizeReached,
    #[error("the group has been deleted")]
    CoordinatorNotAvailable,
    #[error("the group does not exist")]
    GroupIdNotFound,
    #[error("the group has members")]
    NonEmptyGroup,
    #[error("the group's members are subscribed to the topic")]
    GroupSubscribedToTopic,
    #[error("the offset metadata is longer than offset.metadata.max.bytes")]
    OffsetMetadataTooLarge,
    #[error("the server assignor is not one this broker has")]
    UnsupportedAssignor,
    #[error("another member holds this group.instance.id")]
    UnreleasedInstanceId,
    #[error("the member epoch is not the member's current one")]
    FencedMemberEpoch,
    #[error("the member epoch is stale")]
    StaleMemberEpoch,
    #[error("the subscription regular expression does not compile")]
    InvalidRegularExpression,
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The group's partition of `__consumer_offsets` is not led here (any more).
    #[error("this broker does not coordinate the group")]
    NotCoordinator,
    /// The group's partition is being loaded after a change of leadership.
    #[error("the group's coordinator is loading its state")]
    CoordinatorLoadInProgress,
}

#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// KIP-394 (JoinGroup v4+): a new dynamic member first gets its id in a MEMBER_ID_REQUIRED
    /// answer and must join again with it.
    pub require_known_member_id: bool,
}

/// A member as the leader sees it in its JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinAnswer {
    pub error: Option<GroupError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// KIP-814: the leader of a group that did not rebalance need not assign again.
    pub skip_assignment: bool,
    /// Filled for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinAnswer {
    fn error(error: GroupError, member_id: &str) -> JoinAnswer {
        JoinAnswer {
            error: Some(error),
            generation_id: -1,
            member_id: member_id.to_string(),
            ..JoinAnswer::default()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// SyncGroup v5+ repeats them; they must match the group's.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment, by member id; empty from followers.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncAnswer {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// Who sends a Heartbeat or OffsetCommit: a member of a generation, or, with generation -1 and
/// no member id, a client that only stores offsets in the group.
#[derive(Debug, Clone, Default)]
pub struct MemberRef {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LeavingMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetToCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    /// The state's name in the group's own protocol (classic or consumer).
    pub state: &'static str,
    /// "classic" or "consumer" (KIP-848), as ListGroups v5 names them.
    pub group_type: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<DescribedMember>,
}

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write this record to the group's partition of `__consumer_offsets`.
    Persist(Record),
    Join {
        token: Token,
        answer: JoinAnswer,
    },
    Sync {
        token: Token,
        answer: Result<SyncAnswer, GroupError>,
    },
}

pub struct Coordinator {
    pub(crate) config: GroupConfig,
    pub(crate) groups: BTreeMap<String, Group>,
    pub(crate) outputs: Vec<Output>,
    /// Member ids are `<client id>-<uuid-shaped hex>`, drawn from this generator.
    id_state: u64,
    join_seq: u64,
}

impl Coordinator {
    /// `seed` makes member ids unpredictable across restarts; tests pass a constant.
    pub fn new(config: GroupConfig, seed: u64) -> Coordinator {
        Coordinator {
            config,
            groups: BTreeMap::new(),
            outputs: Vec::new(),
            id_state: seed,
            join_seq: 0,
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Everything queued since the last call, in the order it must be carried out.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    // ---------------------------------------------------------------- JoinGroup

    pub fn join(&mut self, now_ms: i64, token: Token, request: JoinRequest) {
        if let Err(error) = self.try_join(now_ms, token, &request) {
            self.outputs.push(Output::Join {
                token,
                answer: JoinAnswer::error(error, &request.member_id),
            });
        }
    }

    fn try_join(&mut self, now_ms: i64, token: Token, request: &JoinRequest) -> Result<(), GroupError> {
        if request.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        if !(self.config.min_session_timeout_ms..=self.config.max_session_timeout_ms)
            .contains(&request.session_timeout_ms)
        {
            return Err(GroupError::InvalidSessionTimeout);
        }
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        let new_member = request.member_id.is_empty();
        if !self.groups.contains_key(&request.group_id) {
            if !new_member {
                return Err(GroupError::UnknownMemberId);
            }
            let group = Group::new(request.group_id.clone(), now_ms);
            self.groups.insert(request.group_id.clone(), group);
        }
        let group = self.groups.get(&request.group_id).expect("inserted above");
        if group.is(GroupState::Dead) {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if group.has_consumer_members() {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        if !group.accepts(&request.protocol_type, &request.protocols) {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        if new_member {
            self.join_new_member(now_ms, token, request)
        } else {
            self.join_known_member(now_ms, token, request)
        }
    }

    fn join_new_member(&mut self, now_ms: i64, token: Token, request: &JoinRequest) -> Result<(), GroupError> {
        let member_id = self.new_member_id(&request.client_id);
        let max_size = self.config.max_size;
        let group = self.groups.get_mut(&request.group_id).expect("checked by caller");
        if let Some(instance_id) = &request.group_instance_id {
            if let Some(old_member_id) = group.static_members.get(instance_id).cloned() {
                self.replace_static_member(now_ms, token, request, &old_member_id, member_id);
                return Ok(());
            }
        }
        if group.members.len() + group.pending.len() >= max_size {
            return Err(GroupError::GroupMaxSizeReached);
        }
        if request.require_known_member_id && request.group_instance_id.is_none() {
            let deadline_ms = now_ms + i64::from(request.session_timeout_ms);
            group.pending.insert(member_id.clone(), PendingMember { deadline_ms });
            self.outputs.push(Output::Join {
                token,
                answer: JoinAnswer::error(GroupError::MemberIdRequired, &member_id),
            });
            return Ok(());
        }
        self.add_member(now_ms, token, request, member_id);
        Ok(())
    }

    fn join_known_member(&mut self, now_ms: i64, token: Token, request: &JoinRequest) -> Result<(), GroupError> {
        let group = self.groups.get_mut(&request.group_id).expect("checked by caller");
        if group.pending.remove(&request.member_id).is_some() {
            self.add_member(now_ms, token, request, request.member_id.clone());
            return Ok(());
        }
        check_member(group, &request.member_id, request.group_instance_id.as_deref())?;
        let state = group.state;
        let is_leader = group.leader.as_deref() == Some(request.member_id.as_str());
        let member = group.members.get_mut(&request.member_id).expect("checked above");
        // A stable group's leader rejoins when it wants a new assignment (it saw partitions
        // appear, say), so that always rebalances; others only when their subscription changed.
        let must_rebalance = member.protocols != request.protocols || (state == GroupState::Stable && is_leader);
        match state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                update_member(member, request);
                self.park_join(token, &request.group_id, &request.member_id);
                self.maybe_complete_join(now_ms, &request.group_id);
                Ok(())
            }
            GroupState::CompletingRebalance | GroupState::Stable if !must_rebalance => {
                // Nothing changed: the member missed its answer, so it gets it again.
                member.keep_alive(now_ms);
                let answer = current_generation(group, &request.member_id, false);
                self.outputs.push(Output::Join { token, answer });
                Ok(())
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                update_member(member, request);
                self.park_join(token, &request.group_id, &request.member_id);
                self.prepare_rebalance(now_ms, &request.group_id);
                Ok(())
            }
        }
    }

    fn add_member(&mut self, now_ms: i64, token: Token, request: &JoinRequest, member_id: String) {
        self.join_seq += 1;
        let group = self.groups.get_mut(&request.group_id).expect("checked by caller");
        let mut member = Member {
            member_id: member_id.clone(),
            group_instance_id: request.group_instance_id.clone(),
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            protocol_type: request.protocol_type.clone(),
            protocols: request.protocols.clone(),
            assignment: Bytes::new(),
            awaiting_join: Some(token),
            awaiting_sync: None,
            session_deadline_ms: 0,
            joined_seq: self.join_seq,
        };
        member.keep_alive(now_ms);
        if group.members.is_empty() {
            group.protocol_type = Some(request.protocol_type.clone());
        }
        if let Some(instance_id) = &request.group_instance_id {
            group.static_members.insert(instance_id.clone(), member_id.clone());
        }
        group.members.insert(member_id, member);
        if let Some(delay) = group.initial_delay.as_mut() {
            delay.joined_during_period = true;
        }
        if group.is(GroupState::PreparingRebalance) {
            self.maybe_complete_join(now_ms, &request.group_id);
        } else {
            self.prepare_rebalance(now_ms, &request.group_id);
        }
    }

    /// KIP-345: a static member restarting (same group.instance.id, no member id) takes over
    /// its old identity. If the group is stable and its subscription is unchanged, it gets the
    /// current generation back and keeps its assignment: no rebalance.
    fn replace_static_member(
        &mut self,
        now_ms: i64,
        token: Token,
        request: &JoinRequest,
        old_member_id: &str,
        new_member_id: String,
    ) {
        let group = self.groups.get_mut(&request.group_id).expect("checked by caller");
        let mut member = group.members.remove(old_member_id).expect("static members are members");
        if let Some(old_token) = member.awaiting_join.take() {
            self.outputs.push(Output::Join {
                token: old_token,
                answer: JoinAnswer::error(GroupError::FencedInstanceId, old_member_id),
            });
        }
        if let Some(old_token) = member.awaiting_sync.take() {
            self.outputs.push(Output::Sync {
                token: old_token,
                answer: Err(GroupError::FencedInstanceId),
            });
        }
        let protocols_changed = member.protocols != request.protocols;
        member.member_id = new_member_id.clone();
        update_member(&mut member, request);
        member.keep_alive(now_ms);
        if group.leader.as_deref() == Some(old_member_id) {
            group.leader = Some(new_member_id.clone());
        }
        let instance_id = request.group_instance_id.clone().expect("static join");
        group.static_members.insert(instance_id, new_member_id.clone());
        group.members.insert(new_member_id.clone(), member);
        match group.state {
            GroupState::Stable if !protocols_changed => {
                let answer = current_generation(group, &new_member_id, true);
                let record = Record::Group {
                    group_id: group.group_id.clone(),
                    metadata: Some(group.metadata()),
                };
                self.outputs.push(Output::Persist(record));
                self.outputs.push(Output::Join { token, answer });
            }
            GroupState::PreparingRebalance => {
                self.park_join(token, &request.group_id, &new_member_id);
                self.maybe_complete_join(now_ms, &request.group_id);
            }
            _ => {
                self.park_join(token, &request.group_id, &new_member_id);
                self.prepare_rebalance(now_ms, &request.group_id);
            }
        }
    }

    /// Parks a member's JoinGroup; a join it had parked already is answered first, so no token
    /// is left without an answer.
    fn park_join(&mut self, token: Token, group_id: &str, member_id: &str) {
        let member = self.member_mut(group_id, member_id);
        if let Some(old_token) = member.awaiting_join.replace(token) {
            self.outputs.push(Output::Join {
                token: old_token,
                answer: JoinAnswer::error(GroupError::RebalanceInProgress, member_id),
            });
        }
    }

    fn member_mut(&mut self, group_id: &str, member_id: &str) -> &mut Member {
        self.groups
            .get_mut(group_id)
            .and_then(|group| group.members.get_mut(member_id))
            .expect("member checked by caller")
    }

    pub(crate) fn new_member_id(&mut self, client_id: &str) -> String {
        let high = splitmix64(&mut self.id_state);
        let low = splitmix64(&mut self.id_state);
        format!(
            "{client_id}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            high >> 32,
            (high >> 16) & 0xffff,
            high & 0xffff,
            low >> 48,
            low & 0xffff_ffff_ffff
        )
    }

    // ---------------------------------------------------------------- rebalancing

    fn prepare_rebalance(&mut self, now_ms: i64, group_id: &str) {
        let initial_delay_ms = i64::from(self.config.initial_rebalance_delay_ms);
        let group = self.groups.get_mut(group_id).expect("group exists");
        if group.is(GroupState::CompletingRebalance) {
            for member in group.members.values_mut() {
                if let Some(token) = member.awaiting_sync.take() {
                    self.outputs.push(Output::Sync {
                        token,
                        answer: Err(GroupError::RebalanceInProgress),
                    });
                }
            }
        }
        let was_empty = group.is(GroupState::Empty);
        group.set_state(GroupState::PreparingRebalance, now_ms);
        let timeout_ms = group.rebalance_timeout_ms();
        if was_empty && initial_delay_ms > 0 {
            group.initial_delay = Some(InitialDelay {
                limit_ms: now_ms + timeout_ms,
                joined_during_period: false,
            });
            group.rebalance_deadline_ms = Some(now_ms + initial_delay_ms.min(timeout_ms));
        } else if was_empty {
            // A group's first generation is ended by its initial delay alone, as in Kafka (whose
            // delayed join fires even at 0 ms): not by "everyone joined", which also waits for
            // member ids handed out with MEMBER_ID_REQUIRED. A client that abandons one (librdkafka
            // discards an outdated answer when its subscription changed meanwhile) would hold
            // the generation up until that id expired, a session timeout later.
            group.initial_delay = None;
            self.complete_join(now_ms, group_id);
        } else {
            group.initial_delay = None;
            group.rebalance_deadline_ms = Some(now_ms + timeout_ms);
            self.maybe_complete_join(now_ms, group_id);
        }
    }

    fn maybe_complete_join(&mut self, now_ms: i64, group_id: &str) {
        let group = self.groups.get(group_id).expect("group exists");
        if group.is(GroupState::PreparingRebalance) && group.initial_delay.is_none() && group.all_joined() {
            self.complete_join(now_ms, group_id);
        }
    }

    /// The rebalance deadline passed, or everyone rejoined: a new generation begins with the
    /// members that rejoined (static members keep their place until their session expires).
    fn complete_join(&mut self, now_ms: i64, group_id: &str) {
        let group = self.groups.get_mut(group_id).expect("group exists");
        let gone: Vec<String> = group
            .members
            .values()
            .filter(|member| member.awaiting_join.is_none() && member.group_instance_id.is_none())
            .map(|member| member.member_id.clone())
            .collect();
        for member_id in gone {
            group.members.remove(&member_id);
        }
        group.rebalance_deadline_ms = None;
        group.initial_delay = None;
        group.generation_id += 1;
        if group.members.is_empty() {
            group.protocol_name = None;
            group.leader = None;
            group.set_state(GroupState::Empty, now_ms);
            let record = Record::Group {
                group_id: group_id.to_string(),
                metadata: Some(group.metadata()),
            };
            self.outputs.push(Output::Persist(record));
            return;
        }
        let leader_rejoined = group
            .leader
            .as_ref()
            .and_then(|leader| group.members.get(leader))
            .is_some_and(|leader| leader.awaiting_join.is_some());
        if !leader_rejoined {
            group.leader = group
                .members
                .values()
                .filter(|member| member.awaiting_join.is_some())
                .min_by_key(|member| member.joined_seq)
                .or_else(|| group.members.values().min_by_key(|member| member.joined_seq))
                .map(|member| member.member_id.clone());
        }
        let leader = group.leader.clone().expect("a group with members has a leader");
        let leader_member = &group.members[&leader];
        group.protocol_name = group
            .select_protocol(leader_member)
            .or_else(|| leader_member.protocols.first().map(|(name, _)| name.clone()));
        group.set_state(GroupState::CompletingRebalance, now_ms);
        let waiting: Vec<(String, Token)> = group
            .members
            .values()
            .filter_map(|member| member.awaiting_join.map(|token| (member.member_id.clone(), token)))
            .collect();
        for (member_id, token) in waiting {
            let answer = current_generation(group, &member_id, false);
            let member = group.members.get_mut(&member_id).expect("listed above");
            member.awaiting_join = None;
            member.keep_alive(now_ms);
            self.outputs.push(Output::Join { token, answer });
        }
    }

    fn remove_member(&mut self, now_ms: i64, group_id: &str, member_id: &str, error: GroupError) {
        let group = self.groups.get_mut(group_id).expect("group exists");
        let Some(mut member) = group.members.remove(member_id) else {
            return;
        };
        if let Some(instance_id) = &member.group_instance_id {
            group.static_members.remove(instance_id);
        }
        if let Some(token) = member.awaiting_join.take() {
            self.outputs.push(Output::Join {
                token,
                answer: JoinAnswer::error(error, member_id),
            });
        }
        if let Some(token) = member.awaiting_sync.take() {
            self.outputs.push(Output::Sync {
                token,
                answer: Err(error),
            });
        }
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now_ms, group_id),
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms, group_id),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    // ---------------------------------------------------------------- SyncGroup, Heartbeat, LeaveGroup

    pub fn sync(&mut self, now_ms: i64, token: Token, request: SyncRequest) {
        if let Err(error) = self.try_sync(now_ms, token, request) {
            self.outputs.push(Output::Sync {
                token,
                answer: Err(error),
            });
        }
    }

    fn try_sync(&mut self, now_ms: i64, token: Token, request: SyncRequest) -> Result<(), GroupError> {
        let group = self
            .groups
            .get_mut(&request.group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        if group.is(GroupState::Dead) {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        check_member(group, &request.member_id, request.group_instance_id.as_deref())?;
        let mismatch = |asked: &Option<String>, group_has: &Option<String>| asked.is_some() && asked != group_has;
        if mismatch(&request.protocol_type, &group.protocol_type)
            || mismatch(&request.protocol_name, &group.protocol_name)
        {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        if request.generation_id != group.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::Stable => {
                let member = group.members.get_mut(&request.member_id).expect("checked above");
                member.keep_alive(now_ms);
                let answer = Ok(SyncAnswer {
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol_name.clone(),
                    assignment: member.assignment.clone(),
                });
                self.outputs.push(Output::Sync { token, answer });
                Ok(())
            }
            GroupState::CompletingRebalance => {
                let member = group.members.get_mut(&request.member_id).expect("checked above");
                member.keep_alive(now_ms);
                if let Some(old_token) = member.awaiting_sync.replace(token) {
                    self.outputs.push(Output::Sync {
                        token: old_token,
                        answer: Err(GroupError::RebalanceInProgress),
                    });
                }
                if group.leader.as_deref() == Some(request.member_id.as_str()) {
                    let mut assignments: BTreeMap<String, Bytes> = request.assignments.into_iter().collect();
                    for member in group.members.values_mut() {
                        member.assignment = assignments.remove(&member.member_id).unwrap_or_default();
                    }
                    group.set_state(GroupState::Stable, now_ms);
                    let record = Record::Group {
                        group_id: group.group_id.clone(),
                        metadata: Some(group.metadata()),
                    };
                    self.outputs.push(Output::Persist(record));
                    for member in group.members.values_mut() {
                        if let Some(token) = member.awaiting_sync.take() {
                            let answer = Ok(SyncAnswer {
                                protocol_type: group.protocol_type.clone(),
                                protocol_name: group.protocol_name.clone(),
                                assignment: member.assignment.clone(),
                            });
                            self.outputs.push(Output::Sync { token, answer });
                        }
                    }
                }
                Ok(())
            }
        }
    }

    pub fn heartbeat(&mut self, now_ms: i64, request: &MemberRef) -> Result<(), GroupError> {
        let group = self
            .groups
            .get_mut(&request.group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        match group.state {
            GroupState::Dead => return Err(GroupError::CoordinatorNotAvailable),
            GroupState::Empty => return Err(GroupError::UnknownMemberId),
            _ => {}
        }
        check_member(group, &request.member_id, request.group_instance_id.as_deref())?;
        let state = group.state;
        let generation_matches = request.generation_id == group.generation_id;
        let member = group.members.get_mut(&request.member_id).expect("checked above");
        match state {
            GroupState::PreparingRebalance => {
                member.keep_alive(now_ms);
                Err(GroupError::RebalanceInProgress)
            }
            _ if !generation_matches => Err(GroupError::IllegalGeneration),
            _ => {
                member.keep_alive(now_ms);
                Ok(())
            }
        }
    }

    /// LeaveGroup: one result per member, or one error for the whole request.
    pub fn leave(
        &mut self,
        now_ms: i64,
        group_id: &str,
        members: &[LeavingMember],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let Some(group) = self.groups.get(group_id) else {
            return Ok(vec![Err(GroupError::UnknownMemberId); members.len()]);
        };
        if group.is(GroupState::Dead) {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let mut results = Vec::with_capacity(members.len());
        for leaving in members {
            let group = self.groups.get_mut(group_id).expect("checked above");
            let member_id = match &leaving.group_instance_id {
                Some(instance_id) => match group.static_members.get(instance_id) {
                    None => Err(GroupError::UnknownMemberId),
                    Some(id) if !leaving.member_id.is_empty() && *id != leaving.member_id => {
                        Err(GroupError::FencedInstanceId)
                    }
                    Some(id) => Ok(id.clone()),
                },
                None if group.pending.remove(&leaving.member_id).is_some() => {
                    // A rebalance may have been waiting only for this id.
                    self.maybe_complete_join(now_ms, group_id);
                    results.push(Ok(()));
                    continue;
                }
                None if group.members.contains_key(&leaving.member_id) => Ok(leaving.member_id.clone()),
                None => Err(GroupError::UnknownMemberId),
            };
            match member_id {
                Ok(member_id) => {
                    self.remove_member(now_ms, group_id, &member_id, GroupError::UnknownMemberId);
                    results.push(Ok(()));
                }
                Err(error) => results.push(Err(error)),
            }
        }
        Ok(results)
    }

    // ---------------------------------------------------------------- time

    /// Expires members whose session ran out, pending member ids never used, and rebalances
    /// whose time is up.
    pub fn tick(&mut self, now_ms: i64) {
        self.tick_consumer_groups(now_ms);
        let group_ids: Vec<String> = self.groups.keys().cloned().collect();
        for group_id in group_ids {
            let group = self.groups.get_mut(&group_id).expect("listed above");
            let pending_before = group.pending.len();
            group.pending.retain(|_, pending| pending.deadline_ms > now_ms);
            if group.pending.len() < pending_before {
                // A rebalance waiting only for member ids handed out and never used completes
                // now (as Kafka's pending member expiry does), not at the rebalance timeout.
                self.maybe_complete_join(now_ms, &group_id);
            }
            let group = self.groups.get_mut(&group_id).expect("listed above");
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|member| {
                    member.session_deadline_ms <= now_ms
                        && member.awaiting_join.is_none()
                        && member.awaiting_sync.is_none()
                })
                .map(|member| member.member_id.clone())
                .collect();
            for member_id in expired {
                self.remove_member(now_ms, &group_id, &member_id, GroupError::UnknownMemberId);
            }
            let group = self.groups.get_mut(&group_id).expect("listed above");
            if group.is(GroupState::PreparingRebalance) && group.rebalance_deadline_ms.is_some_and(|at| at <= now_ms) {
                let initial_delay_ms = i64::from(self.config.initial_rebalance_delay_ms);
                match group.initial_delay {
                    Some(delay) if delay.joined_during_period && now_ms < delay.limit_ms => {
                        group.initial_delay = Some(InitialDelay {
                            joined_during_period: false,
                            ..delay
                        });
                        group.rebalance_deadline_ms = Some((now_ms + initial_delay_ms).min(delay.limit_ms));
                    }
                    _ => self.complete_join(now_ms, &group_id),
                }
            }
        }
    }

    /// The earliest time [`Coordinator::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        self.groups
            .values()
            .flat_map(|group| {
                let sessions = group
                    .members
                    .values()
                    .filter(|member| member.awaiting_join.is_none() && member.awaiting_sync.is_none())
                    .map(|member| member.session_deadline_ms);
                let pending = group.pending.values().map(|pending| pending.deadline_ms);
                sessions.chain(pending).chain(group.rebalance_deadline_ms)
            })
            .chain(self.consumer_deadlines())
            .min()
    }

    // ---------------------------------------------------------------- offsets

    /// Checks an OffsetCommit and returns, per offset, the record to write or why not. The
    /// offsets take effect when the caller hands the written records to
    /// [`Coordinator::apply`], so what a fetch sees is always what the log holds.
    pub fn prepare_commit(
        &mut self,
        now_ms: i64,
        committer: &MemberRef,
        offsets: &[OffsetToCommit],
    ) -> Result<Vec<Result<Record, GroupError>>, GroupError> {
        if committer.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let standalone = committer.generation_id < 0 && committer.member_id.is_empty();
        match self.groups.get_mut(&committer.group_id) {
            None if standalone => {}
            None => return Err(GroupError::IllegalGeneration),
            Some(group) if group.has_consumer_members() => {
                let consumer = group.consumer.as_ref().expect("has members");
                if standalone {
                    return Err(GroupError::UnknownMemberId);
                }
                let member = consumer
                    .members
                    .get(&committer.member_id)
                    .ok_or(GroupError::UnknownMemberId)?;
                // KIP-848: the generation field carries the member epoch.
                if committer.generation_id != member.member_epoch {
                    return Err(GroupError::StaleMemberEpoch);
                }
            }
            Some(group) => {
                if group.is(GroupState::Dead) {
                    return Err(GroupError::CoordinatorNotAvailable);
                }
                if standalone {
                    if !group.members.is_empty() {
                        return Err(GroupError::UnknownMemberId);
                    }
                } else {
                    check_member(group, &committer.member_id, committer.group_instance_id.as_deref())?;
                    if committer.generation_id != group.generation_id {
                        return Err(GroupError::IllegalGeneration);
                    }
                    if group.is(GroupState::CompletingRebalance) {
                        return Err(GroupError::RebalanceInProgress);
                    }
                    group
                        .members
                        .get_mut(&committer.member_id)
                        .expect("checked above")
                        .keep_alive(now_ms);
                }
            }
        }
        Ok(self.offset_records(now_ms, &committer.group_id, offsets))
    }

    /// Checks a TxnOffsetCommit (KIP-98, KIP-447). A producer that names no member (older
    /// clients, or no group metadata) is not checked against the group's membership, as in
    /// Kafka: the transaction coordinator has already fenced zombie producers. One that does
    /// is checked like an OffsetCommit, so a consumer fenced out of the group cannot commit
    /// through a transaction either. The records take effect only when the transaction commits.
    pub fn prepare_txn_commit(
        &mut self,
        now_ms: i64,
        committer: &MemberRef,
        offsets: &[OffsetToCommit],
    ) -> Result<Vec<Result<Record, GroupError>>, GroupError> {
        if committer.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        if committer.generation_id < 0 && committer.member_id.is_empty() {
            return Ok(self.offset_records(now_ms, &committer.group_id, offsets));
        }
        self.prepare_commit(now_ms, committer, offsets)
    }

    fn offset_records(
        &self,
        now_ms: i64,
        group_id: &str,
        offsets: &[OffsetToCommit],
    ) -> Vec<Result<Record, GroupError>> {
        offsets
            .iter()
            .map(|offset| {
                if offset.metadata.len() > self.config.offset_metadata_max_bytes {
                    return Err(GroupError::OffsetMetadataTooLarge);
                }
                Ok(Record::Offset {
                    group_id: group_id.to_string(),
                    topic: offset.topic.clone(),
                    partition: offset.partition,
                    commit: Some(OffsetCommit {
                        offset: offset.offset,
                        leader_epoch: offset.leader_epoch,
                        metadata: offset.metadata.clone(),
                        commit_timestamp_ms: now_ms,
                    }),
                })
            })
            .collect()
    }

    /// Committed offsets of a group: the asked partitions (`None` where nothing is committed),
    /// or with `None`, every partition with a commit.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Vec<(String, i32, Option<OffsetCommit>)> {
        let offsets = self.groups.get(group_id).map(|group| &group.offsets);
        match partitions {
            Some(partitions) => partitions
                .iter()
                .map(|(topic, partition)| {
                    let commit = offsets.and_then(|offsets| offsets.get(&(topic.clone(), *partition)).cloned());
                    (topic.clone(), *partition, commit)
                })
                .collect(),
            None => offsets
                .into_iter()
                .flatten()
                .map(|((topic, partition), commit)| (topic.clone(), *partition, Some(commit.clone())))
                .collect(),
        }
    }

    /// OffsetDelete (KIP-496): tombstones for a group's offsets, except on topics its members
    /// are subscribed to (`subscribed(metadata, topic)` reads a member's protocol metadata).
    pub fn prepare_offset_delete(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
        subscribed: impl Fn(&Bytes, &str) -> bool,
    ) -> Result<Vec<Result<Option<Record>, GroupError>>, GroupError> {
        let group = self
            .groups
            .get(group_id)
            .filter(|group| !group.is(GroupState::Dead))
            .ok_or(GroupError::GroupIdNotFound)?;
        let protocol = group.protocol_name.as_deref().unwrap_or("");
        let check_subscriptions = !group.is(GroupState::Empty) && group.protocol_type.as_deref() == Some("consumer");
        Ok(partitions
            .iter()
            .map(|(topic, partition)| {
                let in_use = check_subscriptions
                    && group.members.values().any(|member| {
                        member
                            .metadata_for(protocol)
                            .is_some_and(|metadata| subscribed(metadata, topic))
                    });
                if in_use {
                    return Err(GroupError::GroupSubscribedToTopic);
                }
                Ok(group
                    .offsets
                    .contains_key(&(topic.clone(), *partition))
                    .then(|| Record::Offset {
                        group_id: group_id.to_string(),
                        topic: topic.clone(),
                        partition: *partition,
                        commit: None,
                    }))
            })
            .collect())
    }

    /// Tombstones for committed offsets past `offsets.retention.minutes` (KIP-211): every
    /// offset of a group that has been Empty that long; in a group with members, offsets of
    /// topics no member subscribes to, once that long since their commit; in a group that only
    /// stores offsets (no members ever), each offset that long after its commit. A group Empty
    /// that long gets a tombstone of its own, so its record does not outlive it in the log.
    pub fn expired_records(
        &self,
        now_ms: i64,
        retention_ms: i64,
        subscribed: impl Fn(&Bytes, &str) -> bool,
    ) -> Vec<Record> {
        let mut tombstones = Vec::new();
        for group in self.groups.values() {
            let protocol = group.protocol_name.as_deref().unwrap_or("");
            let consumer_members = group.consumer.as_ref().map(|consumer| &consumer.members);
            let consumer_emptied_at = group
                .consumer
                .as_ref()
                .filter(|consumer| consumer.members.is_empty() && group.members.is_empty())
                .map(|consumer| consumer.emptied_at_ms);
            let expired = |topic: &str, commit: &OffsetCommit| match group.state {
                GroupState::Dead => false,
                _ if consumer_emptied_at.is_some() => now_ms - consumer_emptied_at.unwrap_or(now_ms) >= retention_ms,
                _ if group.has_consumer_members() => {
                    let in_use = consumer_members
                        .into_iter()
                        .flat_map(|members| members.values())
                        .any(|member| member.subscribes_to(topic));
                    !in_use && now_ms - commit.commit_timestamp_ms >= retention_ms
                }
                GroupState::Empty if group.protocol_type.is_some() => now_ms - group.state_timestamp_ms >= retention_ms,
                GroupState::Empty => now_ms - commit.commit_timestamp_ms >= retention_ms,
                _ => {
                    let in_use = group.members.values().any(|member| {
                        member
                            .metadata_for(protocol)
                            .is_some_and(|metadata| subscribed(metadata, topic))
                    });
                    !in_use
                        && group.protocol_type.as_deref() == Some("consumer")
                        && now_ms - commit.commit_timestamp_ms >= retention_ms
                }
            };
            tombstones.extend(
                group
                    .offsets
                    .iter()
                    .filter(|((topic, _), commit)| expired(topic, commit))
                    .map(|((topic, partition), _)| Record::Offset {
                        group_id: group.group_id.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        commit: None,
                    }),
            );
            if consumer_emptied_at.is_some_and(|emptied_at| now_ms - emptied_at >= retention_ms) {
                tombstones.push(Record::ConsumerGroup {
                    group_id: group.group_id.clone(),
                    snapshot: None,
                });
            }
            if group.is(GroupState::Empty)
                && !group.has_consumer_members()
                && group.protocol_type.is_some()
                && now_ms - group.state_timestamp_ms >= retention_ms
            {
                tombstones.push(Record::Group {
                    group_id: group.group_id.clone(),
                    metadata: None,
                });
            }
        }
        tombstones
    }

    /// Tombstones for every committed offset of a deleted topic, in every group.
    pub fn offsets_of_topic(&self, topic: &str) -> Vec<Record> {
        self.groups
            .values()
            .flat_map(|group| {
                group
                    .offsets
                    .keys()
                    .filter(|(committed_topic, _)| committed_topic == topic)
                    .map(|(_, partition)| Record::Offset {
                        group_id: group.group_id.clone(),
                        topic: topic.to_string(),
                        partition: *partition,
                        commit: None,
                    })
            })
            .collect()
    }

    /// DeleteGroups: the tombstones that delete an empty group and its offsets.
    pub fn prepare_group_delete(&self, group_id: &str) -> Result<Vec<Record>, GroupError> {
        let group = self
            .groups
            .get(group_id)
            .filter(|group| !group.is(GroupState::Dead))
            .ok_or(GroupError::GroupIdNotFound)?;
        if !group.is(GroupState::Empty) || group.has_consumer_members() {
            return Err(GroupError::NonEmptyGroup);
        }
        let mut records: Vec<Record> = group
            .offsets
            .keys()
            .map(|(topic, partition)| Record::Offset {
                group_id: group_id.to_string(),
                topic: topic.clone(),
                partition: *partition,
                commit: None,
            })
            .collect();
        records.push(Record::Group {
            group_id: group_id.to_string(),
            metadata: None,
        });
        if group.consumer.is_some() {
            records.push(Record::ConsumerGroup {
                group_id: group_id.to_string(),
                snapshot: None,
            });
        }
        Ok(records)
    }

    /// Applies a record read back from `__consumer_offsets` at start-up, or one just written
    /// for a commit or deletion. Group records replace the membership; offsets accumulate.
    pub fn apply(&mut self, now_ms: i64, record: Record) {
        match record {
            Record::Offset {
                group_id,
                topic,
                partition,
                commit,
            } => match commit {
                Some(commit) => {
                    let group = self
                        .groups
                        .entry(group_id.clone())
                        .or_insert_with(|| Group::new(group_id, now_ms));
                    group.offsets.insert((topic, partition), commit);
                }
                None => {
                    if let Some(group) = self.groups.get_mut(&group_id) {
                        group.offsets.remove(&(topic, partition));
                        if group.offsets.is_empty() && group.is(GroupState::Empty) {
                            self.groups.remove(&group_id);
                        }
                    }
                }
            },
            Record::Group { group_id, metadata } => match metadata {
                Some(metadata) => self.load_membership(now_ms, group_id, metadata),
                None => {
                    self.groups.remove(&group_id);
                }
            },
            Record::ConsumerGroup { group_id, snapshot } => match snapshot {
                Some(snapshot) => {
                    let session_timeout_ms = self.config.consumer.session_timeout_ms;
                    let group = self
                        .groups
                        .entry(group_id.clone())
                        .or_insert_with(|| Group::new(group_id, now_ms));
                    group.consumer = Some(crate::consumer::ConsumerGroup::restore(
                        snapshot,
                        now_ms,
                        session_timeout_ms,
                    ));
                }
                None => {
                    if let Some(group) = self.groups.get_mut(&group_id) {
                        group.consumer = None;
                        if group.offsets.is_empty() && group.members.is_empty() {
                            self.groups.remove(&group_id);
                        }
                    }
                }
            },
        }
    }

    fn load_membership(&mut self, now_ms: i64, group_id: String, metadata: GroupMetadata) {
        let group = self
            .groups
            .entry(group_id.clone())
            .or_insert_with(|| Group::new(group_id, now_ms));
        group.protocol_type = Some(metadata.protocol_type.clone()).filter(|protocol_type| !protocol_type.is_empty());
        group.protocol_name = metadata.protocol_name.clone();
        group.generation_id = metadata.generation_id;
        group.leader = metadata.leader;
        group.members.clear();
        group.static_members.clear();
        group.pending.clear();
        group.rebalance_deadline_ms = None;
        group.initial_delay = None;
        let protocol = metadata.protocol_name.unwrap_or_default();
        for stored in metadata.members {
            self.join_seq += 1;
            let mut member = Member {
                member_id: stored.member_id.clone(),
                group_instance_id: stored.group_instance_id.clone(),
                client_id: stored.client_id,
                client_host: stored.client_host,
                session_timeout_ms: stored.session_timeout_ms,
                rebalance_timeout_ms: stored.rebalance_timeout_ms,
                protocol_type: metadata.protocol_type.clone(),
                protocols: vec![(protocol.clone(), stored.subscription)],
                assignment: stored.assignment,
                awaiting_join: None,
                awaiting_sync: None,
                session_deadline_ms: 0,
                joined_seq: self.join_seq,
            };
            member.keep_alive(now_ms);
            if let Some(instance_id) = stored.group_instance_id {
                group.static_members.insert(instance_id, stored.member_id.clone());
            }
            group.members.insert(stored.member_id, member);
        }
        let state = if group.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        group.set_state(state, metadata.state_timestamp_ms);
    }

    /// Forgets every group `belongs` selects (its `__consumer_offsets` partition is led
    /// elsewhere now): members, state and offsets. Returns the tokens of the JoinGroup and
    /// SyncGroup requests they had parked, for the caller to answer (NOT_COORDINATOR).
    pub fn unload(&mut self, belongs: impl Fn(&str) -> bool) -> Vec<Token> {
        let doomed: Vec<String> = self.groups.keys().filter(|id| belongs(id)).cloned().collect();
        let mut tokens = Vec::new();
        for id in doomed {
            if let Some(group) = self.groups.remove(&id) {
                for member in group.members.values() {
                    tokens.extend(member.awaiting_join);
                    tokens.extend(member.awaiting_sync);
                }
            }
        }
        tokens
    }

    // ---------------------------------------------------------------- admin

    pub fn list_groups(&self) -> Vec<GroupListing> {
        self.groups
            .values()
            .filter(|group| !group.is(GroupState::Dead))
            .map(
                |group| match group.consumer.as_ref().filter(|_| group.members.is_empty()) {
                    Some(consumer) => GroupListing {
                        group_id: group.group_id.clone(),
                        protocol_type: "consumer".to_string(),
                        state: consumer.state_name(),
                        group_type: "consumer",
                    },
                    None => GroupListing {
                        group_id: group.group_id.clone(),
                        protocol_type: group.protocol_type.clone().unwrap_or_default(),
                        state: group.state.name(),
                        group_type: "classic",
                    },
                },
            )
            .collect()
    }

    pub fn describe_group(&self, group_id: &str) -> Option<GroupDescription> {
        let group = self
            .groups
            .get(group_id)
            .filter(|group| !group.is(GroupState::Dead) && !group.has_consumer_members())?;
        let protocol = group.protocol_name.clone().unwrap_or_default();
        let settled = matches!(group.state, GroupState::Stable | GroupState::CompletingRebalance);
        Some(GroupDescription {
            state: group.state,
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol_name: if settled { protocol.clone() } else { String::new() },
            members: group
                .members
                .values()
                .map(|member| DescribedMember {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    metadata: if settled {
                        member.metadata_for(&protocol).cloned().unwrap_or_default()
                    } else {
                        Bytes::new()
                    },
                    assignment: if group.is(GroupState::Stable) {
                        member.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        })
    }
}

/// The member exists and, if it names a group.instance.id, is the member holding it.
fn check_member(group: &Group, member_id: &str, group_instance_id: Option<&str>) -> Result<(), GroupError> {
    if let Some(instance_id) = group_instance_id {
        match group.static_members.get(instance_id) {
            Some(holder) if holder != member_id => return Err(GroupError::FencedInstanceId),
            None if group.members.contains_key(member_id) => return Err(GroupError::FencedInstanceId),
            _ => {}
        }
    }
    if group.members.contains_key(member_id) {
        Ok(())
    } else {
        Err(GroupError::UnknownMemberId)
    }
}

fn update_member(member: &mut Member, request: &JoinRequest) {
    member.client_id = request.client_id.clone();
    member.client_host = request.client_host.clone();
    member.session_timeout_ms = request.session_timeout_ms;
    member.rebalance_timeout_ms = request.rebalance_timeout_ms;
    member.protocol_type = request.protocol_type.clone();
    member.protocols = request.protocols.clone();
}

/// A JoinGroup answer describing the group's current generation to `member_id`; the leader
/// also gets every member's metadata for the chosen protocol.
fn current_generation(group: &Group, member_id: &str, skip_assignment: bool) -> JoinAnswer {
    let protocol = group.protocol_name.clone().unwrap_or_default();
    let is_leader = group.leader.as_deref() == Some(member_id);
    JoinAnswer {
        error: None,
        generation_id: group.generation_id,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        leader: group.leader.clone().unwrap_or_default(),
        member_id: member_id.to_string(),
        skip_assignment: skip_assignment && is_leader,
        members: if is_leader {
            group
                .members
                .values()
                .map(|member| JoinedMember {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    metadata: member.metadata_for(&protocol).cloned().unwrap_or_default(),
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
