//! The active controller's decisions, as pure logic.
//!
//! Each operation reads the committed [`MetadataImage`] and returns a [`Plan`]: the records to
//! commit through the quorum and the answer to give once they are committed. Nothing in the
//! image changes until the quorum applies the records, on every node alike; the caller runs one
//! operation at a time against an image that holds every record committed before it, so a plan
//! may assume nothing moved between deciding and applying. A plan whose records never commit
//! (the controller lost its leadership) leaves nothing behind: the client retries against the
//! new controller.
//!
//! The only state of its own is soft: when each broker last heartbeated (Kafka keeps that out
//! of the log too). A controller that becomes active gives every broker a full session before
//! fencing it.
//!
//! # Layout
//! - `brokers`: registration, heartbeats, fencing, controlled shutdown, unregistration,
//!   producer id blocks, session timeouts and leader rebalancing on the timer.
//! - `topics`: creating and deleting topics, adding partitions, configs.
//! - `partitions`: ISR changes from leaders (AlterPartition), leader elections, reassignments.

mod brokers;
mod partitions;
#[cfg(test)]
mod tests;
mod topics;

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::election::{self, Context, Election};
use crate::image::MetadataImage;
use crate::records::{BrokerId, ConfigResource, MetadataRecord, PartitionChange, PartitionState};

pub use brokers::{BrokerHeartbeat, BrokerRegistrationRequest, HeartbeatReply, ProducerIdBlock, Registered};
pub use partitions::{AlterPartition, ElectionResult, IsrMember, PartitionReassignment, ReassignmentResult};
pub use topics::{
    collision_key, validate_topic_name, ConfigOp, CreatePartitions, CreateTopic, CreatedTopic, TOPIC_NAME_LENGTH_MAX,
};

/// The controller's settings, by their Kafka names.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub broker_session_timeout_ms: i64,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `num.partitions`.
    pub default_num_partitions: i32,
    /// `min.insync.replicas`, unless a topic or a dynamic default says otherwise.
    pub min_insync_replicas: i32,
    /// `unclean.leader.election.enable`, likewise.
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable`.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in ms.
    pub leader_imbalance_check_interval_ms: i64,
    /// Producer ids handed to a broker per AllocateProducerIds.
    pub producer_id_block_size: i64,
    /// At most this many partitions per topic.
    pub partitions_per_topic_max: i32,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            broker_session_timeout_ms: 9_000,
            default_replication_factor: 1,
            default_num_partitions: 1,
            min_insync_replicas: 1,
            unclean_leader_election_enable: false,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 300_000,
            producer_id_block_size: 1000,
            partitions_per_topic_max: 10_000,
        }
    }
}

/// Records to commit, then an answer to give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<R> {
    pub records: Vec<MetadataRecord>,
    pub reply: R,
}

impl<R> Plan<R> {
    fn new(records: Vec<MetadataRecord>, reply: R) -> Plan<R> {
        Plan { records, reply }
    }
}

/// Why the controller refused; the server maps each to its Kafka error code (named here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ControllerError {
    /// BROKER_ID_NOT_REGISTERED
    #[error("broker {0} is not registered")]
    BrokerNotRegistered(BrokerId),
    /// STALE_BROKER_EPOCH
    #[error("broker {id} sent epoch {epoch}, but its current registration has epoch {current}")]
    StaleBrokerEpoch { id: BrokerId, epoch: i64, current: i64 },
    /// DUPLICATE_BROKER_REGISTRATION
    #[error("node id {0} is already in use by a live broker with another incarnation")]
    DuplicateBrokerRegistration(BrokerId),
    /// TOPIC_ALREADY_EXISTS
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    /// INVALID_TOPIC_EXCEPTION
    #[error("invalid topic name {0:?}: {1}")]
    InvalidTopic(String, String),
    /// UNKNOWN_TOPIC_OR_PARTITION
    #[error("unknown topic or partition {0}")]
    UnknownTopicOrPartition(String),
    /// UNKNOWN_TOPIC_ID
    #[error("unknown topic id {0}")]
    UnknownTopicId(Uuid),
    /// INVALID_PARTITIONS
    #[error("{0}")]
    InvalidPartitions(String),
    /// INVALID_REPLICATION_FACTOR
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// INVALID_REPLICA_ASSIGNMENT
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// INVALID_REQUEST
    #[error("{0}")]
    InvalidRequest(String),
    /// NOT_LEADER_OR_FOLLOWER
    #[error("broker {0} is not the leader of this partition")]
    NotLeader(BrokerId),
    /// FENCED_LEADER_EPOCH
    #[error("leader epoch {got} is not the current one ({current})")]
    FencedLeaderEpoch { got: i32, current: i32 },
    /// INVALID_UPDATE_VERSION
    #[error("partition epoch {got} is not the current one ({current})")]
    InvalidUpdateVersion { got: i32, current: i32 },
    /// INELIGIBLE_REPLICA
    #[error("{0}")]
    IneligibleReplica(String),
    /// ELECTION_NOT_NEEDED
    #[error("the partition already has the leader it would elect")]
    ElectionNotNeeded,
    /// PREFERRED_LEADER_NOT_AVAILABLE
    #[error("the preferred replica is not in sync or not available")]
    PreferredLeaderNotAvailable,
    /// ELIGIBLE_LEADERS_NOT_AVAILABLE
    #[error("no replica of the partition can be elected")]
    EligibleLeadersNotAvailable,
    /// NO_REASSIGNMENT_IN_PROGRESS
    #[error("no reassignment is in progress for this partition")]
    NoReassignmentInProgress,
    /// UNKNOWN_SERVER_ERROR is not used: every refusal has its own code.
    #[error("producer ids are exhausted")]
    ProducerIdsExhausted,
}

/// The active controller.
pub struct Controller {
    config: ControllerConfig,
    /// When each broker last heartbeated (ms): soft state, not in the log.
    last_heartbeat_ms: BTreeMap<BrokerId, i64>,
    /// The image offset at which a broker's controlled shutdown was first seen committed: the
    /// broker may stop once it has applied that far.
    shutdown_seen_at: BTreeMap<BrokerId, u64>,
    next_rebalance_check_ms: i64,
}

impl Controller {
    /// A controller that became active at `now_ms`: every registered broker gets a full
    /// session from now before it can be fenced.
    pub fn new(config: ControllerConfig, image: &MetadataImage, now_ms: i64) -> Controller {
        let last_heartbeat_ms = image.brokers().map(|b| (b.id, now_ms)).collect();
        Controller {
            next_rebalance_check_ms: now_ms + config.leader_imbalance_check_interval_ms,
            config,
            last_heartbeat_ms,
            shutdown_seen_at: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// When the timer should next call [`Controller::tick`].
    pub fn next_deadline_ms(&self, image: &MetadataImage) -> i64 {
        let session_end = image
            .brokers()
            .filter(|b| !b.fenced)
            .filter_map(|b| self.last_heartbeat_ms.get(&b.id))
            .map(|t| t + self.config.broker_session_timeout_ms)
            .min();
        let rebalance = self
            .config
            .auto_leader_rebalance_enable
            .then_some(self.next_rebalance_check_ms);
        session_end.into_iter().chain(rebalance).min().unwrap_or(i64::MAX)
    }

    fn min_isr(&self, image: &MetadataImage, topic: &str) -> usize {
        topic_config(image, topic, "min.insync.replicas")
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(self.config.min_insync_replicas)
            .max(1) as usize
    }

    fn unclean_enabled(&self, image: &MetadataImage, topic: &str) -> bool {
        topic_config(image, topic, "unclean.leader.election.enable")
            .and_then(|v| v.parse::<bool>().ok())
            .unwrap_or(self.config.unclean_leader_election_enable)
    }

    /// The change settling one partition of `topic` after `proposed_isr` and an election,
    /// under the given set of usable brokers; `None` if nothing changes. Its topic id and
    /// partition are left for the caller.
    fn decide(
        &self,
        image: &MetadataImage,
        topic: &str,
        state: &PartitionState,
        proposed_isr: &[BrokerId],
        election: Election,
        usable: &dyn Fn(BrokerId) -> bool,
    ) -> Option<PartitionChange> {
        let ctx = Context {
            min_insync_replicas: self.min_isr(image, topic),
            unclean_enabled: self.unclean_enabled(image, topic),
            usable,
        };
        election::settle(state, proposed_isr, election, &ctx)
    }

    /// [`Controller::decide`] as a record for the partition.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &self,
        image: &MetadataImage,
        topic: (&str, Uuid),
        partition: i32,
        state: &PartitionState,
        proposed_isr: &[BrokerId],
        election: Election,
        usable: &dyn Fn(BrokerId) -> bool,
    ) -> Option<MetadataRecord> {
        self.decide(image, topic.0, state, proposed_isr, election, usable)
            .map(|change| {
                MetadataRecord::PartitionChange(PartitionChange {
                    topic_id: topic.1,
                    partition,
                    ..change
                })
            })
    }
}

/// A topic's config by name: its own override, else the cluster's dynamic default.
fn topic_config<'a>(image: &'a MetadataImage, topic: &str, name: &str) -> Option<&'a str> {
    image
        .config(&ConfigResource::Topic(topic.to_string()), name)
        .or_else(|| image.config(&ConfigResource::BrokerDefault, name))
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::records::{BrokerRegistration, Endpoint};

    /// Applies a plan's records at the next offset, as the quorum would.
    pub(crate) fn commit<R>(image: &mut MetadataImage, plan: &Plan<R>) -> u64 {
        let offset = image.offset + 1;
        let (_, errors) = image.apply_batch(offset, &plan.records);
        assert!(errors.is_empty(), "records did not apply: {errors:?}");
        offset
    }

    /// An image with `n` unfenced brokers 1..=n (rack "r<id % racks>" when racks > 0).
    pub(crate) fn cluster(n: i32, racks: i32) -> MetadataImage {
        let mut image = MetadataImage::new();
        for id in 1..=n {
            image.offset += 1;
            let offset = image.offset;
            image
                .apply(
                    offset,
                    &MetadataRecord::RegisterBroker(BrokerRegistration {
                        id,
                        incarnation_id: Uuid::from_u128(id as u128),
                        epoch: 0,
                        endpoints: vec![Endpoint {
                            name: "PLAINTEXT".into(),
                            host: "127.0.0.1".into(),
                            port: 9000 + id as u16,
                            security_protocol: 0,
                        }],
                        rack: (racks > 0).then(|| format!("r{}", id % racks)),
                        fenced: false,
                        fenced_at: 0,
                        in_controlled_shutdown: false,
                    }),
                )
                .unwrap();
        }
        image
    }
}
