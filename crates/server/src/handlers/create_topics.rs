//! CreateTopics (key 19), including `validate_only`.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::str_bytes;
use crate::broker::{now_ms, Broker};
use crate::topic_config;
use crate::topics::TopicError;

/// A manual assignment may only name this broker, once per partition.
pub(super) fn check_assignments<'a>(
    broker: &Broker,
    assignments: impl Iterator<Item = &'a [kafka_protocol::messages::BrokerId]>,
) -> Result<(), TopicError> {
    for replicas in assignments {
        if let Some(other) = replicas.iter().find(|b| b.0 != broker.node_id()) {
            return Err(TopicError::InvalidReplicaAssignment(format!(
                "the assignment names broker {}, but only broker {} is registered",
                other.0,
                broker.node_id()
            )));
        }
        if replicas.len() != 1 {
            return Err(TopicError::InvalidReplicationFactor(format!(
                "replication factor {} is larger than the 1 available broker",
                replicas.len()
            )));
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
        let partitions = if topic.num_partitions == -1 {
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
            } else if let Err(e) = check_assignments(broker, topic.assignments.iter().map(|a| &a.broker_ids[..])) {
                Err(e)
            } else {
                broker.topics.create(
                    &name,
                    topic.assignments.len() as i32,
                    overrides.clone(),
                    request.validate_only,
                    now_ms(),
                )
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
                    let configs = topic_config::resolve(broker.topics.broker_defaults(), &overrides);
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
