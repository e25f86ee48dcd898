//! OffsetFetch (key 9): committed offsets of a group (v1-7) or of several (v8+), for the named
//! partitions or, with a null topic list, for every partition with a commit. With
//! `require_stable` (v7+), a partition with an offset pending in an open transaction answers
//! UNSTABLE_OFFSET_COMMIT, so the consumer retries rather than start from an offset the
//! transaction is about to replace.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::ResponseError;
use strom_group::OffsetCommit;

use super::{code, str_bytes, topic_name};
use crate::broker::Broker;
use crate::groups;

const FIRST_MULTI_GROUP_VERSION: i16 = 8;

/// A partition's committed offset, or `Err` when a transaction holds a newer one pending.
type PartitionOffset = Result<Option<OffsetCommit>, ResponseError>;
/// One group's committed offsets, topic by topic, in the order asked (or by name for all).
type TopicOffsets = Vec<(String, Vec<(i32, PartitionOffset)>)>;

fn offsets_of(
    broker: &Broker,
    group_id: &str,
    asked: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> TopicOffsets {
    let unstable = if require_stable {
        groups::pending_txn_offsets(&broker.groups, group_id)
    } else {
        Default::default()
    };
    let partitions: Option<Vec<(String, i32)>> = asked.map(|topics| {
        topics
            .into_iter()
            .flat_map(|(topic, indexes)| indexes.into_iter().map(move |index| (topic.clone(), index)))
            .collect()
    });
    let mut grouped: TopicOffsets = Vec::new();
    for (topic, partition, commit) in groups::fetch_offsets(&broker.groups, group_id, partitions.as_deref()) {
        let commit = if unstable.contains(&(topic.clone(), partition)) {
            Err(ResponseError::UnstableOffsetCommit)
        } else {
            Ok(commit)
        };
        match grouped.last_mut() {
            Some((last, entries)) if *last == topic => entries.push((partition, commit)),
            _ => grouped.push((topic, vec![(partition, commit)])),
        }
    }
    grouped
}

/// Error code, offset, leader epoch and metadata as the answer carries them: -1, -1, "" when
/// nothing is committed.
fn fields(commit: PartitionOffset) -> (i16, i64, i32, String) {
    match commit {
        Err(error) => (code(error), -1, -1, String::new()),
        Ok(commit) => commit.map_or((0, -1, -1, String::new()), |commit| {
            (0, commit.offset, commit.leader_epoch, commit.metadata)
        }),
    }
}

pub(super) fn handle(broker: &Broker, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version >= FIRST_MULTI_GROUP_VERSION {
        response.groups = request
            .groups
            .into_iter()
            .map(|group| {
                let asked = group.topics.map(|topics| {
                    topics
                        .into_iter()
                        .map(|topic| (topic.name.to_string(), topic.partition_indexes))
                        .collect()
                });
                let mut out = OffsetFetchResponseGroup::default();
                if let Err(error) = groups::check_coordinator(&broker.groups, &group.group_id) {
                    out.error_code = super::group_error_code(error);
                    out.group_id = group.group_id;
                    return out;
                }
                out.topics = offsets_of(broker, &group.group_id, asked, request.require_stable)
                    .into_iter()
                    .map(|(topic, partitions)| {
                        let mut topic_out = OffsetFetchResponseTopics::default();
                        topic_out.name = topic_name(&topic);
                        topic_out.partitions = partitions
                            .into_iter()
                            .map(|(index, commit)| {
                                let (error_code, offset, leader_epoch, metadata) = fields(commit);
                                let mut partition = OffsetFetchResponsePartitions::default();
                                partition.error_code = error_code;
                                partition.partition_index = index;
                                partition.committed_offset = offset;
                                partition.committed_leader_epoch = leader_epoch;
                                partition.metadata = Some(str_bytes(&metadata));
                                partition
                            })
                            .collect();
                        topic_out
                    })
                    .collect();
                out.group_id = group.group_id;
                out
            })
            .collect();
        return response;
    }
    let asked: Option<Vec<(String, Vec<i32>)>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|topic| (topic.name.to_string(), topic.partition_indexes))
            .collect()
    });
    let require_stable = version >= 7 && request.require_stable;
    if let Err(error) = groups::check_coordinator(&broker.groups, &request.group_id) {
        let error_code = super::group_error_code(error);
        if version >= 2 {
            response.error_code = error_code;
        } else {
            // v1 has no group-level error: every partition asked carries it, as Kafka answers.
            response.topics = asked
                .unwrap_or_default()
                .into_iter()
                .map(|(topic, indexes)| {
                    let mut topic_out = OffsetFetchResponseTopic::default();
                    topic_out.name = TopicName(str_bytes(&topic));
                    topic_out.partitions = indexes
                        .into_iter()
                        .map(|index| {
                            let mut partition = OffsetFetchResponsePartition::default();
                            partition.partition_index = index;
                            partition.error_code = error_code;
                            partition.committed_offset = -1;
                            partition.metadata = Some(str_bytes(""));
                            partition
                        })
                        .collect();
                    topic_out
                })
                .collect();
        }
        return response;
    }
    response.topics = offsets_of(broker, &request.group_id, asked, require_stable)
        .into_iter()
        .map(|(topic, partitions)| {
            let mut topic_out = OffsetFetchResponseTopic::default();
            topic_out.name = TopicName(str_bytes(&topic));
            topic_out.partitions = partitions
                .into_iter()
                .map(|(index, commit)| {
                    let (error_code, offset, leader_epoch, metadata) = fields(commit);
                    let mut partition = OffsetFetchResponsePartition::default();
                    partition.error_code = error_code;
                    partition.partition_index = index;
                    partition.committed_offset = offset;
                    if version >= 5 {
                        partition.committed_leader_epoch = leader_epoch;
                    }
                    partition.metadata = Some(str_bytes(&metadata));
                    partition
                })
                .collect();
            topic_out
        })
        .collect();
    response
}
