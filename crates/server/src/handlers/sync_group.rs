//! SyncGroup (key 14): the leader hands in the assignment; every member gets its share. A
//! follower's answer waits for the leader's request.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use strom_group::SyncRequest;

use super::{group_error_code, str_bytes};
use crate::broker::Broker;
use crate::groups;

/// From v5 the protocol type and name are in the request and the answer.
const FIRST_VERSION_WITH_PROTOCOL_TYPE: i16 = 5;

pub(super) async fn handle(broker: &Broker, request: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let sync = SyncRequest {
        group_id: request.group_id.to_string(),
        generation_id: request.generation_id,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|id| id.to_string()),
        protocol_type: request.protocol_type.as_ref().map(|p| p.to_string()),
        protocol_name: request.protocol_name.as_ref().map(|p| p.to_string()),
        assignments: request
            .assignments
            .into_iter()
            .map(|assignment| (assignment.member_id.to_string(), assignment.assignment))
            .collect(),
    };
    let mut response = SyncGroupResponse::default();
    match groups::sync(&broker.groups, sync).await {
        Ok(answer) => {
            if version >= FIRST_VERSION_WITH_PROTOCOL_TYPE {
                response.protocol_type = answer.protocol_type.as_deref().map(str_bytes);
                response.protocol_name = answer.protocol_name.as_deref().map(str_bytes);
            }
            response.assignment = answer.assignment;
        }
        Err(error) => response.error_code = group_error_code(error),
    }
    response
}
