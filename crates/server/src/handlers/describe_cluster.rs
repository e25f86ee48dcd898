//! DescribeCluster (key 60): the brokers of the committed metadata.

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
use super::cluster_admin::{ask, await_image, controller_error_code, unavailable};
use super::{code, str_bytes, topic_name};
use crate::broker::Broker;
use crate::cluster::protocol::{ControllerReply, ControllerRequest};
use crate::cluster::Cluster;

pub(super) fn handle(
    broker: &Broker,
    request: &DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let image = broker.cluster.image();
    let mut response = DescribeClusterResponse::default();
    response.cluster_authorized_operations =
        authorized_operations::answer(request.include_cluster_authorized_operations, Resource::Cluster);
    response.cluster_id = str_bytes(&broker.cluster_id);
    response.controller_id = BrokerId(super::metadata::controller_id(broker, &image));
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

