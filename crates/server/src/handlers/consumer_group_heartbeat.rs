//! ConsumerGroupHeartbeat (key 68, KIP-848): a member of a consumer group reports its
//! subscription and what it owns, and gets its epoch and, when it changed, its assignment.
//! Topics travel by id on the wire and by name in the coordinator.

use std::net::SocketAddr;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment as WireAssignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use strom_group::{Assignment, ConsumerHeartbeat};

use super::{group_error_code, str_bytes};
use crate::broker::Broker;
use crate::groups;

pub(super) fn handle(
    broker: &Broker,
    request: ConsumerGroupHeartbeatRequest,
    client_id: &str,
    peer: SocketAddr,
) -> ConsumerGroupHeartbeatResponse {
    let names = groups::topic_names_by_id(&broker.groups);
    let owned = request.topic_partitions.as_ref().map(|owned| {
        let mut assignment = Assignment::new();
        for topic in owned {
            if let Some(name) = names.get(&topic.topic_id) {
                assignment.entry(name.clone()).or_default().extend(&topic.partitions);
            }
        }
        assignment
    });
    let heartbeat = ConsumerHeartbeat {
        group_id: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.as_ref().map(|id| id.to_string()),
        rack_id: request.rack_id.as_ref().map(|id| id.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        client_id: client_id.to_string(),
        client_host: format!("/{}", peer.ip()),
        subscribed_topic_names: request
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().map(|name| name.to_string()).collect()),
        subscribed_topic_regex: request.subscribed_topic_regex.as_ref().map(|regex| regex.to_string()),
        server_assignor: request.server_assignor.as_ref().map(|assignor| assignor.to_string()),
        owned,
    };
    let mut response = ConsumerGroupHeartbeatResponse::default();
    match groups::consumer_heartbeat(&broker.groups, heartbeat) {
        Ok(answer) => {
            response.member_id = Some(str_bytes(&answer.member_id));
            response.member_epoch = answer.member_epoch;
            response.heartbeat_interval_ms = answer.heartbeat_interval_ms;
            response.assignment = answer.assignment.map(|assignment| {
                let ids = groups::topic_ids_by_name(&broker.groups);
                let mut wire = WireAssignment::default();
                wire.topic_partitions = assignment
                    .into_iter()
                    .filter_map(|(topic, partitions)| {
                        let mut out = TopicPartitions::default();
                        out.topic_id = *ids.get(&topic)?;
                        out.partitions = partitions.into_iter().collect();
                        Some(out)
                    })
                    .collect();
                wire
            });
        }
        Err(error) => {
            response.error_code = group_error_code(error);
            response.error_message = Some(str_bytes(&error.to_string()));
        }
    }
    response
}
