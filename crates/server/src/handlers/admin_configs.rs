//! DescribeConfigs (key 32), AlterConfigs (key 33) and IncrementalAlterConfigs (key 44).
//!
//! Topic configs are dynamic and persisted with the topic; broker configs are static (set at
//! start-up) and described read-only.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest, AlterConfigsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::ResponseError;

use super::{code, str_bytes};
use crate::broker::Broker;
use crate::config::TOPIC_DEFAULT_PROPERTIES;
use crate::topic_config::{self, ConfigSource, ConfigType};
use crate::topics::TopicError;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

pub(super) fn describe(broker: &Broker, request: DescribeConfigsRequest, version: i16) -> DescribeConfigsResponse {
    let mut response = DescribeConfigsResponse::default();
    for resource in request.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        let wanted = |name: &str| {
            resource
                .configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
        };
        match resource.resource_type {
            RESOURCE_TOPIC => match broker.topics.get(&resource.resource_name) {
                None => {
                    result.error_code = code(ResponseError::UnknownTopicOrPartition);
                    result.error_message = Some(str_bytes(&format!("unknown topic {}", &*resource.resource_name)));
                }
                Some(topic) => {
                    let defaults = broker.topics.broker_defaults();
                    for config in topic_config::resolve(defaults, &topic.overrides()) {
                        if !wanted(config.name) {
                            continue;
                        }
                        let mut entry = entry(
                            config.name,
                            &config.value,
                            config.source,
                            config.config_type,
                            false,
                            version,
                        );
                        if request.include_documentation {
                            entry.documentation = Some(str_bytes(config.doc));
                        }
                        if request.include_synonyms {
                            entry.synonyms = topic_synonyms(config.name, &topic.overrides(), defaults);
                        }
                        result.configs.push(entry);
                    }
                }
            },
            RESOURCE_BROKER
                if resource.resource_name.is_empty() || *resource.resource_name == *broker.node_id().to_string() =>
            {
                for (name, value) in broker_properties(broker) {
                    if wanted(&name) {
                        result.configs.push(entry(
                            &name,
                            &value,
                            ConfigSource::StaticBroker,
                            ConfigType::String,
                            true,
                            version,
                        ));
                    }
                }
            }
            RESOURCE_BROKER => {
                result.error_code = code(ResponseError::InvalidRequest);
                result.error_message = Some(str_bytes(&format!("this broker is node {}", broker.node_id())));
            }
            other => {
                result.error_code = code(ResponseError::InvalidRequest);
                result.error_message = Some(str_bytes(&format!("resource type {other} is not supported")));
            }
        }
        result.resource_name = resource.resource_name;
        response.results.push(result);
    }
    response
}

fn entry(
    name: &str,
    value: &str,
    source: ConfigSource,
    config_type: ConfigType,
    read_only: bool,
    version: i16,
) -> DescribeConfigsResourceResult {
    let mut entry = DescribeConfigsResourceResult::default();
    entry.name = str_bytes(name);
    entry.value = Some(str_bytes(value));
    entry.read_only = read_only;
    entry.config_source = if version == 0 && source == ConfigSource::Default {
        -1
    } else {
        source as i8
    };
    if version >= 3 {
        entry.config_type = config_type as i8;
    }
    entry
}

fn topic_synonyms(
    name: &str,
    overrides: &BTreeMap<String, String>,
    defaults: &BTreeMap<String, String>,
) -> Vec<DescribeConfigsSynonym> {
    let mut synonyms = Vec::new();
    let mut push = |syn_name: &str, value: &str, source: ConfigSource| {
        let mut synonym = DescribeConfigsSynonym::default();
        synonym.name = str_bytes(syn_name);
        synonym.value = Some(str_bytes(value));
        synonym.source = source as i8;
        synonyms.push(synonym);
    };
    if let Some(v) = overrides.get(name) {
        push(name, v, ConfigSource::TopicOverride);
    }
    if let Some(v) = defaults.get(name) {
        let broker_name = TOPIC_DEFAULT_PROPERTIES
            .iter()
            .find(|(_, t)| *t == name)
            .map_or(name, |(b, _)| *b);
        push(broker_name, v, ConfigSource::StaticBroker);
    }
    if let Some(key) = topic_config::lookup(name) {
        push(name, key.default, ConfigSource::Default);
    }
    synonyms
}

fn broker_properties(broker: &Broker) -> Vec<(String, String)> {
    let c = &broker.config;
    let mut props = vec![
        ("listeners".to_string(), format!("PLAINTEXT://{}", c.listener)),
        (
            "advertised.listeners".to_string(),
            format!("PLAINTEXT://{}:{}", c.advertised_host, c.advertised_port),
        ),
        ("log.dirs".to_string(), c.data_dir.display().to_string()),
        ("node.id".to_string(), c.node_id.to_string()),
        (
            "auto.create.topics.enable".to_string(),
            c.auto_create_topics_enable.to_string(),
        ),
        ("num.partitions".to_string(), c.num_partitions.to_string()),
        ("default.replication.factor".to_string(), "1".to_string()),
        (
            "socket.request.max.bytes".to_string(),
            c.socket_request_max_bytes.to_string(),
        ),
        (
            "queued.max.request.bytes".to_string(),
            c.queued_max_request_bytes.to_string(),
        ),
        ("max.connections".to_string(), c.max_connections.to_string()),
        (
            "log.retention.check.interval.ms".to_string(),
            c.log_retention_check_interval_ms.to_string(),
        ),
        (
            "log.cleaner.backoff.ms".to_string(),
            c.log_cleaner_backoff_ms.to_string(),
        ),
        ("log.flush.interval.ms".to_string(), c.log_flush_interval_ms.to_string()),
        (
            "producer.id.expiration.ms".to_string(),
            c.producer_id_expiration_ms.to_string(),
        ),
    ];
    for (broker_name, topic_name) in TOPIC_DEFAULT_PROPERTIES {
        let value = c
            .topic_defaults
            .get(*topic_name)
            .cloned()
            .or_else(|| topic_config::lookup(topic_name).map(|k| k.default.to_string()))
            .unwrap_or_default();
        props.push((broker_name.to_string(), value));
    }
    props
}

/// Outcome of altering one resource: an error code and message, or success. In a cluster a
/// topic's new overrides go to the controller, which commits them for every broker.
async fn alter_resource(
    broker: &Broker,
    resource_type: i8,
    resource_name: &str,
    validate_only: bool,
    change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), TopicError>,
) -> Option<(i16, String)> {
    match resource_type {
        RESOURCE_TOPIC => {
            let Some(topic) = broker.topics.get(resource_name) else {
                return Some((
                    code(ResponseError::UnknownTopicOrPartition),
                    format!("unknown topic {resource_name}"),
                ));
            };
            let mut overrides = topic.overrides();
            if let Err(e) = change(&mut overrides) {
                return Some((e.code(), e.to_string()));
            }
            match &broker.cluster {
                Some(cluster) if !topic.is_internal() => {
                    if let Err(e) = crate::topics::TopicRegistry::validate_overrides(&overrides) {
                        return Some((e.code(), e.to_string()));
                    }
                    super::cluster_admin::alter_topic_configs(cluster, resource_name, overrides, validate_only).await
                }
                _ => {
                    let result = broker.topics.set_overrides(resource_name, overrides, validate_only);
                    result.err().map(|e| (e.code(), e.to_string()))
                }
            }
        }
        RESOURCE_BROKER => Some((
            code(ResponseError::InvalidRequest),
            "broker configs are static in Strom; set them at start-up".to_string(),
        )),
        other => Some((
            code(ResponseError::InvalidRequest),
            format!("resource type {other} is not supported"),
        )),
    }
}

pub(super) async fn alter(broker: &Broker, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut response = AlterConfigsResponse::default();
    for resource in request.resources {
        // AlterConfigs replaces the whole set of overrides.
        let replacement: BTreeMap<String, String> = resource
            .configs
            .iter()
            .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
            .collect();
        let outcome = alter_resource(
            broker,
            resource.resource_type,
            &resource.resource_name,
            request.validate_only,
            |overrides| {
                *overrides = replacement;
                Ok(())
            },
        )
        .await;
        let mut result = alter_configs_response::AlterConfigsResourceResponse::default();
        if let Some((error, message)) = outcome {
            result.error_code = error;
            result.error_message = Some(str_bytes(&message));
        }
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name;
        response.responses.push(result);
    }
    response
}

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub(super) async fn incremental_alter(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in request.resources {
        let defaults = broker.topics.broker_defaults().clone();
        let outcome = alter_resource(
            broker,
            resource.resource_type,
            &resource.resource_name,
            request.validate_only,
            |overrides| {
                let mut names: Vec<&str> = resource.configs.iter().map(|op| op.name.as_str()).collect();
                names.sort_unstable();
                if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
                    return Err(TopicError::InvalidRequest(format!(
                        "config {} is changed twice",
                        pair[0]
                    )));
                }
                for op in &resource.configs {
                    let name = op.name.to_string();
                    let value = op.value.as_ref().map(|v| v.to_string());
                    let current = || {
                        overrides
                            .get(&name)
                            .cloned()
                            .or_else(|| defaults.get(&name).cloned())
                            .or_else(|| topic_config::lookup(&name).map(|k| k.default.to_string()))
                            .unwrap_or_default()
                    };
                    match (op.config_operation, value) {
                        (OP_SET, Some(v)) => {
                            overrides.insert(name, v);
                        }
                        (OP_DELETE, _) => {
                            overrides.remove(&name);
                        }
                        (OP_APPEND, Some(v)) => {
                            let mut items: Vec<String> = current()
                                .split(',')
                                .filter(|s| !s.is_empty())
                                .map(str::to_string)
                                .collect();
                            for item in v.split(',') {
                                if !items.iter().any(|i| i == item) {
                                    items.push(item.to_string());
                                }
                            }
                            overrides.insert(name, items.join(","));
                        }
                        (OP_SUBTRACT, Some(v)) => {
                            let remove: Vec<&str> = v.split(',').collect();
                            let items: Vec<String> = current()
                                .split(',')
                                .filter(|i| !remove.contains(i))
                                .map(str::to_string)
                                .collect();
                            overrides.insert(name, items.join(","));
                        }
                        (op, _) => return Err(TopicError::InvalidConfig(format!("invalid operation {op} for {name}"))),
                    }
                }
                Ok(())
            },
        )
        .await;
        let mut result = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        if let Some((error, message)) = outcome {
            result.error_code = error;
            result.error_message = Some(str_bytes(&message));
        }
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name;
        response.responses.push(result);
    }
    response
}
