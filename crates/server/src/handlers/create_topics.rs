//! CreateTopics (key 19), including `validate_only`: checked here, decided by the active
//! controller wherever it runs, and answered once this broker has the new topics.

use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::ResponseError;
use strom_metadata::controller::CreateTopic;

use super::cluster_admin::{ask, await_image, controller_error_code, unavailable};
use super::{code, str_bytes};
use crate::broker::Broker;
use crate::cluster::protocol::{ControllerReply, ControllerRequest};

pub(super) async fn handle(broker: &Broker, request: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let cluster = &broker.cluster;
    let mut response = CreateTopicsResponse::default();
    let mut asks = Vec::new();
    let mut results: Vec<CreatableTopicResult> = Vec::new();
    // Overrides of the topics asked for, for the answer's configs (v5+).
    let mut overrides: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> =
        Default::default();
    // Kafka refuses every entry of a name that appears more than once, and creates none of them.
    let mut seen = std::collections::HashMap::new();
    for topic in &request.topics {
        *seen.entry(topic.name.to_string()).or_insert(0) += 1;
    }
    for topic in request.topics {
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        let mut configs = Vec::new();
        let mut refused = None;
        for config in &topic.configs {
            let Some(value) = config.value.as_ref().map(|v| v.to_string()) else {
                refused = Some((
                    ResponseError::InvalidConfig,
                    format!("null value for config {}", config.name),
                ));
                continue;
            };
            if let Err(reason) = crate::topic_config::validate_value(&config.name, &value) {
                refused = Some((ResponseError::InvalidConfig, reason));
            }
            configs.push((config.name.to_string(), value));
        }
        if seen[topic.name.as_str()] > 1 {
            refused = Some((
                ResponseError::InvalidRequest,
                format!("the request names topic {} more than once", topic.name.as_str()),
            ));
        }
        if let Some((error, reason)) = refused {
            result.error_code = code(error);
            result.error_message = Some(str_bytes(&reason));
            results.push(result);
            continue;
        }
        overrides.insert(topic.name.to_string(), configs.iter().cloned().collect());
        let replication_factor = if topic.replication_factor == -1 && topic.assignments.is_empty() {
            broker.config.cluster.default_replication_factor
        } else {
            topic.replication_factor
        };
        asks.push(CreateTopic {
            name: topic.name.to_string(),
            id: uuid::Uuid::new_v4(),
            num_partitions: topic.num_partitions,
            replication_factor,
            assignments: topic
                .assignments
                .iter()
                .map(|a| (a.partition_index, a.broker_ids.iter().map(|b| b.0).collect()))
                .collect(),
            configs,
        });
        results.push(result);
    }
    let names: Vec<String> = asks.iter().map(|t| t.name.clone()).collect();
    if !asks.is_empty() {
        let answer = ask(
            cluster,
            ControllerRequest::CreateTopics {
                topics: asks,
                validate_only: request.validate_only,
            },
        )
        .await;
        match answer {
            Ok(ControllerReply::CreateTopics(created)) => {
                for (name, outcome) in created {
                    let Some(result) = results
                        .iter_mut()
                        .find(|r| r.name.as_str() == name && r.error_code == 0)
                    else {
                        continue;
                    };
                    match outcome {
                        Ok(created) => {
                            if version >= 5 {
                                result.num_partitions = created.num_partitions;
                                result.replication_factor = created.replication_factor;
                                let asked = overrides.get(&name).cloned().unwrap_or_default();
                                result.configs = Some(created_configs(broker, &asked));
                            }
                            if version >= 7 {
                                result.topic_id = created.id;
                            }
                        }
                        Err(e) => {
                            result.error_code = controller_error_code(&e);
                            result.error_message = Some(str_bytes(&e.to_string()));
                        }
                    }
                }
            }
            other => {
                let (error, message) = match other {
                    Err(failure) => failure,
                    Ok(reply) => unavailable(&format!("unexpected answer {reply:?}")),
                };
                for result in results
                    .iter_mut()
                    .filter(|r| names.contains(&r.name.to_string()) && r.error_code == 0)
                {
                    result.error_code = error;
                    result.error_message = Some(str_bytes(&message));
                }
            }
        }
        if !request.validate_only {
            let created: Vec<String> = results
                .iter()
                .filter(|r| r.error_code == 0)
                .map(|r| r.name.to_string())
                .collect();
            await_image(cluster, |image| {
                created.iter().all(|n| image.topic_by_name(n).is_some())
            })
            .await;
        }
    }
    if version < 1 {
        for result in &mut results {
            result.error_message = None;
        }
    }
    response.topics = results;
    response
}

/// A new topic's configs as CreateTopics (v5+) answers them: every topic config, from
/// `overrides` or the broker's defaults, with its source.
fn created_configs(
    broker: &Broker,
    overrides: &std::collections::BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    crate::topic_config::resolve(&broker.topics.broker_defaults(), overrides)
        .into_iter()
        .map(|c| {
            let mut entry = CreatableTopicConfigs::default();
            entry.name = str_bytes(c.name);
            entry.value = Some(str_bytes(&c.value));
            entry.config_source = c.source as i8;
            entry
        })
        .collect()
}
