//! OffsetDelete (key 47, KIP-496): removes a group's committed offsets for some partitions,
//! except for topics its live members are subscribed to.

use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::{commit_error_code, group_error_code};
use crate::broker::Broker;
use crate::groups;

pub(super) fn handle(broker: &Broker, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| (topic.name.to_string(), partition.partition_index))
        })
        .collect();
    let mut response = OffsetDeleteResponse::default();
    let results = match groups::delete_offsets(&broker.groups, &request.group_id, &partitions, groups::subscribes_to) {
        Ok(results) => results,
        Err(error) => {
            response.error_code = group_error_code(error);
            return response;
        }
    };
    let mut results = results.into_iter();
    response.topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let mut out = OffsetDeleteResponseTopic::default();
            out.partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let mut answer = OffsetDeleteResponsePartition::default();
                    answer.partition_index = partition.partition_index;
                    answer.error_code = results.next().and_then(Result::err).map_or(0, commit_error_code);
                    answer
                })
                .collect();
            out.name = topic.name;
            out
        })
        .collect();
    response
}
