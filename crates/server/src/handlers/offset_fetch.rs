//! OffsetFetch (key 9): committed offsets of a group (v1-7) or of several (v8+), for the named
//! partitions or, with a null topic list, for every partition with a commit.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use strom_group::OffsetCommit;

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::groups;

const FIRST_MULTI_GROUP_VERSION: i16 = 8;

/// One group's committed offsets, topic by topic, in the order asked (or by name for all).
type TopicOffsets = Vec<(String, Vec<(i32, Option<OffsetCommit>)>)>;

fn offsets_of(broker: &Broker, group_id: &str, asked: Option<Vec<(String, Vec<i32>)>>) -> TopicOffsets {
    let partitions: Option<Vec<(String, i32)>> = asked.map(|topics| {
        topics
            .into_iter()
            .flat_map(|(topic, indexes)| indexes.into_iter().map(move |index| (topic.clone(), index)))
            .collect()
    });
    let mut grouped: TopicOffsets = Vec::new();
    for (topic, partition, commit) in groups::fetch_offsets(broker, group_id, partitions.as_deref()) {
        match grouped.last_mut() {
            Some((last, entries)) if *last == topic => entries.push((partition, commit)),
            _ => grouped.push((topic, vec![(partition, commit)])),
        }
    }
    grouped
}

/// Offset, leader epoch and metadata as the answer carries them: -1, -1, "" when nothing is
/// committed.
fn fields(commit: Option<OffsetCommit>) -> (i64, i32, String) {
    commit.map_or((-1, -1, String::new()), |commit| {
        (commit.offset, commit.leader_epoch, commit.metadata)
    })
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
                out.topics = offsets_of(broker, &group.group_id, asked)
                    .into_iter()
                    .map(|(topic, partitions)| {
                        let mut topic_out = OffsetFetchResponseTopics::default();
                        topic_out.name = topic_name(&topic);
                        topic_out.partitions = partitions
                            .into_iter()
                            .map(|(index, commit)| {
                                let (offset, leader_epoch, metadata) = fields(commit);
                                let mut partition = OffsetFetchResponsePartitions::default();
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
    let asked = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|topic| (topic.name.to_string(), topic.partition_indexes))
            .collect()
    });
    response.topics = offsets_of(broker, &request.group_id, asked)
        .into_iter()
        .map(|(topic, partitions)| {
            let mut topic_out = OffsetFetchResponseTopic::default();
            topic_out.name = TopicName(str_bytes(&topic));
            topic_out.partitions = partitions
                .into_iter()
                .map(|(index, commit)| {
                    let (offset, leader_epoch, metadata) = fields(commit);
                    let mut partition = OffsetFetchResponsePartition::default();
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
