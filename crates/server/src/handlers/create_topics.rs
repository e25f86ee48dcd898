//! CreateTopics (key 19), including `validate_only`.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, CreateTopicsResponse};

use super::str_bytes;
use crate::broker::{now_ms, Broker};
use crate::topic_config;
use crate::topics::TopicError;

/// Kafka's checks of a manual assignment (the controller's validateManualPartitionAssignment),
/// for CreateTopics and CreatePartitions alike: each partition's replica list is non-empty,
/// names only registered brokers (on a single node: this one), none of them twice, and has as
/// many replicas as every other partition of the topic: `replication_factor` when the topic
/// has one already, else the first list's length.
pub(super) fn check_assignments<'a>(
    broker: &Broker,
    assignments: impl IntoIterator<Item = (i32, &'a [BrokerId])>,
    mut replication_factor: Option<usize>,
) -> Result<(), TopicError> {
    let invalid = |message: String| Err(TopicError::InvalidReplicaAssignment(message));
    for (partition, replicas) in assignments {
        if replicas.is_empty() {
            return invalid(format!(
                "the manual assignment gives partition {partition} an empty replica list"
            ));
        }
        let mut sorted: Vec<i32> = replicas.iter().map(|b| b.0).collect();
        sorted.sort_unstable();
        for (i, &id) in sorted.iter().enumerate() {
            if id != broker.node_id() {
                return invalid(format!(
                    "the manual assignment of partition {partition} names broker {id}, but only broker {} is registered",
                    broker.node_id()
                ));
            }
            if i > 0 && sorted[i - 1] == id {
                return invalid(format!(
                    "the manual assignment of partition {partition} names broker {id} more than once"
                ));
            }
        }
        match replication_factor {
            Some(factor) if factor != replicas.len() => {
                return invalid(format!(
                    "the manual assignment gives partition {partition} {} replica(s), but the topic's other partitions have {factor}",
                    replicas.len()
                ));
            }
            _ => replication_factor = Some(replicas.len()),
        }
    }
    Ok(())
}

/// A manual assignment must name partitions 0, 1, ... each once, as Kafka requires.
fn check_partition_indexes(assignments: &[CreatableReplicaAssignment]) -> Result<(), TopicError> {
    let mut seen = vec![false; assignments.len()];
    for assignment in assignments {
        let index = assignment.partition_index;
        match usize::try_from(index).ok().and_then(|i| seen.get_mut(i)) {
            Some(true) => {
                return Err(TopicError::InvalidReplicaAssignment(format!(
                    "the manual assignment names partition {index} more than once"
                )))
            }
            Some(slot) => *slot = true,
            None => {
                return Err(TopicError::InvalidReplicaAssignment(format!(
                    "the manual assignment names partition {index}; partitions must be numbered 0 to {} without gaps",
                    assignments.len() - 1
                )))
            }
        }
    }
    Ok(())
}

pub(super) fn handle(broker: &Broker, request: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut response = CreateTopicsResponse::default();
    // Kafka refuses every entry of a name that appears more than once, and creates none of them.
    let mut seen = std::collections::HashMap::new();
    for topic in &request.topics {
        *seen.entry(topic.name.to_string()).or_insert(0) += 1;
    }
    for topic in request.topics {
        let mut result = CreatableTopicResult::default();
        let name = topic.name.to_string();
        // A manual assignment fixes the count (and the answer's num_partitions).
        let partitions = if !topic.assignments.is_empty() {
            topic.assignments.len() as i32
        } else if topic.num_partitions == -1 {
            broker.config.num_partitions
        } else {
            topic.num_partitions
        };
        let overrides: BTreeMap<String, String> = topic
            .configs
            .iter()
            .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
            .collect();
        let null_config = topic
            .configs
            .iter()
            .find(|c| c.value.is_none())
            .map(|c| c.name.to_string());
        let outcome = if let Some(key) = null_config {
            Err(TopicError::InvalidConfig(format!("null value for config {key}")))
        } else if seen[name.as_str()] > 1 {
            Err(TopicError::InvalidRequest(format!(
                "the request names topic {name} more than once"
            )))
        } else if !topic.assignments.is_empty() {
            if topic.num_partitions != -1 || topic.replication_factor != -1 {
                Err(TopicError::InvalidPartitions(
                    "give either assignments or partition count and replication factor".into(),
                ))
            } else if let Err(e) = check_partition_indexes(&topic.assignments).and_then(|()| {
                let lists = topic.assignments.iter().map(|a| (a.partition_index, &a.broker_ids[..]));
                check_assignments(broker, lists, None)
            }) {
                Err(e)
            } else {
                broker
                    .topics
                    .create(&name, partitions, overrides.clone(), request.validate_only, now_ms())
            }
        } else if topic.replication_factor != -1 && topic.replication_factor != 1 {
            Err(TopicError::InvalidReplicationFactor(format!(
                "replication factor {} is larger than the 1 available broker",
                topic.replication_factor
            )))
        } else {
            broker
                .topics
                .create(&name, partitions, overrides.clone(), request.validate_only, now_ms())
        };
        match outcome {
            Ok(created) => {
                if let Some(created) = created.filter(|_| version >= 7) {
                    result.topic_id = created.id;
                }
                if version >= 5 {
                    result.num_partitions = partitions;
                    result.replication_factor = 1;
                    let configs = topic_config::resolve(&broker.topics.broker_defaults(), &overrides);
                    result.configs = Some(
                        configs
                            .into_iter()
                            .map(|c| {
                                let mut entry = CreatableTopicConfigs::default();
                                entry.name = str_bytes(c.name);
                                entry.value = Some(str_bytes(&c.value));
                                entry.config_source = c.source as i8;
                                entry
                            })
                            .collect(),
                    );
                }
            }
            Err(e) => {
                result.error_code = e.code();
                result.error_message = Some(str_bytes(&e.to_string()));
            }
        }
        result.name = topic.name;
        response.topics.push(result);
    }
    response
}
