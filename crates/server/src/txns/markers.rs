//! Writing a transaction's markers: into the partitions this broker leads directly, and into
//! the others through WriteTxnMarkers to their leaders (as Kafka's coordinator does). Either
//! way a marker counts as written once every in-sync replica of its partition has it, so a
//! failover cannot leave a transaction open in a partition whose coordinator thinks it ended.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use strom_record::control::Marker;
use strom_storage::AppendError;
use strom_txn::Markers;

use super::{Txns, REPLICATION_TIMEOUT};
use crate::clock::now_ms;
use crate::groups::{self, OFFSETS_TOPIC};
use crate::internal_topic::Written;
use crate::partition::Role;

/// WriteTxnMarkers' only version.
const WRITE_TXN_MARKERS_VERSION: i16 = 1;
/// Beyond the leader's replication wait, how long a remote marker write may take.
const CALL_SLACK: Duration = Duration::from_secs(5);

/// Writes the markers into every partition of the transaction; false if any partition could
/// not take one (the transaction stays in its Prepare state and the timer tries again).
pub(super) async fn write(txns: &Txns, markers: &Markers) -> bool {
    let mut here = Vec::new();
    let mut elsewhere: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
    let mut all = true;
    for (topic, index) in &markers.partitions {
        // A partition deleted since it joined the transaction has nothing left to end.
        let Some(partition) = txns.logs.topics.partition(topic, *index) else {
            continue;
        };
        match partition.role() {
            Role::Leader { .. } => here.push((topic.clone(), *index)),
            Role::Follower { leader, .. } | Role::None { leader, .. } if leader >= 0 => {
                elsewhere.entry(leader).or_default().push((topic.clone(), *index));
            }
            _ => {
                tracing::warn!(
                    topic,
                    partition = index,
                    "transaction marker waits for the partition to have a leader"
                );
                all = false;
            }
        }
    }
    let outcome = markers.commit;
    for (partition, result) in here
        .iter()
        .zip(write_here(txns, markers.producer_id, markers.producer_epoch, outcome, &here).await)
    {
        if let Err(error) = result {
            tracing::warn!(topic = partition.0, partition = partition.1, %error, "transaction marker not written");
            all = false;
        }
    }
    // One request per leader, one after another: a transaction spans a few brokers at most.
    for (leader, partitions) in elsewhere {
        if let Err(e) = send(txns, leader, markers, &partitions).await {
            tracing::warn!(leader, error = %e, ?partitions, "transaction markers not written by the leader");
            all = false;
        }
    }
    all
}

/// Asks broker `leader` to write the markers into `partitions`.
async fn send(txns: &Txns, leader: i32, markers: &Markers, partitions: &[(String, i32)]) -> Result<(), String> {
    let cluster = &txns.logs.cluster;
    let mut marker = WritableTxnMarker::default();
    marker.producer_id = ProducerId(markers.producer_id);
    marker.producer_epoch = markers.producer_epoch;
    marker.transaction_result = markers.commit;
    marker.coordinator_epoch = 0;
    marker.topics = super::by_topic(partitions)
        .into_iter()
        .map(|(name, indexes)| {
            let mut topic = WritableTxnMarkerTopic::default();
            topic.name = TopicName(StrBytes::from_string(name.to_string()));
            topic.partition_indexes = indexes;
            topic
        })
        .collect();
    let mut request = WriteTxnMarkersRequest::default();
    request.markers = vec![marker];
    let response: WriteTxnMarkersResponse = cluster
        .peers
        .call(
            cluster,
            leader,
            ApiKey::WriteTxnMarkers,
            WRITE_TXN_MARKERS_VERSION,
            &request,
            REPLICATION_TIMEOUT + CALL_SLACK,
        )
        .await?;
    let refused: Vec<String> = response
        .markers
        .iter()
        .flat_map(|m| &m.topics)
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.error_code != 0)
                .map(move |p| format!("{}-{}: error {}", t.name.as_str(), p.partition_index, p.error_code))
        })
        .collect();
    let answered: usize = response
        .markers
        .iter()
        .flat_map(|m| &m.topics)
        .map(|t| t.partitions.len())
        .sum();
    if !refused.is_empty() {
        return Err(refused.join(", "));
    }
    if answered != partitions.len() {
        return Err(format!("{answered} of {} partitions answered", partitions.len()));
    }
    Ok(())
}

/// Writes a COMMIT or ABORT marker into each partition this broker leads and waits until the
/// in-sync replicas have it; the coordinator's own writes and WriteTxnMarkers from a
/// coordinator elsewhere both end here. A marker older than the partition's producer epoch
/// is skipped as done: the newer epoch's own marker ends anything it would.
pub(crate) async fn write_here(
    txns: &Txns,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    partitions: &[(String, i32)],
) -> Vec<Result<(), ResponseError>> {
    let marker = if commit { Marker::Commit } else { Marker::Abort };
    let now = now_ms();
    let mut written: Vec<Result<Option<Written>, ResponseError>> = Vec::with_capacity(partitions.len());
    for (topic, index) in partitions {
        let Some(partition) = txns.logs.topics.partition(topic, *index) else {
            written.push(Err(ResponseError::UnknownTopicOrPartition));
            continue;
        };
        if !partition.is_leader() {
            written.push(Err(ResponseError::NotLeaderOrFollower));
            continue;
        }
        let leader_epoch = partition.leader_epoch();
        let mut guard = partition.lock();
        let Some(log) = guard.as_mut() else {
            written.push(Err(ResponseError::UnknownTopicOrPartition));
            continue;
        };
        match log.append_marker(marker, producer_id, producer_epoch, 0, leader_epoch, now) {
            Ok(outcome) => {
                partition.after_local_append(log);
                drop(guard);
                written.push(Ok(Some(Written {
                    partition: partition.clone(),
                    leader_epoch,
                    last_offset: outcome.last_offset,
                })));
            }
            Err(AppendError::InvalidProducerEpoch { current, .. }) => {
                tracing::warn!(
                    topic,
                    partition = index,
                    producer_id,
                    producer_epoch,
                    current,
                    "marker older than the partition's producer epoch skipped"
                );
                written.push(Ok(None));
            }
            Err(e) => {
                tracing::error!(topic, partition = index, error = %e, "transaction marker not written");
                written.push(Err(ResponseError::KafkaStorageError));
            }
        }
    }
    txns.logs.signals.notify_appended();
    let mut results = Vec::with_capacity(written.len());
    for ((topic, index), written) in partitions.iter().zip(written) {
        let result = match written {
            Ok(Some(written)) => written
                .replicated(&txns.logs.signals, REPLICATION_TIMEOUT)
                .await
                .map_err(|e| match e {
                    crate::internal_topic::PersistError::NotLeader(_) => ResponseError::NotLeaderOrFollower,
                    _ => ResponseError::NotEnoughReplicasAfterAppend,
                }),
            Ok(None) => Ok(()),
            Err(error) => Err(error),
        };
        if result.is_ok() && topic == OFFSETS_TOPIC {
            groups::end_txn(&txns.groups, *index, producer_id, commit);
        }
        results.push(result);
    }
    results
}
