//! Heartbeat (key 12): keeps a member's session alive and tells it when to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use strom_group::MemberRef;

use super::group_error_code;
use crate::broker::Broker;
use crate::groups;

pub(super) fn handle(broker: &Broker, request: &HeartbeatRequest) -> HeartbeatResponse {
    let member = MemberRef {
        group_id: request.group_id.to_string(),
        generation_id: request.generation_id,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|id| id.to_string()),
    };
    let mut response = HeartbeatResponse::default();
    if let Err(error) = groups::heartbeat(&broker.groups, &member) {
        response.error_code = group_error_code(error);
    }
    response
}
