//! Metadata (key 3): brokers, topics and partition leaders, from the committed metadata this
//! broker has. Unknown topics are created first (through the controller) when
//! `auto.create.topics.enable` and the request allow it, as Kafka does.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::ResponseError;
use strom_metadata::controller::CreateTopic;
use strom_metadata::{MetadataImage, TopicImage, NO_LEADER};

use super::authorized_operations::{self, Resource};
use super::cluster_admin::{ask, await_image};
use super::{code, str_bytes, topic_name};
use crate::broker::Broker;
use crate::cluster::protocol::ControllerRequest;

/// The controller clients are told of: the quorum leader if it is also a broker, else any
/// broker (Kafka answers a random broker on the client listener).
pub(super) fn controller_id(broker: &Broker, image: &MetadataImage) -> i32 {
    let leader = broker
        .cluster
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

pub(super) async fn handle(broker: &Broker, request: MetadataRequest, version: i16) -> MetadataResponse {
    let cluster = &broker.cluster;
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
        // Internal topics too, marked so (as Kafka answers; clients filter them out with
        // `exclude.internal.topics` and `listInternal`).
        None => image
            .topics()
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
