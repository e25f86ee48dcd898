//! One classic consumer group: its members, its state, and its committed offsets.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::records::{GroupMetadata, MemberMetadata, OffsetCommit};

/// A parked JoinGroup or SyncGroup request, named by the caller; its answer comes back later
/// as an [`crate::Output`] carrying the same token.
pub type Token = u64;

/// The states of Kafka's classic group protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members; may still hold committed offsets.
    Empty,
    /// Waiting for members to (re)join before a new generation.
    PreparingRebalance,
    /// A new generation exists; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Deleted; kept only until the last reference goes.
    Dead,
}

impl GroupState {
    /// The name Kafka's ListGroups and DescribeGroups use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) protocol_type: String,
    /// Supported protocols in preference order, each with the member's metadata for it.
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    pub(crate) awaiting_join: Option<Token>,
    pub(crate) awaiting_sync: Option<Token>,
    /// When the member is removed unless it heartbeats (or has a request parked).
    pub(crate) session_deadline_ms: i64,
    /// Order of arrival: the oldest member leads when the leader leaves.
    pub(crate) joined_seq: u64,
}

impl Member {
    pub(crate) fn metadata_for(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata)
    }

    pub(crate) fn supports(&self, protocol: &str) -> bool {
        self.metadata_for(protocol).is_some()
    }

    pub(crate) fn keep_alive(&mut self, now_ms: i64) {
        self.session_deadline_ms = now_ms + i64::from(self.session_timeout_ms);
    }
}

/// A member id handed out by a KIP-394 MEMBER_ID_REQUIRED answer, waiting for its join.
#[derive(Debug, Clone)]
pub(crate) struct PendingMember {
    pub(crate) deadline_ms: i64,
}

#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) group_id: String,
    pub(crate) state: GroupState,
    pub(crate) state_timestamp_ms: i64,
    /// `None` for a group that only ever had offsets committed to it (no members).
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) generation_id: i32,
    pub(crate) leader: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    pub(crate) pending: BTreeMap<String, PendingMember>,
    /// group.instance.id -> member id, for static members (KIP-345).
    pub(crate) static_members: BTreeMap<String, String>,
    /// When the current PreparingRebalance ends whether or not every member rejoined.
    pub(crate) rebalance_deadline_ms: Option<i64>,
    /// For a group's first rebalance (group.initial.rebalance.delay.ms): the latest the delay
    /// may run to, and whether a member joined during the current delay period.
    pub(crate) initial_delay: Option<InitialDelay>,
    pub(crate) offsets: BTreeMap<(String, i32), OffsetCommit>,
    /// The KIP-848 side of the group id, once a member used ConsumerGroupHeartbeat.
    pub(crate) consumer: Option<crate::consumer::ConsumerGroup>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct InitialDelay {
    pub(crate) limit_ms: i64,
    pub(crate) joined_during_period: bool,
}

impl Group {
    pub(crate) fn new(group_id: String, now_ms: i64) -> Group {
        Group {
            group_id,
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            static_members: BTreeMap::new(),
            rebalance_deadline_ms: None,
            initial_delay: None,
            offsets: BTreeMap::new(),
            consumer: None,
        }
    }

    pub(crate) fn has_consumer_members(&self) -> bool {
        self.consumer
            .as_ref()
            .is_some_and(|consumer| !consumer.members.is_empty())
    }

    pub(crate) fn set_state(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    pub(crate) fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    /// Protocols every member supports, in the order of `first`'s preference.
    pub(crate) fn common_protocols<'a>(&'a self, first: &'a [(String, Bytes)]) -> Vec<&'a str> {
        first
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.values().all(|member| member.supports(name)))
            .collect()
    }

    /// Whether a member with these protocols could join without breaking the group.
    pub(crate) fn accepts(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type) && !self.common_protocols(protocols).is_empty()
    }

    /// The protocol most members list first among those all support (Kafka's vote); ties go
    /// to the leader's preference.
    pub(crate) fn select_protocol(&self, leader: &Member) -> Option<String> {
        let candidates = self.common_protocols(&leader.protocols);
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(name, _)| candidates.contains(&name.as_str()))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let most = votes.values().copied().max()?;
        candidates
            .into_iter()
            .find(|name| votes.get(name) == Some(&most))
            .map(str::to_string)
    }

    pub(crate) fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|member| member.awaiting_join.is_some())
    }

    pub(crate) fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|member| i64::from(member.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// The snapshot written to `__consumer_offsets` after a generation completes or changes.
    pub(crate) fn metadata(&self) -> GroupMetadata {
        let protocol = self.protocol_name.as_deref().unwrap_or("");
        GroupMetadata {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation_id: self.generation_id,
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|member| MemberMetadata {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    session_timeout_ms: member.session_timeout_ms,
                    subscription: member.metadata_for(protocol).cloned().unwrap_or_default(),
                    assignment: member.assignment.clone(),
                })
                .collect(),
        }
    }
}
