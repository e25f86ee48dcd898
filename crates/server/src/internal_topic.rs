//! Topics only coordinators write: `__consumer_offsets` and `__transaction_state`. Both are
//! ordinary compacted topics, created on first use, whose records a coordinator appends under
//! its own lock (so the log's order is the order of its decisions) and replays at start-up.
//!
//! A coordinator reaches its topic through [`CoordinatorLogs`], not through the broker that
//! holds the coordinator.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::TimestampType;
use strom_record::records::{CodecCompression, Record as BatchRecord, RecordBatchEncoder, RecordEncodeOptions};
use strom_record::{validate_batches, BatchHeader, BatchIter};

use crate::clock::now_ms;
use crate::cluster::Cluster;
use crate::partition::{AcksAllState, Partition};
use crate::signals::Signals;
use crate::topics::{Topic, TopicRegistry};

/// `max.message.bytes` of internal topics: a group's record carries every member's metadata
/// (each up to a 2 MiB request) and a transaction's its partition list, so a coordinator's
/// write must not be refused by the topic's own size limit.
const RECORD_BYTES_MAX: usize = 64 * 1024 * 1024;
/// How often a node asks the controller again for an internal topic that has not appeared.
const CREATION_RETRY_MS: i64 = 5_000;
/// How much of a partition is read at a time while replaying.
const LOAD_READ_BYTES: usize = 16 * 1024 * 1024;

/// What a coordinator needs of its broker: the broker's partitions (its internal topic's among
/// them), the cluster (to have the topic created, and to reach other brokers) and the
/// broker's signals (to wait for its records to replicate).
#[derive(Clone)]
pub struct CoordinatorLogs {
    pub topics: Arc<TopicRegistry>,
    pub cluster: Arc<Cluster>,
    pub signals: Arc<Signals>,
}

/// The group coordinator's topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The transaction coordinator's topic.
pub const TXN_STATE_TOPIC: &str = "__transaction_state";

/// Whether only a coordinator may write to (or create) this topic.
pub fn is_coordinator_topic(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == TXN_STATE_TOPIC
}

/// Why records could not be written to an internal topic.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("internal topic: {0}")]
    Topic(String),
    #[error("internal topic partition {0} is closed")]
    PartitionClosed(i32),
    #[error("internal batch: {0}")]
    Batch(String),
    #[error("internal append: {0}")]
    Append(String),
    #[error("the producer's epoch is fenced")]
    Fenced,
    /// In a cluster: the partition is led by another broker (whose coordinator owns it now).
    #[error("internal topic partition {0} is led by another broker")]
    NotLeader(i32),
    /// In a cluster: the topic is being created by the controller; ask again.
    #[error("internal topic {0} is being created")]
    NotCreatedYet(&'static str),
    /// In a cluster: the write is not known to be on every in-sync replica (the ISR fell
    /// below `min.insync.replicas`, or no answer in time); it may or may not survive.
    #[error("internal topic partition {0} did not replicate the write in time")]
    NotReplicated(i32),
}

/// Where an append landed, to wait for its replication.
pub struct Written {
    pub partition: Arc<Partition>,
    pub leader_epoch: i32,
    pub last_offset: i64,
}

impl Written {
    /// Waits until the write is on every in-sync replica (at once in an ISR of one). A
    /// coordinator acts on a record only after this, so its decisions survive a failover.
    pub async fn replicated(&self, signals: &Signals, timeout: std::time::Duration) -> Result<(), PersistError> {
        let mut changes = signals.subscribe_appends();
        let deadline = tokio::time::Instant::now() + timeout;
        match self
            .partition
            .until_replicated(&mut changes, self.leader_epoch, self.last_offset, deadline)
            .await
        {
            AcksAllState::Acknowledged => Ok(()),
            AcksAllState::NotLeader => Err(PersistError::NotLeader(self.partition.index)),
            AcksAllState::Waiting | AcksAllState::NotEnoughReplicasAfterAppend => {
                Err(PersistError::NotReplicated(self.partition.index))
            }
        }
    }
}

/// How an internal topic is created.
#[derive(Debug, Clone, Copy)]
pub struct InternalTopic {
    pub name: &'static str,
    pub partitions: i32,
    pub segment_bytes: u64,
    /// Asked of the controller, capped at the live brokers when the topic is created.
    pub replication_factor: i16,
}

impl InternalTopic {
    fn overrides(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("max.message.bytes".to_string(), RECORD_BYTES_MAX.to_string()),
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("segment.bytes".to_string(), self.segment_bytes.to_string()),
        ])
    }

    /// The topic, if it exists; if not, asks the controller for it and says it is not there
    /// yet.
    pub fn get_or_create(&self, logs: &CoordinatorLogs) -> Result<Arc<Topic>, PersistError> {
        if let Some(topic) = logs.topics.get(self.name) {
            return Ok(topic);
        }
        self.request_creation(&logs.cluster);
        Err(PersistError::NotCreatedYet(self.name))
    }

    /// Asks the active controller to create the topic (replication factor capped at the live
    /// brokers, as Kafka does for its internal topics), unless this node already asked within
    /// the last few seconds.
    fn request_creation(&self, cluster: &Arc<Cluster>) {
        static LAST_ASKED_MS: std::sync::Mutex<BTreeMap<&'static str, i64>> = std::sync::Mutex::new(BTreeMap::new());
        let now = now_ms();
        {
            let mut asked = LAST_ASKED_MS.lock().expect("creation requests lock");
            let last = asked.entry(self.name).or_insert(i64::MIN / 2);
            if now - *last < CREATION_RETRY_MS {
                return;
            }
            *last = now;
        }
        let live = cluster
            .image()
            .brokers()
            .filter(|b| !b.fenced && !b.in_controlled_shutdown)
            .count();
        let replication_factor = self.replication_factor.min(live.max(1) as i16);
        let topic = strom_metadata::controller::CreateTopic {
            name: self.name.to_string(),
            id: uuid::Uuid::new_v4(),
            num_partitions: self.partitions,
            replication_factor,
            assignments: Vec::new(),
            configs: self.overrides().into_iter().collect(),
        };
        let request = crate::cluster::protocol::ControllerRequest::CreateTopics {
            topics: vec![topic],
            validate_only: false,
        };
        let cluster = cluster.clone();
        let name = self.name;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let answer = cluster.call(&request, std::time::Duration::from_secs(30)).await;
            tracing::info!(
                topic = name,
                replication_factor,
                ?answer,
                "asked the controller to create an internal topic"
            );
        });
    }

    /// Appends `(key, value)` records as one batch to partition `index`; transactional under
    /// `producer` (id, epoch) if given, in which case only the epoch is checked.
    pub fn append(
        &self,
        logs: &CoordinatorLogs,
        index: i32,
        records: &[(Bytes, Option<Bytes>)],
        producer: Option<(i64, i16)>,
    ) -> Result<Written, PersistError> {
        let topic = self.get_or_create(logs)?;
        let partition = topic
            .partition(index)
            .ok_or_else(|| PersistError::Topic(format!("partition {index} missing")))?;
        if !partition.is_leader() {
            return Err(PersistError::NotLeader(index));
        }
        let now = now_ms();
        let batch = encode_batch(records, now, producer)?;
        let validated = validate_batches(batch, &topic.produce_options().validate)
            .map_err(|e| PersistError::Batch(e.to_string()))?;
        let leader_epoch = partition.leader_epoch();
        let mut guard = partition.lock();
        let log = guard.as_mut().ok_or(PersistError::PartitionClosed(index))?;
        let appended = match producer {
            Some(_) => log.append_for_producer(&validated, leader_epoch, now),
            None => log.append(&validated, leader_epoch, now),
        };
        let appended = appended.map_err(|e| match e {
            strom_storage::AppendError::InvalidProducerEpoch { .. } => PersistError::Fenced,
            e => PersistError::Append(e.to_string()),
        })?;
        partition.after_local_append(log);
        drop(guard);
        logs.signals.notify_appended();
        Ok(Written {
            partition: partition.clone(),
            leader_epoch,
            last_offset: appended.last_offset,
        })
    }
}

/// Calls `f` with every batch of a partition, in order. Stops, saying so, at anything it
/// cannot read: records after a damaged batch are lost to the coordinator (recovery truncates
/// torn tails before this runs).
pub fn for_each_batch(log: &strom_storage::Log, topic: &str, partition: i32, f: &mut dyn FnMut(&BatchHeader, &[u8])) {
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let bytes = match log
            .read(offset, LOAD_READ_BYTES, end, true)
            .map_err(|e| e.to_string())
            .and_then(|slice| slice.read_to_bytes().map_err(|e| e.to_string()))
        {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(topic, partition, offset, error = %e, "reading an internal topic");
                break;
            }
        };
        let read_from = offset;
        for batch in BatchIter::new(&bytes) {
            let Ok(batch) = batch else { break };
            offset = batch.header.last_offset() + 1;
            f(&batch.header, batch.bytes);
        }
        if offset == read_from {
            tracing::error!(topic, partition, offset, "unreadable from here; the rest is not loaded");
            break;
        }
    }
}

fn encode_batch(
    records: &[(Bytes, Option<Bytes>)],
    now: i64,
    producer: Option<(i64, i16)>,
) -> Result<Bytes, PersistError> {
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let batch_records: Vec<BatchRecord> = records
        .iter()
        .enumerate()
        .map(|(index, (key, value))| BatchRecord {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            // No sequence: the encoder derives the batch's base sequence (-1) from this.
            sequence: index as i32 - 1,
            timestamp: now,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &batch_records,
        &RecordEncodeOptions {
            version: 2,
            compression: CodecCompression::None,
        },
    )
    .map_err(|e| PersistError::Batch(e.to_string()))?;
    Ok(buf.freeze())
}
