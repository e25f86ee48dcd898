//! DeleteRecords (key 21): move a partition's log start offset forward. As in Kafka, only on
//! topics whose `cleanup.policy` includes `delete` (POLICY_VIOLATION otherwise: a compacted
//! topic keeps the latest record of every key).

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;

use super::code;
use crate::broker::Broker;

pub(super) fn handle(broker: &Broker, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut response = DeleteRecordsResponse::default();
    for topic in request.topics {
        let mut topic_result = DeleteRecordsTopicResult::default();
        let known = broker.topics.get(&topic.name);
        for wanted in topic.partitions {
            let mut result = DeleteRecordsPartitionResult::default();
            result.partition_index = wanted.partition_index;
            result.low_watermark = -1;
            match known.as_ref().and_then(|t| t.partition(wanted.partition_index)) {
                None => result.error_code = code(ResponseError::UnknownTopicOrPartition),
                // Only the leader moves the log start; followers follow it in their fetches.
                Some(partition) if !partition.is_leader() => {
                    result.error_code = code(ResponseError::NotLeaderOrFollower);
                }
                Some(partition) => {
                    let mut guard = partition.lock();
                    match guard.as_mut() {
                        None => result.error_code = code(ResponseError::UnknownTopicOrPartition),
                        Some(log) if !log.config().cleanup_policy.delete => {
                            result.error_code = code(ResponseError::PolicyViolation);
                        }
                        Some(log) => {
                            let high_watermark = log.high_watermark();
                            // -1 means "up to the high watermark" (Kafka's DeleteRecords).
                            let target = if wanted.offset == -1 {
                                high_watermark
                            } else {
                                wanted.offset
                            };
                            if target < 0 || target > high_watermark {
                                result.error_code = code(ResponseError::OffsetOutOfRange);
                            } else {
                                match log.delete_records_before(target) {
                                    Ok(low_watermark) => result.low_watermark = low_watermark,
                                    Err(e) => {
                                        tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "delete records failed");
                                        result.error_code = code(ResponseError::KafkaStorageError);
                                    }
                                }
                            }
                        }
                    }
                }
            }
            topic_result.partitions.push(result);
        }
        topic_result.name = topic.name;
        response.topics.push(topic_result);
    }
    response
}
