//! ListGroups (key 16): every group this coordinator holds, optionally filtered by state
//! (v4+) and type (v5+: "classic" or "consumer", KIP-848).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::groups;

pub(super) fn handle(broker: &Broker, request: &ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let wanted = |filter: &[kafka_protocol::protocol::StrBytes], value: &str| {
        filter.is_empty() || filter.iter().any(|wanted| wanted.eq_ignore_ascii_case(value))
    };
    let mut response = ListGroupsResponse::default();
    response.groups = groups::list(&broker.groups)
        .into_iter()
        .filter(|listing| wanted(&request.states_filter, listing.state))
        .filter(|listing| wanted(&request.types_filter, listing.group_type))
        .map(|listing| {
            let mut out = ListedGroup::default();
            out.group_id = GroupId(str_bytes(&listing.group_id));
            out.protocol_type = str_bytes(&listing.protocol_type);
            if version >= 4 {
                out.group_state = str_bytes(listing.state);
            }
            if version >= 5 {
                out.group_type = str_bytes(listing.group_type);
            }
            out
        })
        .collect();
    response
}
