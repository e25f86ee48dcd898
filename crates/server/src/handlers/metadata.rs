//! Metadata (key 3): brokers, topics and partition leaders. Unknown topics are created here when
//! `auto.create.topics.enable` and the request allow it, as Kafka does.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::ResponseError;

use super::authorized_operations::{self, Resource};
use super::{code, str_bytes, topic_name};
use crate::broker::{now_ms, Broker};
use crate::topics::{Topic, TopicError};

pub(super) fn handle(broker: &Broker, request: MetadataRequest, version: i16) -> MetadataResponse {
    let mut response = MetadataResponse::default();
    let mut me = MetadataResponseBroker::default();
    me.node_id = BrokerId(broker.node_id());
    me.host = str_bytes(&broker.config.advertised_host);
    me.port = i32::from(broker.config.advertised_port);
    response.brokers = vec![me];
    if version >= 2 {
        response.cluster_id = Some(str_bytes(&broker.cluster_id));
    }
    if version >= 1 {
        response.controller_id = BrokerId(broker.node_id());
    }

    // v0 sends an empty list for "all topics"; v1+ sends null. From v10 a topic may be named
    // by its id instead (KIP-516): consumers of KIP-848 groups learn assignments by id. As in
    // Kafka, an id given wins over the name: Java's admin client (describeTopics by id) sends
    // the id with an empty name, not a null one.
    let requested: Option<Vec<TopicRef>> = match request.topics {
        None => None,
        Some(topics) if version == 0 && topics.is_empty() => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .map(|t| match t.name {
                    Some(name) if t.topic_id.is_nil() => TopicRef::Name(name.to_string()),
                    _ => TopicRef::Id(t.topic_id),
                })
                .collect(),
        ),
    };
    // v8-10 may ask for the cluster's authorized operations, v8+ for each topic's (KIP-430).
    if (8..=10).contains(&version) {
        response.cluster_authorized_operations =
            authorized_operations::answer(request.include_cluster_authorized_operations, Resource::Cluster);
    }
    let topic_authorized_operations = authorized_operations::answer(
        version >= 8 && request.include_topic_authorized_operations,
        Resource::Topic,
    );
    let auto_create = broker.config.auto_create_topics_enable && (version < 4 || request.allow_auto_topic_creation);
    response.topics = match requested {
        None => broker
            .topics
            .list()
            .iter()
            .map(|t| describe_topic(broker, t, version))
            .collect(),
        Some(topics) => topics
            .iter()
            .map(|topic| match topic {
                TopicRef::Name(name) => lookup_or_create(broker, name, auto_create, version),
                TopicRef::Id(id) => lookup_by_id(broker, *id, version),
            })
            .collect(),
    };
    // As Kafka: every topic answered by name, found or not; an unknown topic id keeps "not
    // provided".
    for topic in response.topics.iter_mut().filter(|topic| topic.name.is_some()) {
        topic.topic_authorized_operations = topic_authorized_operations;
    }
    response
}

enum TopicRef {
    Name(String),
    Id(uuid::Uuid),
}

fn lookup_by_id(broker: &Broker, id: uuid::Uuid, version: i16) -> MetadataResponseTopic {
    if let Some(topic) = broker.topics.list().iter().find(|topic| topic.id == id && !id.is_nil()) {
        return describe_topic(broker, topic, version);
    }
    let mut topic = MetadataResponseTopic::default();
    // As Kafka: no name (the codec's default is an empty one).
    topic.name = None;
    topic.topic_id = id;
    topic.error_code = code(ResponseError::UnknownTopicId);
    topic
}

fn lookup_or_create(broker: &Broker, name: &str, auto_create: bool, version: i16) -> MetadataResponseTopic {
    if let Some(topic) = broker.topics.get(name) {
        return describe_topic(broker, &topic, version);
    }
    let error = if crate::internal_topic::is_coordinator_topic(name) {
        // Created on first use by its coordinator, compacted; never with topic defaults.
        code(ResponseError::UnknownTopicOrPartition)
    } else if auto_create {
        match broker
            .topics
            .create(name, broker.config.num_partitions, Default::default(), false, now_ms())
        {
            Ok(Some(topic)) => return describe_topic(broker, &topic, version),
            Ok(None) => ResponseError::UnknownTopicOrPartition.code(),
            // A concurrent request created it first.
            Err(TopicError::AlreadyExists(_)) => match broker.topics.get(name) {
                Some(topic) => return describe_topic(broker, &topic, version),
                None => code(ResponseError::LeaderNotAvailable),
            },
            Err(e) => e.code(),
        }
    } else if crate::topics::validate_topic_name(name).is_err() {
        code(ResponseError::InvalidTopicException)
    } else {
        code(ResponseError::UnknownTopicOrPartition)
    };
    let mut topic = MetadataResponseTopic::default();
    topic.name = Some(topic_name(name));
    topic.error_code = error;
    topic
}

fn describe_topic(broker: &Broker, topic: &Topic, version: i16) -> MetadataResponseTopic {
    let node = BrokerId(broker.node_id());
    let mut out = MetadataResponseTopic::default();
    out.name = Some(topic_name(&topic.name));
    if version >= 10 {
        out.topic_id = topic.id;
    }
    if version >= 1 {
        out.is_internal = topic.is_internal();
    }
    out.partitions = topic
        .partitions()
        .iter()
        .map(|p| {
            let mut partition = MetadataResponsePartition::default();
            partition.partition_index = p.index;
            partition.leader_id = node;
            if version >= 7 {
                partition.leader_epoch = p.leader_epoch();
            }
            partition.replica_nodes = vec![node];
            partition.isr_nodes = vec![node];
            partition
        })
        .collect();
    out
}
