//! OffsetForLeaderEpoch (key 23): where a leader epoch ended, so a client or follower can
//! detect log divergence (KIP-101, KIP-320).

use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use super::code;
use crate::broker::Broker;

pub(super) fn handle(broker: &Broker, request: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let mut response = OffsetForLeaderEpochResponse::default();
    for topic in request.topics {
        let mut topic_result = OffsetForLeaderTopicResult::default();
        let known = broker.topics.get(&topic.topic);
        for wanted in topic.partitions {
            let mut result = EpochEndOffset::default();
            result.partition = wanted.partition;
            result.leader_epoch = -1;
            result.end_offset = -1;
            match known.as_ref().and_then(|t| t.partition(wanted.partition)) {
                None => result.error_code = code(ResponseError::UnknownTopicOrPartition),
                Some(partition) => {
                    let current = partition.leader_epoch();
                    if wanted.current_leader_epoch >= 0 && wanted.current_leader_epoch != current {
                        result.error_code = code(if wanted.current_leader_epoch > current {
                            ResponseError::UnknownLeaderEpoch
                        } else {
                            ResponseError::FencedLeaderEpoch
                        });
                    } else if let Some(log) = partition.lock().as_ref() {
                        if let Some((epoch, end_offset)) = log.end_offset_for_epoch(wanted.leader_epoch) {
                            result.leader_epoch = epoch;
                            result.end_offset = end_offset;
                        }
                    } else {
                        result.error_code = code(ResponseError::UnknownTopicOrPartition);
                    }
                }
            }
            topic_result.partitions.push(result);
        }
        topic_result.topic = topic.topic;
        response.topics.push(topic_result);
    }
    response
}
