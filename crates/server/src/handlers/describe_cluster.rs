//! DescribeCluster (key 60).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::authorized_operations::{self, Resource};
use super::str_bytes;
use crate::broker::Broker;

pub(super) fn handle(broker: &Broker, request: &DescribeClusterRequest, version: i16) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default();
    response.cluster_authorized_operations =
        authorized_operations::answer(request.include_cluster_authorized_operations, Resource::Cluster);
    response.cluster_id = str_bytes(&broker.cluster_id);
    response.controller_id = BrokerId(broker.node_id());
    if version >= 1 {
        // Brokers, as opposed to controllers (KIP-919).
        response.endpoint_type = 1;
    }
    let mut me = DescribeClusterBroker::default();
    me.broker_id = BrokerId(broker.node_id());
    me.host = str_bytes(&broker.config.advertised_host);
    me.port = i32::from(broker.config.advertised_port);
    response.brokers = vec![me];
    response
}
