//! DescribeCluster (key 60): the brokers of the committed metadata.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::authorized_operations::{self, Resource};
use super::str_bytes;
use crate::broker::Broker;

pub(super) fn handle(broker: &Broker, request: &DescribeClusterRequest, version: i16) -> DescribeClusterResponse {
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
