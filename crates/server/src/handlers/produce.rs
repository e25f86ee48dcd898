//! Produce (key 0): validate each partition's record set, append it as received, answer with
//! the assigned base offset. Nothing is re-encoded on this path, unless the topic's
//! `compression.type` names a codec the batch is not in: then it is recompressed first.
//!
//! A transactional batch is appended only if its partition belongs to the producer's open
//! transaction (KIP-890's server-side defence): a write that raced its transaction's end, or
//! came from a producer that never added the partition, would otherwise open a transaction
//! no marker will ever close and hold back every read_committed consumer. From Produce 12
//! (transactions v2) the write itself adds the partition to the transaction.

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use strom_record::{validate_batches, Compression, ValidatedBatches};
use strom_storage::AppendError;

use std::sync::Arc;

use super::{code, str_bytes};
use crate::broker::{now_ms, Broker};
use crate::log_limit::throttled;
use crate::partition::{AcksAllState, Partition, Role};

/// Bound on how long an acks=all produce may wait for its replicas, whatever the client asks.
const ACKS_ALL_WAIT_MS_MAX: i64 = 300_000;

/// A Produce whose appends are done: answered at once ([`Appended::answer`]), or once its
/// acks=all appends are replicated, which a connection may wait for while it appends its next
/// Produce ([`Appended::is_replicating`]).
pub(super) struct Appended {
    response: ProduceResponse,
    waiting: Vec<(usize, usize, ReplicaWait)>,
    timeout_ms: i64,
    acks: i16,
    version: i16,
}

impl Appended {
    /// Some acks=all append waits for the ISR.
    pub(super) fn is_replicating(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// The response, once every acks=all append is replicated or has failed; `None` for
    /// acks=0.
    pub(super) async fn answer(self, broker: &Broker) -> Option<ProduceResponse> {
        let Appended {
            mut response,
            waiting,
            timeout_ms,
            acks,
            version,
        } = self;
        if !waiting.is_empty() {
            for (t, p, error) in wait_for_replicas(broker, waiting, timeout_ms).await {
                let entry = &mut response.responses[t].partition_responses[p];
                let index = entry.index;
                *entry = fit_to_version(error_response(index, error, None), version);
            }
        }
        if version >= 10 {
            response.node_endpoints = leader_endpoints(broker, &response);
        }
        (acks != 0).then_some(response)
    }
}

/// Validates and appends every partition's records, in request order.
pub(super) async fn append(broker: &Arc<Broker>, request: ProduceRequest, version: i16) -> Appended {
    let acks = request.acks;
    let now = now_ms();
    let acks_valid = matches!(acks, -1..=1);
    let mut appended_any = false;
    let mut response = ProduceResponse::default();
    // (topic position, partition position, what it waits for)
    let mut waiting: Vec<(usize, usize, ReplicaWait)> = Vec::new();
    let transactional_id = request.transactional_id.as_ref().map(|id| id.as_str());
    // A transactional write's first batch in a partition needs its coordinator's word
    // (KIP-890), asked once for the whole request; held (when the id is coordinated here)
    // until the appends are done.
    let checks = match transactional_id {
        Some(id) if acks_valid => {
            // From Produce 12 (transactions v2) the write adds its partition itself.
            let protocol = super::transactions::txn_protocol(version, 12);
            match first_writes(broker, &request) {
                Some(FirstWrites { producer, partitions }) => {
                    Some(crate::txns::check_writes(&broker.txns, id, producer, &partitions, protocol).await)
                }
                None => None,
            }
        }
        _ => None,
    };
    for topic in request.topic_data {
        let mut topic_response = TopicProduceResponse::default();
        for partition in topic.partition_data {
            let result = if !acks_valid {
                error_response(partition.index, ResponseError::InvalidRequiredAcks, None)
            } else {
                let context = RequestContext {
                    version,
                    acks,
                    now,
                    transactional_id,
                    checks: checks.as_ref(),
                };
                let mut wait = None;
                let result = produce_partition(
                    broker,
                    &topic.name,
                    partition.index,
                    partition.records,
                    context,
                    &mut wait,
                );
                appended_any |= result.error_code == 0;
                if let Some(wait) = wait {
                    waiting.push((response.responses.len(), topic_response.partition_responses.len(), wait));
                }
                result
            };
            topic_response.partition_responses.push(fit_to_version(result, version));
        }
        // A copy: the request's name is a slice of its frame, which a response waiting for
        // replicas would otherwise keep in memory, records and all.
        topic_response.name = super::topic_name(topic.name.as_str());
        response.responses.push(topic_response);
    }
    drop(checks);
    if appended_any {
        broker.notify_appended();
    }
    Appended {
        response,
        waiting,
        timeout_ms: i64::from(request.timeout_ms).clamp(0, ACKS_ALL_WAIT_MS_MAX),
        acks,
        version,
    }
}

/// An acks=all append waiting for the ISR: answered once the high watermark passes its last
/// record.
struct ReplicaWait {
    partition: Arc<Partition>,
    leader_epoch: i32,
    last_offset: i64,
}

/// Waits (without holding anything the broker's other work needs) until every append is
/// replicated to the ISR, or the request's timeout. Returns the errors of those that were not:
/// REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS_AFTER_APPEND, or NOT_LEADER_OR_FOLLOWER when the
/// leadership moved meanwhile (the record may or may not survive: the client retries, and an
/// idempotent producer's retry is deduplicated).
async fn wait_for_replicas(
    broker: &Broker,
    mut waiting: Vec<(usize, usize, ReplicaWait)>,
    timeout_ms: i64,
) -> Vec<(usize, usize, ResponseError)> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(timeout_ms as u64);
    let mut changes = broker.subscribe_appends();
    let mut failed = Vec::new();
    loop {
        changes.borrow_and_update();
        waiting.retain(
            |(t, p, wait)| match wait.partition.acks_all(wait.leader_epoch, wait.last_offset) {
                AcksAllState::Waiting => true,
                AcksAllState::Acknowledged => false,
                AcksAllState::NotEnoughReplicasAfterAppend => {
                    failed.push((*t, *p, ResponseError::NotEnoughReplicasAfterAppend));
                    false
                }
                AcksAllState::NotLeader => {
                    failed.push((*t, *p, ResponseError::NotLeaderOrFollower));
                    false
                }
            },
        );
        if waiting.is_empty() {
            return failed;
        }
        if broker.is_shutting_down() {
            failed.extend(
                waiting
                    .drain(..)
                    .map(|(t, p, _)| (t, p, ResponseError::NotLeaderOrFollower)),
            );
            return failed;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    failed.extend(
        waiting
            .drain(..)
            .map(|(t, p, _)| (t, p, ResponseError::RequestTimedOut)),
    );
    failed
}

/// The addresses of the leaders named in NOT_LEADER_OR_FOLLOWER answers (KIP-951).
fn leader_endpoints(broker: &Broker, response: &ProduceResponse) -> Vec<NodeEndpoint> {
    let cluster = &broker.cluster;
    let mut leaders: Vec<i32> = response
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter())
        .filter(|p| p.error_code == code(ResponseError::NotLeaderOrFollower))
        .map(|p| p.current_leader.leader_id.0)
        .filter(|id| *id >= 0)
        .collect();
    if leaders.is_empty() {
        // The common case: every partition was ours. Nothing to look up.
        return Vec::new();
    }
    leaders.sort_unstable();
    leaders.dedup();
    let image = cluster.image();
    leaders
        .into_iter()
        .filter_map(|id| {
            let registration = image.broker(id)?;
            let endpoint = registration.endpoints.first()?;
            let mut node = NodeEndpoint::default();
            node.node_id = BrokerId(id);
            node.host = super::str_bytes(&endpoint.host);
            node.port = i32::from(endpoint.port);
            node.rack = registration.rack.as_deref().map(super::str_bytes);
            Some(node)
        })
        .collect()
}

/// Clears fields the negotiated version does not carry; the codec refuses to encode them.
fn fit_to_version(mut response: PartitionProduceResponse, version: i16) -> PartitionProduceResponse {
    if version < 10 {
        response.current_leader = Default::default();
    }
    if version < 5 {
        response.log_start_offset = -1;
    }
    if version < 8 {
        response.error_message = None;
        response.record_errors.clear();
    }
    response
}

/// Kafka's rules for what a client may send in Produce v3+, beyond the batch format itself.
fn check_client_batch(
    validated: &ValidatedBatches,
    version: i16,
    transactional: bool,
) -> Result<(), (ResponseError, &'static str)> {
    let [(_, header)] = validated.batches() else {
        return Err((
            ResponseError::InvalidRecord,
            "a produce request carries exactly one record batch per partition",
        ));
    };
    if header.base_offset != 0 {
        return Err((
            ResponseError::InvalidRecord,
            "the base offset of a produced batch must be 0",
        ));
    }
    if header.has_producer_id() && header.base_sequence < 0 {
        return Err((
            ResponseError::InvalidRecord,
            "an idempotent or transactional batch needs a sequence number",
        ));
    }
    if header.is_transactional() && !header.has_producer_id() {
        return Err((
            ResponseError::InvalidRecord,
            "a transactional batch needs a producer id",
        ));
    }
    if header.is_transactional() != transactional {
        return Err((
            ResponseError::InvalidTxnState,
            "transactional batches come with a transactional id, and only they do",
        ));
    }
    // Clients older than Produce v7 cannot read zstd (KIP-110), so brokers refuse to store it
    // from them.
    if version < 7 && header.compression() == Ok(Compression::Zstd) {
        return Err((
            ResponseError::UnsupportedCompressionType,
            "zstd needs Produce v7 or later",
        ));
    }
    Ok(())
}

fn error_response(index: i32, error: ResponseError, message: Option<String>) -> PartitionProduceResponse {
    let mut response = PartitionProduceResponse::default();
    response.index = index;
    response.error_code = code(error);
    response.base_offset = -1;
    response.log_append_time_ms = -1;
    response.log_start_offset = -1;
    response.error_message = message.map(|m| str_bytes(&m));
    response
}

/// What every partition of one produce request shares.
#[derive(Clone, Copy)]
struct RequestContext<'a> {
    version: i16,
    acks: i16,
    now: i64,
    transactional_id: Option<&'a str>,
    checks: Option<&'a crate::txns::WriteChecks<'a>>,
}

/// A transactional request's producer, and the partitions led here where this is its
/// transaction's first write (no transaction of its open there at its epoch).
struct FirstWrites {
    producer: (i64, i16),
    partitions: Vec<(String, i32)>,
}

/// `None` if the request carries no readable batch.
fn first_writes(broker: &Broker, request: &ProduceRequest) -> Option<FirstWrites> {
    let header = request
        .topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .find_map(|p| {
            p.records
                .as_ref()
                .and_then(|r| strom_record::BatchHeader::parse(r).ok())
        })?;
    let producer = (header.producer_id, header.producer_epoch);
    let mut partitions = Vec::new();
    for topic in &request.topic_data {
        let Some(registered) = broker.topics.get(topic.name.as_str()) else {
            continue;
        };
        for data in &topic.partition_data {
            let Some(partition) = registered.partition(data.index) else {
                continue;
            };
            if !partition.is_leader() {
                continue;
            }
            let open = partition.lock().as_ref().is_some_and(|log| {
                log.open_transaction(producer.0)
                    .is_some_and(|(epoch, _)| epoch == producer.1)
            });
            if !open {
                partitions.push((topic.name.to_string(), data.index));
            }
        }
    }
    Some(FirstWrites { producer, partitions })
}

fn produce_partition(
    broker: &Broker,
    topic_name: &str,
    index: i32,
    records: Option<Bytes>,
    RequestContext {
        version,
        acks,
        now,
        transactional_id,
        checks,
    }: RequestContext<'_>,
    wait: &mut Option<ReplicaWait>,
) -> PartitionProduceResponse {
    if crate::internal_topic::is_coordinator_topic(topic_name) {
        // Only the group coordinator writes there, as in Kafka.
        return error_response(
            index,
            ResponseError::InvalidTopicException,
            Some(format!("cannot append to internal topic {topic_name}")),
        );
    }
    let Some(topic) = broker.topics.get(topic_name) else {
        return error_response(index, ResponseError::UnknownTopicOrPartition, None);
    };
    let Some(partition) = topic.partition(index) else {
        return error_response(index, ResponseError::UnknownTopicOrPartition, None);
    };
    if !partition.is_leader() {
        // KIP-951: name the leader as this broker knows it, so the client need not refresh
        // its metadata first (Produce 10+; the leader's address goes in `node_endpoints`).
        let mut response = error_response(index, ResponseError::NotLeaderOrFollower, None);
        if let Role::Follower { leader, leader_epoch } | Role::None { leader, leader_epoch } = partition.role() {
            response.current_leader.leader_id = BrokerId(leader);
            response.current_leader.leader_epoch = leader_epoch;
        }
        return response;
    }
    let Some(records) = records else {
        return error_response(
            index,
            ResponseError::CorruptMessage,
            Some("null record set".to_string()),
        );
    };
    let options = topic.produce_options();
    if acks == -1 {
        let image = broker.cluster.image();
        let committed_isr = image
            .partition(&topic.id, index)
            .filter(|state| state.leader == broker.node_id())
            .map(|state| state.isr.len());
        if let Err((isr, min_isr)) = partition.check_acks_all(committed_isr) {
            return error_response(
                index,
                ResponseError::NotEnoughReplicas,
                Some(format!(
                    "min.insync.replicas is {min_isr} but the ISR has {isr} replica{}",
                    if isr == 1 { "" } else { "s" }
                )),
            );
        }
    }
    let batch_len = records.len();
    let validated = match validate_batches(records, &options.validate) {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(topic = topic_name, partition = index, error = %e, "rejected record set");
            let code = strom_protocol::errors::batch_error_code(&e);
            let limit = strom_protocol::errors::record_errors_limit(batch_len);
            let Some(answer) = strom_protocol::errors::record_errors(&e, topic_name, index, limit) else {
                return error_response(index, code, Some(e.to_string()));
            };
            // KIP-467: which records were refused, so the client fails only those.
            let mut response = error_response(index, code, Some(answer.error_message));
            response.record_errors = answer
                .records
                .into_iter()
                .map(|(batch_index, message)| {
                    let mut error = BatchIndexAndErrorMessage::default();
                    error.batch_index = batch_index;
                    error.batch_index_error_message = Some(message);
                    error
                })
                .collect();
            return response;
        }
    };
    if let Err((error, message)) = check_client_batch(&validated, version, transactional_id.is_some()) {
        return error_response(index, error, Some(message.to_string()));
    }
    // The topic's compression.type, unless `producer`: a batch in another codec is rewritten
    // in it (outside the partition lock); one already in it is kept as sent.
    let validated = match options.compression {
        None => validated,
        Some(target) => match validated.recompressed(target, &options.validate) {
            Ok(recompressed) => recompressed,
            Err(e) => {
                tracing::debug!(topic = topic_name, partition = index, error = %e, "recompression failed");
                return error_response(index, strom_protocol::errors::batch_error_code(&e), Some(e.to_string()));
            }
        },
    };
    let leader_epoch = partition.leader_epoch();
    let append = |log: &mut strom_storage::Log| {
        let result = log.append(&validated, leader_epoch, now);
        // The high watermark follows as the ISR has the records (at once in an ISR of one).
        partition.after_local_append(log);
        result
    };
    let appended = match transactional_id {
        None => partition.lock().as_mut().map(append),
        Some(_) => {
            let verdict = checks.map_or(Ok(()), |c| c.verdict(&(topic_name.to_string(), index)));
            match verdict.map(|()| partition.lock().as_mut().map(append)) {
                Ok(appended) => appended,
                // A fenced producer gets INVALID_PRODUCER_EPOCH, as from Kafka (whose produce
                // answers never carry PRODUCER_FENCED): librdkafka treats PRODUCER_FENCED on a
                // produce as abortable, so a zombie would not learn it is fenced there.
                Err(strom_txn::TxnError::ProducerFenced) => {
                    return error_response(
                        index,
                        ResponseError::InvalidProducerEpoch,
                        Some("a newer producer owns this transactional id".to_string()),
                    );
                }
                // Kafka's answer when the coordinator could not be reached to add the partition:
                // retriable, and no client takes it for a lost producer.
                Err(
                    strom_txn::TxnError::CoordinatorNotAvailable
                    | strom_txn::TxnError::NotCoordinator
                    | strom_txn::TxnError::CoordinatorLoadInProgress,
                ) => {
                    return error_response(
                        index,
                        ResponseError::NotEnoughReplicas,
                        Some("the transaction coordinator could not record the partition".to_string()),
                    );
                }
                Err(error) => {
                    let message = match error {
                        strom_txn::TxnError::ConcurrentTransactions => {
                            "the producer's previous transaction is still completing"
                        }
                        _ => "the partition is not part of the producer's open transaction",
                    };
                    return error_response(
                        index,
                        super::transactions::txn_response_error(error),
                        Some(message.to_string()),
                    );
                }
            }
        }
    };
    let Some(appended) = appended else {
        return error_response(index, ResponseError::UnknownTopicOrPartition, None);
    };
    match appended {
        Ok(outcome) => {
            if acks == -1 {
                *wait = Some(ReplicaWait {
                    partition: partition.clone(),
                    leader_epoch,
                    last_offset: outcome.last_offset,
                });
            }
            let mut response = PartitionProduceResponse::default();
            response.index = index;
            response.base_offset = outcome.base_offset;
            response.log_append_time_ms = outcome.log_append_time;
            response.log_start_offset = outcome.log_start_offset;
            response
        }
        Err(e) => {
            let error = match &e {
                AppendError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
                AppendError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
                AppendError::UnknownProducerId { .. } => ResponseError::UnknownProducerId,
                AppendError::Storage(storage) => {
                    throttled!(error, topic = topic_name, partition = index, error = %storage, "append failed");
                    ResponseError::KafkaStorageError
                }
            };
            error_response(index, error, Some(e.to_string()))
        }
    }
}
