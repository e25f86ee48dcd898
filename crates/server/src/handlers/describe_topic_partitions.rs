//! DescribeTopicPartitions (key 75, KIP-966): topics and their partitions, with the eligible
//! leader replicas Metadata cannot carry, a page at a time. The Java admin client (3.8+) and
//! Kafka's `kafka-topics --describe` use it when the broker offers it.
//!
//! Topics come in name order (all of them when the request names none); a page holds at most
//! `response_partition_limit` partitions (capped at 2000, Kafka's
//! `max.request.partition.size.limit`) and ends with a cursor where the next page starts.

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse};
use kafka_protocol::ResponseError;

use super::authorized_operations::{self, Resource};
use super::{code, topic_name};
use crate::broker::Broker;

/// Kafka's `max.request.partition.size.limit`.
const PARTITIONS_PER_PAGE_MAX: usize = 2000;

/// One partition as the answer shows it.
struct PartitionView {
    index: i32,
    leader: i32,
    leader_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    elr: Vec<i32>,
    last_known_elr: Vec<i32>,
}

struct TopicView {
    name: String,
    id: uuid::Uuid,
    partitions: Vec<PartitionView>,
}

/// Every topic of the metadata image this broker has.
fn topics(broker: &Broker) -> Vec<TopicView> {
    let image = broker.cluster.image();
    let mut views: Vec<TopicView> = image
        .topics()
        .map(|topic| TopicView {
            name: topic.name.clone(),
            id: topic.id,
            partitions: topic
                .partitions
                .iter()
                .map(|(index, state)| PartitionView {
                    index: *index,
                    leader: state.leader,
                    leader_epoch: state.leader_epoch,
                    replicas: state.replicas.clone(),
                    isr: state.isr.clone(),
                    elr: state.elr.clone(),
                    last_known_elr: state.last_known_elr.clone(),
                })
                .collect(),
        })
        .collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    views
}

fn ids(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().map(|id| BrokerId(*id)).collect()
}

pub(super) fn handle(broker: &Broker, request: DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    let mut response = DescribeTopicPartitionsResponse::default();
    let known = topics(broker);
    let mut wanted: Vec<String> = if request.topics.is_empty() {
        known.iter().map(|t| t.name.clone()).collect()
    } else {
        request.topics.iter().map(|t| t.name.to_string()).collect()
    };
    wanted.sort();
    wanted.dedup();
    let limit = usize::try_from(request.response_partition_limit)
        .ok()
        .filter(|n| *n > 0)
        .map_or(PARTITIONS_PER_PAGE_MAX, |n| n.min(PARTITIONS_PER_PAGE_MAX));
    let (start_topic, start_partition) = request.cursor.as_ref().map_or((String::new(), 0), |c| {
        (c.topic_name.to_string(), c.partition_index.max(0))
    });
    let operations = authorized_operations::answer(true, Resource::Topic);
    let mut budget = limit;
    for name in wanted.into_iter().filter(|name| *name >= start_topic) {
        let mut entry = DescribeTopicPartitionsResponseTopic::default();
        entry.name = Some(topic_name(&name));
        let Some(topic) = known.iter().find(|t| t.name == name) else {
            entry.error_code = code(ResponseError::UnknownTopicOrPartition);
            response.topics.push(entry);
            continue;
        };
        entry.topic_id = topic.id;
        entry.is_internal = name.starts_with("__");
        entry.topic_authorized_operations = operations;
        let first = if name == start_topic { start_partition } else { 0 };
        for partition in topic.partitions.iter().filter(|p| p.index >= first) {
            if budget == 0 {
                let mut cursor = Cursor::default();
                cursor.topic_name = topic_name(&name);
                cursor.partition_index = partition.index;
                response.next_cursor = Some(cursor);
                if !entry.partitions.is_empty() {
                    response.topics.push(entry);
                }
                return response;
            }
            budget -= 1;
            let mut out = DescribeTopicPartitionsResponsePartition::default();
            out.partition_index = partition.index;
            out.leader_id = BrokerId(partition.leader);
            out.leader_epoch = partition.leader_epoch;
            out.replica_nodes = ids(&partition.replicas);
            out.isr_nodes = ids(&partition.isr);
            out.eligible_leader_replicas = Some(ids(&partition.elr));
            out.last_known_elr = Some(ids(&partition.last_known_elr));
            if partition.leader < 0 {
                out.error_code = code(ResponseError::LeaderNotAvailable);
            }
            entry.partitions.push(out);
        }
        response.topics.push(entry);
    }
    response
}
