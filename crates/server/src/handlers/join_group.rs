//! JoinGroup (key 11): enter a group or rejoin it for a new generation. The answer may wait
//! for the rest of the group, up to the rebalance timeout.

use std::net::SocketAddr;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use strom_group::JoinRequest;

use super::{group_error_code, str_bytes};
use crate::broker::Broker;
use crate::groups;

/// JoinGroup v4 is the first whose clients expect MEMBER_ID_REQUIRED (KIP-394).
const FIRST_VERSION_REQUIRING_MEMBER_ID: i16 = 4;
/// From v7 the protocol type and name are in the answer, and the name may be null.
const FIRST_VERSION_WITH_PROTOCOL_TYPE: i16 = 7;

pub(super) async fn handle(
    broker: &Broker,
    request: JoinGroupRequest,
    version: i16,
    client_id: &str,
    peer: SocketAddr,
) -> JoinGroupResponse {
    let join = JoinRequest {
        group_id: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|id| id.to_string()),
        client_id: client_id.to_string(),
        client_host: format!("/{}", peer.ip()),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout; the session timeout served for both.
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|protocol| (protocol.name.to_string(), protocol.metadata.clone()))
            .collect(),
        require_known_member_id: version >= FIRST_VERSION_REQUIRING_MEMBER_ID,
    };
    let answer = groups::join(&broker.groups, join).await;
    let mut response = JoinGroupResponse::default();
    response.error_code = answer.error.map_or(0, group_error_code);
    response.generation_id = answer.generation_id;
    response.member_id = str_bytes(&answer.member_id);
    response.leader = str_bytes(&answer.leader);
    if version >= FIRST_VERSION_WITH_PROTOCOL_TYPE {
        response.protocol_type = answer.protocol_type.as_deref().map(str_bytes);
        response.protocol_name = answer.protocol_name.as_deref().map(str_bytes);
    } else {
        response.protocol_name = Some(str_bytes(answer.protocol_name.as_deref().unwrap_or("")));
    }
    if version >= 9 {
        response.skip_assignment = answer.skip_assignment;
    }
    response.members = answer
        .members
        .into_iter()
        .map(|member| {
            let mut out = JoinGroupResponseMember::default();
            out.member_id = str_bytes(&member.member_id);
            if version >= 5 {
                out.group_instance_id = member.group_instance_id.as_deref().map(str_bytes);
            }
            out.metadata = member.metadata;
            out
        })
        .collect();
    response
}
