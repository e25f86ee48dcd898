//! CreateTopics (key 19), including `validate_only`.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::str_bytes;
use crate::broker::{now_ms, Broker};
use crate::topic_config;
use crate::topics::TopicError;

pub(super) fn handle(broker: &Broker, request: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut response = CreateTopicsResponse::default();
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
        let outcome = if !topic.assignments.is_empty() {
            if topic.num_partitions != -1 || topic.replication_factor != -1 {
                Err(TopicError::InvalidPartitions(
                    "give either assignments or partition count and replication factor".into(),
                ))
            } else if topic
                .assignments
                .iter()
                .any(|a| a.broker_ids.iter().any(|b| b.0 != broker.node_id()) || a.broker_ids.len() != 1)
            {
                Err(TopicError::InvalidReplicationFactor(
                    "every replica must be on this single broker".into(),
                ))
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
