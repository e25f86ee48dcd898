//! LeaveGroup (key 13): members leave at once instead of waiting out their session; from v3
//! a request may name several, by member id or group.instance.id (KIP-345).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use strom_group::LeavingMember;

use super::group_error_code;
use crate::broker::Broker;
use crate::groups;

const FIRST_BATCHED_VERSION: i16 = 3;

pub(super) fn handle(broker: &Broker, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let leaving: Vec<LeavingMember> = if version >= FIRST_BATCHED_VERSION {
        request
            .members
            .iter()
            .map(|member| LeavingMember {
                member_id: member.member_id.to_string(),
                group_instance_id: member.group_instance_id.as_ref().map(|id| id.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: request.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let mut response = LeaveGroupResponse::default();
    match groups::leave(&broker.groups, &request.group_id, &leaving) {
        Err(error) => response.error_code = group_error_code(error),
        Ok(results) if version < FIRST_BATCHED_VERSION => {
            if let Some(Err(error)) = results.first() {
                response.error_code = group_error_code(*error);
            }
        }
        Ok(results) => {
            response.members = request
                .members
                .into_iter()
                .zip(results)
                .map(|(member, result)| {
                    let mut out = MemberResponse::default();
                    out.member_id = member.member_id;
                    out.group_instance_id = member.group_instance_id;
                    out.error_code = result.err().map_or(0, group_error_code);
                    out
                })
                .collect();
        }
    }
    response
}
