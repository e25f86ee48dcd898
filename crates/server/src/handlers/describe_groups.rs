//! DescribeGroups (key 15): state, protocol and members of each named group. A group the
//! coordinator does not know is described as Dead with no members, as Kafka does.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::authorized_operations::{self, Resource};
use super::str_bytes;
use crate::broker::Broker;
use crate::groups;

pub(super) fn handle(broker: &Broker, request: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    // From v3 a client may ask for its authorized operations; Kafka answers for every group
    // without an error, unknown (Dead) ones included.
    let authorized_operations =
        authorized_operations::answer(version >= 3 && request.include_authorized_operations, Resource::Group);
    let mut response = DescribeGroupsResponse::default();
    response.groups = request
        .groups
        .into_iter()
        .map(|group_id| {
            let mut out = DescribedGroup::default();
            out.authorized_operations = authorized_operations;
            if let Err(error) = groups::check_coordinator(&broker.groups, &group_id) {
                out.error_code = super::group_error_code(error);
                out.group_id = group_id;
                return out;
            }
            match groups::describe(&broker.groups, &group_id) {
                None => out.group_state = str_bytes("Dead"),
                Some(description) => {
                    out.group_state = str_bytes(description.state.name());
                    out.protocol_type = str_bytes(&description.protocol_type);
                    out.protocol_data = str_bytes(&description.protocol_name);
                    out.members = description
                        .members
                        .into_iter()
                        .map(|member| {
                            let mut described = DescribedGroupMember::default();
                            described.member_id = str_bytes(&member.member_id);
                            if version >= 4 {
                                described.group_instance_id = member.group_instance_id.as_deref().map(str_bytes);
                            }
                            described.client_id = str_bytes(&member.client_id);
                            described.client_host = str_bytes(&member.client_host);
                            described.member_metadata = member.metadata;
                            described.member_assignment = member.assignment;
                            described
                        })
                        .collect();
                }
            }
            out.group_id = group_id;
            out
        })
        .collect();
    response
}
