//! DescribeConfigs (key 32), AlterConfigs (key 33) and IncrementalAlterConfigs (key 44).
//!
//! Topic configs are dynamic and persisted with the topic (in a cluster, in the metadata log).
//! Broker configs are static (set at start-up) except the dynamic ones
//! ([`crate::dynamic_config`]), which a broker resource's AlterConfigs changes for one broker
//! (its node id) or as the cluster-wide default (the empty name).

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
                    let dynamic = broker.topics.dynamic_configs();
                    for config in topic_config::resolve(&defaults, &topic.overrides()) {
                        if !wanted(config.name) {
                            continue;
                        }
                        let source = match config.source {
                            ConfigSource::StaticBroker => dynamic
                                .topic_default_source(config.name)
                                .map_or(ConfigSource::StaticBroker, |(source, _)| source),
                            other => other,
                        };
                        let mut entry = entry(config.name, &config.value, source, config.config_type, false, version);
                        if request.include_documentation {
                            entry.documentation = Some(str_bytes(config.doc));
                        }
                        if request.include_synonyms {
                            entry.synonyms = topic_synonyms(broker, config.name, &topic.overrides());
                        }
                        result.configs.push(entry);
                    }
                }
            },
            // The cluster-wide dynamic defaults, as Kafka describes the empty broker name.
            RESOURCE_BROKER if resource.resource_name.is_empty() => {
                for (name, value) in broker.topics.dynamic_configs().default {
                    if wanted(&name) {
                        let source = ConfigSource::DynamicDefaultBroker;
                        result
                            .configs
                            .push(entry(&name, &value, source, ConfigType::String, false, version));
                    }
                }
            }
            RESOURCE_BROKER if *resource.resource_name == *broker.node_id().to_string() => {
                let dynamic = broker.topics.dynamic_configs();
                for (name, value) in broker_properties(broker) {
                    if wanted(&name) {
                        let (source, value) = dynamic
                            .source(&name)
                            .map_or((ConfigSource::StaticBroker, value.as_str()), |(s, v)| (s, v));
                        let read_only = !crate::dynamic_config::is_dynamic(&name);
                        let mut entry = entry(&name, value, source, ConfigType::String, read_only, version);
                        if request.include_synonyms {
                            entry.synonyms = broker_synonyms(broker, &name, &dynamic);
                        }
                        result.configs.push(entry);
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

fn synonym(name: &str, value: &str, source: ConfigSource) -> DescribeConfigsSynonym {
    let mut synonym = DescribeConfigsSynonym::default();
    synonym.name = str_bytes(name);
    synonym.value = Some(str_bytes(value));
    synonym.source = source as i8;
    synonym
}

/// Every layer a topic config's value could come from, highest precedence first.
fn topic_synonyms(broker: &Broker, name: &str, overrides: &BTreeMap<String, String>) -> Vec<DescribeConfigsSynonym> {
    let mut synonyms = Vec::new();
    if let Some(v) = overrides.get(name) {
        synonyms.push(synonym(name, v, ConfigSource::TopicOverride));
    }
    if let Some((broker_name, _)) = TOPIC_DEFAULT_PROPERTIES.iter().find(|(_, t)| *t == name) {
        synonyms.extend(broker_synonyms(broker, broker_name, &broker.topics.dynamic_configs()));
    } else if let Some(key) = topic_config::lookup(name) {
        synonyms.push(synonym(name, key.default, ConfigSource::Default));
    }
    synonyms
}

/// Broker properties without a default of their own in Kafka: their value comes from a
/// coarser property (`log.retention.hours`, `log.roll.hours`) or none, so Kafka lists no
/// DEFAULT_CONFIG synonym for them (`kafka-configs --describe` shows `synonyms={}` for a
/// topic's default `retention.ms` and `segment.ms`).
const WITHOUT_KAFKA_DEFAULT: [&str; 2] = ["log.retention.ms", "log.roll.ms"];

/// A broker property's layers: this broker's dynamic value, the cluster default, the static
/// value, Kafka's default.
fn broker_synonyms(
    broker: &Broker,
    name: &str,
    dynamic: &crate::dynamic_config::DynamicBrokerConfigs,
) -> Vec<DescribeConfigsSynonym> {
    let mut synonyms = Vec::new();
    if let Some(v) = dynamic.broker.get(name) {
        synonyms.push(synonym(name, v, ConfigSource::DynamicBroker));
    }
    if let Some(v) = dynamic.default.get(name) {
        synonyms.push(synonym(name, v, ConfigSource::DynamicDefaultBroker));
    }
    if let Some(topic_name) = crate::dynamic_config::topic_key(name) {
        if let Some(v) = broker.config.topic_defaults.get(topic_name) {
            synonyms.push(synonym(name, v, ConfigSource::StaticBroker));
        }
        if let Some(key) = topic_config::lookup(topic_name).filter(|_| !WITHOUT_KAFKA_DEFAULT.contains(&name)) {
            synonyms.push(synonym(name, key.default, ConfigSource::Default));
        }
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
        (
            "log.dirs".to_string(),
            c.log_dirs()
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
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
    for throttle in [
        "leader.replication.throttled.rate",
        "follower.replication.throttled.rate",
        "replica.alter.log.dirs.io.max.bytes.per.second",
    ] {
        props.push((throttle.to_string(), i64::MAX.to_string()));
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
            if let Err(e) = crate::topics::TopicRegistry::validate_overrides(&overrides) {
                return Some((e.code(), e.to_string()));
            }
            let resource = strom_metadata::ConfigResource::Topic(resource_name.to_string());
            super::cluster_admin::alter_configs(&broker.cluster, resource, overrides, validate_only).await
        }
        RESOURCE_BROKER => {
            // Any broker changes any broker's configs: the cluster's metadata carries them.
            let cluster_default = resource_name.is_empty();
            let dynamic = broker.topics.dynamic_configs();
            let mut values = if cluster_default {
                dynamic.default.clone()
            } else if resource_name == broker.node_id().to_string() {
                dynamic.broker.clone()
            } else {
                let id: i32 = match resource_name.parse() {
                    Ok(id) => id,
                    Err(_) => {
                        return Some((
                            code(ResponseError::InvalidRequest),
                            format!("no broker {resource_name:?}"),
                        ))
                    }
                };
                broker
                    .cluster
                    .image()
                    .configs(&strom_metadata::ConfigResource::Broker(id))
                    .cloned()
                    .unwrap_or_default()
            };
            if let Err(e) = change(&mut values) {
                return Some((e.code(), e.to_string()));
            }
            for (name, value) in &values {
                if let Err(reason) = crate::dynamic_config::validate(name, value) {
                    let error = if crate::dynamic_config::is_dynamic(name) {
                        ResponseError::InvalidConfig
                    } else {
                        ResponseError::InvalidRequest
                    };
                    return Some((code(error), reason));
                }
            }
            let resource = if cluster_default {
                strom_metadata::ConfigResource::BrokerDefault
            } else {
                match resource_name.parse() {
                    Ok(id) => strom_metadata::ConfigResource::Broker(id),
                    Err(_) => {
                        return Some((
                            code(ResponseError::InvalidRequest),
                            format!("no broker {resource_name:?}"),
                        ))
                    }
                }
            };
            super::cluster_admin::alter_configs(&broker.cluster, resource, values, validate_only).await
        }
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
