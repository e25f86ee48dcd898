//! ListOffsets (key 2): earliest, latest, max timestamp, and the first offset at or after a
//! timestamp.

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::code;
use crate::broker::Broker;

/// Special timestamps of ListOffsets (KIP-79, KIP-734, KIP-405).
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
/// ListOffsetsRequest.isolation_level (v2+).
const READ_COMMITTED: i8 = 1;

pub(super) fn handle(broker: &Broker, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let mut response = ListOffsetsResponse::default();
    let read_committed = version >= 2 && request.isolation_level == READ_COMMITTED;
    for topic in request.topics {
        let mut topic_response = ListOffsetsTopicResponse::default();
        let known = broker.topics.get(&topic.name);
        for wanted in topic.partitions {
            let mut out = ListOffsetsPartitionResponse::default();
            out.partition_index = wanted.partition_index;
            out.timestamp = -1;
            out.offset = -1;
            out.leader_epoch = -1;
            match known.as_ref().and_then(|t| t.partition(wanted.partition_index)) {
                None => out.error_code = code(ResponseError::UnknownTopicOrPartition),
                Some(partition) if !partition.is_leader() => out.error_code = code(ResponseError::NotLeaderOrFollower),
                Some(partition) => {
                    let guard = partition.lock();
                    match guard.as_ref() {
                        None => out.error_code = code(ResponseError::UnknownTopicOrPartition),
                        Some(log) => {
                            out.leader_epoch = partition.leader_epoch();
                            // What a consumer of this isolation level can read up to.
                            let end = if read_committed {
                                log.last_stable_offset()
                            } else {
                                log.high_watermark()
                            };
                            match wanted.timestamp {
                                LATEST => out.offset = end,
                                EARLIEST | EARLIEST_LOCAL => out.offset = log.log_start_offset(),
                                MAX_TIMESTAMP => {
                                    if let Some(found) = log.max_timestamp() {
                                        out.offset = found.offset;
                                        out.timestamp = found.timestamp;
                                        out.leader_epoch = found.leader_epoch;
                                    }
                                }
                                timestamp if timestamp >= 0 => match log.offset_for_timestamp(timestamp) {
                                    Ok(Some(found)) if found.offset < end => {
                                        out.offset = found.offset;
                                        out.timestamp = found.timestamp;
                                        out.leader_epoch = found.leader_epoch;
                                    }
                                    Ok(_) => {}
                                    Err(e) => {
                                        tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "time index lookup failed");
                                        out.error_code = code(ResponseError::KafkaStorageError);
                                    }
                                },
                                _ => out.error_code = code(ResponseError::InvalidRequest),
                            }
                        }
                    }
                }
            }
            if version < 4 {
                out.leader_epoch = -1;
            }
            topic_response.partitions.push(out);
        }
        topic_response.name = topic.name;
        response.topics.push(topic_response);
    }
    response
}
