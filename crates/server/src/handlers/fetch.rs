//! Fetch (key 1): read whole batches from each requested partition, up to the high watermark.
//!
//! A fetch that finds fewer than `min_bytes` waits, up to `max_wait_ms`, for the broker's
//! append signal and reads again, so a consumer sees a record as soon as it is appended.
//! Fetch sessions (KIP-227) are declined: every response carries session id 0, which tells
//! clients to keep sending full fetch requests.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;
use strom_storage::ReadError;

use super::code;
use crate::broker::Broker;
use crate::partition::Partition;

/// Bound on how long any fetch may park, whatever the client asks for.
const FETCH_WAIT_MS_MAX: u64 = 30_000;

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: FetchRequest,
    version: i16,
) -> FetchResponse {
    if version >= 7 && request.session_id != 0 {
        return session_error(ResponseError::FetchSessionIdNotFound);
    }
    if version >= 7 && request.session_epoch > 0 {
        return session_error(ResponseError::InvalidFetchSessionEpoch);
    }
    let wait = Duration::from_millis((request.max_wait_ms.max(0) as u64).min(FETCH_WAIT_MS_MAX));
    let deadline = tokio::time::Instant::now() + wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let mut appended = broker.subscribe_appends();
    loop {
        // Mark the current append generation seen before reading, so an append that lands
        // between this read and the wait below still wakes us.
        appended.borrow_and_update();
        let (response, bytes, errors) = read_partitions(broker, &request, version);
        if bytes >= min_bytes || errors || tokio::time::Instant::now() >= deadline {
            return response;
        }
        tokio::select! {
            changed = appended.changed() => if changed.is_err() { return response },
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

fn session_error(error: ResponseError) -> FetchResponse {
    let mut response = FetchResponse::default();
    response.error_code = code(error);
    response
}

/// One pass over every requested partition. Returns the response, the record bytes in it, and
/// whether any partition had an error (which ends the wait, as in Kafka).
fn read_partitions(
    broker: &Broker,
    request: &FetchRequest,
    version: i16,
) -> (FetchResponse, usize, bool) {
    let mut budget = if version >= 3 && request.max_bytes > 0 {
        request.max_bytes as usize
    } else {
        i32::MAX as usize
    };
    let mut total = 0usize;
    let mut any_error = false;
    let mut response = FetchResponse::default();
    for topic in &request.topics {
        let mut topic_response = FetchableTopicResponse::default();
        topic_response.topic = topic.topic.clone();
        let known = broker.topics.get(&topic.topic);
        for fetch in &topic.partitions {
            let partition = known.as_ref().and_then(|t| t.partition(fetch.partition));
            let mut data = match partition {
                None => error_data(fetch.partition, ResponseError::UnknownTopicOrPartition),
                Some(partition) => {
                    let limit = (fetch.partition_max_bytes.max(0) as usize).min(budget);
                    // KIP-74: the first batch of the response is returned whole even if it
                    // exceeds the limits, so a large batch can never stall a consumer.
                    read_partition(&partition, fetch, limit, total == 0)
                }
            };
            any_error |= data.error_code != 0;
            let len = data.records.as_ref().map_or(0, Bytes::len);
            total += len;
            budget = budget.saturating_sub(len);
            if version < 5 {
                data.log_start_offset = -1;
            }
            topic_response.partitions.push(data);
        }
        response.responses.push(topic_response);
    }
    (response, total, any_error)
}

fn error_data(index: i32, error: ResponseError) -> PartitionData {
    let mut data = PartitionData::default();
    data.partition_index = index;
    data.error_code = code(error);
    data.high_watermark = -1;
    data.last_stable_offset = -1;
    data.log_start_offset = -1;
    data
}

fn read_partition(
    partition: &Partition,
    fetch: &FetchPartition,
    limit: usize,
    min_one_batch: bool,
) -> PartitionData {
    let current_epoch = partition.leader_epoch();
    if fetch.current_leader_epoch >= 0 && fetch.current_leader_epoch != current_epoch {
        let error = if fetch.current_leader_epoch > current_epoch {
            ResponseError::UnknownLeaderEpoch
        } else {
            ResponseError::FencedLeaderEpoch
        };
        return error_data(fetch.partition, error);
    }
    let guard = partition.lock();
    let Some(log) = guard.as_ref() else {
        return error_data(fetch.partition, ResponseError::UnknownTopicOrPartition);
    };
    let high_watermark = log.high_watermark();
    let log_start_offset = log.log_start_offset();
    let slice = log.read(fetch.fetch_offset, limit, high_watermark, min_one_batch);
    drop(guard);
    let mut data = PartitionData::default();
    data.partition_index = fetch.partition;
    data.high_watermark = high_watermark;
    // No transactions yet: everything below the high watermark is stable.
    data.last_stable_offset = high_watermark;
    data.log_start_offset = log_start_offset;
    match slice {
        Ok(slice) => match slice.read_to_bytes() {
            Ok(bytes) => data.records = Some(bytes),
            Err(e) => {
                tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "reading log failed");
                data.error_code = code(ResponseError::KafkaStorageError);
            }
        },
        Err(ReadError::OffsetOutOfRange { .. }) => {
            data.error_code = code(ResponseError::OffsetOutOfRange)
        }
        Err(ReadError::Storage(e)) => {
            tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "reading log failed");
            data.error_code = code(ResponseError::KafkaStorageError);
        }
    }
    data
}
