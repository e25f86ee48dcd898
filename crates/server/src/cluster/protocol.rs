//! What brokers ask the active controller, and its answers: the controller's operations
//! (strom-metadata's request and reply types) as JSON, carried by the quorum's application
//! calls to whichever node leads the metadata quorum.

use serde::{Deserialize, Serialize};
use strom_metadata::controller::{
    AlterPartition, BrokerHeartbeat, BrokerRegistrationRequest, ConfigOp, CreatePartitions, CreateTopic, CreatedTopic,
    HeartbeatReply, PartitionReassignment, ProducerIdBlock,
};
use strom_metadata::election::Election;
use strom_metadata::{BrokerId, ConfigResource, ControllerError, PartitionState};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ControllerRequest {
    Register {
        request: BrokerRegistrationRequest,
        /// Where a broker that is not a voter receives the metadata log (added as a learner).
        metadata_addr: Option<String>,
    },
    Heartbeat(BrokerHeartbeat),
    CreateTopics {
        topics: Vec<CreateTopic>,
        validate_only: bool,
    },
    DeleteTopics(Vec<String>),
    CreatePartitions {
        requests: Vec<CreatePartitions>,
        validate_only: bool,
    },
    AlterConfigs {
        resource: ConfigResource,
        ops: Vec<ConfigOp>,
        replace: bool,
        validate_only: bool,
    },
    /// A leader's ISR changes, every partition it has one for (one request in flight per
    /// broker).
    AlterPartitions(Vec<AlterPartition>),
    ElectLeaders {
        election: Election,
        partitions: Option<Vec<(String, i32)>>,
    },
    AlterReassignments(Vec<PartitionReassignment>),
    AllocateProducerIds {
        broker_id: BrokerId,
        broker_epoch: i64,
    },
    /// No producer id below `floor` is handed out from now on (a broker adopting a single-node
    /// data directory).
    ReserveProducerIds {
        broker_id: BrokerId,
        broker_epoch: i64,
        floor: i64,
    },
    UnregisterBroker(BrokerId),
    /// The quorum as its leader sees it (DescribeQuorum).
    DescribeQuorum,
    /// Makes a running quorum member (a broker's learner) a voter (KIP-853's AddRaftVoter).
    AddVoter {
        id: u64,
        addr: String,
    },
    /// Takes a voter out of the quorum (RemoveRaftVoter).
    RemoveVoter {
        id: u64,
    },
}

/// One quorum member as the leader sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct QuorumMember {
    pub(crate) id: u64,
    pub(crate) addr: String,
    /// The highest log index known to be on it (-1 unknown).
    pub(crate) log_end_offset: i64,
    /// When it last answered the leader (ms since the epoch; -1 unknown).
    pub(crate) last_fetch_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct QuorumView {
    pub(crate) leader: u64,
    pub(crate) term: u64,
    pub(crate) committed: i64,
    pub(crate) voters: Vec<QuorumMember>,
    pub(crate) observers: Vec<QuorumMember>,
}

pub(crate) type Results<T> = Vec<(String, Result<T, ControllerError>)>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ControllerReply {
    /// The receiver is not (or no longer) the active controller: ask again.
    NotController,
    /// The decision's records could not be committed (no majority, shutting down).
    Unavailable(String),
    Refused(ControllerError),
    Registered {
        epoch: i64,
    },
    Heartbeat(HeartbeatReply),
    CreateTopics(Results<CreatedTopic>),
    DeleteTopics(Results<uuid::Uuid>),
    CreatePartitions(Results<()>),
    Done,
    /// Per change of [`ControllerRequest::AlterPartitions`], in order: the partition as it will
    /// be once committed, or why not.
    AlterPartitions(Vec<Result<PartitionState, ControllerError>>),
    Elections(Vec<((String, i32), Result<(), ControllerError>)>),
    ProducerIds(ProducerIdBlock),
    Quorum(QuorumView),
}
