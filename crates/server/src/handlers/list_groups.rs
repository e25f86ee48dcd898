//! ListGroups (key 16): every group this coordinator holds, optionally filtered by state
//! (v4+) and type (v5+; all of Strom's groups are "classic").

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::groups;

const GROUP_TYPE: &str = "classic";

pub(super) fn handle(broker: &Broker, request: &ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let wanted_state = |state: &str| {
        request.states_filter.is_empty()
            || request
                .states_filter
                .iter()
                .any(|wanted| wanted.eq_ignore_ascii_case(state))
    };
    let wanted_type = request.types_filter.is_empty()
        || request
            .types_filter
            .iter()
            .any(|wanted| wanted.eq_ignore_ascii_case(GROUP_TYPE));
    let mut response = ListGroupsResponse::default();
    if !wanted_type {
        return response;
    }
    response.groups = groups::list(broker)
        .into_iter()
        .filter(|listing| wanted_state(listing.state.name()))
        .map(|listing| {
            let mut out = ListedGroup::default();
            out.group_id = GroupId(str_bytes(&listing.group_id));
            out.protocol_type = str_bytes(&listing.protocol_type);
            if version >= 4 {
                out.group_state = str_bytes(listing.state.name());
            }
            if version >= 5 {
                out.group_type = str_bytes(GROUP_TYPE);
            }
            out
        })
        .collect();
    response
}
