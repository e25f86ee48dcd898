//! The APIs that describe or change the cluster, on a cluster node: Metadata and
//! DescribeCluster answered from the committed metadata image, and CreateTopics, DeleteTopics
//! and CreatePartitions forwarded to the active controller, wherever it runs. (A single node
//! answers these from its own topics in the sibling modules.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest,
    MetadataResponse,
};
use kafka_protocol::ResponseError;
use strom_metadata::controller::{ConfigOp, CreatePartitions, CreateTopic};
use strom_metadata::{ConfigResource, ControllerError, MetadataImage, TopicImage, NO_LEADER};

use super::authorized_operations::{self, Resource};
use super::{code, str_bytes, topic_name};
use crate::broker::Broker;
use crate::cluster::protocol::{ControllerReply, ControllerRequest};
use crate::cluster::Cluster;

/// How long an admin request waits for the active controller.
const CONTROLLER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request that created a topic waits for this node's image to show it.
const IMAGE_WAIT: Duration = Duration::from_secs(5);

/// The Kafka error for a controller's refusal.
pub(crate) fn controller_error_code(error: &ControllerError) -> i16 {
    use ResponseError as E;
    code(match error {
        ControllerError::BrokerNotRegistered(_) => E::BrokerIdNotRegistered,
        ControllerError::StaleBrokerEpoch { .. } => E::StaleBrokerEpoch,
        ControllerError::DuplicateBrokerRegistration(_) => E::DuplicateBrokerRegistration,
        ControllerError::TopicAlreadyExists(_) => E::TopicAlreadyExists,
        ControllerError::InvalidTopic(..) => E::InvalidTopicException,
        ControllerError::UnknownTopicOrPartition(_) => E::UnknownTopicOrPartition,
        ControllerError::UnknownTopicId(_) => E::UnknownTopicId,
        ControllerError::InvalidPartitions(_) => E::InvalidPartitions,
        ControllerError::InvalidReplicationFactor(_) => E::InvalidReplicationFactor,
        ControllerError::InvalidReplicaAssignment(_) => E::InvalidReplicaAssignment,
        ControllerError::InvalidRequest(_) => E::InvalidRequest,
        ControllerError::NotLeader(_) => E::NotLeaderOrFollower,
        ControllerError::FencedLeaderEpoch { .. } => E::FencedLeaderEpoch,
        ControllerError::InvalidUpdateVersion { .. } => E::InvalidUpdateVersion,
        ControllerError::IneligibleReplica(_) => E::IneligibleReplica,
        ControllerError::ElectionNotNeeded => E::ElectionNotNeeded,
        ControllerError::PreferredLeaderNotAvailable => E::PreferredLeaderNotAvailable,
        ControllerError::EligibleLeadersNotAvailable => E::EligibleLeadersNotAvailable,
        ControllerError::NoReassignmentInProgress => E::NoReassignmentInProgress,
        ControllerError::ProducerIdsExhausted => E::UnknownServerError,
    })
}

/// A failure to get an answer from the controller, as the error clients retry on.
fn unavailable(reason: &str) -> (i16, String) {
    (
        code(ResponseError::RequestTimedOut),
        format!("the controller did not answer: {reason}"),
    )
}

pub(super) async fn ask(cluster: &Cluster, request: ControllerRequest) -> Result<ControllerReply, (i16, String)> {
    match cluster.call(&request, CONTROLLER_TIMEOUT).await {
        Ok(ControllerReply::Unavailable(reason)) => Err(unavailable(&reason)),
        Ok(ControllerReply::Refused(e)) => Err((controller_error_code(&e), e.to_string())),
        Ok(reply) => Ok(reply),
        Err(reason) => Err(unavailable(&reason)),
    }
}

/// Waits until the image this broker has followed satisfies `done` (a change the controller
/// committed has arrived here and the broker's topics and configs show it), so the client's
/// next request here sees it.
pub(crate) async fn await_image(cluster: &Cluster, done: impl Fn(&MetadataImage) -> bool) {
    let deadline = Instant::now() + IMAGE_WAIT;
    let mut images = cluster.applied.subscribe();
    loop {
        if done(&images.borrow_and_update()) {
            return;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() || tokio::time::timeout(remaining, images.changed()).await.is_err() {
            return;
        }
    }
}

fn cluster_of(broker: &Broker) -> &Arc<Cluster> {
    broker.cluster.as_ref().expect("cluster handlers run on cluster nodes")
}

/// The controller clients are told of: the quorum leader if it is also a broker, else any
/// broker (Kafka answers a random broker on the client listener).
fn controller_id(broker: &Broker, image: &MetadataImage) -> i32 {
    let leader = cluster_of(broker)
        .quorum
        .metrics()
        .borrow()
        .current_leader
        .map(|id| id as i32);
    leader
        .filter(|id| image.broker(*id).is_some())
        .or_else(|| image.brokers().find(|b| !b.fenced).map(|b| b.id))
        .unwrap_or(-1)
}

pub(super) async fn metadata(broker: &Broker, request: MetadataRequest, version: i16) -> MetadataResponse {
    let cluster = cluster_of(broker);
    let mut response = MetadataResponse::default();
    let requested: Option<Vec<(Option<String>, uuid::Uuid)>> = match request.topics {
        None => None,
        Some(topics) if version == 0 && topics.is_empty() => None,
        // An id given wins over the name (Java's admin client sends both, the name empty).
        Some(topics) => Some(
            topics
                .into_iter()
                .map(|t| {
                    (
                        t.name.filter(|_| t.topic_id.is_nil()).map(|n| n.to_string()),
                        t.topic_id,
                    )
                })
                .collect(),
        ),
    };
    // Unknown topics are created first when asked to, so the answer describes them.
    let auto_create = broker.config.auto_create_topics_enable && (version < 4 || request.allow_auto_topic_creation);
    if let (true, Some(requested)) = (auto_create, &requested) {
        let image = cluster.image();
        let missing: Vec<String> = requested
            .iter()
            .filter_map(|(name, _)| name.clone())
            .filter(|name| image.topic_by_name(name).is_none() && !name.starts_with("__"))
            .filter(|name| strom_metadata::controller::validate_topic_name(name).is_ok())
            .collect();
        if !missing.is_empty() {
            let topics = missing
                .iter()
                .map(|name| CreateTopic {
                    name: name.clone(),
                    id: uuid::Uuid::new_v4(),
                    num_partitions: -1,
                    replication_factor: -1,
                    assignments: Vec::new(),
                    configs: Vec::new(),
                })
                .collect();
            let _ = ask(
                cluster,
                ControllerRequest::CreateTopics {
                    topics,
                    validate_only: false,
                },
            )
            .await;
            await_image(cluster, |image| {
                missing.iter().all(|n| image.topic_by_name(n).is_some())
            })
            .await;
        }
    }
    let image = cluster.image();
    response.brokers = image
        .brokers()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            let endpoint = b.endpoints.first()?;
            let mut out = MetadataResponseBroker::default();
            out.node_id = BrokerId(b.id);
            out.host = str_bytes(&endpoint.host);
            out.port = i32::from(endpoint.port);
            if version >= 1 {
                out.rack = b.rack.as_deref().map(str_bytes);
            }
            Some(out)
        })
        .collect();
    if version >= 2 {
        response.cluster_id = Some(str_bytes(&broker.cluster_id));
    }
    if version >= 1 {
        response.controller_id = BrokerId(controller_id(broker, &image));
    }
    if (8..=10).contains(&version) {
        response.cluster_authorized_operations =
            authorized_operations::answer(request.include_cluster_authorized_operations, Resource::Cluster);
    }
    let topic_operations = authorized_operations::answer(
        version >= 8 && request.include_topic_authorized_operations,
        Resource::Topic,
    );
    response.topics = match requested {
        None => image
            .topics()
            .filter(|t| !t.name.starts_with("__"))
            .map(|t| describe_topic(&image, t, version, topic_operations))
            .collect(),
        Some(requested) => requested
            .into_iter()
            .map(|(name, id)| {
                let found = match &name {
                    Some(name) => image.topic_by_name(name),
                    None => image.topic(&id).filter(|_| !id.is_nil()),
                };
                match found {
                    Some(topic) => describe_topic(&image, topic, version, topic_operations),
                    None => {
                        let mut topic = MetadataResponseTopic::default();
                        topic.error_code = match &name {
                            Some(name) if strom_metadata::controller::validate_topic_name(name).is_err() => {
                                code(ResponseError::InvalidTopicException)
                            }
                            Some(_) => code(ResponseError::UnknownTopicOrPartition),
                            None => code(ResponseError::UnknownTopicId),
                        };
                        topic.name = name.as_deref().map(topic_name);
                        topic.topic_id = id;
                        if name.is_some() {
                            topic.topic_authorized_operations = topic_operations;
                        }
                        topic
                    }
                }
            })
            .collect(),
    };
    response
}

fn describe_topic(image: &MetadataImage, topic: &TopicImage, version: i16, operations: i32) -> MetadataResponseTopic {
    let mut out = MetadataResponseTopic::default();
    out.name = Some(topic_name(&topic.name));
    if version >= 10 {
        out.topic_id = topic.id;
    }
    if version >= 1 {
        out.is_internal = topic.name.starts_with("__");
    }
    out.topic_authorized_operations = operations;
    let ids = |list: &[i32]| list.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    out.partitions = topic
        .partitions
        .iter()
        .map(|(&index, state)| {
            let mut partition = MetadataResponsePartition::default();
            partition.partition_index = index;
            partition.leader_id = BrokerId(state.leader);
            if state.leader == NO_LEADER {
                partition.error_code = code(ResponseError::LeaderNotAvailable);
            }
            if version >= 7 {
                partition.leader_epoch = state.leader_epoch;
            }
            partition.replica_nodes = ids(&state.replicas);
            partition.isr_nodes = ids(&state.isr);
            if version >= 5 {
                let offline: Vec<i32> = state
                    .replicas
                    .iter()
                    .copied()
                    .filter(|b| image.broker(*b).is_none_or(|r| r.fenced))
                    .collect();
                partition.offline_replicas = ids(&offline);
            }
            partition
        })
        .collect();
    out
}

pub(super) fn describe_cluster(
    broker: &Broker,
    request: &DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let image = cluster_of(broker).image();
    let mut response = DescribeClusterResponse::default();
    response.cluster_authorized_operations =
        authorized_operations::answer(request.include_cluster_authorized_operations, Resource::Cluster);
    response.cluster_id = str_bytes(&broker.cluster_id);
    response.controller_id = BrokerId(controller_id(broker, &image));
    if version >= 1 {
        response.endpoint_type = 1;
    }
    response.brokers = image
        .brokers()
        .filter_map(|b| {
            let endpoint = b.endpoints.first()?;
            let mut out = DescribeClusterBroker::default();
            out.broker_id = BrokerId(b.id);
            out.host = str_bytes(&endpoint.host);
            out.port = i32::from(endpoint.port);
            out.rack = b.rack.as_deref().map(str_bytes);
            if version >= 2 {
                out.is_fenced = b.fenced;
            }
            // Before v2 fenced brokers are left out, as Kafka does.
            (version >= 2 || !b.fenced).then_some(out)
        })
        .collect();
    response
}

pub(super) async fn create_topics(broker: &Broker, request: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let cluster = cluster_of(broker);
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

pub(super) async fn delete_topics(broker: &Broker, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let cluster = cluster_of(broker);
    let mut names: Vec<String> = request.topic_names.iter().map(|n| n.to_string()).collect();
    // v6 names topics in `topics`, by name or by id.
    let image = cluster.image();
    for topic in &request.topics {
        match &topic.name {
            Some(name) => names.push(name.to_string()),
            None => {
                if let Some(found) = image.topic(&topic.topic_id) {
                    names.push(found.name.clone());
                }
            }
        }
    }
    let mut response = DeleteTopicsResponse::default();
    let outcome = ask(cluster, ControllerRequest::DeleteTopics(names.clone())).await;
    response.responses = match outcome {
        Ok(ControllerReply::DeleteTopics(results)) => results
            .into_iter()
            .map(|(name, result)| {
                let mut out = DeletableTopicResult::default();
                out.name = Some(topic_name(&name));
                match result {
                    Ok(id) => {
                        if version >= 6 {
                            out.topic_id = id;
                        }
                    }
                    Err(e) => {
                        out.error_code = controller_error_code(&e);
                        if version >= 5 {
                            out.error_message = Some(str_bytes(&e.to_string()));
                        }
                    }
                }
                out
            })
            .collect(),
        other => {
            let (error, _) = match other {
                Err(failure) => failure,
                Ok(reply) => unavailable(&format!("unexpected answer {reply:?}")),
            };
            names
                .iter()
                .map(|name| {
                    let mut out = DeletableTopicResult::default();
                    out.name = Some(topic_name(name));
                    out.error_code = error;
                    out
                })
                .collect()
        }
    };
    await_image(cluster, |image| names.iter().all(|n| image.topic_by_name(n).is_none())).await;
    response
}

/// Replaces a topic's config overrides through the controller; the outcome as an error code
/// and message, or `None` once this node's image shows the change.
/// Replaces a resource's configs (a topic's overrides, a broker's or the cluster-wide dynamic
/// configs) through the controller, and waits for this node's image to show them.
pub(super) async fn alter_configs(
    cluster: &Cluster,
    resource: ConfigResource,
    overrides: std::collections::BTreeMap<String, String>,
    validate_only: bool,
) -> Option<(i16, String)> {
    let ops: Vec<ConfigOp> = overrides
        .iter()
        .map(|(name, value)| ConfigOp {
            name: name.clone(),
            value: Some(value.clone()),
        })
        .collect();
    let request = ControllerRequest::AlterConfigs {
        resource: resource.clone(),
        ops,
        replace: true,
        validate_only,
    };
    match ask(cluster, request).await {
        Ok(ControllerReply::Done) => {
            if !validate_only {
                await_image(cluster, |image| {
                    image.configs(&resource).cloned().unwrap_or_default() == overrides
                })
                .await;
            }
            None
        }
        Ok(other) => Some(unavailable(&format!("unexpected answer {other:?}"))),
        Err(failure) => Some(failure),
    }
}

pub(super) async fn create_partitions(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let cluster = cluster_of(broker);
    let asks: Vec<CreatePartitions> = request
        .topics
        .iter()
        .map(|t| CreatePartitions {
            name: t.name.to_string(),
            count: t.count,
            assignments: t
                .assignments
                .as_ref()
                .map(|a| a.iter().map(|a| a.broker_ids.iter().map(|b| b.0).collect()).collect()),
        })
        .collect();
    let names: Vec<String> = asks.iter().map(|a| a.name.clone()).collect();
    let outcome = ask(
        cluster,
        ControllerRequest::CreatePartitions {
            requests: asks,
            validate_only: request.validate_only,
        },
    )
    .await;
    let mut response = CreatePartitionsResponse::default();
    response.results = match outcome {
        Ok(ControllerReply::CreatePartitions(results)) => results
            .into_iter()
            .map(|(name, result)| {
                let mut out = CreatePartitionsTopicResult::default();
                out.name = topic_name(&name);
                if let Err(e) = result {
                    out.error_code = controller_error_code(&e);
                    out.error_message = Some(str_bytes(&e.to_string()));
                }
                out
            })
            .collect(),
        other => {
            let (error, message) = match other {
                Err(failure) => failure,
                Ok(reply) => unavailable(&format!("unexpected answer {reply:?}")),
            };
            names
                .iter()
                .map(|name| {
                    let mut out = CreatePartitionsTopicResult::default();
                    out.name = topic_name(name);
                    out.error_code = error;
                    out.error_message = Some(str_bytes(&message));
                    out
                })
                .collect()
        }
    };
    let wanted: Vec<(String, i32)> = request.topics.iter().map(|t| (t.name.to_string(), t.count)).collect();
    if !request.validate_only {
        await_image(cluster, |image| {
            wanted.iter().all(|(n, count)| {
                image
                    .topic_by_name(n)
                    .is_none_or(|t| t.partitions.len() as i32 >= *count)
            })
        })
        .await;
    }
    response
}
