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
    AlterPartition(AlterPartition),
    ElectLeaders {
        election: Election,
        partitions: Option<Vec<(String, i32)>>,
    },
    AlterReassignments(Vec<PartitionReassignment>),
    AllocateProducerIds {
        broker_id: BrokerId,
        broker_epoch: i64,
    },
    UnregisterBroker(BrokerId),
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
    AlterPartition(Box<PartitionState>),
    Elections(Vec<((String, i32), Result<(), ControllerError>)>),
    ProducerIds(ProducerIdBlock),
}
