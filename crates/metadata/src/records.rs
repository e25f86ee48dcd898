//! The records of the metadata log, and how a batch of them is encoded as one Raft command.
//!
//! Each record is a fact the whole cluster agrees on, in the order the quorum committed it.
//! The layout is Strom's own (Kafka's KRaft records are not a wire format clients see), but
//! the nouns are Kafka's: a broker registration, a topic, a partition and its changes, a
//! config, a producer id block, a feature level.
//!
//! Encoding: a batch is JSON, `{"v":1,"records":[{"type":"Topic",...},...]}`. JSON keeps the
//! log readable with ordinary tools and lets later records (ACLs, SCRAM credentials, quotas)
//! and later fields (`#[serde(default)]`) arrive without a format break: a node that meets a
//! record type it does not know refuses the batch with a clear error instead of guessing.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A broker's node id (Kafka's `node.id`).
pub type BrokerId = i32;

/// No leader: the partition is offline.
pub const NO_LEADER: BrokerId = -1;

/// The encoding version of a batch. Bump it only with a reader for the old one.
pub const BATCH_VERSION: u16 = 1;

/// One listener a broker offers clients (Kafka's `Endpoint` in a registration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The listener name (`PLAINTEXT`, or a name from `listeners`).
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Kafka's security protocol id: 0 PLAINTEXT, 1 SSL, 2 SASL_PLAINTEXT, 3 SASL_SSL.
    #[serde(default)]
    pub security_protocol: i16,
}

/// A broker as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: BrokerId,
    /// Random per process start: tells a restarted broker from its previous session.
    pub incarnation_id: Uuid,
    /// The broker epoch: the metadata log index of the registration (set when applied). Every
    /// heartbeat and ISR change names it, so requests of an older session are refused.
    #[serde(default)]
    pub epoch: i64,
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub rack: Option<String>,
    /// A fenced broker leads nothing and is in no ISR; brokers register fenced and are unfenced
    /// once their metadata has caught up.
    pub fenced: bool,
    /// The metadata log index of the batch that last fenced this broker (0: never). That batch
    /// also moved its leaderships and ISRs away; a broker is caught up, and may be unfenced,
    /// only once its own metadata has reached it, so it never leads or coordinates again
    /// from an image that still shows what it held before.
    #[serde(default)]
    pub fenced_at: u64,
    #[serde(default)]
    pub in_controlled_shutdown: bool,
}

/// Whether a leader chosen by an unclean election may still be missing acknowledged records
/// (Kafka's `LeaderRecoveryState`). Followers do not copy from a recovering leader's
/// partitions' ISR until it has recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LeaderRecoveryState {
    #[default]
    Recovered,
    Recovering,
}

/// The agreed state of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The assigned replicas; the first is the preferred leader.
    pub replicas: Vec<BrokerId>,
    /// In-sync replicas: each holds every record up to the high watermark.
    pub isr: Vec<BrokerId>,
    /// KIP-966 eligible leader replicas: out of the ISR only because too few were left, but
    /// known to hold everything up to the high watermark, so they may still be elected.
    #[serde(default)]
    pub elr: Vec<BrokerId>,
    /// The ISR members last seen before the partition went without a leader and without an ELR:
    /// the replicas an operator's unclean election should prefer.
    #[serde(default)]
    pub last_known_elr: Vec<BrokerId>,
    /// During a reassignment: replicas that are leaving, and replicas that are joining.
    #[serde(default)]
    pub removing_replicas: Vec<BrokerId>,
    #[serde(default)]
    pub adding_replicas: Vec<BrokerId>,
    pub leader: BrokerId,
    /// Bumped whenever the leader changes: fences requests of an older leadership.
    pub leader_epoch: i32,
    /// Bumped on every change: an ISR change request must name the current one (KIP-497).
    pub partition_epoch: i32,
    #[serde(default)]
    pub leader_recovery_state: LeaderRecoveryState,
}

impl PartitionState {
    /// A new partition led by its first replica with every replica in sync.
    pub fn new(replicas: Vec<BrokerId>) -> PartitionState {
        PartitionState {
            leader: replicas.first().copied().unwrap_or(NO_LEADER),
            isr: replicas.clone(),
            replicas,
            elr: Vec::new(),
            last_known_elr: Vec::new(),
            removing_replicas: Vec::new(),
            adding_replicas: Vec::new(),
            leader_epoch: 0,
            partition_epoch: 0,
            leader_recovery_state: LeaderRecoveryState::Recovered,
        }
    }

    pub fn has_leader(&self) -> bool {
        self.leader != NO_LEADER
    }

    /// The replicas the partition is moving to (the assignment once a reassignment ends).
    pub fn target_replicas(&self) -> Vec<BrokerId> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing_replicas.contains(r))
            .collect()
    }

    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }
}

/// A change to one partition. Absent fields stay as they are. Applying it always bumps the
/// partition epoch, and bumps the leader epoch when `leader` is present and names a different
/// broker.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PartitionChange {
    pub topic_id: Uuid,
    pub partition: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<BrokerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isr: Option<Vec<BrokerId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elr: Option<Vec<BrokerId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_known_elr: Option<Vec<BrokerId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Vec<BrokerId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removing_replicas: Option<Vec<BrokerId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adding_replicas: Option<Vec<BrokerId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_recovery_state: Option<LeaderRecoveryState>,
}

/// What a config record applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name")]
pub enum ConfigResource {
    Topic(String),
    /// One broker's dynamic config.
    Broker(BrokerId),
    /// The cluster-wide dynamic default for every broker (Kafka's empty broker name).
    BrokerDefault,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A broker joins or re-joins (a new incarnation replaces the old session).
    RegisterBroker(BrokerRegistration),
    /// A broker leaves the cluster for good (after decommissioning).
    UnregisterBroker {
        id: BrokerId,
        epoch: i64,
    },
    /// A broker is fenced or unfenced, or starts a controlled shutdown.
    BrokerRegistrationChange {
        id: BrokerId,
        epoch: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fenced: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_controlled_shutdown: Option<bool>,
    },
    Topic {
        name: String,
        id: Uuid,
    },
    Partition {
        topic_id: Uuid,
        partition: i32,
        state: PartitionState,
    },
    PartitionChange(PartitionChange),
    RemoveTopic {
        id: Uuid,
    },
    /// Sets (`Some`) or removes (`None`) one config of a resource.
    Config {
        resource: ConfigResource,
        name: String,
        value: Option<String>,
    },
    /// Producer ids below `next_producer_id` are handed out: the block
    /// `[next_producer_id - block size, next_producer_id)` went to `broker_id`.
    ProducerIds {
        broker_id: BrokerId,
        broker_epoch: i64,
        next_producer_id: i64,
    },
    FeatureLevel {
        name: String,
        level: i16,
    },
}

#[derive(Serialize)]
struct BatchOut<'a> {
    v: u16,
    records: &'a [MetadataRecord],
}

#[derive(Deserialize)]
struct BatchIn {
    v: u16,
    records: Vec<MetadataRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("metadata batch version {0} is newer than this node understands ({BATCH_VERSION}); upgrade this node")]
    Version(u16),
    #[error("metadata batch does not decode: {0}")]
    Malformed(String),
}

/// Encodes records as one Raft command.
pub fn encode_batch(records: &[MetadataRecord]) -> Vec<u8> {
    serde_json::to_vec(&BatchOut {
        v: BATCH_VERSION,
        records,
    })
    .expect("metadata records always encode")
}

/// Decodes a Raft command written by [`encode_batch`].
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<MetadataRecord>, DecodeError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        v: u16,
    }
    let version = serde_json::from_slice::<VersionOnly>(bytes)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?
        .v;
    if version > BATCH_VERSION {
        return Err(DecodeError::Version(version));
    }
    let batch: BatchIn = serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    debug_assert_eq!(batch.v, version);
    Ok(batch.records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips() {
        let id = Uuid::from_u128(7);
        let records = vec![
            MetadataRecord::Topic {
                name: "orders".into(),
                id,
            },
            MetadataRecord::Partition {
                topic_id: id,
                partition: 0,
                state: PartitionState::new(vec![1, 2, 3]),
            },
            MetadataRecord::PartitionChange(PartitionChange {
                topic_id: id,
                partition: 0,
                isr: Some(vec![1, 2]),
                ..PartitionChange::default()
            }),
            MetadataRecord::Config {
                resource: ConfigResource::BrokerDefault,
                name: "log.flush.interval.messages".into(),
                value: Some("1".into()),
            },
        ];
        let bytes = encode_batch(&records);
        assert_eq!(decode_batch(&bytes).unwrap(), records);
    }

    #[test]
    fn a_newer_batch_or_garbage_is_refused_clearly() {
        let newer = br#"{"v":2,"records":[]}"#;
        assert!(matches!(decode_batch(newer), Err(DecodeError::Version(2))));
        assert!(matches!(decode_batch(b"\x00\x01"), Err(DecodeError::Malformed(_))));
        let unknown = br#"{"v":1,"records":[{"type":"Acl"}]}"#;
        assert!(matches!(decode_batch(unknown), Err(DecodeError::Malformed(_))));
    }
}
