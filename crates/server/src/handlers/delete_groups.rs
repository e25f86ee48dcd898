//! DeleteGroups (key 42): removes empty groups with their committed offsets.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::commit_error_code;
use crate::broker::Broker;
use crate::groups;

pub(super) fn handle(broker: &Broker, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut response = DeleteGroupsResponse::default();
    response.results = request
        .groups_names
        .into_iter()
        .map(|group_id| {
            let mut result = DeletableGroupResult::default();
            result.error_code = groups::delete_group(&broker.groups, &group_id)
                .err()
                .map_or(0, commit_error_code);
            result.group_id = group_id;
            result
        })
        .collect();
    response
}
